"""Training the `final` ranker: the label windows before the cutoff, the sources as of each window, the training
frame (candidates and features strictly before a window, labels: bought in it), LightGBM (its settings searched:
`ranking.search`), and the leader: the order (LightGBM's or one source's own) that scores best on the ranker's
validation customers."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import lightgbm as lgb
import numpy as np
import polars as pl

from hmrec import cpus, logs
from hmrec.candidates.sources import default_counts
from hmrec.data import Query, Recs, TrainData
from hmrec.evaluation.metrics import map_at_k
from hmrec.ranking.ensemble import Ensemble, bagged_members
from hmrec.ranking.features import KEY_COLUMNS, ArticleLookup, article_table, feature_columns
from hmrec.ranking.scoring import candidate_features, feature_matrix, led_by
from hmrec.ranking.search import Lines, Trial, lightgbm_params, sample_lines, search
from hmrec.recommenders.base import Recommender
from hmrec.store.arrays import best_first_order, member_of

log = logging.getLogger(__name__)


@dataclass
class FinalConfig:
    """How the ranker is trained. n_per_source: each candidate source's count (None: the catalogue's defaults);
    label_days: the prediction horizon, the length of each label window whose purchases are the labels;
    label_windows: how many such windows, stacked back from the cutoff, each with its candidates and features as of
    its first day (the pipeline plans the count: `ranking.windows`; label_plan says why, for the report);
    near_windows: how many of them lie between the window that chose the sources' settings and the cutoff, the
    others behind that window (None: all), so that more windows do not move the settings' window back.
    Sources that declare `fit_once` are fitted once on the data before the first window, their weights kept for
    answering and refreshed as of each later cutoff (the two-tower is slow to train, and one fitted on the label
    window would score the ranker's training labels better than it can score the held-out week, so the ranker
    would trust it too much; the pipeline passes its validation fit, `warm`, and fresh instances for the windows
    behind the settings' window, `behind`); the other sources are refitted on everything before each cutoff.
    max_train_customers: a seeded sample of the windows' buyers, shared out over the windows (None: all);
    valid_fraction: customers held out for early stopping, for the settings search (`ranking.search`, `search_fits`
    LightGBM fits; 1: the settings below only) and on whom LightGBM's order is compared with each source's own
    (`RankerState.leader`): the final method never orders worse there than its best source; members: the
    searched booster and members - 1 bagged refits of its settings, averaged (`ranking.ensemble`), kept where they
    order the validation customers better than the searched booster alone. line_windows: the windows in lines of
    the `line_count_<n>` features (`ranking.features.order_features`; the pipeline passes the one validation
    chose: `evaluation.selection.Chosen.line_window`)."""

    n_per_source: dict[str, int] = field(default_factory=default_counts)
    label_days: int = 7
    label_windows: int = 2
    near_windows: int | None = None
    label_plan: str = ""
    max_train_customers: int | None = 50_000
    valid_fraction: float = 0.15
    num_boost_round: int = 400
    early_stopping_rounds: int = 40
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    objective: str = "lambdarank"
    search_fits: int = 1
    members: int = 3
    line_windows: tuple[int, ...] = ()
    num_threads: int = field(default_factory=cpus.available)  # the same trees for any count (hmrec.cpus)
    seed: int = 7

    def label_starts(self, cutoff: date) -> list[date]:
        """First day of each label window, oldest first: those behind the settings' window, then the near ones."""
        behind, near = self.window_starts(cutoff)
        return behind + near

    def window_starts(self, cutoff: date) -> tuple[list[date], list[date]]:
        """First days, oldest first, of the label windows behind the settings' window (`settings_end`) and of the
        `near` windows between it and `cutoff`."""
        days, near = self.label_days, self.near()
        return ([cutoff - timedelta(days=days * (near + 1 + n)) for n in range(self.label_windows - near, 0, -1)],
                [cutoff - timedelta(days=days * n) for n in range(near, 0, -1)])

    def near(self) -> int:
        """The label windows between the settings' window and the cutoff."""
        return self.label_windows if self.near_windows is None else min(self.near_windows, self.label_windows)

    def settings_end(self, cutoff: date) -> date:
        """The day after the window that chooses the sources' settings: `label_days` before the near windows."""
        return cutoff - timedelta(days=self.label_days * self.near())

    def default_trial(self) -> Trial:
        """The settings tried first (and alone when `search_fits` is 1)."""
        return Trial(self.objective, self.learning_rate, self.num_leaves, self.min_data_in_leaf)

    def lightgbm_params(self) -> dict:
        """LightGBM's parameters besides a trial's (`ranking.search.lightgbm_params` adds those)."""
        return {"metric": "map", "eval_at": [12], "num_threads": self.num_threads, "seed": self.seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1}

    @classmethod
    def from_saved(cls, values: dict) -> FinalConfig:
        """A config as `asdict` saved it; a bundle of before the horizon setting named its windows `label_weeks`."""
        values = dict(values)
        if "label_weeks" in values:
            values["label_windows"] = values.pop("label_weeks")
        values["line_windows"] = tuple(values.get("line_windows", ()))  # JSON keeps a list
        return cls(**values)


@dataclass
class RankerState:
    """What fitting learned besides the booster (saved as state.json): the features in training order; the leader,
    a source whose own order (its candidates first, by its rank) beat LightGBM's on the validation customers,
    its candidates then lead in its order and LightGBM orders the rest (None: LightGBM's order); the MAP@12 of
    each order compared; the LightGBM settings chosen (`ranking.search.Trial` as a dict) and every fit of the
    search; each label window's first day, buyers and bought pairs among the candidates."""

    feature_names: list[str]
    leader: str | None = None
    validation_map: dict[str, float] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    search: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)


