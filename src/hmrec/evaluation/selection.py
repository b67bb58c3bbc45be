"""Settings chosen on the data's own validation week, never on the held-out window: each source's windows from a
small grid, then each source's candidate count under a total budget by marginal recall.

The validation week is the week before the ranker's first label week. Everything here reads only the rows
before the validation week's end (`valid_end`); the rows from there on are cut off first, so the choice cannot
depend on them (tests/test_selection.py poisons them and gets the same choice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.evaluation.metrics import map_at_k, recall_at_k
from hmrec.evaluation.runner import ground_truth
from hmrec.recommenders.base import PAD_ITEM, Query, Recommender, Recs, TrainData
from hmrec.store.arrays import pair_key

log = logging.getLogger(__name__)

SourceFactory = Callable[[Mapping[str, object]], dict[str, Recommender]]


@dataclass
class SelectionConfig:
    """The grids and the budget. budget: candidates per customer summed over the sources (overlaps merge, so the
    pool is smaller); step: the slice of a source's list the greedy allocation hands out at a time."""

    valid_days: int = 7
    sample_customers: int = 5000
    budget: int = 160
    step: int = 8
    max_per_source: int = 100
    repurchase_windows: tuple[int | None, ...] = (28, 91, 365, None)  # None: the whole history
    repurchase_half_lives: tuple[float, ...] = (7.0, 14.0, 30.0, 90.0)
    popularity_windows: tuple[int, ...] = (3, 7, 14, 28)
    age_popularity_windows: tuple[int, ...] = (7, 14, 28)
    trending_half_lives: tuple[float, ...] = (3.0, 7.0, 14.0)
    two_tower_index_windows: tuple[int | None, ...] = (28, 56)
    seed: int = 7


@dataclass
class Chosen:
    """What the validation week chose, and the figures behind each choice."""

    settings: dict[str, object]  # "repurchase.window_days" -> 91, ...
    n_per_source: dict[str, int]
    valid_window: tuple[date, date]
    customers: int
    evidence: list[tuple[str, str, str, float]] = field(default_factory=list)  # setting, value, metric, figure
    fitted: dict[str, Recommender] = field(default_factory=dict)  # the sources as fitted for validation

    def params(self) -> dict[str, str]:
        """Flat strings for MLflow: `chosen.<setting>` and `chosen.n_per_source.<source>`."""
        out = {f"chosen.{name}": str(value) for name, value in self.settings.items()}
        out.update({f"chosen.n_per_source.{name}": str(n) for name, n in self.n_per_source.items()})
        return out


@dataclass
class _Validation:
    data: TrainData  # rows before the validation week
    query: Query  # a seeded sample of the week's buyers
    relevant: list[np.ndarray]


def _validation(data: TrainData, valid_end: date, config: SelectionConfig) -> _Validation:
    seen = data.transactions.filter(pl.col("t_dat") < valid_end)  # the only read of `data.transactions`
    start = valid_end - timedelta(days=config.valid_days)
    customer_idx, relevant = ground_truth(seen.filter(pl.col("t_dat") >= start))
    if customer_idx.size == 0:
        raise ValueError(f"no purchase in the validation week {start} .. {valid_end - timedelta(days=1)}: "
                         "the data is too short for settings chosen on validation; pass fewer --label-weeks")
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


def _best(chosen: Chosen, setting: str, grid, score: Callable[[object], float], metric: str):
    """The grid value with the highest validation score (ties to the earlier value), recorded as evidence."""
    figures = []
    for value in grid:
        figures.append(score(value))
        chosen.evidence.append((setting, str(value), metric, figures[-1]))
    best = grid[int(np.argmax(figures))]
    chosen.settings[setting] = best
    log.info("validation chose %s = %s (%s %s)", setting, best, metric, ", ".join(f"{f:.4f}" for f in figures))
    return best


def _choose_windows(v: _Validation, chosen: Chosen, config: SelectionConfig) -> None:
    """Repurchase window (by Recall@max, where stale purchases and the fill compete) and half-life (MAP@12);
    the popularity windows and the trending half-life by MAP@12."""
    from hmrec.recommenders.popularity import AgePopularityRecommender, PopularityConfig, PopularityRecommender
    from hmrec.recommenders.repurchase import RepurchaseConfig, RepurchaseRecommender
    from hmrec.recommenders.trending import TrendingConfig, TrendingRecommender

    k = config.max_per_source
    fill = AgePopularityRecommender().fit(v.data)
    window = _best(chosen, "repurchase.window_days", config.repurchase_windows, lambda w: _recall(
        RepurchaseRecommender(RepurchaseConfig(w, 14.0), fill=fill).recommend(v.query, k), v.relevant, k),
        f"recall@{k}")
    _best(chosen, "repurchase.half_life_days", config.repurchase_half_lives, lambda h: _map12(
        RepurchaseRecommender(RepurchaseConfig(window, h), fill=fill).recommend(v.query, 12), v.relevant), "map@12")
    _best(chosen, "popularity.window_days", config.popularity_windows, lambda w: _map12(
        PopularityRecommender(PopularityConfig(w)).fit(v.data).recommend(v.query, 12), v.relevant), "map@12")
    _best(chosen, "age_popularity.window_days", config.age_popularity_windows, lambda w: _map12(
        AgePopularityRecommender(PopularityConfig(w)).fit(v.data).recommend(v.query, 12), v.relevant), "map@12")
    _best(chosen, "trending.half_life_days", config.trending_half_lives, lambda h: _map12(
        TrendingRecommender(TrendingConfig(h)).fit(v.data).recommend(v.query, 12), v.relevant), "map@12")


