"""Customer and article features as of a date, checked against answers worked out by hand."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hmrec.store.arrays import days_before
from hmrec.store.features import (
    ITEM_FEATURE_COLUMNS,
    USER_FEATURE_COLUMNS,
    index_groups,
    item_features,
    item_features_on,
    user_feature_arrays,
    user_features,
)


def numpy_user_features(history: pl.DataFrame, articles: pl.DataFrame, as_of: date, key: str) -> pl.DataFrame:
    """`user_feature_arrays` (one array per query row) in the shape of `user_features` (a row per key that bought
    before as_of, the tables' dtypes), so both implementations answer the same checks."""
    keys = history[key].to_numpy().astype(np.int64)
    arrays = user_feature_arrays(keys, days_before(history["t_dat"].to_numpy(), as_of),
                                 history["article_idx"].to_numpy(), history["price"].to_numpy(),
                                 history["sales_channel_id"].to_numpy(), index_groups(articles),
                                 int(keys.max()) + 1 if keys.size else 0)
    bought = ~np.isnan(arrays["purchases_all"])
    dtype = {c: pl.Float32 if c in ("avg_price", "online_share") else pl.Int32 for c in USER_FEATURE_COLUMNS}
    return pl.DataFrame([pl.Series(key, np.flatnonzero(bought), dtype=history.schema[key])] + [
        pl.Series(c, arrays[c][bought], nan_to_null=True).cast(dtype[c]) for c in USER_FEATURE_COLUMNS])


# Two implementations: Polars for a store's worth of rows, numpy for the rows of a query
BOTH = pytest.mark.parametrize("implementation", [user_features, numpy_user_features])

AS_OF = date(2020, 9, 22)
ARTICLES = pl.DataFrame(
    {"article_idx": [0, 1, 2, 3], "index_group_no": [1, 2, 2, 1]}, schema={"article_idx": pl.Int32, "index_group_no": pl.Int32}
)


def purchases(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"customer_idx": pl.Int32, "t_dat": pl.Date, "article_idx": pl.Int32, "price": pl.Float32,
                "sales_channel_id": pl.Int8},
        orient="row",
    )


HISTORY = purchases([
    (0, date(2020, 9, 22), 0, 9.99, 2),  # ON the as-of day: must be ignored
    (0, date(2020, 9, 21), 0, 0.10, 2),  # 1 day before: in the 1-week window
    (0, date(2020, 9, 15), 1, 0.20, 1),  # 7 days before: still in the 1-week window
    (0, date(2020, 9, 14), 1, 0.30, 2),  # 8 days: 4 weeks, not 1
    (0, date(2020, 6, 30), 2, 0.40, 1),  # 84 days: the last day of the 12-week window
    (0, date(2020, 6, 29), 0, 0.50, 2),  # 85 days: ever only
    (1, date(2020, 9, 20), 2, 0.10, 1),
    (2, date(2020, 9, 22), 0, 0.10, 1),  # only on the as-of day: absent from the answer
    (3, date(2020, 9, 1), 0, 0.20, 1),  # one purchase in group 1, one in group 2: the tie goes to group 1
    (3, date(2020, 9, 2), 1, 0.20, 1),
])


@BOTH
def test_user_features_by_hand(implementation):
    got = implementation(HISTORY, ARTICLES, AS_OF, "customer_idx")
    assert got.columns == ["customer_idx", *USER_FEATURE_COLUMNS]
    assert got["customer_idx"].to_list() == [0, 1, 3]
    c0, c1, c3 = got.to_dicts()
    assert c0 == pytest.approx({
        "customer_idx": 0, "purchases_1w": 2, "purchases_4w": 3, "purchases_12w": 4, "purchases_all": 5,
        "days_since_last_purchase": 1, "days_since_first_purchase": 85, "avg_price": 0.3, "online_share": 0.6,
        "favourite_index_group": 2, "distinct_articles": 3,
    })
    assert c1 == pytest.approx({
        "customer_idx": 1, "purchases_1w": 1, "purchases_4w": 1, "purchases_12w": 1, "purchases_all": 1,
        "days_since_last_purchase": 2, "days_since_first_purchase": 2, "avg_price": 0.1, "online_share": 0.0,
        "favourite_index_group": 2, "distinct_articles": 1,
    })
    assert (c3["purchases_1w"], c3["purchases_4w"], c3["favourite_index_group"]) == (0, 2, 1)


