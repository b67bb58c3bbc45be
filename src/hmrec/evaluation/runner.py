"""Scores every fitted method on the same held-out window: metrics overall and by segment, curves, top-12s."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl

from hmrec import logs
from hmrec.data import Query
from hmrec.evaluation.metrics import ap_from_hits, curve_from_hits, hit_matrix, ndcg_from_hits, recall_from_hits
from hmrec.recommenders.base import Recommender
from hmrec.store.tables import AGE_BUCKET_LABELS, UNKNOWN_AGE_BUCKET

log = logging.getLogger(__name__)

WARM_DAYS = 60  # a customer with a purchase this many days before the cutoff is "warm"
QUALITATIVE_K = 12


@dataclass
class MethodResult:
    """One method's answers scored: overall metrics, per segment, the Recall@K curve, its top-12s."""

    metrics: dict[str, float]  # map@12, recall@12, recall@<k_max>, ndcg@12 over all buyers
    segments: dict[str, dict[str, float]]  # segment name -> the same metrics over that segment's buyers
    recall_curve: np.ndarray  # (k_max,) mean Recall@K for K = 1..k_max
    top: np.ndarray  # (n, 12) the method's first 12 answers per query row, -1 padded
    seconds: float  # time `recommend` took for the whole query


@dataclass
class EvaluationResult:
    """Every method scored on the same customers, and what is needed to explain the scores."""

    customers: int
    k_max: int
    relevant: list[np.ndarray]  # per query row: the distinct articles bought in the window
    segment_sizes: dict[str, int]
    methods: dict[str, MethodResult] = field(default_factory=dict)


def ground_truth(test_transactions: pl.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """The buyers of the held-out window (sorted customer_idx, int32) and the distinct articles each bought."""
    bought = (
        test_transactions.group_by("customer_idx")
        .agg(pl.col("article_idx").unique().sort())
        .sort("customer_idx")
    )
    customer_idx = bought["customer_idx"].to_numpy().astype(np.int32)
    relevant = [np.asarray(items, dtype=np.int32) for items in bought["article_idx"].to_list()]
    return customer_idx, relevant


def default_segments(query: Query, warm_days: int = WARM_DAYS) -> dict[str, np.ndarray]:
    """Boolean masks over the query rows: warm / cold (a purchase in the `warm_days` before as_of or not),
    then one per age bucket (`age 16-24`, ...) and `age unknown`."""
    since = query.as_of - timedelta(days=warm_days)
    recent_rows = query.history.filter(pl.col("t_dat") >= since)["row"].unique().to_numpy()
    warm = np.zeros(len(query), dtype=bool)
    warm[recent_rows] = True
    segments = {"warm": warm, "cold": ~warm}
    buckets = query.customers["age_bucket"].fill_null(UNKNOWN_AGE_BUCKET).to_numpy()
    for number, label in enumerate(AGE_BUCKET_LABELS):
        segments[f"age {label}"] = buckets == number
    segments["age unknown"] = (buckets < 0) | (buckets >= len(AGE_BUCKET_LABELS))
    return segments


def _summaries(hits: np.ndarray, counts: np.ndarray, k_max: int) -> dict[str, np.ndarray]:
    """Per-customer values of the reported metrics from one hit matrix, nan for customers who bought nothing."""
    return {
        "map@12": ap_from_hits(hits, counts, 12),
        "recall@12": recall_from_hits(hits, counts, 12),
        f"recall@{k_max}": recall_from_hits(hits, counts, k_max),
        "ndcg@12": ndcg_from_hits(hits, counts, 12),
    }


def _mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    chosen = values if mask is None else values[mask]
    chosen = chosen[~np.isnan(chosen)]
    return float(chosen.mean()) if chosen.size else 0.0


def evaluate_method(
    method: Recommender, query: Query, relevant: list[np.ndarray], k_max: int, segments: dict[str, np.ndarray]
) -> MethodResult:
    """Ask one fitted method for its top k_max once and score that answer every way the report needs."""
    started = time.perf_counter()
    items = method.recommend(query, k_max).items
    seconds = time.perf_counter() - started
    hits, counts = hit_matrix(items, relevant, k_max)
    per_customer = _summaries(hits, counts, k_max)
    return MethodResult(
        metrics={name: _mean(values) for name, values in per_customer.items()},
        segments={
            segment: {name: _mean(values, mask) for name, values in per_customer.items()}
            for segment, mask in segments.items()
        },
        recall_curve=curve_from_hits(hits, counts),
        top=items[:, :QUALITATIVE_K].copy(),
        seconds=seconds,
    )


def evaluate_methods(
    methods: dict[str, Recommender],
    query: Query,
    relevant: list[np.ndarray],
    k_max: int = 100,
    segments: dict[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """Score every already-fitted method on the same query (one row per buyer of the window, aligned
    with `relevant`); segments default to warm/cold and the age buckets (see `default_segments`)."""
    if len(relevant) != len(query):
        raise ValueError(
            f"the query has {len(query)} customers but relevant has {len(relevant)} entries; build both from "
            "ground_truth(): Query.for_customers(customer_idx, ...) with its customer_idx, in its order"
        )
    if k_max < QUALITATIVE_K:
        raise ValueError(f"k_max is {k_max}; it must be at least {QUALITATIVE_K}, the cut of MAP@12 and NDCG@12")
    segments = default_segments(query) if segments is None else segments
    for name, mask in segments.items():
        if np.shape(mask) != (len(query),):
            raise ValueError(f"segment {name!r} has a mask of shape {np.shape(mask)}; it needs one bool per query row "
                             f"({len(query)})")
    result = EvaluationResult(
        customers=len(query),
        k_max=k_max,
        relevant=list(relevant),
        segment_sizes={name: int(mask.sum()) for name, mask in segments.items()},
    )
    for name, method in logs.progress(methods.items(), f"scoring {len(methods)} methods", unit="methods"):
        result.methods[name] = evaluate_method(method, query, relevant, k_max, segments)
        scored = result.methods[name]
        log.info("%s: MAP@12 %.4f, Recall@%d %.4f (%.1f s for %d customers)", name, scored.metrics["map@12"],
                 k_max, scored.metrics[f"recall@{k_max}"], scored.seconds, len(query))
    return result
