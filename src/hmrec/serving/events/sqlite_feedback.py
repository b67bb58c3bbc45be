"""The SQLite store's feedback tables: impressions (one row per answer shown) and the origins of purchase events
(request id, client event id); mixed into SqliteEventStore, whose connections they use."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, date, datetime

from hmrec.feedback.records import Impression, Sale
from hmrec.serving.events.base import Purchase, StoredPurchase

# Apart from `purchases`, which every worker polls: a batch of impressions never lengthens that poll. `articles`:
# the shown article ids, rank 1 first, comma-separated; times in Unix seconds (compact, and cheap to prune by).
FEEDBACK_SCHEMA = """
CREATE TABLE IF NOT EXISTS impressions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    model_version INTEGER,
    variant TEXT NOT NULL,
    surface TEXT NOT NULL,
    service_day TEXT NOT NULL,
    received_at REAL NOT NULL,
    articles TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS impressions_received ON impressions (received_at);
CREATE TABLE IF NOT EXISTS purchase_origins (
    purchase_id INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    request_id TEXT,
    client_event_id TEXT,
    UNIQUE (customer_id, client_event_id)
);
"""
_INSERT_PURCHASE = ("INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) "
                    "VALUES (?,?,?,?,?)")


class SqliteFeedback:
    """FeedbackLog and `add_purchase` on SqliteEventStore's writer and reader (`_writer`, `_read`)."""

    def add_purchase(self, purchase: Purchase, request_id: str | None,
                     client_event_id: str | None) -> StoredPurchase:
        if request_id is None and client_event_id is None:
            return StoredPurchase(self.add(purchase), purchase, False)

        def work(connection: sqlite3.Connection) -> StoredPurchase:
            connection.execute("BEGIN IMMEDIATE")  # the check and the insert see no other writer between them
            try:
                stored = _stored_or_added(connection, purchase, request_id, client_event_id)
                connection.execute("COMMIT")
                return stored
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

        return self._writer.run(work)

    def add_impressions(self, impressions: list[Impression]) -> None:
        rows = [(i.request_id, i.customer_id, i.model_version, i.variant, i.surface, i.service_day.isoformat(),
                 i.received_at.timestamp(), ",".join(map(str, i.articles))) for i in impressions]

        def work(connection: sqlite3.Connection) -> None:
            with connection:  # one transaction, one fsync, for the batch
                connection.execute("BEGIN")
                connection.executemany(
                    "INSERT INTO impressions (request_id, customer_id, model_version, variant, surface, service_day, "
                    "received_at, articles) VALUES (?,?,?,?,?,?,?,?)", rows)

        if rows:
            self._writer.run(work)

    def impressions(self, since: date | None = None) -> list[Impression]:
        rows = self._read("SELECT request_id, customer_id, model_version, variant, surface, service_day, received_at, "
                          "articles FROM impressions WHERE service_day >= ? ORDER BY id", (_day(since),))
        return [Impression(r, c, v, variant, surface, date.fromisoformat(day),
                           datetime.fromtimestamp(at, UTC), tuple(int(a) for a in articles.split(",") if a))
                for r, c, v, variant, surface, day, at, articles in rows]

    def impression_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM impressions")[0][0])

    def prune_impressions(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        return self._writer.run(lambda c: c.execute("DELETE FROM impressions WHERE received_at < ?",
                                                    (cutoff,)).rowcount)

    def sales(self, since: date | None = None) -> list[Sale]:
        rows = self._read("SELECT p.customer_id, p.article_id, p.t_dat, p.price, o.request_id, p.received_at "
                          "FROM purchases p LEFT JOIN purchase_origins o ON o.purchase_id = p.id "
                          "WHERE p.t_dat >= ? ORDER BY p.id", (_day(since),))
        out = []
        for customer, article, day, price, request_id, received in rows:
            try:
                out.append(Sale(str(customer), int(article), date.fromisoformat(day), float(price), request_id,
                                datetime.fromisoformat(received) if received else None))
            except (TypeError, ValueError):  # a row no API call wrote; `since` logs it for the live histories
                continue
        return out


def _stored_or_added(connection: sqlite3.Connection, purchase: Purchase, request_id: str | None,
                     client_event_id: str | None) -> StoredPurchase:
    """Inside the write transaction: the customer's event with this client id if there is one, else the new event."""
    if client_event_id is not None:
        found = connection.execute("SELECT purchase_id FROM purchase_origins WHERE customer_id = ? AND "
                                   "client_event_id = ?", (purchase.customer_id, client_event_id)).fetchone()
        if found is not None:
            return StoredPurchase(int(found[0]), _original(connection, int(found[0])) or purchase, True)
    new_id = int(connection.execute(_INSERT_PURCHASE, (purchase.t_dat.isoformat(), purchase.customer_id,
                                                       purchase.article_id, purchase.price,
                                                       purchase.sales_channel_id)).lastrowid)
    connection.execute("INSERT INTO purchase_origins (purchase_id, customer_id, request_id, client_event_id) "
                       "VALUES (?,?,?,?)", (new_id, purchase.customer_id, request_id, client_event_id))
    return StoredPurchase(new_id, purchase, False)


def _original(connection: sqlite3.Connection, purchase_id: int) -> Purchase | None:
    """The first sending of a repeated event (None if retention has dropped it)."""
    row = connection.execute("SELECT customer_id, article_id, t_dat, price, sales_channel_id FROM purchases "
                             "WHERE id = ?", (purchase_id,)).fetchone()
    if row is None:
        return None
    return Purchase(str(row[0]), int(row[1]), date.fromisoformat(row[2]), float(row[3]), int(row[4]))


def _day(since: date | None) -> str:
    return (since or date.min).isoformat()