def fit_ranker(sources: dict[str, Recommender], n_per_source: dict[str, int], config: FinalConfig,
               data: TrainData, prefitted: tuple[str, ...] = (), warm: tuple[str, ...] = (),
               behind: dict[str, Recommender] | None = None) -> tuple[Ensemble, RankerState, pl.DataFrame]:
    """Train on every label window, then bring the sources up to `data.cutoff`; returns the ensemble, its state and
    the article table as of the cutoff (what answering reads). `prefitted` sources are used as they are; `warm`
    ones (that declare `fit_once`) were fitted on data before the settings' window: they are only refreshed, and
    the windows behind that window use `behind`'s unfitted instances of them instead (fitted before the oldest)."""
    frames, windows, offset = [], [], 0
    per_window = None if config.max_train_customers is None else \
        config.max_train_customers // max(config.label_windows, 1)
    behind_starts, near_starts = config.window_starts(data.cutoff)
    # (sources, windows, warm) in order; the first window of each fits its sources, the others refresh them
    groups = [(sources, behind_starts + near_starts, warm)]
    if warm and behind_starts:  # the warm fit saw the labels of the windows behind the settings' window
        if not set(warm) <= set(behind or {}):
            raise ValueError(f"the sources {list(warm)} were fitted on the label windows from {behind_starts[0]}, "
                             "behind the settings' window: those need unfitted instances of them (`behind`)")
        groups = [({**sources, **{name: behind[name] for name in warm}}, behind_starts, ()),
                  (sources, near_starts, warm)]
    steps = [(group, start, n == 0, group_warm)
             for group, starts, group_warm in groups for n, start in enumerate(starts)]
    for window_sources, start, first, group_warm in steps:
        early = TrainData(data.transactions.filter(pl.col("t_dat") < start), data.customers, data.articles, start)
        if early.transactions.height == 0:
            raise ValueError(f"no transactions before {start} (cutoff {data.cutoff} - {config.label_windows} label "
                             f"windows of {config.label_days} days); pass fewer label windows")
        prepare_sources(window_sources, early, first, prefitted, group_warm)
        end = start + timedelta(days=config.label_days)
        labels = data.transactions.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < end))
        frame = training_frame(window_sources, n_per_source, early, labels, per_window, config.seed,
                               config.line_windows)
        frames.append(frame.with_columns(pl.col("row") + offset))
        offset += int(frame["row"].max()) + 1
        windows.append({"start": start.isoformat(), "days": config.label_days, "buyers": frame["row"].n_unique(),
                        "positives": int(frame["label"].sum()), "lines": frame.height})
    booster, state, valid, scores = train_booster(pl.concat(frames, how="diagonal_relaxed"), config)
    state.windows = windows
    if valid.height:
        choose_leader(scores, state, valid, [name for name in sources if n_per_source.get(name)])
    prepare_sources(sources, data, False, prefitted, warm)
    return booster, state, article_table(data)


