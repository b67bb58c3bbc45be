"""Impressions: what recording one costs (the request path's put, the writer's share) and what a million take on disk.

    .venv/bin/python bench/impressions.py                    # SQLite, 200,000 impressions of 12 articles
    .venv/bin/python bench/impressions.py --postgres         # PostgreSQL too (a throw-away server)

CPU is the process's (all threads) over many calls: `shown` is all an answer pays (a request id, a tuple, a queue
put); the writer's share is building the rows and one `add_impressions` transaction per batch, as its thread does
every second. Sizes: the SQLite file after a checkpoint; PostgreSQL's impressions table with its indexes.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from hmrec.serving.events import open_event_store
from hmrec.serving.impressions import ImpressionWriter
from hmrec.serving.metrics import ServiceMetrics


def answers(n: int, k: int, seed: int = 7) -> list[dict]:
    """Answers shaped as the service's: 64-character customer ids, 10-digit article ids, a service day."""
    rng = random.Random(seed)
    return [{"customer_id": f"{rng.getrandbits(256):064x}", "model_version": 3, "as_of": "2020-09-23",
             "items": [{"article_id": f"{rng.randrange(100_000_000, 999_999_999):010d}"} for _ in range(k)]}
            for _ in range(n)]


def measure(store, shown: list[dict], batch: int) -> dict:
    """CPU microseconds per impression on the request path and on the writer's thread; the writer never runs on
    its own here (a flush period of an hour), each batch is flushed by hand as its thread would."""
    writer = ImpressionWriter(store, ServiceMetrics(), max_queue=len(shown) + 1, flush_seconds=3600)
    put = write = 0.0
    for start in range(0, len(shown), batch):
        began = time.process_time()
        for answer in shown[start:start + batch]:
            writer.shown(answer, "recommendations", time.time())
        middle = time.process_time()
        writer.flush()
        put, write = put + middle - began, write + time.process_time() - middle
    writer.close()
    return {"put_us": 1e6 * put / len(shown), "write_us": 1e6 * write / len(shown)}


def sqlite_size(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def run(name: str, store, size, shown: list[dict], batch: int) -> None:
    figures = measure(store, shown, batch)
    count, stored = store.impression_count(), size()
    per_million = stored / count * 1e6 / 2**20
    print(f"{name:10s} {count:,} impressions of {len(shown[0]['items'])} articles: request path "
          f"{figures['put_us']:.1f} us, writer {figures['write_us']:.1f} us CPU per impression; "
          f"{stored / count:.0f} bytes each, {per_million:.0f} MiB per million")
    store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=12, help="articles per answer")
    parser.add_argument("--batch", type=int, default=1000, help="impressions per flush (one second's worth)")
    parser.add_argument("--postgres", action="store_true", help="also measure PostgreSQL (a throw-away server)")
    args = parser.parse_args(argv)
    shown = answers(args.impressions, args.k)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.sqlite"
        run("sqlite", open_event_store(path), lambda: sqlite_size(path), shown, args.batch)
    if args.postgres:
        from hmrec.support.local_postgres import TemporaryPostgres

        with TemporaryPostgres() as server:
            url = server.create_database("impressions")
            store = open_event_store(url)
            size = lambda: store._read("SELECT pg_total_relation_size('impressions')")[0][0]  # noqa: E731
            run("postgresql", store, size, shown, args.batch)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)


if __name__ == "__main__":
    main()
