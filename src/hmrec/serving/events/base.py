"""The event store's interfaces, whatever holds them: the event log (live purchase events: append, read since,
export), worker coordination (the reload log and the worker heartbeats) and the feedback log (impressions)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from hmrec.feedback.records import Impression, Sale

DEFAULT_TIMEOUT = 2.0  # seconds a store call may take (HMREC_EVENTS_TIMEOUT_SECONDS)
DEFAULT_RETRY = 5.0  # seconds a failed store is left alone before the next try (HMREC_EVENTS_RETRY_SECONDS)
COMPACT_BATCH = 2_000  # events deleted per transaction by `compact` (milliseconds of lock for each)


class EventStoreUnavailable(RuntimeError):
    """The event store cannot be used now (unreachable, frozen past the timeout, a corrupt file); the message says
    which store and why (never a password). Reads degrade, writes answer 503 (serving/app.py)."""


@dataclass(frozen=True)
class Purchase:
    """One purchase as the service took it: raw ids (article id as an int), the day and the price paid."""

    customer_id: str
    article_id: int
    t_dat: date
    price: float
    sales_channel_id: int


@dataclass(frozen=True)
class WorkerBeat:
    """A worker's last heartbeat: what it serves and the latest reload it has acted on."""

    worker: str
    version: int | None
    reload_id: int


class EventLog(Protocol):
    """The live purchase events, shared by every worker process on every machine that uses the same store.

    Guarantees, for each backend: `add` returns only once the event is durably committed; `since(n)` never
    skips an event, because ids become visible in increasing order (a reader that has seen id n will never
    later find a committed id below n)."""

    @abstractmethod
    def add(self, purchase: Purchase) -> int:
        """Commit one event; its id."""

    @abstractmethod
    def add_purchase(self, purchase: Purchase, request_id: str | None, client_event_id: str | None) -> StoredPurchase:
        """Commit one event with where it came from: the `request_id` of the answer it was bought from, and the
        client's own id for it, which makes a retry idempotent: a second event of the customer with the same
        `client_event_id` is not stored again; the first one is answered, marked `duplicate`."""

    @abstractmethod
    def since(self, after_id: int) -> list[tuple[int, Purchase]]:
        """Events with an id above `after_id`, oldest first, each with its id."""

    def all(self) -> list[Purchase]:
        """Every stored event, oldest first (what `hmrec events export` writes)."""
        return [purchase for _, purchase in self.since(0)]

    @abstractmethod
    def count(self) -> int:
        """Events stored."""

    @abstractmethod
    def compact(self, before: date, received_days: int) -> int:
        """Delete the events dated before `before` and received over `received_days` days ago (by the store's
        clock), a batch of COMPACT_BATCH per transaction so that live writes never wait long; how many. Ids are never
        reused, so `since` still never skips an event."""


class WorkerCoordination(Protocol):
    """The reload log and the worker heartbeats, shared by every worker process that uses the same store.

    A worker is live while its heartbeat is younger than a timeout, measured on the store's own clock (process ids
    mean nothing on another machine)."""

    @abstractmethod
    def announce_reload(self, version: int | None) -> int:
        """Record that this process now serves `version`, so the other workers load the champion too; the id."""

    @abstractmethod
    def last_reload(self) -> int:
        """Id of the latest announced reload (0: none yet)."""

    @abstractmethod
    def report_worker(self, worker: str, version: int | None, reload_id: int) -> None:
        """A heartbeat: `worker` is alive, serves `version` and has acted on reloads up to `reload_id`."""

    @abstractmethod
    def live_workers(self, timeout: float) -> list[WorkerBeat]:
        """Workers whose last heartbeat is at most `timeout` seconds old, by the store's clock."""

    @abstractmethod
    def forget_workers(self, workers: list[str]) -> None:
        """Drop these workers' rows (a worker shutting down cleanly)."""

    @abstractmethod
    def prune_workers(self, silent_for: float) -> int:
        """Drop rows of workers silent for more than `silent_for` seconds (killed ones); how many."""


@dataclass(frozen=True)
class StoredPurchase:
    """A committed purchase event and its id; `duplicate`: the client had sent it before, and this is that one."""

    id: int
    purchase: Purchase
    duplicate: bool


class FeedbackLog(Protocol):
    """What the loop's analytics read (hmrec.feedback): the impressions the service showed, in their own table (not
    the purchases every worker polls), written in batches off the request path; and the purchases with the request
    ids they came from."""

    @abstractmethod
    def add_impressions(self, impressions: list[Impression]) -> None:
        """Commit a batch of impressions in one transaction."""

    @abstractmethod
    def impressions(self, since: date | None = None) -> list[Impression]:
        """The stored impressions of service days from `since` on (all: None), in the order they were stored."""

    @abstractmethod
    def impression_count(self) -> int:
        """Impressions stored."""

    @abstractmethod
    def prune_impressions(self, older_than_seconds: float) -> int:
        """Drop impressions received more than `older_than_seconds` ago (the retention); how many."""

    @abstractmethod
    def sales(self, since: date | None = None) -> list[Sale]:
        """Every stored purchase dated from `since` on, with its request id (if it came with one) and the time the
        store received it, oldest first."""


class EventStore(EventLog, WorkerCoordination, FeedbackLog, Protocol):
    """One database holding both (SQLite or PostgreSQL): what `open_event_store` returns and the lifespan closes.
    Each caller takes the narrow interface it uses: live histories the EventLog, the model holder the
    WorkerCoordination."""

    @abstractmethod
    def close(self) -> None:
        """Close the store's connections."""
