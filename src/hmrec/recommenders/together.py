"""Bought together: articles often in the same basket (same customer, same day) as a customer's recent buys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec.data import HistoryArrays, Query, Recs, TrainData
from hmrec.data.files import require_fitted
from hmrec.recommenders.base import Reason, Recommender
from hmrec.recommenders.colours import load_config_and_table, save_config_and_table
from hmrec.store.arrays import decay, equal_range, expand, group_sum, pair_key, split_key

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
    personal_only = True  # proposes from the customer's own purchases only
    reason = Reason.BOUGHT_WITH

    def __init__(self, config: BoughtTogetherConfig | None = None):
        self.config = config or BoughtTogetherConfig()
        self.pairs: pl.DataFrame | None = None  # article_idx, partner_idx, count, strength
        self._arrays: tuple[np.ndarray, ...] | None = None  # _lookup()'s arrays of `pairs`
        self._by_partner: tuple[np.ndarray, np.ndarray] | None = None  # (partner_idx sorted, article_idx)

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
        self.pairs, self._arrays, self._by_partner = pairs.collect(), None, None
        log.info("bought_together: %d pairs", self.pairs.height)
        return self

    def candidates(self, history: HistoryArrays) -> tuple[np.ndarray, np.ndarray]:
        """`pair_key(row, partner)` of every partner of the rows' recent buys, and its score, float64
        (distinct keys, sorted; bought articles still in)."""
        cfg = self.config
        articles, partners, strength = self._lookup()
        recent = history.within(cfg.history_days)
        keys, weight = group_sum(pair_key(recent.row, recent.article_idx),
                                 decay(recent.days, cfg.half_life_days, offset=1))
        rows, bought = split_key(keys)
        owner, at = expand(np.searchsorted(articles, bought, "left"), np.searchsorted(articles, bought, "right"))
        return group_sum(pair_key(rows[owner], partners[at]), weight[owner] * strength[at])

    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs as arrays sorted by article_idx: (article_idx, partner_idx, strength), built once."""
        require_fitted(self, self.pairs)
        if self._arrays is None:
            pairs = self.pairs.sort("article_idx", maintain_order=True)
            self._arrays = tuple(pairs[c].to_numpy() for c in ("article_idx", "partner_idx", "strength"))
        return self._arrays

    def _partners(self) -> tuple[np.ndarray, np.ndarray]:
        """The pairs by partner: (partner_idx sorted, article_idx), built once."""
        if self._by_partner is None:
            self._lookup()  # the not-fitted error
            ordered = self.pairs.select("partner_idx", "article_idx").sort("partner_idx", "article_idx")
            self._by_partner = ordered["partner_idx"].to_numpy(), ordered["article_idx"].to_numpy()
        return self._by_partner

    def bought_with(self, article_idx: int) -> np.ndarray:
        """Articles that have `article_idx` among their partners: buying one of them proposes it."""
        keys, values = self._partners()
        first, last = equal_range(keys, article_idx)
        return values[first:last]

    def recommend(self, query: Query, k: int) -> Recs:
        history = query.arrays()
        keys, scores = self.candidates(history)
        return Recs.top_k(keys, scores, len(query), k, owned=history.owned() if self.config.exclude_bought else None)

    def save(self, directory: Path) -> None:
        save_config_and_table(directory, self.config, self.pairs, PAIRS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config, pairs = load_config_and_table(directory, BoughtTogetherConfig, PAIRS_FILE)
        model = cls(config)
        model.pairs = pairs
        model._partners()  # a loaded model answers: both lookups now, not in a served customer's request
        return model
