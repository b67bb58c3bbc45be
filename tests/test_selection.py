"""Settings chosen on validation: the budget goes where the hits are, and the held-out rows are never read."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hmrec.candidates.sources import CATALOGUE, Grid
from hmrec.data import Recs, TrainData
from hmrec.evaluation.selection import (
    LINE_WINDOWS,
    Chosen,
    SelectionConfig,
    _validation,
    allocate_budget,
    choose_line_window,
    choose_settings,
    settings_section,
)
from hmrec.pipeline import PipelineConfig, load_train_data, ranker_config
from hmrec.recommenders.popularity import PopularityConfig
from hmrec.sample.generate import generate
from hmrec.store.arrays import newest_lines
from hmrec.store.build import build_store
from hmrec.store.tables import Store

GRID = SelectionConfig(sample_customers=400, budget=48, step=8, max_per_source=40, seed=3)
NARROW = {"repurchase": (Grid("window_days", (28, None), "recall"), Grid("half_life_days", (7.0, 30.0)),
                         Grid("window_lines", (None, 4))),
          "age_popularity": (Grid("window_days", (14,)),), "trending": (Grid("half_life_days", (7.0,)),)}
# the cheap candidate sources of the catalogue, with smaller grids
CHEAP = [replace(source, grids=NARROW.get(source.name, source.grids)) for source in CATALOGUE
         if source.name in ("repurchase", "age_popularity", "trending", "other_colours")]


def recs(rows: list[list[int]]) -> Recs:
    out = Recs.empty(len(rows), max(map(len, rows)))
    for i, row in enumerate(rows):
        out.items[i, :len(row)], out.scores[i, :len(row)] = row, -np.arange(len(row), dtype=np.float32)
    return out


def test_the_budget_goes_to_the_slice_that_adds_most_new_hits():
    """a and b find the same 4 articles first (the tie goes to b: 6 hits in all against a's 5); then b's second
    slice (2 new hits) beats a's first (nothing new once b's first is in); c never finds anything."""
    relevant = [np.array([0, 1, 2, 3, 10, 11, 20])]
    a = recs([[0, 1, 2, 3, 20, 50, 51, 52]])
    b = recs([[0, 1, 2, 3, 10, 11, 60, 61]])
    c = recs([[70, 71, 72, 73, 74, 75, 76, 77]])
    assert allocate_budget({"a": a, "b": b, "c": c}, relevant, budget=8, step=4) == {"a": 0, "b": 8, "c": 0}
    # b used up: the rest goes to a (more hits overall than c), whose second slice holds the last hit
    assert allocate_budget({"a": a, "b": b, "c": c}, relevant, budget=16, step=4) == {"a": 8, "b": 8, "c": 0}


def test_ties_go_to_the_source_with_more_hits_in_its_whole_list():
    relevant = [np.array([0, 1, 10, 11, 12])]
    a = recs([[0, 1, 90, 91]])
    b = recs([[0, 1, 10, 11]])
    assert allocate_budget({"a": a, "b": b}, relevant, budget=2, step=2) == {"a": 0, "b": 2}
    assert allocate_budget({"a": a, "b": b}, relevant, budget=4, step=2) == {"a": 0, "b": 4}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> TrainData:
    root = tmp_path_factory.mktemp("selection")
    generate("tiny", seed=11, out=root / "raw")
    build_store(root / "raw", root / "store")
    return load_train_data(Store(root / "store"))


@pytest.mark.parametrize("horizon", [7, 1])
def test_the_choice_never_reads_the_rows_after_the_validation_window(tiny_data, horizon):
    """The pipeline's label windows for the horizon (planned from the rows before the cutoff: the held-out window
    never reaches TrainData): the near ones, the validation window before them, the others behind it. Rows from
    its end on replaced by nonsense: every chosen setting and count stays the same. A 1-day horizon: many 1-day
    windows. The windows behind the validation window are the ranker's only: nothing the choice reads."""
    ranker = ranker_config(tiny_data, PipelineConfig(workdir=Path("unused"), horizon_days=horizon))
    starts, valid_end = ranker.label_starts(tiny_data.cutoff), ranker.settings_end(tiny_data.cutoff)
    days = timedelta(days=horizon)
    near = [start for start in starts if start >= valid_end]
    assert ranker.label_days == horizon and len(near) == ranker.near() > 1 and len(starts) > len(near)
    assert [b - a for a, b in itertools.pairwise([*near, tiny_data.cutoff])] == [days] * len(near)
    behind = [start for start in starts if start < valid_end]
    assert [b - a for a, b in itertools.pairwise([*behind, valid_end - days])] == [days] * len(behind)
    grid = replace(GRID, valid_days=horizon)
    clean = choose_settings(tiny_data, valid_end, CHEAP, grid)
    late = pl.col("t_dat") >= valid_end
    poisoned = tiny_data.transactions.with_columns(
        pl.when(late).then(pl.lit(0, pl.Int32)).otherwise(pl.col("article_idx")).alias("article_idx"),
        pl.when(late).then(pl.lit(0, pl.Int32)).otherwise(pl.col("customer_idx")).alias("customer_idx"),
    )
    assert poisoned.filter(late).height > 500  # the poison reaches many rows (two 1-day windows: ~700)
    dirty = choose_settings(TrainData(poisoned, tiny_data.customers, tiny_data.articles, tiny_data.cutoff),
                            valid_end, CHEAP, grid)
    assert dirty.settings == clean.settings and dirty.n_per_source == clean.n_per_source
    assert dirty.evidence == clean.evidence and dirty.line_window == clean.line_window
    assert sum(clean.n_per_source.values()) == GRID.budget
    assert clean.valid_window == (valid_end - timedelta(days=horizon), valid_end - timedelta(days=1))


