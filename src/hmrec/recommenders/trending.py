"""Trending articles: sales of the last weeks, each weighted by how recent it is, the same list for everybody."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Self

import polars as pl

from hmrec.data import TrainData
from hmrec.recommenders.popularity import PopularityConfig, PopularityRecommender
from hmrec.store.arrays import days_before, decay


@dataclass
class TrendingConfig:
    half_life_days: float = 7.0  # a sale this many days before the cutoff weighs half as much as yesterday's
    window_days: int = 28  # sales older than this are not counted
    keep: int = 1000  # articles kept (the most any caller asks for)


def trending_scores(transactions: pl.DataFrame, cutoff, half_life_days: float, window_days: int) -> pl.DataFrame:
    """`article_idx, score`: each sale in the window before `cutoff` counted 0.5 ** ((days before - 1) / half_life),
    best first, ties to the smaller article_idx."""
    recent = transactions.filter((pl.col("t_dat") >= cutoff - timedelta(days=window_days)) & (pl.col("t_dat") < cutoff))
    weights = decay(days_before(recent["t_dat"].to_numpy(), cutoff), half_life_days, offset=1)
    frame = pl.DataFrame({"article_idx": recent["article_idx"].cast(pl.Int32), "w": weights})
    return (frame.group_by("article_idx").agg(pl.col("w").sum().cast(pl.Float32).alias("score"))
            .sort(["score", "article_idx"], descending=[True, False]))


class TrendingRecommender(PopularityRecommender):
    """Time-decayed bestsellers: yesterday's sales count most, so a rising article passes a fading one."""

    name = "trending"
    settings_type = TrendingConfig

    def __init__(self, config: TrendingConfig | None = None):
        self.trend = config or TrendingConfig()
        super().__init__(PopularityConfig(self.trend.window_days, self.trend.keep))

    def fit(self, data: TrainData) -> Self:
        """The window's articles by decayed sales, then (to fill any list) the others by all-time sales with scores
        -1, -2, ... as `fill_with` gives a fill."""
        t = self.trend
        scores = trending_scores(data.transactions, data.cutoff, t.half_life_days, t.window_days).head(t.keep)
        rest = (data.transactions.group_by("article_idx").len()
                .with_columns(pl.col("article_idx").cast(pl.Int32))
                .join(scores, on="article_idx", how="anti")
                .sort(["len", "article_idx"], descending=[True, False]).head(max(t.keep - scores.height, 0)))
        rest = rest.select("article_idx", (-pl.int_range(1, pl.len() + 1)).cast(pl.Float32).alias("score"))
        self.ranking = pl.concat([scores, rest]).with_columns(pl.int_range(pl.len()).cast(pl.Int32).alias("rank"))
        return self

    def settings(self) -> TrendingConfig:
        return self.trend
