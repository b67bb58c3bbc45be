"""The customer's own past purchases, time-decayed and ranked, topped up with their age bucket's bestsellers."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Self

import polars as pl

from hmrec.recommenders.base import Query, Recommender, Recs, TrainData, load_recommender, save_recommender
from hmrec.recommenders.popularity import AgePopularityRecommender, fill_with, recs_in_order

CONFIG_FILE = "config.json"
FILL_DIR = "fill"


@dataclass
class RepurchaseConfig:
    # only purchases this many days before as_of count (None: all history); stale purchases crowd out
    # the bestsellers that serve customers back after a long absence better
    window_days: int | None = 91
    half_life_days: float = 14.0  # a purchase this many days old weighs half as much as one bought yesterday


def decayed_purchases(history: pl.DataFrame, as_of: date, config: RepurchaseConfig) -> pl.DataFrame:
    """`row, article_idx, score`: each row's purchases summed with weight 0.5 ** (age_days / half_life),
    best first within each row (ties broken by the most recent purchase, then article_idx)."""
    age_days = (pl.lit(as_of) - pl.col("t_dat")).dt.total_days()
    recent = history if config.window_days is None else history.filter(age_days <= config.window_days)
    weight = (age_days.cast(pl.Float64) * (-math.log(2) / config.half_life_days)).exp()
    return (
        recent.group_by("row", "article_idx")
        .agg(weight.sum().cast(pl.Float32).alias("score"), pl.col("t_dat").max().alias("last"))
        .sort(["row", "score", "last", "article_idx"], descending=[False, True, True, False])
        .select("row", "article_idx", "score")
    )


class RepurchaseRecommender(Recommender):
    """What the customer bought before, most weight on recent buys; the fill completes every list."""

    name = "repurchase"

    def __init__(self, window_days: int | None = 91, half_life_days: float = 14.0, fill: Recommender | None = None):
        self.config = RepurchaseConfig(window_days, half_life_days)
        self.fill = fill if fill is not None else AgePopularityRecommender()

    def fit(self, data: TrainData) -> Self:
        self.fill.fit(data)
        return self

    def recommend(self, query: Query, k: int) -> Recs:
        own = recs_in_order(decayed_purchases(query.history, query.as_of, self.config), len(query), k)
        return fill_with(own, self.fill.recommend(query, k), k)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.config)))
        save_recommender(self.fill, directory / FILL_DIR)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config = json.loads((directory / CONFIG_FILE).read_text())
        return cls(**config, fill=load_recommender(directory / FILL_DIR))
