"""Settings chosen on the data's own validation window, never on the held-out window: each source's windows from a
small grid, then each source's candidate count under a total budget by marginal recall; and the report's account
of those and of the ranker's own settings (chosen on its validation customers: `ranking.search`).

The validation window (the prediction horizon's days) is the window before the ranker's near label windows (the
others lie behind it: `FinalConfig.label_starts`).
Everything here reads only the rows before its end (`valid_end`); the rows from there on are cut off first, so the
choice cannot depend on them (tests/test_selection.py poisons them and gets the same choice).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.candidates.sources import Grid, Source, candidate_sources, entries
from hmrec.data import PAD_ITEM, Query, Recs, TrainData
from hmrec.evaluation.metrics import map_at_k, recall_at_k
from hmrec.evaluation.runner import ground_truth
from hmrec.recommenders.base import Recommender
from hmrec.recommenders.repurchase import RepurchaseConfig, decayed_purchases
from hmrec.store.arrays import member_of, pair_key

log = logging.getLogger(__name__)

# the ranker's window in lines (`line_count_<n>`: `ranking.features.order_features`), in quarter octaves
LINE_WINDOWS = tuple(round(2 ** (e / 4)) for e in range(12, 33))  # 8, 10, 11, 13, 16, ..., 215, 256


@dataclass
class SelectionConfig:
    """The window, the budget and the sample (the grids are the catalogue's). valid_days: the validation window's
    days (the prediction horizon); budget: candidates per customer summed over the sources (overlaps merge, so the
    pool is smaller); step: the slice of a source's list the greedy allocation hands out at a time."""

    valid_days: int = 7
    sample_customers: int = 5000
    budget: int = 160
    step: int = 8
    max_per_source: int = 100
    seed: int = 7


@dataclass
class Chosen:
    """What the validation window chose, and the figures behind each choice."""

    settings: dict[str, object]  # source name -> its settings dataclass, the chosen values in it
    n_per_source: dict[str, int]
    valid_window: tuple[date, date]
    customers: int
    evidence: list[tuple[str, str, str, float]] = field(default_factory=list)  # setting, value, metric, figure
    fitted: dict[str, Recommender] = field(default_factory=dict)  # the sources as fitted for validation
    chosen: list[tuple[str, str]] = field(default_factory=list)  # (source, settings field) chosen, in order
    line_window: int | None = None  # the ranker's window in lines (`choose_line_window`)

    def values(self) -> dict[str, object]:
        """Each chosen field's value by `<source>.<field>` (and the ranker's `ranker.line_window`), as the report
        and MLflow name them."""
        out = {f"{name}.{attr}": getattr(self.settings[name], attr) for name, attr in self.chosen}
        return out if self.line_window is None else {**out, "ranker.line_window": self.line_window}

    def params(self) -> dict[str, str]:
        """Flat strings for MLflow: `chosen.<source>.<field>` and `chosen.n_per_source.<source>`."""
        out = {f"chosen.{name}": str(value) for name, value in self.values().items()}
        out.update({f"chosen.n_per_source.{name}": str(n) for name, n in self.n_per_source.items()})
        return out


@dataclass
class _Validation:
    data: TrainData  # rows before the validation window
    query: Query  # a seeded sample of the window's buyers
    relevant: list[np.ndarray]


def _validation(data: TrainData, valid_end: date, config: SelectionConfig) -> _Validation:
    seen = data.transactions.filter(pl.col("t_dat") < valid_end)  # the only read of `data.transactions`
    start = valid_end - timedelta(days=config.valid_days)
    customer_idx, relevant = ground_truth(seen.filter(pl.col("t_dat") >= start))
    if customer_idx.size == 0:
        raise ValueError(f"no purchase in the validation window {start} .. {valid_end - timedelta(days=1)}: "
                         "the data is too short or too sparse for settings chosen on validation; pass a longer "
                         "--horizon-days")
    if customer_idx.size > config.sample_customers:
        keep = np.sort(np.random.default_rng(config.seed).choice(customer_idx.size, config.sample_customers,
                                                                 replace=False))
        customer_idx, relevant = customer_idx[keep], [relevant[i] for i in keep]
    early = TrainData(seen.filter(pl.col("t_dat") < start), data.customers, data.articles, start)
    query = Query.for_customers(customer_idx, data.customers, early.transactions, as_of=start)
    return _Validation(early, query, relevant)


def _map12(recs: Recs, relevant: list[np.ndarray]) -> float:
    return map_at_k(recs.items, relevant, 12)


def _recall(recs: Recs, relevant: list[np.ndarray], k: int) -> float:
    return recall_at_k(recs.items, relevant, k)


def _best(chosen: Chosen, source: Source, grid: Grid, score: Callable[[object], float], metric: str):
    """The grid value with the highest validation score (ties to the earlier value), recorded as evidence and set
    in the source's chosen settings."""
    setting, figures = f"{source.name}.{grid.field}", []
    for value in grid.values:
        figures.append(score(value))
        chosen.evidence.append((setting, str(value), metric, figures[-1]))
    best = grid.values[int(np.argmax(figures))]
    chosen.settings[source.name] = replace(chosen.settings[source.name], **{grid.field: best})
    chosen.chosen.append((source.name, grid.field))
    log.info("validation chose %s = %s (%s %s)", setting, best, metric, ", ".join(f"{f:.4f}" for f in figures))
    return best


def _figure(grid: Grid, recs: Recs, v: _Validation, config: SelectionConfig) -> float:
    """The grid's validation figure of a source's answers (at least `_depth(grid, config)` of them per row)."""
    if grid.metric == "recall":
        return _recall(recs, v.relevant, config.max_per_source)
    return _map12(recs, v.relevant)


def _depth(grid: Grid, config: SelectionConfig) -> int:
    return config.max_per_source if grid.metric == "recall" else 12


def _metric(grid: Grid, config: SelectionConfig) -> str:
    return f"recall@{config.max_per_source}" if grid.metric == "recall" else "map@12"


def _choose_windows(v: _Validation, chosen: Chosen, catalogue: Sequence[Source], config: SelectionConfig) -> None:
    """Every grid tried by fitting the source again (or on copies of one fit: `Grid.refit`), in catalogue order (a
    later field of a source is tried with the earlier ones already chosen): e.g. the repurchase window by Recall@max,
    where stale purchases and the fill compete, then its half-life by MAP@12, then its window in lines."""
    for source in catalogue:
        once = None  # the source's one fit for its fields that act only when answering (whichever values they get)
        for grid in (grid for grid in source.grids if not grid.reindex):
            if not grid.refit and once is None:
                once = source.build(chosen.settings[source.name]).fit(v.data)

            def score(value, source=source, grid=grid, once=once):
                settings = replace(chosen.settings[source.name], **{grid.field: value})
                if grid.refit:
                    model = source.build(settings).fit(v.data)
                else:  # a copy of the one fit, answering with the value
                    model = copy.copy(once)
                    model.config = settings
                return _figure(grid, model.recommend(v.query, _depth(grid, config)), v, config)

            _best(chosen, source, grid, score, _metric(grid, config))
            if grid.refit:  # a field the fit reads has changed: a later answer-only field needs a fit of its own
                once = None


def choose_line_window(v: _Validation, chosen: Chosen) -> None:
    """The ranker's window in lines (`Chosen.line_window`): the one whose counts order each validation buyer's own
    past articles best by MAP@12 (a customer's newest n lines alike, as a household restocks from its last few
    baskets, however long ago they were). `LINE_WINDOWS` first, then around the best in halving steps down to a
    thirty-second of an octave (whole lines near 48: the figure moves by a few thousandths a line there); ties
    to the narrower window. Tried without a fit: it counts the buyers' histories."""
    figures: dict[int, float] = {}

    def score(n: int) -> None:
        if n not in figures and LINE_WINDOWS[0] <= n <= LINE_WINDOWS[-1]:
            recs = decayed_purchases(v.query, RepurchaseConfig(window_days=None, window_lines=n), 12)
            figures[n] = _map12(recs, v.relevant)

    def best() -> int:
        return min(figures, key=lambda n: (-figures[n], n))

    for n in LINE_WINDOWS:
        score(n)
    for step in (1 / 8, 1 / 16, 1 / 32):
        around = best()
        score(round(around * 2 ** -step))
        score(round(around * 2 ** step))
    chosen.line_window = best()
    chosen.evidence.extend(("ranker.line_window", str(n), "map@12", figures[n]) for n in sorted(figures))
    log.info("validation chose ranker.line_window = %d of %d tried (map@12 %.4f)", chosen.line_window, len(figures),
             figures[chosen.line_window])


def _answers(model: Recommender, source: Source, v: _Validation, chosen: Chosen,
             config: SelectionConfig) -> tuple[Recommender, Recs]:
    """The fitted source's validation answers (its top `max_per_source`). A source with an index window (a
    `reindex` grid) has it chosen first: the model with the chosen window's index is returned, with its answers."""
    answers = None
    for grid in (grid for grid in source.grids if grid.reindex):
        model, answers = _choose_index_window(model, source, grid, v, chosen, config)
    return model, answers if answers is not None else model.recommend(v.query, config.max_per_source)


def _choose_index_window(model: Recommender, source: Source, grid: Grid, v: _Validation, chosen: Chosen,
                         config: SelectionConfig) -> tuple[Recommender, Recs]:
    """The index window by the grid's figure, fitted weights kept and only the index rebuilt (copies of `model`)."""
    tried: dict = {}

    def score(days):
        copy = model.with_index_window(v.data, days)
        tried[days] = (copy, copy.recommend(v.query, config.max_per_source))
        return _figure(grid, tried[days][1], v, config)

    return tried[_best(chosen, source, grid, score, _metric(grid, config))]


def allocate_budget(lists: Mapping[str, Recs], relevant: list[np.ndarray], budget: int, step: int) -> dict[str, int]:
    """Each source's candidate count: slices of `step` handed out one at a time, each to the source whose next
    slice adds the most validation hits not already in the pool (ties: the source with more hits in its whole
    list, then source order), until the counts sum to `budget` or every list is used up."""
    hit_keys = {name: _hit_keys(recs, relevant) for name, recs in lists.items()}
    total = {name: sum(len(keys) for keys in per_rank) for name, per_rank in hit_keys.items()}
    counts = dict.fromkeys(lists, 0)
    pool: set[int] = set()
    while sum(counts.values()) + step <= budget:
        gains = {name: len(_slice(hit_keys[name], counts[name], step) - pool)
                 for name in lists if counts[name] < lists[name].items.shape[1]}
        if not gains:
            break
        name = max(gains, key=lambda n: (gains[n], total[n]))
        pool |= _slice(hit_keys[name], counts[name], step)
        counts[name] = min(counts[name] + step, lists[name].items.shape[1])
    return counts


def _hit_keys(recs: Recs, relevant: list[np.ndarray]) -> list[set[int]]:
    """Per rank position: the `pair_key(row, article)` keys of the rows whose answer at that rank was bought."""
    n, width = recs.items.shape
    per_rank: list[set[int]] = [set() for _ in range(width)]
    truth = {int(pair_key(row, a)) for row, items in enumerate(relevant) for a in items}
    keys = pair_key(np.arange(n)[:, None], recs.items)
    hit = member_of(keys, np.fromiter(truth, dtype=np.int64, count=len(truth))) & (recs.items != PAD_ITEM)
    for row, rank in zip(*np.nonzero(hit), strict=True):
        per_rank[rank].add(int(keys[row, rank]))
    return per_rank


def _slice(per_rank: list[set[int]], start: int, step: int) -> set[int]:
    return set().union(*per_rank[start : start + step])


def choose_settings(
    data: TrainData, valid_end: date, catalogue: Sequence[Source] | None = None, config: SelectionConfig | None = None,
    trainer=None,
) -> Chosen:
    """Fit on the rows before the validation window, score on its buyers (a sample), choose, allocate.
    catalogue: the sources whose grids are tried and whose candidate counts are shared out; trainer: an engine's
    trainer handed to the candidate sources (`Recommender.use_trainer`)."""
    config, catalogue = config or SelectionConfig(), entries(catalogue)
    started = time.perf_counter()
    v = _validation(data, valid_end, config)
    chosen = Chosen({source.name: source.default_settings(config.seed) for source in catalogue}, {},
                    (v.data.cutoff, valid_end - timedelta(days=1)), len(v.query))
    _choose_windows(v, chosen, catalogue, config)
    choose_line_window(v, chosen)
    lists = {}
    for source in candidate_sources(catalogue):
        model = source.build(chosen.settings[source.name])
        if trainer is not None:
            model.use_trainer(trainer)
        model.fit(v.data)
        chosen.fitted[source.name], lists[source.name] = _answers(model, source, v, chosen, config)
    chosen.n_per_source = allocate_budget(lists, v.relevant, config.budget, config.step)
    for name, recs in lists.items():
        n = chosen.n_per_source[name]
        chosen.evidence.append((f"n_per_source.{name}", str(n), f"recall@{n}", _recall(recs, v.relevant, max(n, 1))
                                if n else 0.0))
    log.info("settings chosen on validation in %.1f s: %s, candidates %s", time.perf_counter() - started,
             chosen.values(), chosen.n_per_source)
    return chosen


def settings_section(chosen: Chosen) -> str:
    """Markdown for the report: every choice, every value tried and its validation figure."""
    lines = [
        "## Settings chosen on validation",
        "",
        f"Chosen on the validation window {chosen.valid_window[0]} .. {chosen.valid_window[1]} ({chosen.customers:,} "
        "of its buyers), fitted on the days before it; the held-out window and the ranker's label windows after it "
        "were not read. The chosen value of each setting is in bold.",
        "",
        "| setting | value tried | validation metric | figure |",
        "|---|---|---|---:|",
    ]
    values = chosen.values()
    for setting, value, metric, figure in chosen.evidence:
        picked = setting.startswith("n_per_source.") or str(values.get(setting)) == value
        shown = f"**{value}**" if picked else value
        if setting.startswith("n_per_source.") and value == "0":  # a budget share, not a value tried and lost
            lines.append(f"| {setting} | **0**: source left out (no candidates from it) | - | - |")
            continue
        lines.append(f"| {setting} | {shown} | {metric} | {figure:.4f} |")
    return "\n".join(lines) + "\n"


SEARCH_COLUMNS = ("rung", "share", "objective", "learning_rate", "num_leaves", "min_data_in_leaf", "buyer_share",
                  "negatives_per_buyer", "trees")


def ranker_settings_section(final) -> str:
    """Markdown for the report: the ranker's label windows (how many, of how many days, and why) and its LightGBM
    settings chosen on its validation customers, every fit of the search with its figure (`RankerState`)."""
    config, state = final.config, final.state_
    lines = ["## Ranker settings chosen on validation", ""]
    if state.windows:
        w = state.windows
        behind = len(w) - config.near()
        lines += [f"Label windows: {len(w)} of {config.label_days} day(s), from {w[0]['start']} to the cutoff"
                  f"{f' ({behind} behind the settings window, {config.near()} after it)' if behind else ''}: "
                  f"{sum(x['buyers'] for x in w):,} buyers with a bought candidate, {sum(x['positives'] for x in w):,}"
                  f" positive lines among {sum(x['lines'] for x in w):,} candidate lines; the count "
                  f"{config.label_plan or 'given'}.", ""]
    if state.params:
        shown = ", ".join(f"{name} {value:.4f}" if isinstance(value, float) and name.startswith("valid_") else
                          f"{name} {value}" for name, value in state.params.items())
        lines += [f"LightGBM: {shown}; {len(state.search)} fit(s) by successive halving on the ranker's validation "
                  "customers (a share of the label windows' buyers, never the held-out window), trees by early "
                  "stopping on their MAP@12. `members`: boosters averaged, the searched one and bagged refits of its "
                  "setting where they order those customers better (`valid_map12_one` against `valid_map12_N`).", ""]
    if len(state.search) > 1:
        lines += ["| " + " | ".join(SEARCH_COLUMNS) + " | validation MAP@12 |",
                  "|" + "---|" * len(SEARCH_COLUMNS) + "---:|"]
        lines += ["| " + " | ".join(str(fit[c]) for c in SEARCH_COLUMNS) + f" | {fit['valid_map12']:.4f} |"
                  for fit in state.search]
    return "\n".join(lines) + "\n"

