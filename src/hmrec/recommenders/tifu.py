"""TIFU-KNN (Hu et al., KDD 2020): a customer's time-decayed article frequencies blended with their neighbours'.

A customer's vector: their shopping days (one basket per day, each article once) cut into groups of m consecutive
baskets counted back from the newest (the oldest group may hold fewer); a group is the mean of its baskets weighted
r_b ** (baskets after it in the group), the vector the mean of the groups weighted r_g ** (groups after it).
The answer: alpha x the customer's own vector + (1 - alpha) x the mean vector of the k fitted customers most like
it (cosine, at least one article in common; the customer never counts as their own neighbour).

The own part is computed from each query row's history, so live purchases count at once. The neighbours are
searched among the customers with a purchase in the `window_days` before the cutoff (the `max_pool` most recent of
them), their vectors over the `max_articles` articles most sold in that window, held sparse (scipy CSR): at the
H&M size at most max_pool x max_articles with a few dozen non-zeros a row, never a dense 1.37M x 105k matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
from safetensors.numpy import load_file, save_file
from scipy.sparse import csr_matrix

from hmrec.data import PAD_ITEM, Query, Recs, TrainData, ranks_in_row
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Explained, Reason, Recommender, load_recommender, save_recommender
from hmrec.recommenders.popularity import fill_with
from hmrec.store.arrays import days_before, distinct, find_sorted, group_sum, pair_key, split_key

STATE_FILE = "neighbours.safetensors"
FILL_DIR = "fill"
# non-zero similarities (query row, pool customer) computed at once: at most 16M, ~200 MB with their sort
SIMILARITY_NONZEROS = 1 << 24
# query rows answered at once: every row's own and neighbours' articles are summed and sorted together, and at the
# H&M size 1,000 rows at a time answered the held-out week's 103,370 buyers in 32 s against 61 s all at once
ANSWER_ROWS = 1_000

# The settings validation chooses from: 2 x 2 x 4 x 2 x 3 x 2 = 192 answers, but `neighbours` and `alpha` act only
# at answer time, so 24 fits of the pool. The defaults won on the small fashion world's validation week (on a
# 24-setting part of this grid); on the grocery world, where what a customer buys again is nearly the whole answer,
# alpha 1.0 (no neighbours) won. Both preferred strong decay across groups and baskets counting units.
TIFU_GRID = {
    "group_size": (3, 7),
    "neighbours": (100, 300),
    "alpha": (0.3, 0.6, 0.9, 1.0),
    "within_decay": (0.9, 1.0),
    "across_decay": (0.2, 0.4, 0.7),
    "units": (False, True),
}


@dataclass
class TifuConfig:
    group_size: int = 3  # m: consecutive shopping days (baskets) per group
    within_decay: float = 1.0  # r_b: weight ratio of a basket to the next one in its group
    across_decay: float = 0.4  # r_g: weight ratio of a group to the next one
    neighbours: int = 100  # k: most similar fitted customers averaged
    alpha: float = 0.6  # weight of the customer's own vector; 1 - alpha on the neighbours' mean
    window_days: int = 28  # the neighbour pool: customers with a purchase this many days before the cutoff
    max_pool: int = 250_000  # at most this many of them, the most recent buyers first
    max_articles: int = 20_000  # neighbour vectors over the articles most sold in the window
    history_days: int | None = None  # shopping days counted, own and neighbours' (None: all history)
    # a basket counts each purchase line (units bought), not each article once as in the paper: a customer who buys
    # three of an article each time buys it more than one who buys one
    units: bool = True


def tifu_vectors(
    rows: np.ndarray, days: np.ndarray, articles: np.ndarray, config: TifuConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's TIFU vector from its purchase lines (`days`: whole days before as_of, >= 1): distinct sorted
    `pair_key(row, article_idx)` and their values, float64. A row's values sum to at most 1."""
    if config.history_days is not None:
        keep = days <= config.history_days
        rows, days, articles = rows[keep], days[keep], articles[keep]
    baskets = np.unique(pair_key(rows, days))  # by row, newest basket first (fewest days before as_of)
    basket_rows, _ = split_key(baskets)
    newer = ranks_in_row(basket_rows)  # baskets after this one, within its row
    count = np.bincount(basket_rows, minlength=basket_rows.max() + 1 if basket_rows.size else 0)[basket_rows]
    m = config.group_size
    groups = (count + m - 1) // m
    group = newer // m  # 0: the newest group
    size = np.where(group == groups - 1, count - m * (groups - 1), m)
    weight = config.within_decay ** (newer % m) / size * config.across_decay ** group / groups
    lines = pair_key(np.searchsorted(baskets, pair_key(rows, days)), articles)
    # sorted (by basket, then article) either way: each article's weights are summed in one order whatever the
    # order of the lines, so the same lines give the same bits every run
    basket, article = split_key(np.sort(lines) if config.units else distinct(lines))
    return group_sum(pair_key(basket_rows[basket], article), weight[basket])


