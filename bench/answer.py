"""Benchmark of one model call as the service makes it, without HTTP: CPU per customer by batch size.

    .venv/bin/python bench/answer.py --workdir work [--batches 1,2,4,8,16,32] [--calls 200] [--json out.json]
    .venv/bin/python bench/answer.py --workdir work --profile 8 --html /tmp/profile.html   # pyinstrument, batch 8

The service's batcher answers every personalised request waiting at once with one `RecommendService.answer_many` call
(user features, user tower, index search, the other sources, ranker features, LightGBM, the JSON-ready answer).
A call has a fixed cost and a cost per customer; this prints both, on one thread, as a serving worker runs.
Customers are drawn with purchases, each call a fresh set, so no answer comes from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # as `hmrec serve` sets it, before polars is imported
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hmrec.serving.app import limit_threads
from hmrec.serving.events import open_event_store
from hmrec.serving.model_holder import champion_loader
from hmrec.serving.services import Services, build_services
from hmrec.serving.settings import Settings


def buyers(services: Services, seed: int) -> list[str]:
    """Ids of the model's customers with purchases in its bundle, shuffled."""
    model = services.holder.model
    counts = np.diff(model.histories.starts)
    ids = model.customer_ids.to_id(np.flatnonzero(counts > 0)).to_list()
    random.Random(seed).shuffle(ids)
    return ids


def measure(services: Services, ids: list[str], batch: int, calls: int) -> dict:
    """CPU and wall milliseconds of `calls` model calls of `batch` customers each."""
    model, cpu, wall = services.holder.model, [], []
    for call in range(calls):
        asks = [(ids[(call * batch + i) % len(ids)], 12) for i in range(batch)]
        c0, w0 = time.process_time(), time.perf_counter()
        services.recommendations.answer_many(model, asks)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return {"batch": batch, "calls": calls, "cpu_ms_per_call": statistics.median(cpu),
            "cpu_ms_per_customer": statistics.median(cpu) / batch, "wall_ms_per_call_p50": statistics.median(wall),
            "wall_ms_per_call_p99": float(np.percentile(wall, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=int, help="profile calls of this batch size instead (pyinstrument)")
    parser.add_argument("--html", type=Path, help="with --profile: write pyinstrument's HTML report here")
    args = parser.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(workdir=args.workdir, events_path=Path(tmp) / "events.sqlite", cache_size=0)
        limit_threads(settings.threads)
        services = build_services(settings, open_event_store(settings.events_target), champion_loader(settings))
        services.holder.reload(announce=False)
        ids = buyers(services, args.seed)
        measure(services, ids[::-1], 8, 20)  # warm-up: lazy imports, first-call allocations
        if args.profile:
            from pyinstrument import Profiler

            with Profiler(interval=0.0005) as profiler:
                measure(services, ids, args.profile, args.calls)
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                args.html.write_text(profiler.output_html())
            return
        results = [measure(services, ids, int(b), args.calls) for b in args.batches.split(",")]
        services.close()
    model = services.holder.model
    print(f"version {model.version}, {len(model.catalogue):,} articles, one thread")
    print("| batch | CPU ms per call | CPU ms per customer | wall ms per call p50 | p99 |")
    print("|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['batch']} | {r['cpu_ms_per_call']:.1f} | {r['cpu_ms_per_customer']:.2f} | "
              f"{r['wall_ms_per_call_p50']:.1f} | {r['wall_ms_per_call_p99']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