def test_a_field_that_acts_only_when_answering_chooses_as_a_fit_per_value_does(tiny_data):
    """The catalogue's `refit=False` grids (repurchase's, TIFU-KNN's alpha), three values each, tried on copies of one
    fit: the same figures and choices as fitting the source for every value."""
    sources = [replace(source, grids=tuple(replace(grid, values=grid.values[:3]) for grid in source.grids))
               for source in CATALOGUE if source.name in ("repurchase", "tifu_knn")]
    assert all(not grid.refit for source in sources for grid in source.grids)
    refitted = [replace(source, grids=tuple(replace(grid, refit=True) for grid in source.grids)) for source in sources]
    valid_end = tiny_data.cutoff - timedelta(days=14)
    copies, fits = (choose_settings(tiny_data, valid_end, catalogue, GRID) for catalogue in (sources, refitted))
    tried = sum(len(grid.values) for source in sources for grid in source.grids)
    assert len(copies.evidence) >= tried >= 9 and len({figure for *_, figure in copies.evidence}) > 3
    assert copies.evidence == fits.evidence and copies.settings == fits.settings


@pytest.mark.parametrize("planted", [8, 11])
def test_the_rankers_line_window_is_the_one_whose_newest_lines_the_buyers_buy(tiny_data, planted):
    """Validation buyers who buy exactly the articles of their `planted` newest purchase lines, where those are at
    most 12 and more than the next narrower window's (the other buyers buy nothing the sample knows): the window of
    that many lines orders them best and is chosen (ties to the narrower); every narrower one tried misses some."""
    v = _validation(tiny_data, tiny_data.cutoff - timedelta(days=14), GRID)
    h = v.query.arrays()
    narrower = LINE_WINDOWS[LINE_WINDOWS.index(planted) - 1] if planted > LINE_WINDOWS[0] else 0
    inside, before = newest_lines(h.row, h.days, planted) > 0, newest_lines(h.row, h.days, narrower) > 0
    v.relevant = []
    for row in range(len(v.query)):
        mine, wider = np.unique(h.article_idx[inside & (h.row == row)]), h.article_idx[before & (h.row == row)]
        v.relevant.append(mine if 0 < mine.size <= 12 and np.unique(wider).size < mine.size else np.array([-5]))
    assert sum(r[0] >= 0 for r in v.relevant) >= 10
    chosen = Chosen({}, {}, (date(2020, 1, 1), date(2020, 1, 7)), len(v.query))
    choose_line_window(v, chosen)
    figures = {int(value): figure for setting, value, _, figure in chosen.evidence if setting == "ranker.line_window"}
    assert set(LINE_WINDOWS) <= set(figures) and list(figures) == sorted(figures) and chosen.line_window == planted
    assert all(figures[n] < figures[planted] for n in figures if n < planted)
    assert chosen.values() == {"ranker.line_window": planted}


def test_the_report_section_names_every_choice_and_its_figures(tiny_data):
    chosen = choose_settings(tiny_data, tiny_data.cutoff - timedelta(days=14), CHEAP, GRID)
    section = settings_section(chosen)
    assert section.startswith("## Settings chosen on validation")
    assert list(chosen.values()) == ["repurchase.window_days", "repurchase.half_life_days", "repurchase.window_lines",
                                     "age_popularity.window_days", "trending.half_life_days", "ranker.line_window"]
    for setting, value in chosen.values().items():
        assert f"| {setting} | **{value}** |" in section
    assert chosen.settings["repurchase"].window_days == chosen.values()["repurchase.window_days"]  # a dataclass
    assert set(chosen.params()) >= {f"chosen.n_per_source.{source.name}" for source in CHEAP}


def test_a_source_given_no_candidates_is_labelled_left_out_not_a_value_tried():
    chosen = Chosen(settings={"popularity": PopularityConfig(window_days=7)}, n_per_source={"als": 0, "repurchase": 40},
                    valid_window=(date(2029, 11, 13), date(2029, 11, 19)), customers=115,
                    evidence=[("popularity.window_days", "7", "map@12", 0.01), ("n_per_source.als", "0", "recall@0", 0.0),
                              ("n_per_source.repurchase", "40", "recall@40", 0.2)],
                    chosen=[("popularity", "window_days")])
    section = settings_section(chosen)
    assert "| popularity.window_days | **7** | map@12 | 0.0100 |" in section
    assert "| n_per_source.als | **0**: source left out (no candidates from it) | - | - |" in section
    assert "| n_per_source.repurchase | **40** | recall@40 | 0.2000 |" in section
