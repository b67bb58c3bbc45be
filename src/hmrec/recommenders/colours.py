"""Other colours: the other variants (same product_code) of products a customer bought, recent ones first."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec.recommenders.base import PAD_ITEM, Query, Recommender, Recs, TrainData

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
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


def recency_weight(days_before: pl.Expr, half_life_days: float) -> pl.Expr:
    """1.0 for a purchase the day before `as_of`, halving every `half_life_days`."""
    return pl.lit(0.5) ** ((days_before - 1).clip(lower_bound=0) / half_life_days)


def days_before(query: Query) -> pl.Expr:
    return (pl.lit(query.as_of) - pl.col("t_dat")).dt.total_days()


def top_k_recs(frame: pl.DataFrame, n_rows: int, k: int) -> Recs:
    """Recs from a long frame `row, article_idx, score`; ties go to the smaller article_idx, so the
    answer is the same on every run (Recs.from_frame leaves ties in any order)."""
    ordered = frame.sort(["row", "score", "article_idx"], descending=[False, True, False])
    top = ordered.group_by("row", maintain_order=True).head(k)
    ranks = top.select(pl.int_range(pl.len()).over("row").alias("rank"))["rank"].to_numpy()
    items = np.full((n_rows, k), PAD_ITEM, dtype=np.int32)
    scores = np.full((n_rows, k), np.nan, dtype=np.float32)
    rows = top["row"].to_numpy()
    items[rows, ranks] = top["article_idx"].to_numpy()
    scores[rows, ranks] = top["score"].to_numpy()
    return Recs(items, scores)

def save_config_and_table(directory: Path, config, table: pl.DataFrame, table_file: str) -> None:
    """A source's fitted state as its config (JSON) and one table (Parquet)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
    table.write_parquet(directory / table_file)


def load_config_and_table(directory: Path, config_type: type, table_file: str) -> tuple:
    """What `save_config_and_table` wrote: (config, table)."""
    config = config_type(**json.loads((directory / CONFIG_FILE).read_text()))
    return config, pl.read_parquet(directory / table_file)


class OtherColoursRecommender(Recommender):
    """Scores a variant by the recency of the customer's purchase of its product times (1 + its recent sales)."""

    name = "other_colours"

    def __init__(self, config: OtherColoursConfig | None = None):
        self.config = config or OtherColoursConfig()
        self.variants: pl.DataFrame | None = None  # article_idx, product_code, sales

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
        self.variants = variants.sort("article_idx").collect()
        log.info("other_colours: %d proposable variants", self.variants.height)
        return self

    def candidates(self, query: Query) -> pl.DataFrame:
        """Long frame `row, article_idx, score` of every proposable variant, unsorted."""
        if self.variants is None:
            raise RuntimeError("OtherColoursRecommender.recommend called before fit or load")
        cfg = self.config
        codes = self.variants.select("article_idx", "product_code")
        bought = (
            query.history.lazy()
            .with_columns(days_before(query).alias("days"))
            .filter(pl.col("days") <= cfg.history_days)
            .join(codes.lazy(), on="article_idx", how="inner")
        )
        per_product = bought.group_by("row", "product_code").agg(
            recency_weight(pl.col("days"), cfg.half_life_days).max().alias("recency")
        )
        frame = per_product.join(self.variants.lazy(), on="product_code", how="inner").select(
            "row", "article_idx", (pl.col("recency") * (1.0 + pl.col("sales"))).cast(pl.Float32).alias("score")
        )
        if not cfg.include_bought:
            owned = query.history.lazy().select("row", "article_idx").unique()
            frame = frame.join(owned, on=["row", "article_idx"], how="anti")
        return frame.collect()

    def recommend(self, query: Query, k: int) -> Recs:
        return top_k_recs(self.candidates(query), n_rows=len(query), k=k)

    def save(self, directory: Path) -> None:
        save_config_and_table(directory, self.config, self.variants, VARIANTS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        config, variants = load_config_and_table(directory, OtherColoursConfig, VARIANTS_FILE)
        model = cls(config)
        model.variants = variants
        return model