def prepare_sources(sources: dict[str, Recommender], data: TrainData, first: bool, prefitted: tuple[str, ...],
                    warm: tuple[str, ...]) -> None:
    """Sources as of `data.cutoff`: those that declare `fit_once` fitted on the first call (unless `warm`: fitted
    before on earlier data) and refreshed (weights kept) on the others; the rest refitted every time."""
    once = tuple(name for name, source in sources.items() if source.fit_once)
    skip = prefitted + (warm if first else once)
    for name, source in sources.items():
        if name in skip:
            continue
        started = time.perf_counter()
        source.fit(data)
        log.info("fitted source %s on data before %s in %.1f s", name, data.cutoff, time.perf_counter() - started)
    for name in once:
        if name not in prefitted and (not first or name in warm):
            sources[name].refresh(data)


def training_frame(sources: dict[str, Recommender], n_per_source: dict[str, int], early: TrainData,
                   labels: pl.DataFrame, max_customers: int | None, seed: int,
                   line_windows: tuple[int, ...] = ()) -> pl.DataFrame:
    """Features and labels of the label window's buyers (a seeded sample of at most `max_customers`), as of the
    window's first day; buyers without a bought article among their candidates are left out (no positive: their
    groups teach lambdarank nothing)."""
    buyers = np.sort(labels["customer_idx"].unique().to_numpy())
    if max_customers is not None and buyers.size > max_customers:
        buyers = np.sort(np.random.default_rng(seed).choice(buyers, max_customers, replace=False))
    query = Query.for_customers(buyers, early.customers, early.transactions, as_of=early.cutoff)
    articles = ArticleLookup.of(article_table(early))
    with logs.bar(f"ranker training frame ({buyers.size:,} buyers)", None):  # one call: a spinner, no ETA
        features = candidate_features(sources, n_per_source, query, articles, line_windows=line_windows)[1]
    # float32, as the model reads them (`feature_matrix`): the same values in half the memory of float64
    frame = pl.DataFrame({name: values if name in KEY_COLUMNS else np.asarray(values, dtype=np.float32)
                          for name, values in features.items()})
    del features
    rows = pl.DataFrame({"customer_idx": buyers}).with_row_index("row")
    bought = labels.join(rows, on="customer_idx").select("row", "article_idx").unique()
    frame = frame.join(bought.with_columns(pl.lit(1, pl.Int8).alias("label")), on=["row", "article_idx"],
                       how="left").with_columns(pl.col("label").fill_null(0))
    positives = frame.group_by("row").agg(pl.col("label").max().alias("has_positive"))
    frame = frame.join(positives.filter(pl.col("has_positive") == 1).select("row"), on="row", how="semi")
    log.info(
        "ranker label window: %d buyers, %d with a positive among %d candidates (recall %.3f)",
        buyers.size, frame["row"].n_unique(), frame.height, frame["label"].sum() / max(bought.height, 1),
    )
    if frame.height == 0:
        raise ValueError("no buyer of the ranker's training window has a bought article among its candidates")
    return frame.sort("row", "article_idx")


def train_booster(frame: pl.DataFrame, config: FinalConfig
                  ) -> tuple[Ensemble, RankerState, pl.DataFrame, np.ndarray]:
    """LightGBM on the frame, a seeded `valid_fraction` of its customers held out for early stopping, for the
    settings search (`ranking.search`, within `config.search_fits` fits) and the choice of the ensemble
    (`config.members`); returns the ensemble, the state (features, settings chosen, the search's fits), the
    held-out lines (empty under 10 customers: then the defaults, one booster, no early stopping) and the
    ensemble's scores of them."""
    state = RankerState(feature_columns(frame))
    rows = frame["row"].unique().sort().to_numpy()
    n_valid = int(round(rows.size * config.valid_fraction)) if rows.size >= 10 else 0
    valid_rows = np.random.default_rng(config.seed).choice(rows, n_valid, replace=False) if n_valid else \
        np.array([], dtype=rows.dtype)
    is_valid = pl.Series(member_of(frame["row"].to_numpy(), valid_rows))
    train, valid = _lines(frame.filter(~is_valid), state), frame.filter(is_valid)
    trial = config.default_trial()
    if not n_valid:
        booster = lgb.train(lightgbm_params(trial, config.lightgbm_params()), train.dataset(state.feature_names),
                            config.num_boost_round)
        ensemble, figures, scores = Ensemble([booster]), {}, np.zeros(0)
    else:
        valid_lines = _lines(valid, state)
        booster, trial, state.search = search(train, valid_lines, state.feature_names, trial, config.search_fits,
                                              config.lightgbm_params(), config.num_boost_round,
                                              config.early_stopping_rounds, config.seed)
        refit_on = train.take(sample_lines(train, trial, 1.0, config.seed))  # the searched setting's lines
        ensemble, figures, scores = add_members(booster, trial, refit_on, valid, valid_lines, state.feature_names,
                                                config)
    state.params = {**asdict(trial), "trees": ensemble.num_trees(), "members": len(ensemble.boosters), **figures}
    log.info("ranker: %d member(s), %d trees, %d features, settings %s", len(ensemble.boosters),
             ensemble.num_trees(), len(state.feature_names), state.params)
    return ensemble, state, valid, scores


