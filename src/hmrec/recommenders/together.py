"""Bought together: articles often in the same basket (same customer, same day) as a customer's recent buys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import polars as pl

from hmrec.recommenders.base import Query, Recommender, Recs, TrainData
from hmrec.recommenders.colours import (
    days_before,
    load_config_and_table,
    recency_weight,
    save_config_and_table,
    top_k_recs,
)

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.parquet"


@dataclass
class BoughtTogetherConfig:
    """window_days: baskets counted, before the cutoff; max_basket: bigger baskets are skipped (they pair
    everything with everything and cost quadratic time); top_partners: partners kept per article;
    min_count: baskets a pair needs; history_days / half_life_days: which of a customer's buys count and
    how fast they fade; exclude_bought: leave out articles the customer already bought (repurchase has them)."""

    window_days: int = 28
    max_basket: int = 30
    top_partners: int = 20
    min_count: int = 2
    history_days: int = 28
    half_life_days: float = 7.0
    exclude_bought: bool = True


class BoughtTogetherRecommender(Recommender):
    """Strength of a pair (a, b) = share of a's baskets that also hold b; a row's score for b is the
    sum over its recent buys a of strength(a, b) times the buy's recency weight."""

    name = "bought_together"

    def __init__(self, config: BoughtTogetherConfig | None = None):
        self.config = config or BoughtTogetherConfig()
        self.pairs: pl.DataFrame | None = None  # article_idx, partner_idx, count, strength

    def fit(self, data: TrainData) -> Self:
        cfg = self.config
        baskets = (
            data.transactions.lazy()
            .filter(pl.col("t_dat") >= data.cutoff - timedelta(days=cfg.window_days))
            .select("customer_idx", "t_dat", "article_idx")
            .unique()
            .with_columns(pl.len().over("customer_idx", "t_dat").alias("size"))
            .filter(pl.col("size") <= cfg.max_basket)
            .drop("size")
        )
        baskets_per_article = baskets.group_by("article_idx").agg(pl.len().alias("baskets"))
        pairs = (
            baskets.join(baskets.rename({"article_idx": "partner_idx"}), on=["customer_idx", "t_dat"])
            .filter(pl.col("article_idx") != pl.col("partner_idx"))
            .group_by("article_idx", "partner_idx")
            .agg(pl.len().cast(pl.Int32).alias("count"))
            .filter(pl.col("count") >= cfg.min_count)
            .join(baskets_per_article, on="article_idx")
            .with_columns((pl.col("count") / pl.col("baskets")).cast(pl.Float32).alias("strength"))
            .sort(["article_idx", "strength", "partner_idx"], descending=[False, True, False])
            .group_by("article_idx", maintain_order=True)
            .head(cfg.top_partners)
            .select("article_idx", "partner_idx", "count", "strength")
        )
        self.pairs = pairs.collect()
        log.info("bought_together: %d pairs", self.pairs.height)
        return self

    def candidates(self, query: Query) -> pl.DataFrame:
        """Long frame `row, article_idx, score` of every partner of the rows' recent buys, unsorted."""
        if self.pairs is None:
            raise RuntimeError("BoughtTogetherRecommender.recommend called before fit or load")
        cfg = self.config
        recent = (
            query.history.lazy()
            .with_columns(days_before(query).alias("days"))
            .filter(pl.col("days") <= cfg.history_days)
            .group_by("row", "article_idx")
            .agg(recency_weight(pl.col("days"), cfg.half_life_days).sum().alias("weight"))
        )
        frame = (
            recent.join(self.pairs.lazy(), on="article_idx", how="inner")
            .group_by("row", "partner_idx")
            .agg((pl.col("weight") * pl.col("strength")).sum().cast(pl.Float32).alias("score"))
            .rename({"partner_idx": "article_idx"})
        )
        if cfg.exclude_bought:
            owned = query.history.lazy().select("row", "article_idx").unique()
            frame = frame.join(owned, on=["row", "article_idx"], how="anti")
        return frame.collect()

    def recommend(self, query: Query, k: int) -> Recs:
        return top_k_recs(self.candidates(query), n_rows=len(query), k=k)

    def save(self, directory: Path) -> None:
        save_config_and_table(directory, self.config, self.pairs, PAIRS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config, pairs = load_config_and_table(directory, BoughtTogetherConfig, PAIRS_FILE)
        model = cls(config)
        model.pairs = pairs
        return model
