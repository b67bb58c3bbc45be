"""The answer every recommender gives: top-k articles and scores per query row, padded with PAD_ITEM / nan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from hmrec.store.arrays import best_first_order, find_sorted, split_key

PAD_ITEM = -1


def ranks_in_row(rows: np.ndarray) -> np.ndarray:
    """Each line's position within its row (0 = first), for lines sorted by row."""
    return np.arange(rows.size) - np.searchsorted(rows, rows, side="left")


@dataclass
class Recs:
    """Top-k answers for each query row: article indices and scores, best first, padded with -1 / nan."""

    items: np.ndarray  # (n_customers, k) int32
    scores: np.ndarray  # (n_customers, k) float32

    @classmethod
    def empty(cls, n_rows: int, k: int) -> Recs:
        """n_rows rows of k pads: no answer yet."""
        return cls(np.full((n_rows, k), PAD_ITEM, dtype=np.int32), np.full((n_rows, k), np.nan, dtype=np.float32))

    @classmethod
    def stacked(cls, parts: list[Recs], k: int) -> Recs:
        """The rows of `parts`, one part after another (answers computed in blocks of rows); no part: no rows."""
        if not parts:
            return cls.empty(0, k)
        return cls(np.concatenate([p.items for p in parts]), np.concatenate([p.scores for p in parts]))

    @classmethod
    def from_sorted(cls, rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, k: int) -> Recs:
        """From parallel arrays sorted by row and, within a row, in answer order: the first k of each row.
        Numpy rather than a Polars group-by: a one-customer query pays per-operation overhead, not per row."""
        rows = np.asarray(rows, dtype=np.int64)
        ranks = ranks_in_row(rows)
        kept = ranks < k
        out = cls.empty(n_rows, k)
        out.items[rows[kept], ranks[kept]] = items[kept]
        out.scores[rows[kept], ranks[kept]] = scores[kept]
        return out

    @classmethod
    def top_k(cls, keys: np.ndarray, scores: np.ndarray, n_rows: int, k: int, owned: np.ndarray | None = None) -> Recs:
        """From distinct `pair_key(row, article_idx)` keys and their scores: best (as float32) first, ties to
        the smaller article_idx; keys found in `owned` (sorted and distinct, as `HistoryArrays.owned` gives them) are
        left out."""
        if owned is not None and owned.size:
            keep = ~find_sorted(owned, keys)[0]
            keys, scores = keys[keep], scores[keep]
        if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):  # sorted keys: a row's ties in article order
            by_key = np.argsort(keys)
            keys, scores = keys[by_key], scores[by_key]
        rows, items = split_key(keys)
        scores = scores.astype(np.float32)
        order = best_first_order(rows, scores)
        return cls.from_sorted(rows[order], items[order], scores[order], n_rows, k)

    def to_frame(self) -> pl.DataFrame:
        """Long form `row, rank, article_idx, score`, pads dropped."""
        n, k = self.items.shape
        frame = pl.DataFrame(
            {
                "row": np.repeat(np.arange(n, dtype=np.uint32), k),
                "rank": np.tile(np.arange(k, dtype=np.int16), n),
                "article_idx": self.items.ravel(),
                "score": self.scores.ravel(),
            }
        )
        return frame.filter(pl.col("article_idx") != PAD_ITEM)
