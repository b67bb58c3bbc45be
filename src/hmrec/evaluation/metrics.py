"""Ranking metrics as small pure vectorised functions: Recall@K, NDCG@K and MAP@12 (the competition's).

Every function takes the same two arguments:
    items     (n, >=k) integer array, best first, padded with -1 (`PAD_ITEM`); only the first k columns count.
    relevant  list of n collections of ints: the distinct articles each customer bought in the window.

Conventions shared by all of them:
    - a recommended article counts once per customer: a repeat later in the same row is not a hit;
    - pads (-1) never hit, and negative values in `relevant` are ignored;
    - a customer with an empty `relevant` bought nothing: the per-customer value is nan and the mean
      skips that customer (MAP@12 is averaged over buyers only, as in the competition); a mean over
      no buyer at all is 0.0.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import chain

import numpy as np

from hmrec.data.recs import PAD_ITEM
from hmrec.store.arrays import distinct, find_sorted


def _flatten(relevant: Sequence[Collection[int]]) -> tuple[np.ndarray, np.ndarray]:
    """The (row, article) pairs of `relevant` as two flat int64 arrays, negative articles dropped."""
    lengths = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=len(relevant))
    values = np.fromiter(chain.from_iterable(relevant), dtype=np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(relevant), dtype=np.int64), lengths)
    keep = values >= 0
    return rows[keep], values[keep]


def hit_matrix(items: np.ndarray, relevant: Sequence[Collection[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) bool: column j is True where the j-th item is relevant and its first occurrence in the row;
    also returns each row's number of distinct relevant articles (n,) int.

    The first k' < k columns equal hit_matrix(items, relevant, k')[0], so one matrix at the largest k
    serves every metric (the `*_from_hits` functions)."""
    items = np.asarray(items)
    if items.ndim != 2 or items.shape[1] < k:
        raise ValueError(f"items must be an (n, >={k}) array of article indices, got shape {items.shape}")
    if items.shape[0] != len(relevant):
        raise ValueError(
            f"items has {items.shape[0]} rows but relevant has {len(relevant)} entries; they must align row by row"
        )
    top = items[:, :k].astype(np.int64)
    n = top.shape[0]
    rows, values = _flatten(relevant)
    width = max(int(top.max(initial=0)), int(values.max(initial=0))) + 2
    # a (row, article) pair is one int64 key: row * width + article + 1, so pads (-1 -> 0) never collide
    keys = distinct(rows * width + values + 1)
    counts = np.bincount(keys // width, minlength=n)
    flat = (np.arange(n, dtype=np.int64)[:, None] * width + np.clip(top, PAD_ITEM, None) + 1).ravel()
    first = np.zeros(flat.size, dtype=bool)
    first[np.unique(flat, return_index=True)[1]] = True  # row-major order: first index = earliest rank
    hits = first & find_sorted(keys, flat)[0] & (top.ravel() >= 0)
    return hits.reshape(n, k), counts


def _mean_over_buyers(values: np.ndarray) -> float:
    """Mean of the per-customer values, skipping customers who bought nothing (nan)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else 0.0


def recall_from_hits(hits: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per-customer Recall@k from a `hit_matrix` of at least k columns (its first k count)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits[:, :k].sum(axis=1) / counts, np.nan)


def ndcg_from_hits(hits: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per-customer NDCG@k from a `hit_matrix` of at least k columns."""
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits[:, :k] @ discounts
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(counts, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, dcg / ideal, np.nan)


def ap_from_hits(hits: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per-customer AP@k from a `hit_matrix` of at least k columns."""
    top = hits[:, :k]
    precision = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (precision * top).sum(axis=1) / np.minimum(counts, k), np.nan)


def curve_from_hits(hits: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean Recall@K for K = 1..hits.shape[1] over the customers who bought; non-decreasing, in [0, 1]."""
    buyers = counts > 0
    if not buyers.any():
        return np.zeros(hits.shape[1])
    return (np.cumsum(hits[buyers], axis=1) / counts[buyers, None]).mean(axis=0)


def recall_per_customer(items: np.ndarray, relevant: Sequence[Collection[int]], k: int) -> np.ndarray:
    """Hits in the top k / number of distinct articles bought, per customer; in [0, 1], nan if none bought.

    With more than k articles bought, a perfect list still scores k / |relevant| < 1.
    """
    return recall_from_hits(*hit_matrix(items, relevant, k), k)


def recall_at_k(items: np.ndarray, relevant: Sequence[Collection[int]], k: int) -> float:
    """Mean Recall@k over the customers who bought something; in [0, 1]."""
    return _mean_over_buyers(recall_per_customer(items, relevant, k))


def recall_curve(items: np.ndarray, relevant: Sequence[Collection[int]], k_max: int) -> np.ndarray:
    """Mean Recall@K for K = 1..k_max in one pass: (k_max,) array, non-decreasing, each in [0, 1]."""
    return curve_from_hits(*hit_matrix(items, relevant, k_max))


def ndcg_per_customer(items: np.ndarray, relevant: Sequence[Collection[int]], k: int) -> np.ndarray:
    """Binary-relevance NDCG@k per customer; in [0, 1], nan if none bought.

    DCG = sum over hits at rank j (0-based) of 1 / log2(j + 2); the ideal DCG puts min(|relevant|, k)
    hits at the top, so a perfect list scores 1 even when more than k articles were bought.
    """
    return ndcg_from_hits(*hit_matrix(items, relevant, k), k)


def ndcg_at_k(items: np.ndarray, relevant: Sequence[Collection[int]], k: int) -> float:
    """Mean NDCG@k over the customers who bought something; in [0, 1]."""
    return _mean_over_buyers(ndcg_per_customer(items, relevant, k))


def ap_per_customer(items: np.ndarray, relevant: Sequence[Collection[int]], k: int = 12) -> np.ndarray:
    """Average precision at k per customer (the competition's AP@12); in [0, 1], nan if none bought.

    AP@k = sum over hit ranks j (1-based) of precision@j, divided by min(|relevant|, k).
    """
    return ap_from_hits(*hit_matrix(items, relevant, k), k)


def map_at_k(items: np.ndarray, relevant: Sequence[Collection[int]], k: int = 12) -> float:
    """MAP@k (default 12, the competition metric): mean AP@k over the customers who bought; in [0, 1]."""
    return _mean_over_buyers(ap_per_customer(items, relevant, k))
