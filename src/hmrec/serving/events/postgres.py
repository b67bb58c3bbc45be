"""The event store for several machines: one PostgreSQL database shared by every worker of every `hmrec serve`.

Commit order: a sequence hands out ids when rows are inserted, not when they commit, so two writers could
commit ids 8 and 7 in that order and a reader polling between the two commits would move past 7 for ever.
Every insert therefore first takes one transaction-scoped advisory lock (`pg_advisory_xact_lock`), held until
its commit: the id is drawn after the lock, and the lock is released only after the commit is visible, so
ids become visible in increasing order and `since(last seen id)` never skips one. The price is that event
commits serialize (one WAL flush each), which the benchmark in docs/benchmarks.md measures."""

from __future__ import annotations

import logging
import threading
import urllib.parse

import psycopg

from hmrec.serving.events.base import EventStore, Purchase, WorkerBeat

log = logging.getLogger(__name__)

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


class EventStoreUnavailable(RuntimeError):
    """The PostgreSQL server cannot be reached; the message names the server (never the password)."""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class _Connection:
    """One autocommit connection and the lock its users take; reconnects once it is found broken."""

    def __init__(self, url: str):
        self.url = url
        self.lock = threading.Lock()
        self._connection = self._open()

    def _open(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise EventStoreUnavailable(
                f"cannot connect to the events database {redact(self.url)} (HMREC_EVENTS_URL): {error}".strip()
                + "; is PostgreSQL running and the database created (`createdb`)?") from error

    def get(self) -> psycopg.Connection:
        """The connection; call with `lock` held."""
        if self._connection.broken or self._connection.closed:
            log.warning("the connection to %s was lost; reconnecting", redact(self.url))
            self._connection = self._open()
        return self._connection

    def close(self) -> None:
        with self.lock:
            self._connection.close()


class PostgresEventStore(EventStore):
    """Events, reloads and heartbeats in PostgreSQL; a writer and a reader connection per process, as for SQLite.

    13 methods: one database implements both interfaces (EventLog's 3, WorkerCoordination's 6), plus __init__, close,
    and the two connection helpers every query goes through."""

    def __init__(self, url: str):
        self.url = url
        self._writer = _Connection(url)
        self._reader = _Connection(url)
        with self._writer.lock:
            connection = self._writer.get()
            with connection.transaction():  # workers starting together must not race on CREATE TABLE
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                for statement in _SCHEMA:
                    connection.execute(statement)

    def add(self, purchase: Purchase) -> int:
        with self._writer.lock:
            connection = self._writer.get()
            with connection.transaction():  # committed when the block ends, before the id is returned
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))
                row = connection.execute(
                    "INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) "
                    "VALUES (%s,%s,%s,%s,%s) RETURNING id",
                    (purchase.t_dat, purchase.customer_id, purchase.article_id, purchase.price,
                     purchase.sales_channel_id),
                ).fetchone()
        return int(row[0])

    def since(self, after_id: int) -> list[tuple[int, Purchase]]:
        rows = self._read("SELECT id, customer_id, article_id, t_dat, price, sales_channel_id FROM purchases "
                          "WHERE id > %s ORDER BY id", (after_id,))
        return [(int(i), Purchase(c, int(a), t, float(p), int(s))) for i, c, a, t, p, s in rows]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM purchases")[0][0])

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
        with self._reader.lock:
            return self._reader.get().execute(query, params).fetchall()

    def _write(self, query: str, params: tuple = ()) -> list[tuple]:
        with self._writer.lock:
            return self._writer.get().execute(query, params).fetchall()
