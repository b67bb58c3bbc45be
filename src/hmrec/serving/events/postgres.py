"""The event store for several machines: one PostgreSQL database shared by every worker of every `hmrec serve`.

Commit order: a sequence hands out ids when rows are inserted, not when they commit, so two writers could
commit ids 8 and 7 in that order and a reader polling between the two commits would move past 7 for ever.
Every insert therefore first takes one transaction-scoped advisory lock (`pg_advisory_xact_lock`), held until
its commit: the id is drawn after the lock, and the lock is released only after the commit is visible, so
ids become visible in increasing order and `since(last seen id)` never skips one. The price is that event
commits serialize (one WAL flush each), which the benchmark in docs/benchmarks.md measures."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import date
from typing import NoReturn, TypeVar

import psycopg

from hmrec.serving.events.base import (
    COMPACT_BATCH,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    EventStore,
    EventStoreUnavailable,
    Purchase,
    WorkerBeat,
)
from hmrec.serving.events.postgres_feedback import FEEDBACK_SCHEMA, PostgresFeedback

__all__ = ["EventStoreUnavailable", "PostgresEventStore", "redact"]
log = logging.getLogger(__name__)
T = TypeVar("T")

# pg_advisory_xact_lock keys (any bigint; these spell "hmrec" plus a role)
SCHEMA_LOCK = 0x686D726563_00
EVENTS_LOCK = 0x686D726563_01

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS purchases (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        t_dat DATE NOT NULL,
        customer_id TEXT NOT NULL,
        article_id BIGINT NOT NULL,
        price DOUBLE PRECISION NOT NULL,
        sales_channel_id SMALLINT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS reloads (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        version INTEGER,
        at TIMESTAMPTZ NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS workers (
        worker TEXT PRIMARY KEY,
        version INTEGER,
        reload_id BIGINT NOT NULL,
        at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())""",
]


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class _Connection:
    """One autocommit connection and the lock its users take; (re)connected on first use after a failure, though not
    before `retry` seconds have passed (callers fail fast meanwhile).

    Every statement ends within about `timeout` seconds: PostgreSQL's statement_timeout cancels a slow one, and a
    watchdog thread shuts the socket of one whose server does not answer at all (a frozen server, whose kernel
    still acknowledges every packet, cannot enforce its own timeout)."""

    def __init__(self, url: str, timeout: float, retry: float, prepare: Callable[[psycopg.Connection], None]):
        self.url, self.timeout, self.retry, self._prepare = url, timeout, retry, prepare
        self.lock = threading.Lock()
        self._connection: psycopg.Connection | None = None
        self._failed_at: float | None = None
        self._error = ""
        self._deadline: float | None = None  # of the statement running now
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="hmrec-pg-watchdog", daemon=True).start()

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """`work(connection)` under the lock and the deadline; EventStoreUnavailable if it cannot run."""
        with self.lock:
            if self._connection is None or self._connection.broken or self._connection.closed:
                self._reconnect()
            self._deadline = time.monotonic() + self.timeout
            try:
                return work(self._connection)
            except psycopg.Error as error:
                self._fail(error)
            finally:
                self._deadline = None

    def _reconnect(self) -> None:
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry:
            raise EventStoreUnavailable(f"the events database {redact(self.url)} failed: {self._error}")
        if self._connection is not None:
            self._connection.close()
            log.warning("the connection to %s was lost; reconnecting", redact(self.url))
        self._connection = None
        try:
            # libpq counts connect_timeout in whole seconds, at least 2
            connection = psycopg.connect(self.url, autocommit=True, connect_timeout=max(2, round(self.timeout)),
                                         options=f"-c statement_timeout={int(self.timeout * 1000)}")
            self._prepare(connection)
        except psycopg.Error as error:
            self._failed_at = time.monotonic()  # an unreachable server is left alone for `retry` seconds
            self._fail(error, "cannot connect to")
        if self._error:
            log.warning("the events database %s answers again", redact(self.url))
        self._connection, self._failed_at, self._error = connection, None, ""

    def _fail(self, error: psycopg.Error, doing: str = "lost") -> NoReturn:
        """Drop the connection (the next call reconnects at once: a restarted server's sessions are gone, the server
        is not) and raise; logged when the store starts failing, not at every failed call."""
        if not self._error:
            log.warning("%s the events database %s (%s): reads degrade, writes are refused until it answers",
                        doing, redact(self.url), f"{type(error).__name__}: {error}".strip())
        self._error = f"{type(error).__name__}: {error}".strip()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        raise EventStoreUnavailable(
            f"{doing} the events database {redact(self.url)} (HMREC_EVENTS_URL): {self._error}; is PostgreSQL "
            "running and the database created (`createdb`)?") from error

    def _watch(self) -> None:
        while not self._closed.wait(min(0.25, self.timeout / 4)):
            deadline, connection = self._deadline, self._connection
            if deadline is not None and connection is not None and time.monotonic() > deadline + self.timeout:
                log.warning("the events database %s did not answer within %.1f s; dropping the connection",
                            redact(self.url), self.timeout)
                try:  # the blocked read returns at once and psycopg marks the connection broken
                    socket.socket(fileno=os.dup(connection.pgconn.socket)).shutdown(socket.SHUT_RDWR)
                except (OSError, psycopg.Error):
                    pass

    def close(self) -> None:
        self._closed.set()
        with self.lock:
            if self._connection is not None:
                self._connection.close()


