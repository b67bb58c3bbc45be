"""Other colours: the other variants (same product_code) of products a customer bought, recent ones first."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec.data import HistoryArrays, Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Reason, Recommender
from hmrec.store.arrays import decay, expand, group_max, pair_key, split_key

log = logging.getLogger(__name__)

VARIANTS_FILE = "variants.parquet"


@dataclass
class OtherColoursConfig:
    """history_days: how far back a customer's purchases count; half_life_days: how fast they fade.
    popularity_days: window of the variants' recent sales; active_days: only variants sold in this window
    before the cutoff are proposed (None proposes every variant, sold or not);
    include_bought: also propose variants the customer already bought."""

    history_days: int = 180
    half_life_days: float = 14.0
    popularity_days: int = 7
    active_days: int | None = 28
    include_bought: bool = False


def save_config_and_table(directory: Path, config, table: pl.DataFrame, table_file: str) -> None:
    """A source's fitted state as its config (JSON) and one table (Parquet)."""
    write_config(directory, config)
    table.write_parquet(directory / table_file)


def load_config_and_table(directory: Path, config_type: type, table_file: str) -> tuple:
    """What `save_config_and_table` wrote: (config, table)."""
    return read_config(directory, config_type), pl.read_parquet(directory / table_file)


class OtherColoursRecommender(Recommender):
    """Scores a variant by the recency of the customer's purchase of its product times (1 + its recent sales)."""

    name = "other_colours"
    personal_only = True  # proposes from the customer's own purchases only
    reason = Reason.OTHER_COLOUR

    def __init__(self, config: OtherColoursConfig | None = None):
        self.config = config or OtherColoursConfig()
        self.variants: pl.DataFrame | None = None  # article_idx, product_code, sales
        self._arrays: tuple[np.ndarray, ...] | None = None  # _lookup()'s arrays of `variants`

    def fit(self, data: TrainData) -> Self:
        cfg = self.config
        recent = data.transactions.lazy().filter(
            pl.col("t_dat") >= data.cutoff - timedelta(days=cfg.popularity_days)
        )
        sales = recent.group_by("article_idx").agg(pl.len().cast(pl.Float32).alias("sales"))
        variants = (
            data.articles.lazy()
            .select(pl.col("article_idx").cast(pl.Int32), pl.col("product_code").cast(pl.Int64))
            .join(sales, on="article_idx", how="left")
            .with_columns(pl.col("sales").fill_null(0.0))
        )
        if cfg.active_days is not None:
            active = data.transactions.lazy().filter(pl.col("t_dat") >= data.cutoff - timedelta(days=cfg.active_days))
            variants = variants.join(active.select("article_idx").unique(), on="article_idx", how="semi")
        self.variants, self._arrays = variants.sort("article_idx").collect(), None
        log.info("other_colours: %d proposable variants", self.variants.height)
        return self

    def candidates(self, history: HistoryArrays) -> tuple[np.ndarray, np.ndarray]:
        """`pair_key(row, article_idx)` of every proposable variant of the rows' recent products, and its
        score, float64 (distinct keys, unsorted; bought articles still in)."""
        cfg = self.config
        product_of, products, articles, sales = self._lookup()
        recent = history.within(cfg.history_days)
        known = recent.article_idx < product_of.size
        product = np.full(recent.article_idx.size, -1, dtype=np.int64)
        product[known] = product_of[recent.article_idx[known]]
        bought = product >= 0
        keys, recency = group_max(pair_key(recent.row[bought], product[bought]),
                                  decay(recent.days[bought], cfg.half_life_days, offset=1))
        rows, product = split_key(keys)
        owner, at = expand(np.searchsorted(products, product, "left"), np.searchsorted(products, product, "right"))
        return pair_key(rows[owner], articles[at]), recency[owner] * (1.0 + sales[at])

    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(dense product number of each article_idx, -1 if not proposable; the variants' product numbers,
        sorted; their article_idx; their sales), built once per fitted table."""
        require_fitted(self, self.variants)
        if self._arrays is None:
            variants = self.variants.sort("product_code", "article_idx")
            _, products = np.unique(variants["product_code"].to_numpy(), return_inverse=True)
            articles = variants["article_idx"].to_numpy().astype(np.int64)
            product_of = np.full(int(articles.max(initial=-1)) + 1, -1, dtype=np.int64)
            product_of[articles] = products
            self._arrays = (product_of, products.astype(np.int64), articles, variants["sales"].to_numpy())
        return self._arrays

    def recommend(self, query: Query, k: int) -> Recs:
        history = query.arrays()
        keys, scores = self.candidates(history)
        return Recs.top_k(keys, scores, len(query), k, owned=None if self.config.include_bought else history.owned())

    def save(self, directory: Path) -> None:
        save_config_and_table(directory, self.config, self.variants, VARIANTS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config, variants = load_config_and_table(directory, OtherColoursConfig, VARIANTS_FILE)
        model = cls(config)
        model.variants = variants
        return model
