"""Ranker features for (customer row, candidate article) pairs: source ranks and scores, user x article
interactions from the query's history, article statistics and customer statistics, all as of `as_of`."""

from __future__ import annotations

from datetime import date

import polars as pl

from hmrec.recommenders.base import Query
from hmrec.store.features import item_features, user_features

GROUP_COLUMNS = ("product_group_name", "index_group_name")


def article_table(transactions: pl.DataFrame, articles: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """One row per article of `articles`: the attributes that interactions use, and `item_features` as of
    `as_of` (from the rows of `transactions` strictly before it), prefixed `item_`."""
    stats = item_features(transactions, articles, as_of)
    stats = stats.rename({c: f"item_{c}" for c in stats.columns if c != "article_idx"})
    attrs = articles.select(
        pl.col("article_idx").cast(pl.Int32),
        pl.col("product_code").cast(pl.Int64),
        pl.col("index_group_no").cast(pl.Int32),
        *[pl.col(c).cast(pl.String).fill_null("") for c in GROUP_COLUMNS],
    )
    return attrs.join(stats, on="article_idx", how="left").sort("article_idx")


def article_rows(articles: pl.DataFrame, article_idx: pl.Series) -> pl.DataFrame:
    """The rows of `articles` (row i holds article_idx i, as `article_table` makes it) for `article_idx`, in
    that order: a gather, where a join would hash the whole table on every query."""
    rows = articles[article_idx.to_numpy()]
    if not rows["article_idx"].cast(pl.Int64).equals(article_idx.cast(pl.Int64).rename("article_idx")):
        raise ValueError(f"the articles table ({articles.height} rows) does not hold article_idx i in row i; "
                         "build it with article_table()")
    return rows


def _history(query: Query, articles: pl.DataFrame) -> pl.DataFrame:
    attrs = article_rows(articles, query.history["article_idx"]).select("product_code", *GROUP_COLUMNS)
    days = (pl.lit(query.as_of) - pl.col("t_dat")).dt.total_days().alias("days")
    return query.history.with_columns(days).hstack(attrs)


def user_table(query: Query, articles: pl.DataFrame) -> pl.LazyFrame:
    """Per query row: age and `user_features` from the row's history (activity, recency, spend), prefixed
    `user_`; counts are 0 for a customer with no history. `articles`: at least article_idx, index_group_no,
    row i holding article_idx i."""
    bought = article_rows(articles, query.history["article_idx"].unique())
    stats = user_features(query.history, bought, query.as_of, key="row")
    stats = stats.rename({c: f"user_{c}" for c in stats.columns if c != "row"})
    counts = [c for c in stats.columns if c.startswith("user_purchases_") or c == "user_distinct_articles"]
    rows = query.customers.lazy().with_row_index("row").select(
        pl.col("row").cast(pl.UInt32), pl.col("age").cast(pl.Float32).alias("user_age")
    )
    stats = stats.lazy().with_columns(pl.col("row").cast(pl.UInt32))
    return rows.join(stats, on="row", how="left").with_columns(pl.col(counts).fill_null(0))


def interaction_features(candidates: pl.LazyFrame, history: pl.LazyFrame) -> pl.LazyFrame:
    """User x article: times bought and days since, same product_code, share of the group bought."""
    by_article = history.group_by("row", "article_idx").agg(
        pl.len().alias("times_bought"), pl.col("days").min().alias("days_since_bought")
    )
    by_product = history.group_by("row", "product_code").agg(
        pl.len().alias("product_times_bought"), pl.col("days").min().alias("days_since_product")
    )
    out = candidates.join(by_article, on=["row", "article_idx"], how="left").join(
        by_product, on=["row", "product_code"], how="left"
    )
    for column in GROUP_COLUMNS:
        share = history.group_by("row", column).agg(pl.len().alias("n")).with_columns(
            (pl.col("n") / pl.col("n").sum().over("row")).alias(f"share_{column}")
        )
        out = out.join(share.drop("n"), on=["row", column], how="left")
    return out.with_columns(
        pl.col("times_bought", "product_times_bought").fill_null(0),
        *[pl.col(f"share_{c}").fill_null(0.0) for c in GROUP_COLUMNS],
    )


def build_features(candidates: pl.DataFrame, query: Query, articles: pl.DataFrame) -> pl.DataFrame:
    """Candidates (`row, article_idx, <source>_rank/_score`) joined with every feature; `articles` is
    `article_table()` as of the query's date (or the model's cutoff for a live query). Sorted by row,
    then article_idx."""
    history = _history(query, articles).lazy()
    frame = candidates.hstack(article_rows(articles, candidates["article_idx"]).drop("article_idx")).lazy()
    frame = interaction_features(frame, history)
    frame = frame.join(user_table(query, articles), on="row", how="left")
    frame = frame.with_columns(
        (pl.col("item_mean_sale_price") / pl.col("user_avg_price")).alias("price_ratio"),
    )
    return frame.drop("product_code", *GROUP_COLUMNS).sort("row", "article_idx").collect()


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model inputs: every numeric column except the keys and the label."""
    skip = {"row", "article_idx", "label", "customer_idx"}
    return [c for c, t in frame.schema.items() if c not in skip and t.is_numeric()]
