"""The PostgreSQL store's feedback tables: impressions (one row per answer shown) and the origins of purchase events
(request id, client event id); mixed into PostgresEventStore, whose connections they use."""

from __future__ import annotations

from datetime import date

import psycopg

from hmrec.feedback.records import Impression, Sale
from hmrec.serving.events.base import Purchase, StoredPurchase

# pg_advisory_xact_lock key of purchase inserts (postgres.EVENTS_LOCK: ids become visible in commit order)
_EVENTS_LOCK = 0x686D726563_01

FEEDBACK_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS impressions (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        request_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        model_version INTEGER,
        variant TEXT NOT NULL,
        surface TEXT NOT NULL,
        service_day DATE NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        articles BIGINT[] NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS impressions_received ON impressions (received_at)",
    """CREATE TABLE IF NOT EXISTS purchase_origins (
        purchase_id BIGINT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        request_id TEXT,
        client_event_id TEXT,
        UNIQUE (customer_id, client_event_id))""",
]


class PostgresFeedback:
    """FeedbackLog and `add_purchase` on PostgresEventStore's writer and reader (`_writer`, `_read`)."""

    def add_purchase(self, purchase: Purchase, request_id: str | None,
                     client_event_id: str | None) -> StoredPurchase:
        if request_id is None and client_event_id is None:
            return StoredPurchase(self.add(purchase), purchase, False)

        def insert(connection: psycopg.Connection) -> StoredPurchase:
            with connection.transaction():
                # the events lock orders ids (see postgres.py) and keeps two sendings of one event apart
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_EVENTS_LOCK,))
                return _stored_or_added(connection, purchase, request_id, client_event_id)

        return self._writer.run(insert)

    def add_impressions(self, impressions: list[Impression]) -> None:
        rows = [(i.request_id, i.customer_id, i.model_version, i.variant, i.surface, i.service_day, i.received_at,
                 list(i.articles)) for i in impressions]

        def insert(connection: psycopg.Connection) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO impressions (request_id, customer_id, model_version, variant, surface, service_day, "
                    "received_at, articles) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", rows)

        if rows:
            self._writer.run(insert)

    def impressions(self, since: date | None = None) -> list[Impression]:
        rows = self._read("SELECT request_id, customer_id, model_version, variant, surface, service_day, received_at, "
                          "articles FROM impressions WHERE service_day >= %s ORDER BY id", (since or date.min,))
        return [Impression(r, c, v, variant, surface, day, at, tuple(int(a) for a in articles))
                for r, c, v, variant, surface, day, at, articles in rows]

    def impression_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM impressions")[0][0])

    def prune_impressions(self, older_than_seconds: float) -> int:
        return len(self._write("DELETE FROM impressions WHERE received_at < now() - make_interval(secs => %s) "
                               "RETURNING id", (older_than_seconds,)))

    def sales(self, since: date | None = None) -> list[Sale]:
        rows = self._read("SELECT p.customer_id, p.article_id, p.t_dat, p.price, o.request_id, p.received_at "
                          "FROM purchases p LEFT JOIN purchase_origins o ON o.purchase_id = p.id "
                          "WHERE p.t_dat >= %s ORDER BY p.id", (since or date.min,))
        return [Sale(c, int(a), day, float(price), r, at) for c, a, day, price, r, at in rows]


def _stored_or_added(connection: psycopg.Connection, purchase: Purchase, request_id: str | None,
                     client_event_id: str | None) -> StoredPurchase:
    """Inside the locked transaction: the customer's event with this client id if there is one, else the new one."""
    if client_event_id is not None:
        found = connection.execute(
            "SELECT o.purchase_id, p.customer_id, p.article_id, p.t_dat, p.price, p.sales_channel_id "
            "FROM purchase_origins o LEFT JOIN purchases p ON p.id = o.purchase_id "
            "WHERE o.customer_id = %s AND o.client_event_id = %s", (purchase.customer_id, client_event_id)).fetchone()
        if found is not None:
            original = purchase if found[1] is None else Purchase(found[1], int(found[2]), found[3], float(found[4]),
                                                                  int(found[5]))
            return StoredPurchase(int(found[0]), original, True)
    new_id = int(connection.execute(
        "INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) VALUES (%s,%s,%s,%s,%s) "
        "RETURNING id", (purchase.t_dat, purchase.customer_id, purchase.article_id, purchase.price,
                         purchase.sales_channel_id)).fetchone()[0])
    connection.execute("INSERT INTO purchase_origins (purchase_id, customer_id, request_id, client_event_id) "
                       "VALUES (%s,%s,%s,%s)", (new_id, purchase.customer_id, request_id, client_event_id))
    return StoredPurchase(new_id, purchase, False)
