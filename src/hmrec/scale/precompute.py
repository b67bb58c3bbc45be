"""Precomputed answers: the final recommender's top answers for the active customers, scored in a batch on an engine.

The batch runs the code serving runs: `Scorer.explain` (the final recommender's `explain`, which the service's
online path calls too) over the bundle's own customers, history and final/, as of the day the service answers a
customer without live events (the data's last day + 1, serving/live.py's `as_of_for`). The service answers those
customers by lookup (serving/precomputed.py) and everyone else online.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.registry.model_bundle import Answers, BundlePaths
from hmrec.scale.engine import Engine
from hmrec.scale.scoring import ScoringInputs

log = logging.getLogger(__name__)

PRECOMPUTE = ("active", "all", "none")  # --precompute: customers with a purchase in the last ACTIVE_DAYS, all, none
ACTIVE_DAYS = 90  # on the small sample, customers who bought in the last 90 days are most of the next week's buyers
ANSWER_K = 100  # the API's largest k (schemas.RecommendationRequest.k), so every k is answered by lookup


def answer_day(data_end: date) -> date:
    """The service's clock for a customer without live events: the day after the data's last day."""
    return data_end + timedelta(days=1)


def chosen_customers(history: pl.LazyFrame, data_end: date, which: str, days: int = ACTIVE_DAYS) -> np.ndarray:
    """customer_idx, sorted, of the customers whose answers are precomputed: those with a purchase in the `days`
    days up to `data_end` ("active"), or every customer with a purchase ("all")."""
    if which not in PRECOMPUTE:
        raise ValueError(f"precompute {which!r} is not one of {', '.join(PRECOMPUTE)}")
    if which == "none":
        return np.empty(0, dtype=np.int32)
    buyers = history.group_by("customer_idx").agg(pl.col("t_dat").max().alias("last_day"))
    if which == "active":
        buyers = buyers.filter(pl.col("last_day") > data_end - timedelta(days=days))
    return np.sort(buyers.select("customer_idx").collect()["customer_idx"].to_numpy().astype(np.int32))


def selection(which: str, days: int = ACTIVE_DAYS) -> str:
    return f"active: a purchase in the last {days} days" if which == "active" else which


def precompute_answers(engine: Engine, paths: BundlePaths, which: str = "active", days: int = ACTIVE_DAYS,
                       k: int = ANSWER_K) -> Answers | None:
    """Score the chosen customers of a bundle (written so far: final/, the tables) on `engine`; None for "none"."""
    if which == "none":
        return None
    started = time.perf_counter()
    customers = chosen_customers(pl.scan_parquet(paths.history), paths.data_end, which, days)
    inputs = ScoringInputs(paths.final, paths.customers, paths.history, answer_day(paths.data_end), k, sources=True)
    scored = engine.score(inputs, customers)
    log.info("precomputed the top %d of %d customers (%s) in %.1f s on the %s engine", k, len(customers),
             selection(which, days), time.perf_counter() - started, engine.name)
    return Answers(customers, scored.recs.items, scored.recs.scores, scored.sources, scored.source_names,
                   inputs.as_of, selection(which, days))
