"""Customer and article features as of a date, from purchases strictly before it; for a whole store or one customer."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.store.arrays import distinct, pair_key, split_key

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
    """One row per `key` that bought before `as_of` (customers with no history are absent: left-join and fill),
    sorted by key.

    history: key, t_dat, article_idx, price, sales_channel_id (rows on or after as_of are ignored).
    articles: article_idx, index_group_no (any order).
    favourite_index_group: the index_group_no bought most often; ties go to the smallest number.
    A query's customers get the same features from `user_feature_arrays`, without Polars' per-call overhead.
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


def index_groups(articles: pl.DataFrame) -> np.ndarray:
    """index_group_no by article_idx (any row order), -1 where it is missing; for `user_feature_arrays`."""
    idx = articles["article_idx"].to_numpy().astype(np.int64)
    groups = np.full(int(idx.max()) + 1 if idx.size else 0, -1, dtype=np.int64)
    groups[idx] = articles["index_group_no"].fill_null(-1).to_numpy()
    return groups


def user_feature_arrays(
    row: np.ndarray, days: np.ndarray, article_idx: np.ndarray, price: np.ndarray, channel: np.ndarray,
    groups: np.ndarray, n: int,
) -> dict[str, np.ndarray]:
    """`user_features` of query rows 0..n-1 in numpy: a live query is a few dozen purchases, and every Polars call
    has a fixed cost that dwarfs them. The purchases: owning `row`, `days` before as_of (those at < 1 day are
    ignored), `article_idx`, `price`, `sales_channel_id`; `groups` from `index_groups`.

    One array per USER_FEATURE_COLUMNS, row i for row i: float64 (avg_price and online_share float32, as the
    tables hold them), nan for a row without purchases and where the tables hold null.
    """
    past = days >= 1
    row, days, article_idx = row[past].astype(np.int64), days[past], article_idx[past].astype(np.int64)
    count = np.bincount(row, minlength=n)
    absent = count == 0

    def per_row(values: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        values = values.astype(dtype)
        values[absent] = np.nan
        return values

    columns = {f"purchases_{name}": per_row(np.bincount(row, weights=days <= window, minlength=n))
               for name, window in WINDOWS.items()}
    columns["purchases_all"] = per_row(count)
    newest, oldest = np.full(n, np.iinfo(np.int64).max), np.zeros(n, dtype=np.int64)
    np.minimum.at(newest, row, days)
    np.maximum.at(oldest, row, days)
    columns["days_since_last_purchase"] = per_row(newest)
    columns["days_since_first_purchase"] = per_row(oldest)
    spent = np.bincount(row, weights=price[past], minlength=n)
    columns["avg_price"] = per_row(spent / np.maximum(count, 1), np.float32)
    online = np.bincount(row, weights=channel[past] == ONLINE_CHANNEL, minlength=n)
    columns["online_share"] = per_row(online / np.maximum(count, 1), np.float32)
    columns["favourite_index_group"] = _favourite_group(row, article_idx, groups, n)
    columns["distinct_articles"] = per_row(np.bincount(split_key(distinct(pair_key(row, article_idx)))[0],
                                                       minlength=n))
    return {name: columns[name] for name in USER_FEATURE_COLUMNS}


def _favourite_group(row: np.ndarray, article_idx: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Per row: the index group bought most often, ties to the smallest number; nan if none is known."""
    known = (article_idx >= 0) & (article_idx < groups.size)
    group = np.full(article_idx.size, -1, dtype=np.int64)
    group[known] = groups[article_idx[known]]
    known = group >= 0
    owner, group = row[known], group[known]
    favourite = np.full(n, np.nan)
    if owner.size:
        numbers, code = np.unique(group, return_inverse=True)  # dense codes keep the group order
        pairs, counts = np.unique(owner * numbers.size + code, return_counts=True)
        who, code = pairs // numbers.size, pairs % numbers.size
        order = np.lexsort((code, -counts, who))  # per row: most bought first, then the smallest number
        first = order[np.append(True, who[order][1:] != who[order][:-1])]
        favourite[who[first]] = numbers[code[first]]
    return favourite


def item_features(transactions: Frame, articles: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """One row per article of `articles`, in article_idx order, from sales strictly before `as_of`.

    Counts are 0 for an article never sold; days since first/last sale, price and online share are null then.
    Computed as one partition's `item_partials` combined; the Ray engine combines one per customer partition.
    """
    return combine_item_partials([item_partials(transactions, as_of)], articles, as_of)


PARTIAL_SUMS = ("sales_sum_price", "sales_online")


def item_partials(transactions: Frame, as_of: date) -> pl.DataFrame:
    """Per article sold before `as_of`: counts, price sum, online count, first and last day, distinct buyers.

    Every column adds up (or takes the min / max) across partitions, buyers too when the partitions split
    the customers (each customer's rows all in one partition).
    """
    return _before(transactions, as_of).group_by("article_idx").agg(
        *_activity(as_of, "sales"),
        pl.col("t_dat").min().alias("first_sale"),
        pl.col("t_dat").max().alias("last_sale"),
        pl.col("price").cast(pl.Float64).sum().alias("sales_sum_price"),
        (pl.col("sales_channel_id") == ONLINE_CHANNEL).sum().cast(pl.Int64).alias("sales_online"),
        pl.col("customer_idx").n_unique().cast(pl.Int32).alias("buyers"),
    ).collect()


def combine_item_partials(partials: list[pl.DataFrame], articles: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The one reduce: partial sums of every partition -> `item_features`' table."""
    counts = [c for c in ITEM_FEATURE_COLUMNS if c.startswith("sales_") or c == "buyers"]
    stats = pl.concat(partials).lazy().group_by("article_idx").agg(
        *[pl.col(c).sum().cast(pl.Int32) for c in counts],
        *[pl.col(c).sum() for c in PARTIAL_SUMS],
        pl.col("first_sale").min(), pl.col("last_sale").max(),
    ).with_columns(
        _days_since(as_of, pl.col("first_sale")).alias("days_since_first_sale"),
        _days_since(as_of, pl.col("last_sale")).alias("days_since_last_sale"),
        (pl.col("sales_sum_price") / pl.col("sales_all")).cast(pl.Float32).alias("mean_sale_price"),
        (pl.col("sales_online") / pl.col("sales_all")).cast(pl.Float32).alias("online_sale_share"),
    )
    every = articles.lazy().select(pl.col("article_idx").cast(pl.Int32))
    joined = every.join(stats, on="article_idx", how="left", maintain_order="left")
    return joined.with_columns(pl.col(counts).fill_null(0)).select("article_idx", *ITEM_FEATURE_COLUMNS).collect()


def item_features_on(transactions: pl.DataFrame, articles: pl.DataFrame, days: list[date]) -> list[pl.DataFrame]:
    """`item_features(transactions, articles, day)` for each of `days` (the two-tower's daily snapshots), without
    a pass over the whole history per day: one pass over the rows before the earliest day, then per day the rows
    since it and those of the longest window, added up by `combine_item_partials`.

    Distinct buyers add up too: a day's increment counts only the (article, customer) pairs bought for the first
    time since the earliest day. Counts are exact; price sums may differ from one pass in the last bit."""
    if not days:
        return []
    start, end = min(days), max(days)
    base = item_partials(transactions, start).with_columns(pl.lit(0, pl.Int32).alias(f"sales_{name}")
                                                           for name in WINDOWS)
    span = transactions.lazy().filter((pl.col("t_dat") >= start - timedelta(days=max(WINDOWS.values())))
                                      & (pl.col("t_dat") < end))
    daily = span.group_by("article_idx", "t_dat").agg(
        pl.len().cast(pl.Int32).alias("sales_all"),
        pl.col("price").cast(pl.Float64).sum().alias("sales_sum_price"),
        (pl.col("sales_channel_id") == ONLINE_CHANNEL).sum().cast(pl.Int64).alias("sales_online"),
    ).collect()
    since = span.filter(pl.col("t_dat") >= start)
    first_buys = since.group_by("article_idx", "customer_idx").agg(pl.col("t_dat").min()).join(
        _before(transactions, start).select("article_idx", "customer_idx"), on=["article_idx", "customer_idx"],
        how="anti").group_by("article_idx", "t_dat").agg(pl.len().cast(pl.Int32).alias("buyers")).collect()
    frames = []
    for day in days:
        parts = [_fill(part, base.schema) for part in _increments(daily, first_buys, start, day)]
        frames.append(combine_item_partials([base, *parts], articles, day))
    return frames


def _increments(daily: pl.DataFrame, first_buys: pl.DataFrame, start: date, as_of: date) -> list[pl.DataFrame]:
    """What `item_features_on` adds to the rows before `start` for one day `as_of`: the sales on start .. as_of - 1,
    the pairs first bought then, and the windows' counts (each with some of `item_partials`' columns)."""
    sold = daily.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < as_of)).group_by("article_idx").agg(
        pl.col("sales_all").sum(), pl.col("sales_sum_price").sum(), pl.col("sales_online").sum(),
        pl.col("t_dat").min().alias("first_sale"), pl.col("t_dat").max().alias("last_sale"))
    new = first_buys.filter(pl.col("t_dat") < as_of).group_by("article_idx").agg(pl.col("buyers").sum())
    longest = as_of - timedelta(days=max(WINDOWS.values()))
    recent = daily.filter((pl.col("t_dat") >= longest) & (pl.col("t_dat") < as_of)).group_by("article_idx").agg(
        (pl.col("sales_all") * (pl.col("t_dat") >= as_of - timedelta(days=days))).sum().alias(f"sales_{name}")
        for name, days in WINDOWS.items())
    return [sold, new, recent]


def _fill(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """`frame` in `schema`'s columns and types, the columns it lacks zeros (counts, sums) or nulls (dates)."""
    missing = [pl.lit(None if dtype == pl.Date else 0, dtype).alias(name)
               for name, dtype in schema.items() if name not in frame.columns]
    return frame.with_columns(missing).select(pl.col(name).cast(dtype) for name, dtype in schema.items())
