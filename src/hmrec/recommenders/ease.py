"""EASE (Steck, WWW 2019): a closed-form item-item model, B = I - P / diag(P) with P = (X^T X + lambda I)^-1.

X is the customers x articles matrix of who bought what in a recent window, over the `max_articles` articles most
bought there (the whole catalogue when it is smaller). B is dense, float32: N = 10,000 articles take 400 MB (the
Gram matrix is inverted in place: fitting the small fashion world's 6,656 articles, B 177 MB, raised the peak RSS
by 263 MB); 20,000 take 1.6 GB, 3.2 GB in float64.
A customer's score for article j is sum_i x_i B_ij over their own history row x (binary, or weighted by recency),
taken from each query's history, so live purchases count. Nothing is excluded by default: in fashion and grocery
customers buy again, and B_jj = 0 leaves a bought article's own score to what it is bought with. Only articles
scoring above 0 are answered: the rest of a list is padded, or the fill's when one is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import scipy.linalg
from safetensors.numpy import load_file, save_file
from scipy.sparse import csr_matrix

from hmrec.data import PAD_ITEM, Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Explained, Reason, Recommender, load_recommender, save_recommender
from hmrec.recommenders.popularity import fill_with
from hmrec.store.arrays import decay, distinct, find_sorted, group_max, pair_key, split_key, top_columns

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
FILL_DIR = "fill"
GRAM_COLUMNS = 2048  # X^T X built this many columns at a time: the sparse product stays <= N x 2048 non-zeros
SCORE_CELLS = 1 << 25  # (query rows x articles) float32 scores held at once: 128 MB

# lambda, chosen on validation: the small worlds' validation weeks chose 200 (fashion) and 10 (grocery)
EASE_GRID = {"l2": (2.0, 10.0, 50.0, 200.0, 1000.0)}


@dataclass
class EaseConfig:
    l2: float = 200.0  # lambda, the ridge penalty on B
    window_days: int = 91  # X: purchases this many days before the cutoff
    max_articles: int = 10_000  # N: the articles most bought in that window (B is N x N float32)
    history_days: int | None = 91  # a customer's row: their purchases this many days back (None: all)
    half_life_days: float | None = None  # None: the row is 1 for each article bought; else 0.5 ** (days / this)
    exclude_bought: bool = False


def gram(x: csr_matrix, l2: float) -> np.ndarray:
    """X^T X + l2 I, dense float32, built a block of columns at a time (never a dense X, nor a sparse N x N)."""
    n = x.shape[1]
    out = np.empty((n, n), dtype=np.float32)
    xt, columns = x.T.tocsr(), x.tocsc()
    for start in range(0, n, GRAM_COLUMNS):
        block = slice(start, min(n, start + GRAM_COLUMNS))
        out[:, block] = (xt @ columns[:, block]).toarray()
    out[np.diag_indices(n)] += l2
    return out


def ease_weights(g: np.ndarray) -> np.ndarray:
    """B = I - P / diag(P), P = g^-1, B_jj = 0; `g` (symmetric, so its transpose is Fortran order) is overwritten."""
    # LAPACK works in Fortran order: g.T is g's memory as such, and the inverse's transpose (P, as P is symmetric)
    # is C-ordered again, so no N x N copy is made
    p = scipy.linalg.inv(g.T, overwrite_a=True, check_finite=False).T
    diagonal = np.diag(p).copy()
    p /= -diagonal[None, :]  # B_ij = -P_ij / P_jj
    p[np.diag_indices_from(p)] = 0.0
    return p.astype(np.float32, copy=False)


class EaseRecommender(Recommender):
    """What is bought with what the customer bought, weighted by a closed-form ridge regression."""

    name = "ease"
    reason = Reason.STYLE

    def __init__(self, config: EaseConfig | None = None, fill: Recommender | None = None):
        self.config = config or EaseConfig()
        self.fill = fill  # None: a row with none of the modelled articles in its history ends in pads
        self.articles_: np.ndarray | None = None  # (N,) sorted article_idx of B's rows and columns
        self.weights_: np.ndarray | None = None  # (N, N) float32 B

    def fit(self, data: TrainData) -> Self:
        cfg = self.config
        recent = data.transactions.filter(pl.col("t_dat") >= data.cutoff - timedelta(days=cfg.window_days))
        sold = recent.group_by("article_idx").len().sort(["len", "article_idx"], descending=[True, False])
        self.articles_ = np.sort(sold["article_idx"].head(cfg.max_articles).to_numpy()).astype(np.int32)
        bought = recent.select("customer_idx", "article_idx").unique()
        customers = distinct(bought["customer_idx"].to_numpy())
        known, cols = find_sorted(self.articles_, bought["article_idx"].to_numpy())
        rows = np.searchsorted(customers, bought["customer_idx"].to_numpy())
        x = csr_matrix((np.ones(known.sum(), np.float32), (rows[known], cols[known])),
                       shape=(customers.size, self.articles_.size))
        self.weights_ = ease_weights(gram(x, cfg.l2))
        log.info("EASE: %d customers x %d articles, %d cells, B %.0f MB", x.shape[0], x.shape[1], x.nnz,
                 self.weights_.nbytes / 1e6)
        if self.fill is not None:
            self.fill.fit(data)
        return self

    def _require_fitted(self) -> None:
        require_fitted(self, self.weights_)

    def history_rows(self, query: Query) -> csr_matrix:
        """(len(query), N): each row's history over the modelled articles, 1 (or its recency weight) per article."""
        self._require_fitted()
        cfg = self.config
        h = query.arrays().within(cfg.history_days)
        known, cols = find_sorted(self.articles_, h.article_idx)
        weights = np.ones(h.days.size) if cfg.half_life_days is None else decay(h.days, cfg.half_life_days, offset=1)
        keys, newest = group_max(pair_key(h.row[known], cols[known]), weights[known])  # the newest purchase counts
        rows, cols = split_key(keys)
        return csr_matrix((newest.astype(np.float32), (rows, cols)), shape=(len(query), self.articles_.size))

    def recommend(self, query: Query, k: int) -> Recs:
        x = self.history_rows(query)
        warm = np.flatnonzero(np.diff(x.indptr))  # rows with a modelled article; the others get pads
        n = min(k, self.articles_.size)
        keys, values = [np.empty(0, np.int64)], [np.empty(0, np.float32)]
        batch = max(1, SCORE_CELLS // max(1, self.articles_.size))
        for start in range(0, warm.size, batch):
            rows = warm[start : start + batch]
            scores = np.asarray(x[rows] @ self.weights_)  # (batch, N): scipy's per-row loop, the same alone or not
            if self.config.exclude_bought:
                part = x[rows]
                scores[np.repeat(np.arange(rows.size), np.diff(part.indptr)), part.indices] = -np.inf
            top = top_columns(scores, n)
            picked = np.take_along_axis(scores, top, axis=1)
            keep = picked > 0  # B says nothing for the article, or against it: the fill's place
            keys.append(pair_key(np.repeat(rows, n).reshape(-1, n)[keep], self.articles_[top[keep]]))
            values.append(picked[keep])
        recs = Recs.top_k(np.concatenate(keys), np.concatenate(values), len(query), k)
        return recs if self.fill is None else fill_with(recs, self.fill.recommend(query, k), k)

    def reasons(self) -> dict[str, Reason]:
        return {**(self.fill.reasons() if self.fill is not None else {}), self.name: self.reason}

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        """As `recommend`; EASE's own answers score above 0, the fill's (`fill_with`) below and carry its name."""
        recs = self.recommend(query, k)
        return [[(int(a), float(s), [self.name if s > 0 else self.fill.name])
                 for a, s in zip(items, scores, strict=True) if a != PAD_ITEM]
                for items, scores in zip(recs.items, recs.scores, strict=True)]

    def similar_by(self) -> str:
        return self.name

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The k articles with the largest weight from `article_idx` in B (itself excluded: B_jj = 0)."""
        self._require_fitted()
        found, at = find_sorted(self.articles_, np.array([article_idx]))
        if not found[0]:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        row = self.weights_[at[0]].copy()
        row[at[0]] = -np.inf
        order = np.lexsort((self.articles_, -row))[: min(k, row.size - 1)]
        return self.articles_[order], row[order]

    def save(self, directory: Path) -> None:
        self._require_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        write_config(directory, self.config)
        save_file({"articles": self.articles_, "weights": self.weights_}, directory / WEIGHTS_FILE)
        if self.fill is not None:
            save_recommender(self.fill, directory / FILL_DIR)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config = read_config(directory, EaseConfig)
        model = cls(config, load_recommender(directory / FILL_DIR) if (directory / FILL_DIR).exists() else None)
        state = load_file(directory / WEIGHTS_FILE)
        model.articles_, model.weights_ = state["articles"], state["weights"]
        return model
