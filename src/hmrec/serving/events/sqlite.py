"""The default event store: one SQLite file (WAL, synchronous=FULL) shared by the worker processes of one machine."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import NoReturn, TypeVar

from hmrec.serving.events.base import (
    COMPACT_BATCH,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    EventStore,
    EventStoreUnavailable,
    Purchase,
    WorkerBeat,
)
from hmrec.serving.events.sqlite_feedback import FEEDBACK_SCHEMA, SqliteFeedback

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS purchases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    t_dat TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    article_id INTEGER NOT NULL,
    price REAL NOT NULL,
    sales_channel_id INTEGER NOT NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS reloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    version INTEGER,
    reload_id INTEGER NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
_AGO = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)"  # with '-N seconds'


def _connect(path: Path, timeout: float, create: bool) -> sqlite3.Connection:
    """A connection whose statements stop after `timeout` seconds (busy_timeout for locks, a progress handler for
    the rest); `create`: make the file and its tables (first open only: a reopen never builds a fresh, empty file
    over a damaged one, whose event ids the workers have already passed)."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={'rwc' if create else 'rw'}"
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=timeout)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged event survives a power cut, not just a crash.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    if create:
        connection.executescript(_SCHEMA + FEEDBACK_SCHEMA)
    return connection


def _seconds_ago(seconds: float) -> str:
    return f"-{float(seconds)} seconds"


class _Handle:
    """One connection, its lock and the deadline of the statement it runs; dropped after an error and reopened by
    the next call, though not before `retry` seconds have passed (callers fail fast meanwhile)."""

    def __init__(self, path: Path, timeout: float, retry: float):
        self.path, self.timeout, self.retry = path, timeout, retry
        self.lock = threading.Lock()
        self.deadline = 0.0
        self.failed_at: float | None = None
        self.error = ""
        self._connection: sqlite3.Connection | None = self._open(create=True)

    def _open(self, create: bool) -> sqlite3.Connection:
        connection = _connect(self.path, self.timeout, create)
        # called every 1,000 virtual-machine steps; a true return interrupts the statement
        connection.set_progress_handler(lambda: time.monotonic() > self.deadline, 1000)
        return connection

    def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` under the lock and the deadline; EventStoreUnavailable if it cannot run."""
        with self.lock:
            if self._connection is None:
                if self.failed_at is not None and time.monotonic() - self.failed_at < self.retry:
                    raise EventStoreUnavailable(f"the events file {self.path} failed: {self.error}")
                try:
                    self._connection = self._open(create=False)
                except sqlite3.Error as error:
                    self._fail(error)
            self.deadline = time.monotonic() + self.timeout
            try:
                result = work(self._connection)
            except sqlite3.Error as error:
                self._fail(error)
            if self.error:
                log.warning("the events file %s answers again", self.path)
                self.failed_at, self.error = None, ""
            return result

    def _fail(self, error: sqlite3.Error) -> NoReturn:
        """Drop the connection and raise; logged when the file starts failing, not at every failed call."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if not self.error:
            log.warning("the events file %s failed (%s: %s): reads degrade, writes are refused; reopening it every "
                        "%.1f s", self.path, type(error).__name__, error, self.retry)
        self.failed_at, self.error = time.monotonic(), f"{type(error).__name__}: {error}"
        raise EventStoreUnavailable(f"the events file {self.path} failed: {self.error}") from error

    def close(self) -> None:
        with self.lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class SqliteEventStore(SqliteFeedback, EventStore):
    """Append-only purchase log in one file; `add` returns only after the row is committed to disk.

    Several processes may share the file (one per uvicorn worker): each reads the others' events with `since`,
    in commit order, because ids are given out inside SQLite's single write transaction. Reads use their own
    connection, so a request's read never waits behind another thread's commit (an fsync). Every call ends within
    about `timeout` seconds, or raises EventStoreUnavailable; a failed connection is reopened after `retry` s."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT, retry: float = DEFAULT_RETRY):
        self.path = Path(path)
        self._writer = _Handle(self.path, timeout, retry)
        self._reader = _Handle(self.path, timeout, retry)
        self._skipped: set[int] = set()  # unreadable rows already logged (trailing ones are read again each time)

    def add(self, purchase: Purchase) -> int:
        return int(self._writer.run(lambda c: c.execute(
            "INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) VALUES (?,?,?,?,?)",
            (purchase.t_dat.isoformat(), purchase.customer_id, purchase.article_id, purchase.price,
             purchase.sales_channel_id),
        ).lastrowid))

    def since(self, after_id: int) -> list[tuple[int, Purchase]]:
        rows = self._read(
            "SELECT id, customer_id, article_id, t_dat, price, sales_channel_id FROM purchases WHERE id > ? "
            "ORDER BY id", (after_id,))
        events = [(int(row[0]), _purchase(row, self._skipped)) for row in rows]
        return [(i, purchase) for i, purchase in events if purchase is not None]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM purchases")[0][0])

    def compact(self, before: date, received_days: int) -> int:
        batch = ("DELETE FROM purchases WHERE id IN (SELECT id FROM purchases WHERE t_dat < ? AND received_at < "
                 f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) ORDER BY id LIMIT {COMPACT_BATCH})")
        params = (before.isoformat(), f"-{int(received_days)} days")
        deleted = 0
        while True:
            done = self._writer.run(lambda c: c.execute(batch, params).rowcount)
            deleted += done
            if done < COMPACT_BATCH:
                return deleted

    def announce_reload(self, version: int | None) -> int:
        return int(self._writer.run(
            lambda c: c.execute("INSERT INTO reloads (version) VALUES (?)", (version,)).lastrowid))

    def last_reload(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM reloads")[0][0])

    def report_worker(self, worker: str, version: int | None, reload_id: int) -> None:
        self._writer.run(lambda c: c.execute(
            f"INSERT OR REPLACE INTO workers (worker, pid, version, reload_id, at) VALUES (?,?,?,?,{_NOW})",
            (worker, os.getpid(), version, reload_id)))

    def live_workers(self, timeout: float) -> list[WorkerBeat]:
        rows = self._read(f"SELECT worker, version, reload_id FROM workers WHERE at >= {_AGO} ORDER BY worker",
                          (_seconds_ago(timeout),))
        return [WorkerBeat(w, v, int(r)) for w, v, r in rows]

    def forget_workers(self, workers: list[str]) -> None:
        self._writer.run(lambda c: c.executemany("DELETE FROM workers WHERE worker = ?", [(w,) for w in workers]))

    def prune_workers(self, silent_for: float) -> int:
        return self._writer.run(
            lambda c: c.execute(f"DELETE FROM workers WHERE at < {_AGO}", (_seconds_ago(silent_for),)).rowcount)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    def _read(self, query: str, params: tuple = ()) -> list[tuple]:
        return self._reader.run(lambda c: c.execute(query, params).fetchall())


def _purchase(row: tuple, skipped: set[int]) -> Purchase | None:
    """A stored row as a Purchase; None (logged once) for a row no API call could have written, e.g. a date in
    words."""
    event_id, customer_id, article_id, t_dat, price, channel = row
    try:
        return Purchase(str(customer_id), int(article_id), date.fromisoformat(t_dat), float(price), int(channel))
    except (TypeError, ValueError, OverflowError) as error:
        if event_id not in skipped:
            skipped.add(event_id)
            log.warning("skipping unreadable event %s in the events file: %s", event_id, error)
        return None