def _matrix(keys: np.ndarray, values: np.ndarray, vocabulary: np.ndarray, n_rows: int) -> csr_matrix:
    """CSR (row, column of the article in `vocabulary`) of the vector values; other articles left out."""
    rows, articles = split_key(keys)
    known, cols = find_sorted(vocabulary, articles)
    return csr_matrix((values[known].astype(np.float32), (rows[known], cols[known])), shape=(n_rows, vocabulary.size))


def _products(rows: csr_matrix, columns: csr_matrix) -> np.ndarray:
    """Per row of `rows`, the products its sparse product with `columns` computes: a bound on its non-zeros."""
    ones = rows.copy()
    ones.data[:] = 1
    return ones @ np.diff(columns.indptr).astype(np.float64)


def _batches(sizes: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges whose `sizes` sum to at most `budget` (a row over it alone)."""
    total, spans, start = np.cumsum(sizes), [], 0
    while start < sizes.size:
        before = total[start - 1] if start else 0.0
        stop = max(start + 1, int(np.searchsorted(total, before + budget, side="right")))
        spans.append((start, stop))
        start = stop
    return spans


def _top_in_rows(values: np.ndarray, columns: np.ndarray, starts: np.ndarray, k: int) -> np.ndarray:
    """Mask of each CSR row's k largest positive `values` (`starts`: the rows' indptr), ties to the smaller column.
    A row at a time: a partition of a few thousand values is microseconds, a sort of every row's values seconds."""
    keep = values > 0
    for first, last in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        if last - first <= k or np.count_nonzero(keep[first:last]) <= k:
            continue
        row = values[first:last]
        kth = np.partition(row, row.size - k)[row.size - k]  # the k-th largest
        above = row > kth
        tied = np.flatnonzero(row == kth)
        wanted = k - np.count_nonzero(above)
        if tied.size > wanted:
            tied = tied[np.argsort(columns[first:last][tied], kind="stable")[:wanted]]
        above[tied] = True
        keep[first:last] = above
    return keep


def _unit_rows(matrix: csr_matrix) -> csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    return csr_matrix(matrix.multiply(scale[:, None]))


