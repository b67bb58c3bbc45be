"""The time-aware split: the held-out window is the data's last `test_days` days; nothing leaks into training."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl


class LeakageError(AssertionError):
    """Training rows fall inside the held-out window."""


@dataclass(frozen=True)
class Split:
    """The held-out window [cutoff, last] (inclusive); training is every day before cutoff."""

    first: date  # first day of the data
    cutoff: date
    last: date

    @property
    def test_window(self) -> tuple[date, date]:
        return self.cutoff, self.last


def time_split(transactions: pl.DataFrame | pl.LazyFrame, test_days: int = 7) -> Split:
    """Hold out the last `test_days` days, ending at the last transaction date, whatever the data's dates are."""
    if test_days < 1:
        raise ValueError(f"test_days must be at least 1, not {test_days}")
    bounds = transactions.lazy().select(
        pl.col("t_dat").min().alias("first"), pl.col("t_dat").max().alias("last")
    ).collect()
    first, last = bounds.row(0)
    if last is None:
        raise ValueError("cannot split: the transactions table has no dated rows")
    return Split(first=first, cutoff=last - timedelta(days=test_days - 1), last=last)


def assert_no_leakage(train: pl.DataFrame | pl.LazyFrame, cutoff: date) -> None:
    """Raise LeakageError (count and an example) if any training row is dated on or after `cutoff`."""
    leaking = train.lazy().filter(pl.col("t_dat") >= cutoff)
    summary = leaking.select(pl.len().alias("n"), pl.col("t_dat").min().alias("first")).collect()
    n, first = summary.row(0)
    if n:
        example = leaking.head(1).collect().to_dicts()[0]
        raise LeakageError(
            f"{n:,} training rows fall inside the held-out window starting {cutoff.isoformat()} "
            f"(earliest {first.isoformat()}, e.g. {example}); training data must be filtered with t_dat < cutoff"
        )