def test_user_features_dtypes():
    schema = user_features(HISTORY, ARTICLES, AS_OF).schema
    assert schema["avg_price"] == schema["online_share"] == pl.Float32
    assert {schema[c] for c in USER_FEATURE_COLUMNS if c not in ("avg_price", "online_share")} == {pl.Int32}


def test_user_features_for_one_live_customer_match_the_batch():
    """The service passes one customer's history keyed by query row; the answer is the same as in batch."""
    batch = user_features(HISTORY, ARTICLES, AS_OF).filter(pl.col("customer_idx") == 0).drop("customer_idx")
    live_history = HISTORY.filter(pl.col("customer_idx") == 0).drop("customer_idx").with_columns(
        pl.lit(0, dtype=pl.UInt32).alias("row")
    )
    live = user_features(live_history.lazy(), ARTICLES, AS_OF, key="row")
    assert live.columns[0] == "row"
    assert live.drop("row").to_dicts() == batch.to_dicts()


@BOTH
def test_user_features_of_no_history_is_empty(implementation):
    got = implementation(HISTORY.filter(pl.col("t_dat") >= AS_OF), ARTICLES, AS_OF, "customer_idx")
    assert got.height == 0
    assert got.columns == ["customer_idx", *USER_FEATURE_COLUMNS]


def test_user_feature_arrays_leave_rows_without_purchases_empty():
    """Query rows 0..n-1 each get a value, nan where the row bought nothing before as_of (as a left join of the
    table would leave them null)."""
    got = numpy_user_features(HISTORY, ARTICLES, AS_OF, "customer_idx")
    arrays = user_feature_arrays(np.array([1, 1]), np.array([0, 3]), np.array([0, 1]), np.array([1.0, 2.0]),
                                 np.array([2, 2]), index_groups(ARTICLES), 3)
    assert got["customer_idx"].to_list() == [0, 1, 3]  # customer 2 bought only on the as-of day
    for column in USER_FEATURE_COLUMNS:
        assert np.isnan(arrays[column][[0, 2]]).all(), column
    assert arrays["purchases_all"][1] == 1 and arrays["days_since_last_purchase"][1] == 3  # day 0 is ignored
    assert arrays["favourite_index_group"][1] == 2


def test_user_features_implementations_agree_on_random_histories():
    """The numpy path (queries) and the Polars path (whole stores) give the same values on histories with ties,
    unknown articles and articles without an index group."""
    rng = np.random.default_rng(3)
    n = 1500
    history = pl.DataFrame({
        "row": rng.integers(0, 60, n).astype(np.uint32),
        "t_dat": np.datetime64("2020-03-01") + rng.integers(0, 200, n).astype("timedelta64[D]"),
        "article_idx": rng.integers(0, 45, n).astype(np.int32),  # 40..44 are not in the articles table
        "price": rng.random(n).astype(np.float32),
        "sales_channel_id": rng.integers(1, 3, n).astype(np.int8),
    })
    groups = pl.Series(rng.integers(1, 5, 40), dtype=pl.Int32).scatter([3, 7], None)
    articles = pl.DataFrame({"article_idx": np.arange(40, dtype=np.int32), "index_group_no": groups})
    for table in (articles, articles.reverse()):  # row i need not hold article_idx i
        polars_answer = user_features(history, table, AS_OF, "row")
        numpy_answer = numpy_user_features(history, table, AS_OF, "row")
        assert_frame_equal(numpy_answer, polars_answer, check_exact=False, rel_tol=1e-6)