class TifuKnnRecommender(Recommender):
    """Own decayed frequencies (reason: bought before) plus what similar recent customers buy (reason: style)."""

    name = "tifu_knn"
    neighbours_name = "tifu_knn_neighbours"
    reason = Reason.BOUGHT_BEFORE

    def __init__(self, config: TifuConfig | None = None, fill: Recommender | None = None):
        self.config = config or TifuConfig()
        self.fill = fill  # None: a row without history, or without neighbours, may end in pads
        self.vocabulary_: np.ndarray | None = None  # (V,) sorted article_idx of the neighbour vectors' columns
        self.pool_customers_: np.ndarray | None = None  # (P,) customer_idx of each pool row
        self.pool_: csr_matrix | None = None  # (P, V) the pool's TIFU vectors
        self._unit_pool: csr_matrix | None = None

    def fit(self, data: TrainData) -> Self:
        cfg = self.config
        recent = data.transactions.filter(pl.col("t_dat") >= data.cutoff - timedelta(days=cfg.window_days))
        sold = recent.group_by("article_idx").len().sort(["len", "article_idx"], descending=[True, False])
        self.vocabulary_ = np.sort(sold["article_idx"].head(cfg.max_articles).to_numpy()).astype(np.int32)
        last = recent.group_by("customer_idx").agg(pl.col("t_dat").max())
        pool = last.sort(["t_dat", "customer_idx"], descending=[True, False]).head(cfg.max_pool)
        self.pool_customers_ = np.sort(pool["customer_idx"].to_numpy()).astype(np.int32)
        lines = data.transactions.join(pl.DataFrame({"customer_idx": self.pool_customers_}), on="customer_idx")
        rows = np.searchsorted(self.pool_customers_, lines["customer_idx"].to_numpy())
        keys, values = tifu_vectors(rows, days_before(lines["t_dat"].to_numpy(), data.cutoff),
                                    lines["article_idx"].to_numpy().astype(np.int64), cfg)
        self.pool_ = _matrix(keys, values, self.vocabulary_, self.pool_customers_.size)
        self._unit_pool = None
        if self.fill is not None:
            self.fill.fit(data)
        return self

    def _require_fitted(self) -> None:
        require_fitted(self, self.pool_)

    def scores(self, query: Query) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct sorted `pair_key(row, article_idx)`, their blended scores (float64) and whether the row bought
        the article (the own part is non-zero)."""
        self._require_fitted()
        h = query.arrays()
        own_keys, own = tifu_vectors(h.row, h.days, h.article_idx, self.config)
        alpha = self.config.alpha
        near_keys, near = self._neighbour_means(own_keys, own, query) if alpha < 1 else (own_keys[:0], own[:0])
        keys, total = group_sum(np.concatenate([own_keys, near_keys]),
                                np.concatenate([alpha * own, (1 - alpha) * near]))
        keys, total = keys[total > 0], total[total > 0]  # alpha 0 or 1: one part proposes nothing
        return keys, total, find_sorted(own_keys, keys)[0]

    def _neighbour_means(self, keys: np.ndarray, values: np.ndarray, query: Query) -> tuple[np.ndarray, np.ndarray]:
        """`pair_key(row, article_idx)` and the mean vector of each row's neighbours, in batches of rows.

        Only pool customers with an article in common have a cosine above 0, so the similarities stay sparse: a
        row's k neighbours are the k largest of its non-zero cosines, ties to the earlier pool row (a dense row of
        every pool customer, mostly zeros, cost 3 ms a customer at the H&M size)."""
        if self._unit_pool is None:  # (V, P): the pool's unit vectors as columns, built once
            self._unit_pool = _unit_rows(self.pool_).T.tocsr()
        unit_query = _unit_rows(_matrix(keys, values, self.vocabulary_, len(query)))
        pooled, own_row = find_sorted(self.pool_customers_, query.customers["customer_idx"].to_numpy())
        k = min(self.config.neighbours, self.pool_.shape[0])
        parts = []
        for start, stop in _batches(_products(unit_query, self._unit_pool), SIMILARITY_NONZEROS) if k else ():
            similar = unit_query[start:stop] @ self._unit_pool  # (batch, P) CSR: the non-zero cosines
            rows = np.repeat(np.arange(stop - start), np.diff(similar.indptr))
            mine = pooled[start + rows] & (similar.indices == own_row[start + rows])  # never one's own neighbour
            near = _top_in_rows(np.where(mine, 0.0, similar.data), similar.indices, similar.indptr, k)
            rows, cols = rows[near], similar.indices[near]
            count = np.bincount(rows, minlength=stop - start)
            weights = csr_matrix((1.0 / count[rows], (rows, cols)), shape=similar.shape, dtype=np.float32)
            mean = (weights @ self.pool_).tocoo()  # (batch, V)
            parts.append((pair_key(start + mean.row.astype(np.int64), self.vocabulary_[mean.col]), mean.data))
        if not parts:
            return np.empty(0, np.int64), np.empty(0)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.float64)

    def recommend(self, query: Query, k: int) -> Recs:
        return self._answer(query, k)[0]

    def _answer(self, query: Query, k: int) -> tuple[Recs, np.ndarray]:
        """The answers, and the sorted `pair_key(row, article_idx)` of what each row bought; in blocks of
        ANSWER_ROWS rows (a row's answer does not depend on the others')."""
        blocks, bought = [], [np.empty(0, np.int64)]
        for start in range(0, len(query), ANSWER_ROWS):
            rows = min(ANSWER_ROWS, len(query) - start)
            keys, scores, own = self.scores(query if rows == len(query) else query.rows(start, start + rows))
            blocks.append(Recs.top_k(keys, scores, rows, k))
            bought.append(keys[own] + (start << 32))  # the block's rows are the query's from `start` (pair_key)
        recs = Recs.stacked(blocks, k)
        return recs if self.fill is None else fill_with(recs, self.fill.recommend(query, k), k), np.concatenate(bought)

    def reasons(self) -> dict[str, Reason]:
        fill = self.fill.reasons() if self.fill is not None else {}
        return {**fill, self.name: Reason.BOUGHT_BEFORE, self.neighbours_name: Reason.STYLE}

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        """As `recommend`; an article the customer bought is listed under `tifu_knn`, one only their neighbours
        bought under `tifu_knn_neighbours`, a fill answer (negative score) under the fill's name."""
        recs, bought = self._answer(query, k)
        explained = []
        for row, (items, scores) in enumerate(zip(recs.items, recs.scores, strict=True)):
            real = items != PAD_ITEM
            own = find_sorted(bought, pair_key(np.full(items.size, row), np.maximum(items, 0)))[0]
            names = [self.name if o else self.neighbours_name if s >= 0 else self.fill.name
                     for o, s in zip(own[real], scores[real], strict=True)]
            explained.append([(int(a), float(s), [n])
                              for a, s, n in zip(items[real], scores[real], names, strict=True)])
        return explained

    def save(self, directory: Path) -> None:
        self._require_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        write_config(directory, self.config)
        pool = self.pool_
        save_file({"vocabulary": self.vocabulary_, "pool_customers": self.pool_customers_,
                   "indptr": pool.indptr.astype(np.int64), "indices": pool.indices.astype(np.int32),
                   "data": pool.data.astype(np.float32)}, directory / STATE_FILE)
        if self.fill is not None:
            save_recommender(self.fill, directory / FILL_DIR)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config = read_config(directory, TifuConfig)
        fill = load_recommender(directory / FILL_DIR) if (directory / FILL_DIR).exists() else None
        model = cls(config, fill=fill)
        state = load_file(directory / STATE_FILE)
        model.vocabulary_, model.pool_customers_ = state["vocabulary"], state["pool_customers"]
        shape = (model.pool_customers_.size, model.vocabulary_.size)
        model.pool_ = csr_matrix((state["data"], state["indices"], state["indptr"]), shape=shape)
        return model
