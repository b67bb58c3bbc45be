"""The default event store: one SQLite file (WAL, synchronous=FULL) shared by the worker processes of one machine."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import date
from pathlib import Path

from hmrec.serving.events.base import EventStore, Purchase, WorkerBeat

log = logging.getLogger(__name__)

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


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged event survives a power cut, not just a crash.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
    connection.executescript(_SCHEMA)
    return connection


def _seconds_ago(seconds: float) -> str:
    return f"-{float(seconds)} seconds"


class SqliteEventStore(EventStore):
    """Append-only purchase log in one file; `add` returns only after the row is committed to disk.

    Several processes may share the file (one per uvicorn worker): each reads the others' events with `since`,
    in commit order, because ids are given out inside SQLite's single write transaction. Reads use their own
    connection, so a request's read never waits behind another thread's commit (an fsync)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connection = _connect(self.path)
        self._lock = threading.Lock()
        self._reader = _connect(self.path)
        self._read_lock = threading.Lock()
        self._skipped: set[int] = set()  # unreadable rows already logged (trailing ones are read again each time)

    def add(self, purchase: Purchase) -> int:
        with self._lock:
            cursor = self._connection.execute(
                "INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) VALUES (?,?,?,?,?)",
                (purchase.t_dat.isoformat(), purchase.customer_id, purchase.article_id, purchase.price,
                 purchase.sales_channel_id),
            )
            return int(cursor.lastrowid)

    def since(self, after_id: int) -> list[tuple[int, Purchase]]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT id, customer_id, article_id, t_dat, price, sales_channel_id FROM purchases WHERE id > ? "
                "ORDER BY id", (after_id,)
            ).fetchall()
        events = [(int(row[0]), _purchase(row, self._skipped)) for row in rows]
        return [(i, purchase) for i, purchase in events if purchase is not None]

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM purchases").fetchone()[0])

    def announce_reload(self, version: int | None) -> int:
        with self._lock:
            return int(self._connection.execute("INSERT INTO reloads (version) VALUES (?)", (version,)).lastrowid)

    def last_reload(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT COALESCE(MAX(id), 0) FROM reloads").fetchone()[0])

    def report_worker(self, worker: str, version: int | None, reload_id: int) -> None:
        with self._lock:
            self._connection.execute(
                f"INSERT OR REPLACE INTO workers (worker, pid, version, reload_id, at) VALUES (?,?,?,?,{_NOW})",
                (worker, os.getpid(), version, reload_id),
            )

    def live_workers(self, timeout: float) -> list[WorkerBeat]:
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT worker, version, reload_id FROM workers WHERE at >= {_AGO} ORDER BY worker",
                (_seconds_ago(timeout),),
            ).fetchall()
        return [WorkerBeat(w, v, int(r)) for w, v, r in rows]

    def forget_workers(self, workers: list[str]) -> None:
        with self._lock:
            self._connection.executemany("DELETE FROM workers WHERE worker = ?", [(w,) for w in workers])

    def prune_workers(self, silent_for: float) -> int:
        with self._lock:
            cursor = self._connection.execute(f"DELETE FROM workers WHERE at < {_AGO}", (_seconds_ago(silent_for),))
            return cursor.rowcount

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._connection.close()
            self._reader.close()


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
