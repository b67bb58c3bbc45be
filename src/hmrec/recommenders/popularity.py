"""Non-personal baselines: the recent bestsellers, overall or by age bucket, and the fill that tops up lists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec.data import PAD_ITEM, Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Explained, Reason, Recommender
from hmrec.store.tables import AGE_BUCKET_LABELS, UNKNOWN_AGE_BUCKET, age_bucket

RANKING_FILE = "ranking.parquet"
GLOBAL_BUCKET = UNKNOWN_AGE_BUCKET  # the global list is stored as the unknown-age bucket's list


def bestsellers(
    transactions: pl.DataFrame, since: date, limit: int, by: str | None = None, recent_only: bool = False
) -> pl.DataFrame:
    """Articles ranked by purchases on or after `since`, then by all-time purchases as a tie-break and fill.

    Returns `[by,] article_idx, score, rank` with up to `limit` articles per group; the score is the count
    in the window plus a fraction (< 1) from the all-time count, so articles never sold in the window follow
    (unless `recent_only`, which keeps only articles sold in the window).
    """
    keys = [by] if by else []
    counts = transactions.group_by([*keys, "article_idx"]).agg(
        pl.len().alias("total"), (pl.col("t_dat") >= since).sum().alias("recent")
    )
    if recent_only:
        counts = counts.filter(pl.col("recent") > 0)
    largest = counts["total"].max() or 0
    scored = counts.with_columns(
        (pl.col("recent") + pl.col("total") / (largest + 1)).cast(pl.Float32).alias("score")
    ).sort([*keys, "score", "article_idx"], descending=[*[False] * len(keys), True, False])
    top = scored.group_by(keys, maintain_order=True).head(limit) if keys else scored.head(limit)
    rank = pl.int_range(pl.len()).over(keys) if keys else pl.int_range(pl.len())
    return top.with_columns(rank.cast(pl.Int32).alias("rank")).select(*keys, "article_idx", "score", "rank")


def recs_in_order(frame: pl.DataFrame, n_rows: int, k: int) -> Recs:
    """Recs from a long frame `row, article_idx, score` already in answer order within each row (first k kept)."""
    rows = frame["row"].to_numpy()
    order = np.argsort(rows, kind="stable")
    items, scores = frame["article_idx"].to_numpy()[order], frame["score"].to_numpy()[order]
    return Recs.from_sorted(rows[order], items, scores, n_rows, k)


def fill_with(primary: Recs, fill: Recs, k: int) -> Recs:
    """Each row's primary answers first, then the fill's answers not already there, up to k.

    Filled articles get scores -1, -2, ... by their rank in the fill (below any score of a non-negative
    scorer), so scores still fall along the row. Vectorised over rows: no Python loop per customer.
    """
    n = primary.items.shape[0]
    fill_items = fill.items[:, :k]
    fill_scores = np.broadcast_to(-np.arange(1, fill_items.shape[1] + 1, dtype=np.float32), fill_items.shape)
    items = np.concatenate([primary.items[:, :k], fill_items], axis=1)  # (n, <=2k)
    scores = np.concatenate([primary.scores[:, :k], fill_scores], axis=1)
    # a repeat is an article equal to its predecessor once each row is sorted stably (first occurrence kept)
    order = np.argsort(items, axis=1, kind="stable")
    ranked = np.take_along_axis(items, order, axis=1)
    repeat_sorted = np.concatenate([np.zeros((n, 1), dtype=bool), ranked[:, 1:] == ranked[:, :-1]], axis=1)
    drop = np.empty_like(repeat_sorted)
    np.put_along_axis(drop, order, repeat_sorted, axis=1)
    keep = ~(drop | (items == PAD_ITEM))
    slot = np.cumsum(keep, axis=1) - 1  # where each kept answer lands in the output row
    keep &= slot < k
    rows = np.broadcast_to(np.arange(n)[:, None], items.shape)[keep]
    out = Recs.empty(n, k)
    out.items[rows, slot[keep]] = items[keep]
    out.scores[rows, slot[keep]] = scores[keep]
    return out


@dataclass
class PopularityConfig:
    window_days: int = 7  # bestsellers of this many days before the cutoff
    keep: int = 1000  # articles kept per list (the most any caller asks for)


class PopularityRecommender(Recommender):
    """The last week's bestsellers before the cutoff: the same list for every customer."""

    name = "popularity"
    reason = Reason.POPULAR
    settings_type: type = PopularityConfig  # the config class `load` builds from config.json

    def __init__(self, config: PopularityConfig | None = None):
        self.config = config or self.default_config()
        self.ranking: pl.DataFrame | None = None  # article_idx, score, rank

    def fit(self, data: TrainData) -> Self:
        since = data.cutoff - timedelta(days=self.config.window_days)
        self.ranking = bestsellers(data.transactions, since, self.config.keep)
        return self

    def recommend(self, query: Query, k: int) -> Recs:
        ranking = self._fitted().head(k)
        out = Recs.empty(len(query), k)
        out.items[:, : ranking.height] = ranking["article_idx"].to_numpy()
        out.scores[:, : ranking.height] = ranking["score"].to_numpy()
        return out

    @classmethod
    def default_config(cls) -> PopularityConfig:
        return PopularityConfig()

    def _fitted(self) -> pl.DataFrame:
        require_fitted(self, self.ranking)
        return self.ranking

    def settings(self):
        """The config this model was built from (what `save` writes and `load` builds it from again)."""
        return self.config

    def save(self, directory: Path) -> None:
        write_config(directory, self.settings())
        self._fitted().write_parquet(directory / RANKING_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        model = cls(read_config(directory, cls.settings_type))
        model.ranking = pl.read_parquet(directory / RANKING_FILE)
        return model


def _buckets(data: TrainData) -> np.ndarray:
    """Each transaction's buyer's age bucket (-1: unknown age, or a buyer the customers table lacks), gathered by
    customer_idx: a join of every line with the customers took a third of the fit at full size."""
    customer_idx = data.customers["customer_idx"].to_numpy()
    buyers = data.transactions["customer_idx"].to_numpy()
    bucket_of = np.full(max(customer_idx.max(initial=-1), buyers.max(initial=-1)) + 1, UNKNOWN_AGE_BUCKET, np.int8)
    bucket_of[customer_idx] = data.customers.select(age_bucket(pl.col("age")).alias("bucket"))["bucket"].to_numpy()
    return bucket_of[buyers]


class AgePopularityRecommender(PopularityRecommender):
    """Recent bestsellers of the customer's age bucket, topped up with the global bestsellers.

    Customers of unknown age (bucket -1), and any bucket too small to fill a list, get the global list.
    """

    name = "age_popularity"
    reason = Reason.AGE

    def __init__(self, config: PopularityConfig | None = None):
        super().__init__(config)
        self.answers: Recs | None = None  # every bucket's whole list, from the ranking (see bucket_answers)

    def fit(self, data: TrainData) -> Self:
        since = data.cutoff - timedelta(days=self.config.window_days)
        bought = data.transactions.with_columns(pl.Series("age_bucket", _buckets(data)))
        # a bucket's list holds only its recent sellers: the global recent bestsellers beat its old ones
        known = bought.filter(pl.col("age_bucket") >= 0)
        per_bucket = bestsellers(known, since, self.config.keep, by="age_bucket", recent_only=True)
        overall = bestsellers(data.transactions, since, self.config.keep)
        self.ranking = pl.concat(
            [per_bucket, overall.select(pl.lit(GLOBAL_BUCKET, dtype=pl.Int8).alias("age_bucket"), pl.all())]
        )
        self.answers = bucket_answers(self.ranking)
        return self

    def recommend(self, query: Query, k: int) -> Recs:
        require_fitted(self, self.answers)
        bucket_rows = np.nan_to_num(query.customers["age_bucket"].to_numpy(), nan=GLOBAL_BUCKET).astype(np.int64)
        bucket_rows = np.where((bucket_rows >= 0) & (bucket_rows < len(AGE_BUCKET_LABELS)), bucket_rows + 1, 0)
        width = min(k, self.answers.items.shape[1])
        out = Recs.empty(len(query), k)
        out.items[:, :width] = self.answers.items[bucket_rows, :width]
        out.scores[:, :width] = self.answers.scores[bucket_rows, :width]
        return out

    @classmethod
    def default_config(cls) -> PopularityConfig:
        return PopularityConfig(window_days=14)

    def reasons(self) -> dict[str, Reason]:
        return {self.name: Reason.AGE, PopularityRecommender.name: Reason.POPULAR}

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        """As `recommend`; an answer from the global list (unknown age, or the top-up) is listed as `popularity`,
        so a caller can say "popular with your age group" only where it is."""
        recs = self.recommend(query, k)
        known = (np.nan_to_num(query.customers["age_bucket"].to_numpy(), nan=GLOBAL_BUCKET) >= 0).tolist()
        return [[(int(a), float(s), [self.name if own and s >= 0 else PopularityRecommender.name])
                 for a, s in zip(items, scores, strict=True) if a != PAD_ITEM]
                for own, items, scores in zip(known, recs.items, recs.scores, strict=True)]

    @classmethod
    def load(cls, directory: Path) -> Self:
        model = super().load(directory)
        model.answers = bucket_answers(model.ranking)
        return model


def bucket_answers(ranking: pl.DataFrame) -> Recs:
    """Every bucket's whole answer, computed once from the fitted ranking (recommend only slices it): row
    b + 1 holds bucket b's own list topped up with the global list, row 0 the global list alone."""
    overall = ranking.filter(pl.col("age_bucket") == GLOBAL_BUCKET)
    top_score = (overall["score"].max() or 0.0) + 1.0
    # the global fill scores below every bucket score, so scores still fall along the list
    rest = overall.with_columns(pl.lit(0, dtype=pl.Int32).alias("row"), pl.col("score") - top_score)
    lists = []
    for bucket in range(GLOBAL_BUCKET, len(AGE_BUCKET_LABELS)):
        own = ranking.filter(pl.col("age_bucket") == bucket).with_columns(pl.lit(0, dtype=pl.Int32).alias("row"))
        lists.append(pl.concat([own, rest]).unique("article_idx", keep="first", maintain_order=True))
    width = max(1, max(merged.height for merged in lists))
    tables = [recs_in_order(merged.select("row", "article_idx", "score"), 1, width) for merged in lists]
    return Recs.stacked(tables, width)
