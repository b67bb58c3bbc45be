"""Numpy group-bys on int64 keys, for the features and candidate sources that answer one live customer as well as
a batch: one customer's query costs microseconds here, where each Polars call has a fixed overhead."""

from __future__ import annotations

from datetime import date

import numpy as np


def days_before(days: np.ndarray, as_of: date) -> np.ndarray:
    """Whole days from each of `days` (datetime64, e.g. a Polars Date column's to_numpy()) to `as_of`, int64."""
    return np.datetime64(as_of, "D").astype(np.int64) - days.astype("datetime64[D]").astype(np.int64)


def pair_key(row: np.ndarray, value: np.ndarray) -> np.ndarray:
    """One sortable int64 per (row, value), value >= 0 and below 2**32: sorted keys are in row, then value order."""
    return (np.asarray(row, dtype=np.int64) << 32) | np.asarray(value, dtype=np.int64)


def split_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return keys >> 32, keys & 0xFFFFFFFF


def distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct integers of `values`: `np.unique(values)` by one sort. numpy 2.4's `np.unique` without
    other outputs goes through a hash table, 17x slower on millions of int64 keys (3.2 s against 0.19 s for 3
    million (row, article) keys), and `np.isin` calls it on its second argument."""
    ordered = np.sort(np.asarray(values).ravel())
    if ordered.size < 2:
        return ordered
    new = np.empty(ordered.size, dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    return ordered[new]


def member_of(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """`np.isin(values, members)` for integers (same shape as `values`): a binary search in `distinct(members)`."""
    return find_sorted(distinct(members), np.asarray(values))[0]


def find_sorted(distinct: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each of `keys` is in the sorted `distinct`, and where (meaningful only where found)."""
    at = np.searchsorted(distinct, keys)
    found = at < distinct.size
    found[found] = distinct[at[found]] == keys[found]
    return found, at


def equal_range(keys: np.ndarray, value: int) -> tuple[int, int]:
    """[first, last) of `value` in the sorted integer `keys` (an empty range where it would go), for one lookup.

    The value is cast to the keys' dtype first: `np.searchsorted(int32_keys, python_int)` casts the whole array to
    int64 on every call (0.2 ms for 700,000 keys, against 2 microseconds)."""
    limits = np.iinfo(keys.dtype)
    if value < limits.min or value > limits.max:
        return (0, 0) if value < limits.min else (keys.size, keys.size)
    key = keys.dtype.type(value)
    return int(keys.searchsorted(key, "left")), int(keys.searchsorted(key, "right"))


def best_first_order(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The order of lines by row (>= 0, below 2**31), then score high to low, then as given (NaN last in its row):
    `np.lexsort((np.arange(n), -scores, rows))` as one stable sort of one int64 key, several times faster.

    float32 scores become the key as they are (their bits, in an order-preserving map); other scores by their
    rank among all scores, equal scores one rank."""
    scores = np.asarray(scores)
    if scores.dtype == np.float32:
        bits = (scores + np.float32(0)).view(np.uint32)  # -0.0 as 0.0: the two compare equal
        ascending = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31)).astype(np.int64)
        descending = np.where(np.isnan(scores), 0xFFFFFFFF, 0xFFFFFFFF - ascending)
    else:
        negated = -scores.astype(np.float64)
        by_score = np.argsort(negated)  # NaN last
        ordered = negated[by_score]
        new = np.ones(ordered.size, dtype=bool)
        new[1:] = (ordered[1:] != ordered[:-1]) & ~(np.isnan(ordered[1:]) & np.isnan(ordered[:-1]))
        descending = np.empty(scores.size, dtype=np.int64)
        descending[by_score] = np.cumsum(new) - 1
    return np.argsort((np.asarray(rows, dtype=np.int64) << 32) | descending, kind="stable")


# lines per gather in line_dots: 8,192 x 64 float32 = 2 MB a side, in cache; a batch's 2M lines gathered at once
# are two fresh 500 MB arrays, whose page faults cost more than the dot products (0.3 s against 0.5-3 s, busy)
DOT_CHUNK = 8192


def line_dots(left: np.ndarray, left_rows: np.ndarray, right: np.ndarray, right_rows: np.ndarray) -> np.ndarray:
    """float32 `left[left_rows[i]] . right[right_rows[i]]` for every line i, in chunks of DOT_CHUNK lines (each
    line's sum as the one einsum would give it)."""
    out = np.empty(left_rows.size, dtype=np.float32)
    for start in range(0, left_rows.size, DOT_CHUNK):
        stop = start + DOT_CHUNK
        out[start:stop] = np.einsum("nd,nd->n", left[left_rows[start:stop]], right[right_rows[start:stop]])
    return out


def lines_on_newer_days(row: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lines by row, newest day first (`days` before as_of, fewest newest; positions in the input), and for each
    one, in that order, its row's lines on newer days (its place in the row's purchase order) and on its own day
    (int64 both): one sort and one set of day keys for both."""
    order = np.lexsort((days, row))
    sorted_row = row[order]
    day_keys = pair_key(sorted_row, days[order])
    day_start = np.searchsorted(day_keys, day_keys)
    return (order, day_start - np.searchsorted(sorted_row, sorted_row),
            np.searchsorted(day_keys, day_keys, side="right") - day_start)


def newest_lines(row: np.ndarray, days: np.ndarray, n: int) -> np.ndarray:
    """Each line's share of being among its row's `n` newest lines (`days` before as_of, fewest newest): 1 or 0, or
    for the lines of the day on which the n-th newest falls, the share of that day's lines inside (the data gives the
    day of a purchase, not its order within the day)."""
    order, newer, same_day = lines_on_newer_days(row, days)
    share = np.empty(row.size)
    share[order] = window_share(newer, same_day, n)
    return share


def window_share(newer: np.ndarray, same_day: np.ndarray, n: int) -> np.ndarray:
    """Each line's share of its row's `n` newest lines, from its row's lines on newer days and on its own day
    (`lines_on_newer_days`): 1 or 0, or a share of the day on which the n-th newest falls."""
    return np.clip((n - newer) / same_day, 0.0, 1.0)


def decay(days: np.ndarray, half_life_days: float, offset: int = 0) -> np.ndarray:
    """0.5 ** (max(days - offset, 0) / half_life_days), float64."""
    return 0.5 ** (np.maximum(days - offset, 0) / half_life_days)


def group_sum(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the sum of `values` for each."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(inverse, weights=values, minlength=distinct.size)


def group_max(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (sorted) and the largest of `values` for each."""
    order = np.lexsort((values, keys))
    keys, values = keys[order], values[order]
    last = np.flatnonzero(np.append(keys[1:] != keys[:-1], keys.size > 0))
    return keys[last], values[last]


def expand(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [starts[i], ends[i]): (i repeated once per position, the positions), in order."""
    lengths = np.maximum(ends - starts, 0)
    owner = np.repeat(np.arange(lengths.size), lengths)
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return owner, first + np.arange(owner.size)


def top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """(rows, n) columns of each row's n largest scores, in no particular order: the set
    `np.argpartition(-scores, n - 1, axis=1)[:, :n]` gives, 4-5x faster on rows of tens of thousands of scores
    (torch.topk: no negated copy, one selection pass; 4.4 against 17-23 s for 20,000 x 68k). Scores without NaN; at a
    tie on the n-th score either column may be kept, as with argpartition. n at least the width: every column."""
    if n >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), (scores.shape[0], n))
    import torch  # here, not at the top: the module's other users need only numpy

    return torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), n, dim=1, sorted=False).indices.numpy()
