"""The numpy group-by helpers behind the features and personal sources, checked on answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hmrec.data import PAD_ITEM, Recs
from hmrec.store.arrays import (
    DOT_CHUNK,
    best_first_order,
    decay,
    distinct,
    equal_range,
    expand,
    group_max,
    group_sum,
    line_dots,
    member_of,
    newest_lines,
    pair_key,
    split_key,
    top_columns,
)


def test_pair_keys_sort_by_row_then_value_and_split_back():
    keys = pair_key(np.array([1, 0, 1, 0]), np.array([5, 70_000, 2, 3]))
    rows, values = split_key(np.sort(keys))
    assert rows.tolist() == [0, 0, 1, 1]
    assert values.tolist() == [3, 70_000, 2, 5]


def test_group_sum_and_group_max():
    keys = np.array([7, 3, 7, 3, 9])
    assert [a.tolist() for a in group_sum(keys, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))] == [[3, 7, 9], [6.0, 4.0, 5.0]]
    assert [a.tolist() for a in group_max(keys, np.array([1, 8, 3, 4, -5]))] == [[3, 7, 9], [8, 3, -5]]
    assert [a.size for a in group_max(np.array([], dtype=np.int64), np.array([]))] == [0, 0]


def test_expand_lists_every_position_of_every_range():
    owner, position = expand(np.array([4, 0, 2]), np.array([6, 0, 3]))
    assert owner.tolist() == [0, 0, 2]
    assert position.tolist() == [4, 5, 2]


def test_decay_halves_every_half_life_after_the_offset():
    assert decay(np.array([0, 1, 15, 29]), 14.0, offset=1).tolist() == [1.0, 1.0, 0.5, 0.25]


def test_newest_lines_count_whole_days_and_a_share_of_the_day_the_window_ends_in():
    # row 1: 2 lines the day before as_of, 1 two days before, 3 three days before; row 0: 2 lines on one day.
    # The 4 newest lines of row 1 are the first 3 and one of the 3 of the oldest day, which is not known: each a third
    row = np.array([1, 0, 1, 1, 1, 0, 1, 1])
    days = np.array([3, 5, 1, 2, 3, 5, 1, 3])
    assert newest_lines(row, days, 4).tolist() == pytest.approx([1 / 3, 1, 1, 1, 1 / 3, 1, 1, 1 / 3])
    assert newest_lines(row, days, 1).tolist() == pytest.approx([0, 0.5, 0.5, 0, 0, 0.5, 0.5, 0])
    assert newest_lines(row, days, 6).tolist() == [1.0] * 8


def test_top_k_orders_by_score_breaks_ties_by_article_and_leaves_out_owned():
    keys = pair_key(np.array([0, 0, 0, 0, 2]), np.array([9, 4, 6, 1, 3]))
    scores = np.array([1.0, 2.0, 2.0, 5.0, 0.5])
    recs = Recs.top_k(keys, scores, n_rows=3, k=3, owned=pair_key(np.array([0]), np.array([1])))
    assert recs.items.tolist() == [[4, 6, 9], [PAD_ITEM] * 3, [3, PAD_ITEM, PAD_ITEM]]
    assert recs.scores[0].tolist() == [2.0, 2.0, 1.0]
    assert np.isnan(recs.scores[1]).all()


def test_recs_from_sorted_keeps_the_first_k_of_each_row():
    recs = Recs.from_sorted(np.array([0, 0, 0, 1]), np.array([5, 6, 7, 8]), np.array([3.0, 2.0, 1.0, 9.0]), 2, 2)
    assert recs.items.tolist() == [[5, 6], [8, PAD_ITEM]]


def test_equal_range_finds_one_key_in_sorted_keys_of_any_integer_dtype():
    for dtype in (np.int32, np.int64, np.uint32):
        keys = np.array([2, 5, 5, 5, 9], dtype=dtype)
        assert equal_range(keys, 5) == (1, 4)
        assert equal_range(keys, np.int64(9)) == (4, 5)
        assert equal_range(keys, 3) == (1, 1)  # absent: an empty range where it would go
        assert equal_range(keys, 0) == (0, 0)
        assert equal_range(keys, 10) == (5, 5)
        assert equal_range(keys, 2**40) == (5, 5)  # beyond the dtype: after every key, never wrapped round
        assert equal_range(keys, -(2**40)) == (0, 0)
    assert equal_range(np.array([], dtype=np.int32), 1) == (0, 0)


def test_best_first_order_is_lexsort_by_row_then_score_then_position():
    # one stable sort of one key must give exactly the three-key lexsort: every tie, NaN, signed zero and infinity
    rng = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, 1.5, -2.0, np.nan, np.inf, -np.inf, 0.25, 1e-30, -1e-30])
    for _ in range(200):
        n = int(rng.integers(0, 500))
        rows = rng.integers(0, 30, n)
        scores = np.where(rng.random(n) < 0.5, rng.choice(specials, n), rng.normal(size=n))
        for dtype in (np.float32, np.float64):
            expected = np.lexsort((np.arange(n), -scores.astype(dtype), rows))
            np.testing.assert_array_equal(best_first_order(rows, scores.astype(dtype)), expected)


def test_line_dots_are_the_dot_products_of_the_lines_across_chunks():
    rng = np.random.default_rng(3)
    left, right = rng.standard_normal((50, 8)).astype(np.float32), rng.standard_normal((70, 8)).astype(np.float32)
    n = DOT_CHUNK * 2 + 17  # three chunks, the last one short
    left_rows, right_rows = rng.integers(0, 50, n), rng.integers(0, 70, n)
    dots = line_dots(left, left_rows, right, right_rows)
    assert dots.dtype == np.float32
    np.testing.assert_array_equal(dots, np.einsum("nd,nd->n", left[left_rows], right[right_rows]))
    assert line_dots(left, left_rows[:0], right, right_rows[:0]).shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_columns_are_the_set_argpartition_picks(dtype):
    """Each row's n largest scores (no ties: distinct random values, -inf for excluded columns), whatever the order
    the columns come in; n equal to the width gives every column."""
    rng = np.random.default_rng(8)
    scores = rng.standard_normal((300, 2_000)).astype(dtype)
    scores[:, :50] = -np.inf  # excluded articles, as EASE marks those already bought
    for n in (1, 12, 100):
        got = top_columns(scores, n)
        assert got.shape == (300, n)
        want = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
    np.testing.assert_array_equal(top_columns(scores[:, :7], 7), np.tile(np.arange(7), (300, 1)))


@pytest.mark.parametrize("size", [0, 1, 2, 1000])
def test_distinct_is_numpys_unique_and_members_numpys_isin(size):
    rng = np.random.default_rng(size)
    values = (rng.integers(0, 50, size).astype(np.int64) << 32) | rng.integers(0, 7, size)
    assert np.array_equal(distinct(values), np.unique(values))
    asked = np.concatenate([values[: size // 2], rng.integers(0, 1 << 40, (size + 1) // 2)]).reshape(-1, 1)
    for members in (values, values[:0], values[: size // 3]):
        assert np.array_equal(member_of(asked, members), np.isin(asked, members))
    assert member_of(asked, members).shape == asked.shape and distinct(values.astype(np.int32)).dtype == np.int32
