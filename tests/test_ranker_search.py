"""The ranker's label windows planned from the signal wanted, and its settings searched on validation within a
budget of fits (ranking/windows.py, ranking/search.py)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from test_ranker import CUTOFF, N_PER_SOURCE, make_sources, planted_world

from hmrec.evaluation.selection import ranker_settings_section
from hmrec.ranking.ranker import FinalConfig, FinalRecommender
from hmrec.ranking.search import GRID, Lines, Trial, rungs, sample_lines, trials
from hmrec.ranking.windows import WindowPlanConfig, plan_windows

DAY = date(2030, 3, 1)


def daily(days: int, buyers: int) -> pl.DataFrame:
    """`buyers` new customers a day for `days` days before DAY, each buying two articles once."""
    rows = [(DAY - timedelta(days=d), d * buyers + b, a) for d in range(1, days + 1) for b in range(buyers)
            for a in (0, 1)]
    return pl.DataFrame({"t_dat": [r[0] for r in rows], "customer_idx": [r[1] for r in rows],
                         "article_idx": [r[2] for r in rows]})


def test_windows_are_added_until_the_signal_wanted_is_reached():
    tx = daily(100, 10)  # a day: 10 buyers, 20 bought pairs
    wanted = WindowPlanConfig(min_label_lines=50, min_label_buyers=30, max_windows=16, min_history_days=5)
    plan = plan_windows(tx, DAY, 1, 10, wanted)
    assert (plan.windows, plan.label_lines, plan.label_buyers, plan.stopped) == (3, 60, 30, "signal")
    assert plan_windows(tx, DAY, 7, 10, wanted).windows == 1  # a week holds 70 buyers, 140 pairs


def test_windows_are_bounded_by_count_memory_and_history():
    tx = daily(100, 10)
    wanted = WindowPlanConfig(min_label_lines=10**6, min_label_buyers=10**6, max_windows=4, min_history_days=5)
    assert (plan_windows(tx, DAY, 1, 10, wanted).windows, plan_windows(tx, DAY, 1, 10, wanted).stopped) == \
        (4, "max_windows")
    memory = WindowPlanConfig(10**6, 10**6, max_training_lines=250, max_windows=16, min_history_days=5)
    assert plan_windows(tx, DAY, 1, 10, memory).windows == 3  # 30 buyers x 10 candidates reach 250 lines
    short = WindowPlanConfig(10**6, 10**6, max_windows=100, min_history_days=5)
    # 100 days: each window of 7 needs the one before it (validation) and 5 days of history before that
    plan = plan_windows(tx, DAY, 7, 10, short)
    assert plan.stopped == "history" and DAY - timedelta(days=7 * (plan.windows + 1) + 5) >= DAY - timedelta(100)


def test_rows_from_the_cutoff_on_are_never_read():
    tx = daily(60, 10)
    later = pl.DataFrame({"t_dat": [DAY + timedelta(days=d) for d in range(5)], "customer_idx": list(range(5)),
                          "article_idx": [9] * 5})
    wanted = WindowPlanConfig(min_label_lines=50, min_label_buyers=30, min_history_days=5)
    assert plan_windows(pl.concat([tx, later]), DAY, 1, 10, wanted) == plan_windows(tx, DAY, 1, 10, wanted)


def test_rungs_halve_within_the_budget():
    assert [rungs(n) for n in (1, 2, 3, 7, 12, 15)] == [[1], [1], [2, 1], [4, 2, 1], [6, 3, 2, 1], [8, 4, 2, 1]]


def test_trials_start_with_the_defaults_and_come_from_the_grid():
    tried = trials(Trial(), 8, seed=7)
    assert tried[0] == Trial() and len(set(tried)) == 8
    assert all(getattr(t, name) in values for t in tried for name, values in GRID.items())


def test_sampled_lines_keep_every_positive_and_at_most_n_negatives():
    row = np.repeat(np.arange(4), [5, 3, 6, 4])
    label = np.zeros(18, np.int8)
    label[[0, 6, 7, 10]] = 1
    lines = Lines(np.zeros((18, 1), np.float32), label, row)
    kept = sample_lines(lines, Trial(negatives_per_buyer=1), 1.0, seed=0)
    assert set(np.flatnonzero(label)) <= set(kept)
    assert np.bincount(row[kept][label[kept] == 0], minlength=4).tolist() == [1, 1, 1, 1]
    half = sample_lines(lines, Trial(), 0.5, seed=0)
    assert set(half) <= set(sample_lines(lines, Trial(), 1.0, seed=0))  # a larger share holds a smaller one


@pytest.fixture(scope="module")
def searched():
    data, _ = planted_world(seed=4)
    config = FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1, label_days=1, label_windows=5, search_fits=3,
                         num_boost_round=60)
    return FinalRecommender(make_sources(), config).fit(data)


def test_a_one_day_horizon_learns_from_one_day_windows(searched):
    assert [w["start"] for w in searched.state_.windows] == \
        [(CUTOFF - timedelta(days=d)).isoformat() for d in range(5, 0, -1)]
    assert {w["days"] for w in searched.state_.windows} == {1}


def test_the_search_spends_its_budget_and_keeps_the_last_rungs_setting(searched):
    state = searched.state_
    assert [fit["rung"] for fit in state.search] == [0, 0, 1]
    assert state.search[0]["share"] == 0.5 and state.search[-1]["share"] == 1.0
    last = {k: v for k, v in state.search[-1].items() if k in Trial.__dataclass_fields__}
    assert {k: state.params[k] for k in last} == last
    assert state.params["trees"] == searched.booster_.num_trees()
    assert max(state.validation_map.values()) == state.validation_map[state.leader or "lightgbm"]


def test_the_report_says_the_windows_and_every_fit(searched):
    section = ranker_settings_section(searched)
    assert section.startswith("## Ranker settings chosen on validation")
    assert "Label windows: 5 of 1 day(s)" in section and "the count given" in section
    assert section.count("\n| 0 | 0.5 |") == 2 and section.count("\n| 1 | 1.0 |") == 1