def add_members(booster: lgb.Booster, trial: Trial, train: Lines, valid: pl.DataFrame, valid_lines: Lines,
                names: list[str], config: FinalConfig) -> tuple[Ensemble, dict[str, float], np.ndarray]:
    """The searched booster with `config.members - 1` bagged refits of its setting (`ranking.ensemble`), each of
    at most the booster's trees, kept where their average orders the validation customers' candidates better
    than the booster alone (MAP@12); else the booster alone. Returns the ensemble kept, both figures (none with
    one member) and the kept ensemble's scores of the validation lines. Left to early stopping, the refits grew to
    147 trees each against the booster's 22 on the full-size sample, 14 times its cost per answer; capped, the
    ensemble costs at most `members` times the booster."""
    alone = Ensemble([booster])
    alone_scores = alone.predict(valid_lines.matrix, config.num_threads)
    if config.members <= 1:
        return alone, {}, alone_scores
    ensemble = Ensemble([booster, *bagged_members(trial, train, valid_lines, names, config.lightgbm_params(),
                                                  max(booster.num_trees(), 1), config.early_stopping_rounds,
                                                  config.members - 1)])
    scores = ensemble.predict(valid_lines.matrix, config.num_threads, first=alone_scores)
    one, all_ = lines_map12(valid, alone_scores), lines_map12(valid, scores)
    log.info("ranker ensemble on the validation customers: MAP@12 %.4f with one booster, %.4f with %d; keeping %d",
             one, all_, config.members, config.members if all_ > one else 1)
    figures = {"valid_map12_one": one, f"valid_map12_{config.members}": all_}
    return (ensemble, figures, scores) if all_ > one else (alone, figures, alone_scores)


def choose_leader(scores: np.ndarray, state: RankerState, valid: pl.DataFrame, proposing: list[str]) -> None:
    """Compare LightGBM's order with each proposing source's own (its candidates first by its rank, LightGBM's for
    the rest) on the validation customers' candidates, by MAP@12 (`evaluation.metrics`); keep a source's order
    only where it is better; `scores`: the ranker's of `valid`'s lines. Sets `state.validation_map` and
    `state.leader`."""
    state.validation_map = {"lightgbm": lines_map12(valid, scores)}
    for name in proposing:
        if f"{name}_rank" in valid.columns:
            led = led_by(valid[f"{name}_rank"].cast(pl.Float32).fill_null(np.nan).to_numpy(), scores)
            state.validation_map[name] = lines_map12(valid, led)
    best = max(state.validation_map, key=state.validation_map.get)
    state.leader = None if state.validation_map[best] <= state.validation_map["lightgbm"] else best
    log.info("ranker order on %d validation customers: MAP@12 %s; answering with %s", valid["row"].n_unique(),
             ", ".join(f"{n} {v:.4f}" for n, v in state.validation_map.items()),
             f"{state.leader}'s order first" if state.leader else "LightGBM's order")


def lines_map12(lines: pl.DataFrame, scores: np.ndarray) -> float:
    """MAP@12 of candidate lines (`row, article_idx, label`) ordered by score within each row (ties to the earlier
    line), over the rows with a positive; a row's relevant articles are its positive lines, so the denominator
    is its positives among its lines, as LightGBM's own `map@12`."""
    rows, items = lines["row"].to_numpy().astype(np.int64), lines["article_idx"].to_numpy()
    keys, compact = np.unique(rows, return_inverse=True)
    order = best_first_order(compact, np.asarray(scores, dtype=np.float64))
    top = Recs.from_sorted(compact[order], items[order], np.zeros(rows.size, np.float32), keys.size, 12)
    positive = lines["label"].to_numpy() > 0
    relevant = np.split(items[positive][np.argsort(compact[positive], kind="stable")],
                        np.cumsum(np.bincount(compact[positive], minlength=keys.size))[:-1])
    return map_at_k(top.items, relevant, 12)


def _lines(frame: pl.DataFrame, state: RankerState) -> Lines:
    return Lines(feature_matrix(state.feature_names, frame), frame["label"].to_numpy(), frame["row"].to_numpy())
