"""The re-buy features of the ranker on a history whose answers are worked out by hand."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.data import HistoryArrays
from hmrec.ranking import features
from hmrec.ranking.features import (
    group_counts,
    order_features,
    product_order_features,
    purchase_order,
    repeat_features,
    repeat_stats,
)
from hmrec.store.arrays import find_sorted, newest_lines, pair_key


def test_repeat_features_by_hand():
    """Row 0 bought article 5 30, 20 and 10 days ago and article 6 10 days ago (3 shopping days, one re-buy every
    10 days); row 1 bought article 7 once, 3 days ago."""
    h = HistoryArrays(row=np.array([0, 0, 0, 0, 1]), article_idx=np.array([5, 5, 5, 6, 7]),
                      days=np.array([30, 20, 10, 10, 3]))
    rows, items = np.array([0, 0, 0, 1]), np.array([5, 6, 9, 7])
    days_since = np.array([10.0, 10.0, np.nan, 3.0])
    out = repeat_features(h, rows, items, days_since)
    np.testing.assert_allclose(out["day_share"], [1.0, 1 / 3, 0.0, 1.0])
    np.testing.assert_allclose(out["rebuy_interval"], [10.0, np.nan, np.nan, np.nan])
    np.testing.assert_allclose(out["rebuy_due"], [1.0, 1.0, np.nan, np.nan])  # row 1 never re-bought anything
    np.testing.assert_allclose(out["user_shopping_days"], [3, 3, 3, 1])
    np.testing.assert_allclose(out["user_repeat_share"], [0.5, 0.5, 0.5, 0.0])  # row 0: article 5 of 5 and 6


def test_repeat_features_of_an_empty_history_are_zero_or_missing():
    h = HistoryArrays(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    out = repeat_features(h, np.array([0]), np.array([3]), np.array([np.nan]))
    assert out["day_share"].tolist() == [0.0]
    assert np.isnan(out["rebuy_interval"]).all() and np.isnan(out["rebuy_due"]).all()
    assert out["user_shopping_days"].tolist() == [0.0] and out["user_repeat_share"].tolist() == [0.0]


def test_order_features_by_hand():
    """Row 0's lines, newest first: day 2: articles 8, 9; day 5: article 5; day 9: articles 5, 6, 6. A line's position
    is the number of the customer's lines on newer days (both lines of day 2 are at 0), so article 5 sits at
    positions 2 and 3, article 6 twice at 3, article 8 at 0; row 1 bought article 5 once, 4 days ago."""
    h = HistoryArrays(row=np.array([0, 0, 0, 0, 0, 0, 1]), article_idx=np.array([6, 5, 8, 5, 9, 6, 5]),
                      days=np.array([9, 5, 2, 9, 2, 9, 4]))
    rows, items = np.array([0, 0, 0, 0, 1, 1]), np.array([5, 6, 8, 7, 5, 6])
    out = order_features(h, rows, items, half_lives=(2,))
    np.testing.assert_allclose(out["lines_since_bought"], [2, 3, 0, np.nan, 0, np.nan])
    np.testing.assert_allclose(out["line_weight_2"], [0.5 + 0.5 ** 1.5, 2 * 0.5 ** 1.5, 1.0, 0.0, 1.0, 0.0])


def test_line_counts_count_the_newest_lines_alike_and_share_the_day_the_window_ends_in():
    """The history of `test_order_features_by_hand`. Row 0's 2 newest lines are day 2's (articles 8 and 9); its 4
    newest are those, day 5's article 5 and one of day 9's three lines, which one unknown: a third of each (article
    5 once, article 6 twice). Row 1's one line is inside both windows."""
    h = HistoryArrays(row=np.array([0, 0, 0, 0, 0, 0, 1]), article_idx=np.array([6, 5, 8, 5, 9, 6, 5]),
                      days=np.array([9, 5, 2, 9, 2, 9, 4]))
    rows, items = np.array([0, 0, 0, 0, 1, 1]), np.array([5, 6, 8, 7, 5, 6])
    out = order_features(h, rows, items, half_lives=(2,), windows=(2, 4))
    np.testing.assert_allclose(out["line_count_2"], [0, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(out["line_count_4"], [1 + 1 / 3, 2 / 3, 1, 0, 1, 0])
    assert "line_count_2" not in order_features(h, rows, items, half_lives=(2,))  # no windows: no counts


def test_product_order_features_by_hand():
    """The history of `test_order_features_by_hand` with articles 5, 6 and 7 one product (0) and 8, 9 another (1).
    Row 0's lines, newest first: day 2: product 1 twice (position 0); day 5: product 0 (position 2); day 9: product
    0 three times (position 3). Row 1 bought product 0 once, 4 days ago."""
    h = HistoryArrays(row=np.array([0, 0, 0, 0, 0, 0, 1]), article_idx=np.array([6, 5, 8, 5, 9, 6, 5]),
                      days=np.array([9, 5, 2, 9, 2, 9, 4]))
    product = np.array([2, 2, 2, 2, 2, 0, 0, 0, 1, 1])  # article_idx -> product
    rows, items = np.array([0, 0, 1, 1]), np.array([7, 9, 6, 8])  # 7 and 6: never bought as such
    out = product_order_features(h, rows, items, product)
    np.testing.assert_allclose(out["lines_since_product"], [2, 0, 0, np.nan])
    np.testing.assert_allclose(out["product_line_weight_8"], [0.5 ** 0.25 + 3 * 0.5 ** (3 / 8), 2.0, 1.0, 0.0])


def test_order_features_of_an_empty_history_are_zero_or_missing():
    h = HistoryArrays(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    out = order_features(h, np.array([0]), np.array([3]), half_lives=(8,))
    assert np.isnan(out["lines_since_bought"]).all() and out["line_weight_8"].tolist() == [0.0]


def test_repeat_and_order_features_match_a_line_by_line_reference_on_random_histories():
    """Each value worked out from the definitions, one candidate line at a time, on histories with several lines on
    one day, customers without history and candidates never bought; the same with the caller's pair look-up."""
    rng = np.random.default_rng(4)
    n = 400
    h = HistoryArrays(row=rng.integers(0, 12, n), article_idx=rng.integers(0, 15, n), days=rng.integers(0, 40, n))
    rows, items = np.repeat(np.arange(14), 16), np.tile(np.arange(16), 14)  # rows 12, 13 and article 15: never
    lines = list(zip(h.row, h.article_idx, h.days, strict=True))
    days_since = np.array([min((d for r, a, d in lines if r == row and a == item), default=np.nan)
                           for row, item in zip(rows, items, strict=True)])
    got = repeat_features(h, rows, items, days_since)
    for i, (row, item) in enumerate(zip(rows, items, strict=True)):
        mine = h.row == row
        days = set(h.days[mine & (h.article_idx == item)].tolist())
        intervals = []
        for article in set(h.article_idx[mine].tolist()):
            bought = sorted(set(h.days[mine & (h.article_idx == article)].tolist()))
            if len(bought) >= 2:
                intervals.append((bought[-1] - bought[0]) / (len(bought) - 1))
        shopping_days = len(set(h.days[mine].tolist()))
        assert got["day_share"][i] == (len(days) / shopping_days if days else 0.0)
        interval = (max(days) - min(days)) / (len(days) - 1) if len(days) >= 2 else np.nan
        np.testing.assert_equal(got["rebuy_interval"][i], interval)
        usual = np.mean(intervals) if intervals else np.nan
        np.testing.assert_allclose(got["rebuy_due"][i], days_since[i] / usual if days else np.nan)
        assert got["user_shopping_days"][i] == shopping_days
        distinct = len(set(h.article_idx[mine].tolist()))
        assert got["user_repeat_share"][i] == (len(intervals) / distinct if distinct else 0.0)
    found, at = find_sorted(np.unique(pair_key(h.row, h.article_idx)), pair_key(rows, items))
    for name, values in repeat_features(h, rows, items, days_since, lookup=(found, at)).items():
        np.testing.assert_array_equal(values, got[name])
    ordered = order_features(h, rows, items, windows=(5, 30))
    for name, values in order_features(h, rows, items, lookup=(found, at), windows=(5, 30)).items():
        np.testing.assert_array_equal(values, ordered[name])
    for name, values in order_features(h, rows, items, lookup=(found, at), ordered=purchase_order(h),
                                       windows=(5, 30)).items():
        np.testing.assert_array_equal(values, ordered[name])
    for n in (5, 30):  # a pair's count: the sum of its lines' shares of the customer's n newest
        share = newest_lines(h.row, h.days, n)
        want = [share[(h.row == row) & (h.article_idx == item)].sum() for row, item in zip(rows, items, strict=True)]
        np.testing.assert_allclose(ordered[f"line_count_{n}"], want)
    product = np.arange(16) // 3  # the same sort of the history serves the products' order, with their own look-up
    by_product = product_order_features(h, rows, items, product)
    pairs = find_sorted(np.unique(pair_key(h.row, product[h.article_idx])), pair_key(rows, product[items]))
    for name, values in product_order_features(h, rows, items, product, lookup=pairs,
                                               ordered=purchase_order(h)).items():
        np.testing.assert_array_equal(values, by_product[name])


def test_repeat_stats_of_all_buyers_by_hand():
    """Article 1: customer 0 bought it on days 0 (twice), 4 and 8, customer 1 on day 3, customer 2 on the day of
    as_of (not counted); article 2: customer 1 once. So article 1 has 2 buyers, one of whom came back: a share of
    0.5, (3 + 1) / 2 buying days per buyer and a re-buy every (8 - 0) / 2 = 4 days; article 2 none."""
    start = date(2020, 1, 1)
    rows = [(0, 1, 0), (0, 1, 0), (0, 1, 4), (0, 1, 8), (1, 1, 3), (2, 1, 10), (1, 2, 5)]
    frame = pl.DataFrame({"customer_idx": [c for c, _, _ in rows], "article_idx": [a for _, a, _ in rows],
                          "t_dat": [start + timedelta(days=d) for _, _, d in rows]})
    stats = repeat_stats(frame, start + timedelta(days=10)).sort("article_idx")
    assert stats["article_idx"].to_list() == [1, 2]
    assert stats["item_repeat_share"].to_list() == [0.5, 0.0]
    assert stats["item_days_per_buyer"].to_list() == [2.0, 1.0]
    assert stats["item_rebuy_interval"].to_list() == [4.0, None]


def test_group_counts_count_each_columns_value_line_by_line_across_blocks(monkeypatch):
    """Each candidate line's count of the customer's purchases with its value in each column, against a count done
    one line at a time; the lines in blocks smaller than the query and the history's keys two columns at a time
    (as a batch of millions of lines is)."""
    monkeypatch.setattr(features, "GROUP_LINES", 7)
    monkeypatch.setattr(features, "GROUP_KEYS", 200)  # 90 history lines: columns 0-1, then 2
    rng = np.random.default_rng(5)
    codes = np.stack([rng.integers(0, 4, 30) + 10 * j for j in range(3)], axis=1)  # distinct across columns
    h = HistoryArrays(row=rng.integers(0, 6, 90), article_idx=rng.integers(0, 30, 90), days=rng.integers(0, 20, 90))
    rows, items = rng.integers(0, 7, 50), rng.integers(0, 30, 50)  # row 6 has no history
    got = group_counts(h, rows, items, codes)
    assert got.shape == (3, 50)
    for line, (row, item) in enumerate(zip(rows, items, strict=True)):
        for column in range(3):
            mine = codes[h.article_idx[h.row == row], column]
            assert got[column, line] == np.count_nonzero(mine == codes[item, column])
