"""The time-aware split: the window is the data's last days, whatever they are, and leakage fails loudly."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from raw_helpers import write_raw

from hmrec.store.build import build_store
from hmrec.store.features import item_features
from hmrec.store.split import LeakageError, assert_no_leakage, time_split
from hmrec.store.tables import Store

DAYS = pl.DataFrame({"t_dat": [date(2031, 1, 5), date(2030, 12, 20), date(2031, 1, 11), date(2031, 1, 3)]})


def test_window_is_the_last_days_of_the_data():
    split = time_split(DAYS, test_days=7)
    assert (split.first, split.cutoff, split.last) == (date(2030, 12, 20), date(2031, 1, 5), date(2031, 1, 11))
    assert split.test_window == (date(2031, 1, 5), date(2031, 1, 11))


def test_one_day_window():
    assert time_split(DAYS.lazy(), test_days=1).cutoff == date(2031, 1, 11)


def test_bad_test_days():
    with pytest.raises(ValueError, match="test_days must be at least 1, not 0"):
        time_split(DAYS, test_days=0)


def test_leakage_check_passes_on_rows_before_the_cutoff():
    assert_no_leakage(DAYS.filter(pl.col("t_dat") < date(2031, 1, 5)), date(2031, 1, 5))


def test_leakage_check_fails_loudly_with_count_and_example():
    leaking = DAYS.with_columns(pl.lit(7).alias("customer_idx"))
    with pytest.raises(LeakageError) as caught:
        assert_no_leakage(leaking, date(2031, 1, 5))
    message = str(caught.value)
    assert message.startswith("2 training rows fall inside the held-out window starting 2031-01-05 (earliest 2031-01-05")
    assert "'customer_idx': 7" in message and "t_dat < cutoff" in message


def test_store_split_has_nothing_of_the_window_in_training(tmp_path):
    build_store(write_raw(tmp_path / "raw"), tmp_path / "store", test_days=3)
    store = Store(tmp_path / "store")
    assert store.cutoff == date(2020, 9, 8) and store.test_end == date(2020, 9, 10)
    assert store.manifest["test_window"] == ["2020-09-08", "2020-09-10"]
    assert store.train_transactions().select(pl.col("t_dat").max()).collect().item() == date(2020, 9, 3)
    assert store.test_transactions().collect().height == 2
    # features are as of the cutoff: the window's purchases do not count
    item = item_features(store.train_transactions().collect(), store.read("articles"), store.cutoff)
    assert item["sales_all"].sum() == 3
