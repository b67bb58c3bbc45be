"""The service's shared SQLite file (WAL, synchronous=FULL): live purchase events, their export as raw transactions,
and the reload log through which one worker process tells the others to load the new champion."""

from __future__ import annotations

import csv
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from hmrec.raw.schema import TRANSACTION_COLUMNS, format_article_id

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


@dataclass(frozen=True)
class Purchase:
    """One purchase as the service took it: raw ids (article id as an int), the day and the price paid."""

    customer_id: str
    article_id: int
    t_dat: date
    price: float
    sales_channel_id: int


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged event survives a power cut, not just a crash.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
    connection.executescript(_SCHEMA)
    return connection


class EventStore:
    """Append-only purchase log; `add` returns only after the row is committed to disk.

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
        """Events with an id above `after_id`, oldest first, each with its id."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT id, customer_id, article_id, t_dat, price, sales_channel_id FROM purchases WHERE id > ? "
                "ORDER BY id", (after_id,)
            ).fetchall()
        events = [(int(row[0]), _purchase(row, self._skipped)) for row in rows]
        return [(i, purchase) for i, purchase in events if purchase is not None]

    def all(self) -> list[Purchase]:
        return [purchase for _, purchase in self.since(0)]

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM purchases").fetchone()[0])

    def announce_reload(self, version: int | None) -> int:
        """Record that this process now serves `version`, so the other workers load the champion too; the id."""
        with self._lock:
            return int(self._connection.execute("INSERT INTO reloads (version) VALUES (?)", (version,)).lastrowid)

    def last_reload(self) -> int:
        """Id of the latest announced reload (0: none yet)."""
        with self._read_lock:
            return int(self._reader.execute("SELECT COALESCE(MAX(id), 0) FROM reloads").fetchone()[0])

    def report_worker(self, worker: str, pid: int, version: int | None, reload_id: int) -> None:
        """What one worker serves, and the latest reload it has acted on (see Engine.wait_for_workers)."""
        with self._lock:
            self._connection.execute(
                "INSERT OR REPLACE INTO workers (worker, pid, version, reload_id) VALUES (?,?,?,?)",
                (worker, pid, version, reload_id),
            )

    def workers(self) -> list[tuple[str, int, int | None, int]]:
        """(worker, pid, version, reload_id) of every worker that reported and has not been forgotten."""
        with self._read_lock:
            return self._reader.execute("SELECT worker, pid, version, reload_id FROM workers").fetchall()

    def forget_workers(self, workers: list[str]) -> None:
        with self._lock:
            self._connection.executemany("DELETE FROM workers WHERE worker = ?", [(w,) for w in workers])

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


def export_csv(db_path: Path, out_path: Path) -> int:
    """Write every stored event in the transactions_train.csv format (10-digit article ids); return the count."""
    db_path, out_path = Path(db_path), Path(out_path)
    purchases: list[Purchase] = []
    if db_path.is_file():
        store = EventStore(db_path)
        try:
            purchases = store.all()
        finally:
            store.close()
    else:
        log.warning("%s does not exist: the service has stored no event yet; writing only the header", db_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRANSACTION_COLUMNS)
        for p in purchases:
            writer.writerow([p.t_dat.isoformat(), p.customer_id, format_article_id(p.article_id),
                             repr(float(p.price)), p.sales_channel_id])
    log.info("exported %d events from %s to %s", len(purchases), db_path, out_path)
    return len(purchases)
