"""Benchmark two-tower training on Ray Train against one process: wall time and held-out Recall@100 per seed.

    .venv/bin/python bench/scale_train.py /path/to/store [--epochs 3] [--workers 2] [--seeds 0 1 2] [--json out.json]

The local model trains with 1 torch thread, each Ray worker with 1 (one CPU each), so the ratio is the engine's
cost for the same arithmetic. Ray's time covers the whole `fit` (workers starting, data shipped, weights back);
the local Ray starts once before the first seed and is not counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

from hmrec.data import Query
from hmrec.evaluation.metrics import recall_at_k
from hmrec.pipeline import load_train_data
from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender
from hmrec.scale.engine import RayEngine
from hmrec.scale.train import RayTrainer
from hmrec.store.tables import Store

log = logging.getLogger("bench.scale_train")


def held_out(store: Store, data) -> tuple[Query, list[set[int]]]:
    """The customers who bought in the test week, and what each bought."""
    truth = (store.test_transactions().collect().group_by("customer_idx")
             .agg(pl.col("article_idx").unique()).sort("customer_idx"))
    query = Query.for_customers(truth["customer_idx"].to_numpy(), data.customers, data.transactions, store.cutoff)
    return query, [set(a) for a in truth["article_idx"].to_list()]


def one_seed(data, query, relevant, config: TwoTowerConfig, workers: int) -> dict:
    """Fit locally and on Ray with the same settings; seconds and Recall@100 of each."""
    row = {"seed": config.seed}
    for name, train_fn in (("local", None), ("ray", RayTrainer(workers=workers))):
        model = TwoTowerRecommender(config) if train_fn is None else TwoTowerRecommender(config, train_fn=train_fn)
        started = time.perf_counter()
        model.fit(data)
        row[f"{name}_fit_s"] = round(time.perf_counter() - started, 1)
        row[f"{name}_recall_100"] = round(recall_at_k(model.recommend(query, 100).items, relevant, 100), 4)
        if train_fn is not None:
            row["ray_worker_pids"] = train_fn.worker_pids
    row["relative_gap"] = round(row["ray_recall_100"] / row["local_recall_100"] - 1, 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    store = Store(args.store)
    data = load_train_data(store)
    query, relevant = held_out(store, data)
    base = TwoTowerConfig(epochs=args.epochs, max_examples=None, threads=1, index_kind="flat")  # the epochs asked
    with RayEngine(num_cpus=args.workers).session():
        rows = [one_seed(data, query, relevant, replace(base, seed=seed), args.workers) for seed in args.seeds]
    for row in rows:
        log.info("%s", row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
