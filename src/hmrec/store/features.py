"""Customer and article features as of a date, from purchases strictly before it; for a whole store or one customer."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

# Windows ending the day before `as_of`: "1w" counts purchases on as_of-7 .. as_of-1.
WINDOWS = {"1w": 7, "4w": 28, "12w": 84}
ONLINE_CHANNEL = 2

USER_FEATURE_COLUMNS = (
    *(f"purchases_{name}" for name in WINDOWS), "purchases_all",
    "days_since_last_purchase", "days_since_first_purchase", "avg_price", "online_share",
    "favourite_index_group", "distinct_articles",
)
ITEM_FEATURE_COLUMNS = (
    *(f"sales_{name}" for name in WINDOWS), "sales_all",
    "days_since_first_sale", "days_since_last_sale", "mean_sale_price", "buyers", "online_sale_share",
)

Frame = pl.DataFrame | pl.LazyFrame


def _before(rows: Frame, as_of: date) -> pl.LazyFrame:
    return rows.lazy().filter(pl.col("t_dat") < as_of)


def _activity(as_of: date, prefix: str) -> list[pl.Expr]:
    """Counts in each window and ever, and whole days since the last and first row (all Int32)."""
    counts = [
        (pl.col("t_dat") >= as_of - timedelta(days=days)).sum().cast(pl.Int32)
        .alias(f"{prefix}_{name}")
        for name, days in WINDOWS.items()
    ]
    return counts + [pl.len().cast(pl.Int32).alias(f"{prefix}_all")]


def _days_since(as_of: date, agg: pl.Expr) -> pl.Expr:
    return (pl.lit(as_of, dtype=pl.Date) - agg).dt.total_days().cast(pl.Int32)


def user_features(history: Frame, articles: pl.DataFrame, as_of: date, key: str = "customer_idx") -> pl.DataFrame:
    """One row per `key` that bought before `as_of` (customers with no history are absent: left-join and fill).

    history: key, t_dat, article_idx, price, sales_channel_id (rows on or after as_of are ignored).
    favourite_index_group: the index_group_no bought most often; ties go to the smallest number.
    """
    past = _before(history, as_of).select(key, "t_dat", "article_idx", "price", "sales_channel_id")
    stats = past.group_by(key).agg(
        *_activity(as_of, "purchases"),
        _days_since(as_of, pl.col("t_dat").max()).alias("days_since_last_purchase"),
        _days_since(as_of, pl.col("t_dat").min()).alias("days_since_first_purchase"),
        pl.col("price").mean().cast(pl.Float32).alias("avg_price"),
        (pl.col("sales_channel_id") == ONLINE_CHANNEL).mean().cast(pl.Float32).alias("online_share"),
        pl.col("article_idx").n_unique().cast(pl.Int32).alias("distinct_articles"),
    )
    groups = articles.lazy().select("article_idx", pl.col("index_group_no").cast(pl.Int32))
    favourite = (
        past.join(groups, on="article_idx", how="inner")
        .filter(pl.col("index_group_no").is_not_null())
        .group_by(key, "index_group_no").len()
        .sort([key, "len", "index_group_no"], descending=[False, True, False])
        .group_by(key, maintain_order=True).first()
        .select(key, pl.col("index_group_no").alias("favourite_index_group"))
    )
    joined = stats.join(favourite, on=key, how="left").sort(key)
    return joined.select(key, *USER_FEATURE_COLUMNS).collect()


def item_features(transactions: Frame, articles: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """One row per article of `articles`, in article_idx order, from sales strictly before `as_of`.

    Counts are 0 for an article never sold; days since first/last sale, price and online share are null then.
    """
    past = _before(transactions, as_of)
    stats = past.group_by("article_idx").agg(
        *_activity(as_of, "sales"),
        _days_since(as_of, pl.col("t_dat").min()).alias("days_since_first_sale"),
        _days_since(as_of, pl.col("t_dat").max()).alias("days_since_last_sale"),
        pl.col("price").mean().cast(pl.Float32).alias("mean_sale_price"),
        pl.col("customer_idx").n_unique().cast(pl.Int32).alias("buyers"),
        (pl.col("sales_channel_id") == ONLINE_CHANNEL).mean().cast(pl.Float32).alias("online_sale_share"),
    )
    counts = [c for c in ITEM_FEATURE_COLUMNS if c.startswith("sales_") or c == "buyers"]
    every = articles.lazy().select(pl.col("article_idx").cast(pl.Int32))
    joined = every.join(stats, on="article_idx", how="left", maintain_order="left")
    return joined.with_columns(pl.col(counts).fill_null(0)).select("article_idx", *ITEM_FEATURE_COLUMNS).collect()