def _choose_index_window(source: Recommender, v: _Validation, chosen: Chosen, config: SelectionConfig) -> Recs:
    """The two-tower's index window, by Recall@max: the fitted weights are kept, only the index is rebuilt; the
    source is left with the chosen window's index, and its validation answers are returned."""
    k = config.max_per_source
    answers: dict = {}

    def recall(days):
        answers[days] = source.reindex(v.data, days).recommend(v.query, k)
        return _recall(answers[days], v.relevant, k)

    best = _best(chosen, "two_tower.index_window_days", config.two_tower_index_windows, recall, f"recall@{k}")
    source.reindex(v.data, best)
    return answers[best]


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
    """Per rank position: the `row << 32 | article` keys of the rows whose answer at that rank was bought."""
    n, width = recs.items.shape
    per_rank: list[set[int]] = [set() for _ in range(width)]
    truth = {int(pair_key(row, a)) for row, items in enumerate(relevant) for a in items}
    keys = pair_key(np.arange(n)[:, None], recs.items)
    hit = np.isin(keys, np.fromiter(truth, dtype=np.int64, count=len(truth))) & (recs.items != PAD_ITEM)
    for row, rank in zip(*np.nonzero(hit), strict=True):
        per_rank[rank].add(int(keys[row, rank]))
    return per_rank


def _slice(per_rank: list[set[int]], start: int, step: int) -> set[int]:
    return set().union(*per_rank[start : start + step])


def choose_settings(
    data: TrainData, valid_end: date, make_sources: SourceFactory, config: SelectionConfig | None = None
) -> Chosen:
    """Fit on the rows before the validation week, score on the week's buyers (a sample), choose, allocate.
    make_sources(settings) builds the candidate sources, unfitted, with the settings chosen so far."""
    config = config or SelectionConfig()
    started = time.perf_counter()
    v = _validation(data, valid_end, config)
    chosen = Chosen({}, {}, (v.data.cutoff, valid_end - timedelta(days=1)), len(v.query))
    _choose_windows(v, chosen, config)
    sources = make_sources(chosen.settings)
    lists = {}
    for name, source in sources.items():
        source.fit(v.data)
        if name == "two_tower":
            lists[name] = _choose_index_window(source, v, chosen, config)
        else:
            lists[name] = source.recommend(v.query, config.max_per_source)
    chosen.n_per_source = allocate_budget(lists, v.relevant, config.budget, config.step)
    for name, recs in lists.items():
        n = chosen.n_per_source[name]
        chosen.evidence.append((f"n_per_source.{name}", str(n), f"recall@{n}", _recall(recs, v.relevant, max(n, 1))
                                if n else 0.0))
    chosen.fitted = sources
    log.info("settings chosen on validation in %.1f s: %s, candidates %s", time.perf_counter() - started,
             chosen.settings, chosen.n_per_source)
    return chosen


def settings_section(chosen: Chosen) -> str:
    """Markdown for the report: every choice, every value tried and its validation figure."""
    lines = [
        "## Settings chosen on validation",
        "",
        f"Chosen on the validation week {chosen.valid_window[0]} .. {chosen.valid_window[1]} ({chosen.customers:,} "
        "of its buyers), fitted on the days before it; the held-out window and the ranker's label weeks were not "
        "read. The chosen value of each setting is in bold.",
        "",
        "| setting | value tried | validation metric | figure |",
        "|---|---|---|---:|",
    ]
    for setting, value, metric, figure in chosen.evidence:
        picked = setting.startswith("n_per_source.") or str(chosen.settings.get(setting)) == value
        shown = f"**{value}**" if picked else value
        if setting.startswith("n_per_source.") and value == "0":  # a budget share, not a value tried and lost
            lines.append(f"| {setting} | **0**: source left out (no candidates from it) | - | - |")
            continue
        lines.append(f"| {setting} | {shown} | {metric} | {figure:.4f} |")
    return "\n".join(lines) + "\n"
