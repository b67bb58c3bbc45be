"""Live purchase events: a durable SQLite log (WAL, synchronous=FULL) and its export as raw transactions."""

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
)
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
    connection.execute(_SCHEMA)
    return connection


class EventStore:
    """Append-only purchase log; `add` returns only after the row is committed to disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connection = _connect(self.path)
        self._lock = threading.Lock()

    def add(self, purchase: Purchase) -> int:
        with self._lock:
            cursor = self._connection.execute(
                "INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) VALUES (?,?,?,?,?)",
                (purchase.t_dat.isoformat(), purchase.customer_id, purchase.article_id, purchase.price,
                 purchase.sales_channel_id),
            )
            return int(cursor.lastrowid)

    def all(self) -> list[Purchase]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT customer_id, article_id, t_dat, price, sales_channel_id FROM purchases ORDER BY id"
            ).fetchall()
        return [Purchase(c, int(a), date.fromisoformat(t), float(p), int(s)) for c, a, t, p, s in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM purchases").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._connection.close()


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