class PostgresEventStore(PostgresFeedback, EventStore):
    """Events, reloads and heartbeats in PostgreSQL; a writer and a reader connection per process, as for SQLite.

    14 methods: one database implements both interfaces (EventLog's 4, WorkerCoordination's 6), plus __init__, close,
    and the two connection helpers every query goes through."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, retry: float = DEFAULT_RETRY):
        self.url = url
        self._writer = _Connection(url, timeout, retry, prepare=_create_schema)
        self._reader = _Connection(url, timeout, retry, prepare=lambda connection: None)
        try:
            self._writer.run(lambda connection: None)
        except EventStoreUnavailable as error:  # served degraded until the database answers (see _Connection)
            log.error("starting without the events database: %s", error)

    def add(self, purchase: Purchase) -> int:
        def insert(connection: psycopg.Connection) -> int:
            with connection.transaction():  # committed when the block ends, before the id is returned
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))
                return int(connection.execute(
                    "INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) "
                    "VALUES (%s,%s,%s,%s,%s) RETURNING id",
                    (purchase.t_dat, purchase.customer_id, purchase.article_id, purchase.price,
                     purchase.sales_channel_id),
                ).fetchone()[0])

        return self._writer.run(insert)

    def since(self, after_id: int) -> list[tuple[int, Purchase]]:
        rows = self._read("SELECT id, customer_id, article_id, t_dat, price, sales_channel_id FROM purchases "
                          "WHERE id > %s ORDER BY id", (after_id,))
        return [(int(i), Purchase(c, int(a), t, float(p), int(s))) for i, c, a, t, p, s in rows]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM purchases")[0][0])

    def compact(self, before: date, received_days: int) -> int:
        batch = ("DELETE FROM purchases WHERE id IN (SELECT id FROM purchases WHERE t_dat < %s AND received_at < "
                 f"now() - make_interval(days => %s) ORDER BY id LIMIT {COMPACT_BATCH}) RETURNING id")
        deleted = 0
        while True:
            done = len(self._write(batch, (before, int(received_days))))
            deleted += done
            if done < COMPACT_BATCH:
                return deleted

    def announce_reload(self, version: int | None) -> int:
        return int(self._write("INSERT INTO reloads (version) VALUES (%s) RETURNING id", (version,))[0][0])

    def last_reload(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM reloads")[0][0])

    def report_worker(self, worker: str, version: int | None, reload_id: int) -> None:
        self._write(
            "INSERT INTO workers (worker, version, reload_id) VALUES (%s,%s,%s) "
            "ON CONFLICT (worker) DO UPDATE SET version = EXCLUDED.version, reload_id = EXCLUDED.reload_id, "
            "at = clock_timestamp() RETURNING worker",
            (worker, version, reload_id),
        )

    def live_workers(self, timeout: float) -> list[WorkerBeat]:
        rows = self._read("SELECT worker, version, reload_id FROM workers "
                          "WHERE at >= clock_timestamp() - make_interval(secs => %s) ORDER BY worker", (timeout,))
        return [WorkerBeat(w, v, int(r)) for w, v, r in rows]

    def forget_workers(self, workers: list[str]) -> None:
        self._write("DELETE FROM workers WHERE worker = ANY(%s) RETURNING worker", (workers,))

    def prune_workers(self, silent_for: float) -> int:
        return len(self._write("DELETE FROM workers WHERE at < clock_timestamp() - make_interval(secs => %s) "
                               "RETURNING worker", (silent_for,)))

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        return self._reader.run(lambda connection: connection.execute(query, params).fetchall())

    def _write(self, query: str, params: tuple = ()) -> list[tuple]:
        return self._writer.run(lambda connection: connection.execute(query, params).fetchall())


def _create_schema(connection: psycopg.Connection) -> None:
    with connection.transaction():  # workers starting together must not race on CREATE TABLE
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in [*_SCHEMA, *FEEDBACK_SCHEMA]:
            connection.execute(statement)
