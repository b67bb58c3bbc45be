"""Live purchase events, the reload log and the worker heartbeats, in SQLite (one machine, the default) or
PostgreSQL (several machines), chosen by `HMREC_EVENTS_URL`; and the events' export as raw transactions."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from hmrec.raw.schema import TRANSACTION_COLUMNS, format_article_id
from hmrec.serving.events.base import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    EventLog,
    EventStore,
    EventStoreUnavailable,
    Purchase,
    StoredPurchase,
    WorkerBeat,
    WorkerCoordination,
)
from hmrec.serving.events.sqlite import SqliteEventStore

__all__ = ["EventLog", "EventStore", "EventStoreUnavailable", "Purchase", "SqliteEventStore", "StoredPurchase",
           "WorkerBeat",
           "WorkerCoordination", "export_csv", "open_event_store", "sqlite_path"]

log = logging.getLogger(__name__)
SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def sqlite_path(target: str | Path) -> Path | None:
    """The file of a SQLite target (a path, or `sqlite:///relative` / `sqlite:////absolute`); None for PostgreSQL."""
    if isinstance(target, Path):
        return target
    if target.startswith(POSTGRES_PREFIXES):
        return None
    if target.startswith(SQLITE_PREFIX):
        return Path(target[len(SQLITE_PREFIX):])
    if "://" in target:
        raise ValueError(f"HMREC_EVENTS_URL {target.split('://')[0]}://... is not supported: use "
                         "sqlite:///path/to/events.sqlite or postgresql://user@host:port/database")
    return Path(target)


def open_event_store(target: str | Path, timeout: float = DEFAULT_TIMEOUT, retry: float = DEFAULT_RETRY) -> EventStore:
    """The store `target` names, each call bounded by about `timeout` seconds and a failed connection tried again
    after `retry` seconds; psycopg is imported only for a postgresql:// URL."""
    path = sqlite_path(target)
    if path is not None:
        return SqliteEventStore(path, timeout, retry)
    from hmrec.serving.events.postgres import PostgresEventStore

    return PostgresEventStore(str(target), timeout, retry)


def export_csv(target: str | Path, out_path: Path) -> int:
    """Write every stored event in the transactions_train.csv format (10-digit article ids); return the count."""
    out_path, path = Path(out_path), sqlite_path(target)
    purchases: list[Purchase] = []
    if path is None or path.is_file():
        store = open_event_store(target)
        try:
            purchases = store.all()
        finally:
            store.close()
    else:
        log.warning("%s does not exist: the service has stored no event yet; writing only the header", path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRANSACTION_COLUMNS)
        for p in purchases:
            writer.writerow([p.t_dat.isoformat(), p.customer_id, format_article_id(p.article_id),
                             repr(float(p.price)), p.sales_channel_id])
    log.info("exported %d events to %s", len(purchases), out_path)
    return len(purchases)
