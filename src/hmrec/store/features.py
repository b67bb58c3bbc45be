"""Customer and article features as of a date, from purchases strictly before it; for a whole store or one customer."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.store.arrays import days_before, group_max, pair_key, split_key

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

SMALL_HISTORY = 2_000  # user_features of at most this many purchases are computed in numpy

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
    """One row per `key` that bought before `as_of` (customers with no history are absent: left-join and fill),
    sorted by key.

    history: key, t_dat, article_idx, price, sales_channel_id (rows on or after as_of are ignored).
    articles: article_idx, index_group_no (any order).
    favourite_index_group: the index_group_no bought most often; ties go to the smallest number.
    """
    if isinstance(history, pl.DataFrame) and history.height <= SMALL_HISTORY:
        return _small_user_features(history, articles, as_of, key)
    return _user_features(history, articles, as_of, key)


def _user_features(history: Frame, articles: pl.DataFrame, as_of: date, key: str) -> pl.DataFrame:
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


def _small_user_features(history: pl.DataFrame, articles: pl.DataFrame, as_of: date, key: str) -> pl.DataFrame:
    """`_user_features` in numpy, for a live query's few purchases: Polars' per-operation overhead, not the rows,
    is what one customer pays for."""
    past = history.filter(pl.col("t_dat") < as_of)
    keys, inverse = np.unique(past[key].to_numpy().astype(np.int64), return_inverse=True)
    n = keys.size
    days = days_before(past["t_dat"].to_numpy(), as_of)
    count = np.bincount(inverse, minlength=n)
    columns = {key: pl.Series(key, keys, dtype=history.schema[key])}
    for name, window in WINDOWS.items():
        columns[f"purchases_{name}"] = np.bincount(inverse, weights=days <= window, minlength=n)
    columns["purchases_all"] = count
    columns["days_since_last_purchase"] = -group_max(inverse, -days)[1]
    columns["days_since_first_purchase"] = group_max(inverse, days)[1]
    columns["avg_price"] = np.bincount(inverse, weights=past["price"].to_numpy(), minlength=n) / np.maximum(count, 1)
    online = past["sales_channel_id"].to_numpy() == ONLINE_CHANNEL
    columns["online_share"] = np.bincount(inverse, weights=online, minlength=n) / np.maximum(count, 1)
    columns["favourite_index_group"] = _favourite_group(past, articles, inverse, n)
    pairs = np.unique(pair_key(inverse, past["article_idx"].to_numpy()))
    columns["distinct_articles"] = np.bincount(split_key(pairs)[0], minlength=n)
    schema = {**{c: pl.Int32 for c in USER_FEATURE_COLUMNS}, "avg_price": pl.Float32, "online_share": pl.Float32}
    return pl.DataFrame([columns[key]] + [pl.Series(c, columns[c], dtype=schema[c], strict=False)
                                          for c in USER_FEATURE_COLUMNS])


def _favourite_group(past: pl.DataFrame, articles: pl.DataFrame, inverse: np.ndarray, n: int) -> pl.Series:
    """Per key (numbered by `inverse`): the index_group_no bought most often, ties to the smallest; null if none."""
    bought = past["article_idx"].cast(pl.Int64)
    rows = articles[bought.clip(0, max(articles.height - 1, 0)).to_numpy()] if articles.height else articles
    if rows.height == bought.len() and rows["article_idx"].cast(pl.Int64).equals(bought, check_names=False):
        groups = rows["index_group_no"]  # the store's tables hold article_idx i in row i: a gather, not a join
    else:
        groups = pl.DataFrame({"article_idx": bought}).join(
            articles.select(pl.col("article_idx").cast(pl.Int64), "index_group_no"),
            on="article_idx", how="left", maintain_order="left",
        )["index_group_no"]
    known = groups.is_not_null().to_numpy()
    owner, group = inverse[known], groups.to_numpy()[known].astype(np.int64)
    favourite = np.full(n, -1, dtype=np.int64)
    if owner.size:
        numbers, code = np.unique(group, return_inverse=True)  # dense codes keep the group order
        pairs, counts = np.unique(owner * numbers.size + code, return_counts=True)
        who, code = pairs // numbers.size, pairs % numbers.size
        order = np.lexsort((code, -counts, who))  # per key: most bought first, then the smallest number
        first = order[np.append(True, who[order][1:] != who[order][:-1])]
        favourite[who[first]] = numbers[code[first]]
    return pl.Series(favourite, dtype=pl.Int32).set(pl.Series(favourite < 0), None)


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