SALES = purchases([
    (0, date(2020, 9, 22), 0, 9.99, 2),  # ON the as-of day: must be ignored
    (0, date(2020, 9, 21), 0, 0.10, 2),
    (1, date(2020, 9, 21), 0, 0.30, 1),
    (0, date(2020, 8, 1), 1, 0.20, 2),  # 52 days before
    (0, date(2020, 9, 10), 1, 0.40, 2),  # 12 days before
])


def test_item_features_by_hand():
    got = item_features(SALES, ARTICLES, AS_OF)
    assert got.columns == ["article_idx", *ITEM_FEATURE_COLUMNS]
    a0, a1, a2, a3 = got.to_dicts()
    assert a0 == pytest.approx({
        "article_idx": 0, "sales_1w": 2, "sales_4w": 2, "sales_12w": 2, "sales_all": 2,
        "days_since_first_sale": 1, "days_since_last_sale": 1, "mean_sale_price": 0.2, "buyers": 2,
        "online_sale_share": 0.5,
    })
    assert a1 == pytest.approx({
        "article_idx": 1, "sales_1w": 0, "sales_4w": 1, "sales_12w": 2, "sales_all": 2,
        "days_since_first_sale": 52, "days_since_last_sale": 12, "mean_sale_price": 0.3, "buyers": 1,
        "online_sale_share": 1.0,
    })
    never = {"article_idx": 2, "sales_1w": 0, "sales_4w": 0, "sales_12w": 0, "sales_all": 0,
             "days_since_first_sale": None, "days_since_last_sale": None, "mean_sale_price": None, "buyers": 0,
             "online_sale_share": None}
    assert a2 == never
    assert a3 == {**never, "article_idx": 3}


def test_item_features_keep_article_order_and_dtypes():
    shuffled = ARTICLES.reverse()
    got = item_features(SALES.lazy(), shuffled, AS_OF)
    assert got["article_idx"].to_list() == [3, 2, 1, 0]
    assert got.schema["mean_sale_price"] == got.schema["online_sale_share"] == pl.Float32
    assert got.schema["sales_all"] == got.schema["days_since_first_sale"] == got.schema["buyers"] == pl.Int32


def test_daily_item_features_equal_one_pass_per_day():
    """The two-tower's daily snapshots, from one pass before the first day and increments, equal `item_features`
    computed day by day: repeat buyers before and inside the days, articles first sold inside them or never, the
    windows' edges, an article outside the table; and in any order of the days asked."""
    rng = np.random.default_rng(11)
    n = 3000
    sales = pl.DataFrame({
        "customer_idx": rng.integers(0, 80, n).astype(np.int32),
        "t_dat": np.datetime64("2020-05-01") + rng.integers(0, 150, n).astype("timedelta64[D]"),
        "article_idx": np.minimum(rng.geometric(0.08, n) - 1, 44).astype(np.int32),  # 40..44: not in the table
        "price": rng.random(n).astype(np.float32),
        "sales_channel_id": rng.integers(1, 3, n).astype(np.int8),
    })
    late = purchases([(5, date(2020, 9, 20), 38, 0.5, 2), (6, date(2020, 9, 24), 39, 0.25, 1)])
    sales = pl.concat([sales, late.select(sales.columns)])
    articles = pl.DataFrame({"article_idx": np.arange(40, dtype=np.int32)})
    days = [date(2020, 9, 1) + pd for pd in (np.arange(0, 28, 3) * np.timedelta64(1, "D")).tolist()]
    days = [date(2020, 9, 25), *days[::-1]]
    for day, got in zip(days, item_features_on(sales, articles, days), strict=True):
        assert_frame_equal(got, item_features(sales, articles, day), check_exact=False, rel_tol=1e-6)
    assert item_features_on(sales, articles, []) == []
