"""The library peer: implicit's ALS matrix factorisation on a recent window of purchase counts.

Customer factors are never stored: each query row's factors are solved from its own recent purchases
(`recalculate_user=True`), so customers unseen at training time, and live ones, take the same path.
Rows with no recent purchase of a known article get the fill (popularity).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import threadpoolctl
from implicit.cpu.als import AlternatingLeastSquares
from safetensors.numpy import load_file, save_file
from scipy.sparse import csr_matrix

from hmrec import cpus
from hmrec.data import Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Reason, Recommender, load_recommender, save_recommender
from hmrec.recommenders.popularity import PopularityRecommender, fill_with
from hmrec.store.arrays import distinct, find_sorted, line_dots, top_columns

log = logging.getLogger(__name__)

FACTORS_FILE = "factors.safetensors"
FILL_DIR = "fill"
SMALL_BATCH = 64  # rows solved in numpy (a live query); larger batches go to implicit's threaded solver
BATCH_ROWS = 8192  # query rows solved at once
# (rows, active items) scores searched at once: the float32 scores and the selection's int64
# indices stay ~0.5 GB whatever the catalogue (8,192 rows x 68k articles took 8.9 GB at the H&M size)
SEARCH_CELLS = 1 << 25


@dataclass
class ALSConfig:
    factors: int = 64
    iterations: int = 15
    regularization: float = 0.05
    alpha: float = 10.0  # confidence = alpha * log1p(purchases of the article by the customer)
    window_days: int = 42  # training rows, and each query row's purchases, from this many days back
    seed: int = 7
    active_days: int | None = 14  # recommend only articles sold this many days before the cutoff; None: all


def _confidence(rows: pl.DataFrame, row_col: str, shape: tuple[int, int]) -> csr_matrix:
    """CSR (row, item) of log1p(purchase count) from a frame of `row_col, col` pairs (one line per purchase)."""
    counts = rows.group_by(row_col, "col").len()
    values = np.log1p(counts["len"].to_numpy().astype(np.float32))
    return csr_matrix((values, (counts[row_col].to_numpy(), counts["col"].to_numpy())), shape=shape)


class ALSRecommender(Recommender):
    """implicit's AlternatingLeastSquares, seeded; customers' factors recomputed from each query's history.

    More than 12 methods: the factor solves (implicit's for a batch, numpy's for a live query) and the search
    are its own, and it answers the ranker's capabilities (user_state, recommend_from, pair_scores) too."""

    name = "als"
    reason = Reason.STYLE

    def __init__(self, config: ALSConfig | None = None, fill: Recommender | None = None):
        self.config = config or ALSConfig()
        self.fill = fill if fill is not None else PopularityRecommender()
        self.item_ids: np.ndarray | None = None  # (n_items,) article_idx of each factor row
        self.active: np.ndarray | None = None  # sorted factor rows that may be recommended
        self.model: AlternatingLeastSquares | None = None
        self.losses: list[float] = []

    def _new_model(self) -> AlternatingLeastSquares:
        c = self.config
        with threadpoolctl.threadpool_limits(1, "blas"):  # implicit checks the BLAS threads when built
            return AlternatingLeastSquares(
                factors=c.factors, regularization=c.regularization, alpha=c.alpha, iterations=c.iterations,
                calculate_training_loss=True, num_threads=cpus.available(), random_state=c.seed,
            )

    def fit(self, data: TrainData) -> Self:
        self.fill.fit(data)
        since = data.cutoff - timedelta(days=self.config.window_days)
        recent = data.transactions.filter(pl.col("t_dat") >= since).select("customer_idx", "article_idx")
        if recent.is_empty():
            raise ValueError(
                f"ALS has no purchase to learn from: no transaction in the {self.config.window_days} days before "
                f"{data.cutoff}; widen window_days or check the store's cutoff"
            )
        self.item_ids = np.sort(recent["article_idx"].unique().to_numpy()).astype(np.int32)
        users = recent["customer_idx"].unique().sort()
        rows = recent.join(self._item_map(), on="article_idx").join(
            users.to_frame().with_row_index("user"), on="customer_idx"
        )
        matrix = _confidence(rows, "user", (users.len(), self.item_ids.size))
        self.active = self._active_columns(data.transactions, data.cutoff)
        self.losses = []
        self.model = self._new_model()
        # implicit parallelises itself; a multi-threaded BLAS underneath would oversubscribe the cores
        with threadpoolctl.threadpool_limits(1, "blas"):
            self.model.fit(matrix, show_progress=False, callback=lambda _i, _t, loss: self.losses.append(float(loss)))
        log.info("ALS: %d customers x %d articles, %d cells, final loss %.4f",
                 matrix.shape[0], matrix.shape[1], matrix.nnz, self.losses[-1] if self.losses else float("nan"))
        return self

    def _active_columns(self, transactions: pl.DataFrame, cutoff: date) -> np.ndarray:
        """Factor rows of the articles sold in the `active_days` before the cutoff (old stock is not offered)."""
        if self.config.active_days is None:
            return np.arange(self.item_ids.size, dtype=np.int32)
        since = cutoff - timedelta(days=self.config.active_days)
        sold = transactions.filter(pl.col("t_dat") >= since).select("article_idx").unique()
        return np.sort(sold.join(self._item_map(), on="article_idx")["col"].to_numpy()).astype(np.int32)

    def _item_map(self) -> pl.DataFrame:
        require_fitted(self, self.item_ids)
        return pl.DataFrame({"article_idx": self.item_ids, "col": np.arange(self.item_ids.size, dtype=np.int32)})

    def recommend(self, query: Query, k: int) -> Recs:
        return self.recommend_from(self.user_factors(query), query, k)

    def user_state(self, query: Query) -> np.ndarray:
        return self.user_factors(query)

    def recommend_from(self, factors: np.ndarray, query: Query, k: int) -> Recs:
        """`recommend` from the rows' `user_factors`, already computed (the ranker also scores with them)."""
        return fill_with(self.search(factors, k), self.fill.recommend(query, k), k)

    def user_factors(self, query: Query) -> np.ndarray:
        """(len(query), factors) float32: each row's factors solved from its purchases in the window (implicit's
        `recalculate_user`, the same solve as for a new user); zeros for a row with none of the model's articles."""
        require_fitted(self, self.item_ids)
        h = query.arrays().within(self.config.window_days)  # numpy: a live query pays no Polars overhead
        known, cols = find_sorted(self.item_ids, h.article_idx)
        rows, cols = h.row[known], cols[known]
        warm = distinct(rows)
        out = np.zeros((len(query), self.config.factors), dtype=np.float32)
        for start in range(0, warm.size, BATCH_ROWS):
            batch = warm[start : start + BATCH_ROWS]
            mine = (rows >= batch[0]) & (rows <= batch[-1])  # warm is sorted: a batch is a range of rows
            local = np.searchsorted(batch, rows[mine])
            if batch.size <= SMALL_BATCH:
                out[batch] = self._solve_small(local, cols[mine], batch.size)
                continue
            matrix = csr_matrix((np.ones(local.size, np.float32), (local, cols[mine])),
                                shape=(batch.size, self.item_ids.size))  # duplicates summed: purchase counts
            matrix.data = np.log1p(matrix.data)
            with threadpoolctl.threadpool_limits(1, "blas"):
                out[batch] = self.model.recalculate_user(np.arange(batch.size), matrix)
        return out

    def _solve_small(self, rows: np.ndarray, cols: np.ndarray, n_rows: int) -> np.ndarray:
        """implicit's least-squares user solve (A = YtY + reg I + sum (c - 1) y y^T, b = sum c y, c = alpha * value)
        in numpy, row by row, for purchases (row, factor column) of rows 0..n_rows-1: for a live query's few rows
        its threaded solver and the BLAS limit cost ~20 ms, and a sparse matrix's construction more than the rest.
        value = log1p(times bought), as the matrix `user_factors` gives implicit holds it."""
        y_all = self.model.item_factors
        if getattr(self, "_gram", None) is None or self._gram[0] is not y_all:
            gram = y_all.T.astype(np.float64) @ y_all + self.config.regularization * np.eye(y_all.shape[1])
            self._gram = (y_all, gram)
        cells, counts = np.unique(rows.astype(np.int64) * self.item_ids.size + cols, return_counts=True)
        indices, data = cells % self.item_ids.size, np.log1p(counts.astype(np.float32))
        indptr = np.searchsorted(cells // self.item_ids.size, np.arange(n_rows + 1))  # sorted: row, then column
        out = np.zeros((n_rows, y_all.shape[1]), dtype=np.float32)
        for u in range(n_rows):
            part = slice(indptr[u], indptr[u + 1])
            y, c = y_all[indices[part]].astype(np.float64), self.config.alpha * data[part]
            out[u] = np.linalg.solve(self._gram[1] + (y.T * (c - 1)) @ y, c @ y)
        return out

    def search(self, factors: np.ndarray, k: int) -> Recs:
        """Each row's k best recently sold articles by factor dot product; rows of zero factors get none."""
        out = Recs.empty(len(factors), k)
        warm = np.flatnonzero(np.any(factors != 0, axis=1))
        n = min(k, self.active.size)
        if n == 0 or warm.size == 0:
            return out  # nothing sold recently, or nobody with history: the fill answers
        items = np.ascontiguousarray(self.model.item_factors[self.active])  # (n_active, factors)
        rows = max(1, SEARCH_CELLS // items.shape[0])
        for start in range(0, warm.size, rows):
            batch = warm[start : start + rows]
            scores = factors[batch] @ items.T  # (batch, n_active)
            top = top_columns(scores, n)
            picked = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-picked, axis=1, kind="stable")
            top, picked = np.take_along_axis(top, order, axis=1), np.take_along_axis(picked, order, axis=1)
            out.items[batch, :n] = self.item_ids[self.active[top]]
            out.scores[batch, :n] = picked
        return out

    def pair_scores(self, factors: np.ndarray, rows: np.ndarray, articles: np.ndarray) -> np.ndarray:
        """user . article for every (query row, article_idx) line, nan where the article has no factors (not sold
        in the training window) or the row has no factors."""
        known, cols = find_sorted(self.item_ids, articles)
        known &= np.any(factors != 0, axis=1)[rows]  # a row without factors: one check per row, not per line
        out = np.full(rows.size, np.nan, dtype=np.float32)
        out[known] = line_dots(factors, rows[known], self.model.item_factors, cols[known])
        return out

    def save(self, directory: Path) -> None:
        require_fitted(self, self.item_ids)
        write_config(directory, self.config)
        save_file({"item_factors": np.ascontiguousarray(self.model.item_factors), "item_ids": self.item_ids,
                   "active": self.active},
                  directory / FACTORS_FILE)
        save_recommender(self.fill, directory / FILL_DIR)

    @classmethod
    def load(cls, directory: Path) -> Self:
        recommender = cls(read_config(directory, ALSConfig), fill=load_recommender(directory / FILL_DIR))
        tensors = load_file(directory / FACTORS_FILE)
        recommender.model = recommender._new_model()
        recommender.model.item_factors = tensors["item_factors"]
        recommender.item_ids = tensors["item_ids"]
        recommender.active = tensors["active"]
        return recommender
