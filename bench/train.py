"""Benchmark of the two-tower model on a built store: training throughput, wall time, peak RSS, and the time
to answer top-100 for every held-out customer, printed as a markdown row (and optionally the baselines).

    .venv/bin/python bench/train.py /path/to/store [--window-days 42] [--epochs N] [--baselines] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from hmrec import logs
from hmrec.data import Query
from hmrec.evaluation.metrics import map_at_k, recall_at_k
from hmrec.pipeline import load_train_data
from hmrec.recommenders.base import Recommender
from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender
from hmrec.store.tables import Store

log = logging.getLogger("bench.train")
HEADER = ("| store | examples | epochs | threads | examples/s | train s | eval customers | eval s | "
          "peak RSS GB | Recall@100 | MAP@12 |\n|---|---|---|---|---|---|---|---|---|---|---|")


def peak_rss_gb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def score(model: Recommender, query: Query, relevant: list[list[int]]) -> tuple[dict, float]:
    started = time.perf_counter()
    items = model.recommend(query, 100).items
    seconds = time.perf_counter() - started
    return {"recall@100": recall_at_k(items, relevant, 100), "recall@12": recall_at_k(items, relevant, 12),
            "map@12": map_at_k(items, relevant, 12)}, seconds


def baselines(data, query: Query, relevant: list[list[int]], seed: int) -> dict:
    from hmrec.recommenders.als import ALSConfig, ALSRecommender
    from hmrec.recommenders.popularity import PopularityRecommender

    out = {}
    for model in (PopularityRecommender(), ALSRecommender(ALSConfig(seed=seed))):
        out[model.name], _ = score(model.fit(data), query, relevant)
        log.info("%s: %s", model.name, out[model.name])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="a store built by `hmrec etl` (the full-size one by default use)")
    parser.add_argument("--window-days", type=int, default=42, help="training window (6 weeks)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train this many epochs (default: the configured ones, within its example budget)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=None, help="override the configured batch size")
    parser.add_argument("--baselines", action="store_true", help="also score popularity and ALS")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    logs.configure()

    config = replace(TwoTowerConfig(), window_days=args.window_days)
    config = replace(config, epochs=args.epochs or config.epochs, threads=args.threads or config.threads,
                     batch_size=args.batch_size or config.batch_size,
                     max_examples=None if args.epochs else config.max_examples)  # epochs asked: epochs trained
    store = Store(args.store)
    data = load_train_data(store)
    test = store.test_transactions().collect()
    truth = test.group_by("customer_idx").agg(pl.col("article_idx").unique()).sort("customer_idx")
    relevant = [list(v) for v in truth["article_idx"].to_list()]

    started = time.perf_counter()
    model = TwoTowerRecommender(config).fit(data)
    train_seconds = time.perf_counter() - started
    config = model.config  # what was trained: fewer epochs than configured where the example budget cut them
    query = Query.for_customers(truth["customer_idx"].to_numpy(), data.customers, data.transactions, store.cutoff)
    metrics, eval_seconds = score(model, query, relevant)
    result = {
        "store": str(args.store), "config": vars(config), "train_seconds": train_seconds,
        "examples": model.n_examples, "examples_per_second": model.examples_per_second,
        "eval_customers": len(query),
        "eval_seconds": eval_seconds, "peak_rss_gb": peak_rss_gb(), "two_tower": metrics,
    }
    if args.baselines:
        result["baselines"] = baselines(data, query, relevant, config.seed)
    print(HEADER)
    print(f"| {args.store.name} | {model.n_examples:,} | {config.epochs} | {config.threads} | "
          f"{model.examples_per_second:,.0f} | {train_seconds:.0f} | {len(query):,} | {eval_seconds:.1f} | "
          f"{result['peak_rss_gb']:.2f} | {metrics['recall@100']:.4f} | {metrics['map@12']:.4f} |")
    for name, figures in result.get("baselines", {}).items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
