"""A toy candidate source, written as a new source is: one module with its settings dataclass and its class.
tests/test_catalogue.py adds it to the catalogue with one entry and nothing else.

New arrivals: the articles first sold most recently before the cutoff (within `window_days`), newest first, the
same list for everybody."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec.data import Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Reason, Recommender

ARRIVALS_FILE = "arrivals.parquet"


@dataclass
class NewArrivalsConfig:
    window_days: int = 14  # an article first sold this many days before the cutoff, or fewer, is new
    keep: int = 200


class NewArrivalsRecommender(Recommender):
    name = "new_arrivals"
    reason = Reason.POPULAR

    def __init__(self, config: NewArrivalsConfig | None = None):
        self.config = config or NewArrivalsConfig()
        self.arrivals: pl.DataFrame | None = None  # article_idx, score (days of the first sale, newest first)

    def fit(self, data: TrainData) -> Self:
        first = data.transactions.group_by("article_idx").agg(pl.col("t_dat").min().alias("first"))
        new = first.filter(pl.col("first") >= data.cutoff - timedelta(days=self.config.window_days))
        days = (pl.col("first") - pl.lit(data.cutoff)).dt.total_days().cast(pl.Float32)
        self.arrivals = (new.select(pl.col("article_idx").cast(pl.Int32), days.alias("score"))
                         .sort(["score", "article_idx"], descending=[True, False]).head(self.config.keep))
        return self

    def recommend(self, query: Query, k: int) -> Recs:
        require_fitted(self, self.arrivals)
        top = self.arrivals.head(k)
        out = Recs.empty(len(query), k)
        out.items[:, : top.height] = top["article_idx"].to_numpy()
        out.scores[:, : top.height] = top["score"].to_numpy().astype(np.float32)
        return out

    def save(self, directory: Path) -> None:
        require_fitted(self, self.arrivals)
        write_config(directory, self.config)
        self.arrivals.write_parquet(directory / ARRIVALS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        model = cls(read_config(directory, NewArrivalsConfig))
        model.arrivals = pl.read_parquet(directory / ARRIVALS_FILE)
        return model
