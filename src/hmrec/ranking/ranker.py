"""The `final` method: candidates from several sources, ordered by a LightGBM lambdarank model trained on the
week before the cutoff (labels: bought in that week; candidates and features strictly before it)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Self

import lightgbm as lgb
import numpy as np
import polars as pl

from hmrec import cpus, logs
from hmrec.candidates.generate import Candidates, propose
from hmrec.ranking.features import ArticleLookup, article_table, feature_arrays, feature_columns
from hmrec.recommenders.base import (
    Explained,
    Query,
    Reason,
    Recommender,
    Recs,
    TrainData,
    load_recommender,
    ranks_in_row,
    save_recommender,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_FILE = "ranker.txt"
ARTICLES_FILE = "articles.parquet"
SOURCES_DIR = "sources"
PAIR_SCORE = "two_tower_pair_score"
ALS_SCORE = "als_pair_score"
SINGLE_THREAD_ROWS = 20_000
SCORE_ROWS = 10_000  # query rows scored at a time (about 1.6M candidate lines at the default budget)
LEADER_BASE = 1000.0  # a leading source's line scores LEADER_BASE - its rank: above every other line

# About 100 candidates per customer once the overlaps are merged.
DEFAULT_N_PER_SOURCE = {
    "two_tower": 60,
    "repurchase": 24,
    "other_colours": 20,
    "bought_together": 24,
    "age_popularity": 30,
    "trending": 16,
    "als": 16,
}


@dataclass
class FinalConfig:
    """How the ranker is trained. label_days: the window before the cutoff whose purchases are the labels;
    fit_once: sources fitted once on the data before that window, their weights kept for answering and their
    `refresh(data)` (if any) run as of the cutoff, so the index holds what sells now (the two-tower is
    slow to train, and one fitted on the label window would score the ranker's training labels better than
    it can score the held-out week, so the ranker would trust it too much); the other sources are refitted
    on everything before the cutoff. label_weeks: how many such windows, each with its candidates and features
    as of its first day (several label weeks teach the ranker more than one).
    max_train_customers: a seeded sample of the windows' buyers, shared out over the weeks (None: all);
    customers who bought nothing in the window are left out on purpose: with no positive their groups teach
    lambdarank nothing. valid_fraction: customers held out for early stopping, and on whom LightGBM's order is
    compared with each source's own (`leader`): the final method never orders worse there than its best source."""

    n_per_source: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_N_PER_SOURCE))
    label_days: int = 7
    label_weeks: int = 2
    fit_once: tuple[str, ...] = ("two_tower",)
    max_train_customers: int | None = 50_000
    valid_fraction: float = 0.15
    num_boost_round: int = 400
    early_stopping_rounds: int = 40
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    num_threads: int = field(default_factory=cpus.available)  # the same trees for any count (hmrec.cpus)
    seed: int = 7
    feature_names: list[str] = field(default_factory=list)  # set by fit, checked by recommend
    # set by fit: a source whose own order (its candidates first, by its rank) beat LightGBM's on the ranker's
    # validation customers; its candidates then lead in its order, LightGBM orders the rest (None: LightGBM's)
    leader: str | None = None
    validation_map: dict[str, float] = field(default_factory=dict)  # set by fit: MAP@12 of each order compared

    def label_starts(self, cutoff: date) -> list[date]:
        """First day of each label window, oldest first: the windows just before `cutoff`."""
        return [cutoff - timedelta(days=self.label_days * week) for week in range(self.label_weeks, 0, -1)]


def default_sources(seed: int = 7, settings: Mapping[str, object] | None = None) -> dict[str, Recommender]:
    """The candidate sources the pipeline's `final` method uses, unfitted; `settings` ("repurchase.window_days"
    -> 91, ..., as `evaluation.selection` chooses them) override the defaults."""
    from hmrec.recommenders.als import ALSConfig, ALSRecommender
    from hmrec.recommenders.colours import OtherColoursRecommender
    from hmrec.recommenders.popularity import AgePopularityRecommender, PopularityConfig
    from hmrec.recommenders.repurchase import RepurchaseConfig, RepurchaseRecommender
    from hmrec.recommenders.together import BoughtTogetherRecommender
    from hmrec.recommenders.trending import TrendingConfig, TrendingRecommender
    from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender

    s = dict(settings or {})
    return {
        "two_tower": TwoTowerRecommender(TwoTowerConfig(
            seed=seed, index_window_days=s.get("two_tower.index_window_days", 28))),
        "repurchase": RepurchaseRecommender(RepurchaseConfig(window_days=s.get("repurchase.window_days", 91),
                                                             half_life_days=s.get("repurchase.half_life_days", 14.0))),
        "other_colours": OtherColoursRecommender(),
        "bought_together": BoughtTogetherRecommender(),
        "age_popularity": AgePopularityRecommender(
            PopularityConfig(window_days=s.get("age_popularity.window_days", 14))),
        "trending": TrendingRecommender(TrendingConfig(half_life_days=s.get("trending.half_life_days", 7.0))),
        "als": ALSRecommender(ALSConfig(seed=seed)),
    }


def pair_scores(users: np.ndarray, items: np.ndarray, rows: np.ndarray, articles: np.ndarray) -> np.ndarray:
    """user . article for every candidate line (query row, article_idx), not only the ones the two-tower
    retrieved (its index holds only recently sold articles and returns its top-N). users: (len(query), dim),
    items: (n_articles, dim)."""
    return np.einsum("nd,nd->n", users[rows], items[articles]).astype(np.float32)


class FinalRecommender(Recommender):
    """Multi-source candidates ranked by LightGBM. `prefitted` names sources passed in already fitted:
    fit() then uses them as they are for both the ranker's training week and the answers (if they were
    fitted on data up to the cutoff, their scores on the training week saw its labels: a small leak that
    makes the ranker trust them a little more than it should). `warm` names `fit_once` sources passed in fitted
    on data before the first label week (by the validation that chose the settings): they are only refreshed."""

    name = "final"

    def __init__(
        self,
        sources: dict[str, Recommender],
        config: FinalConfig | None = None,
        prefitted: tuple[str, ...] | list[str] = (),
        warm: tuple[str, ...] | list[str] = (),
    ):
        self.sources = dict(sources)
        self.config = config or FinalConfig()
        self.prefitted = tuple(prefitted)
        self.warm = tuple(warm)  # fit_once sources already fitted on data before the first label week
        missing = sorted(set(self.sources) - set(self.config.n_per_source))
        if missing:
            raise ValueError(f"FinalConfig.n_per_source has no candidate count for the sources {missing}")
        self.booster: lgb.Booster | None = None
        self.articles: pl.DataFrame | None = None  # article_table() as of the cutoff
        self._lookup: ArticleLookup | None = None  # of `articles`, built on first use

    @property
    def n_per_source(self) -> dict[str, int]:
        return {name: self.config.n_per_source[name] for name in self.sources}

    def fit(self, data: TrainData) -> Self:
        cfg = self.config
        frames, offset = [], 0
        for week, start in enumerate(cfg.label_starts(data.cutoff)):
            early = TrainData(data.transactions.filter(pl.col("t_dat") < start), data.customers, data.articles, start)
            if early.transactions.height == 0:
                raise ValueError(f"no transactions before {start} (cutoff {data.cutoff} - {cfg.label_weeks} label "
                                 f"weeks of {cfg.label_days} days); pass fewer label weeks")
            self._prepare_sources(early, first=week == 0)
            end = start + timedelta(days=cfg.label_days)
            labels = data.transactions.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < end))
            frame = self._training_frame(early, labels)
            frames.append(frame.with_columns(pl.col("row") + offset))
            offset += int(frame["row"].max()) + 1
        self.booster = self._train(pl.concat(frames, how="diagonal_relaxed"))
        self._prepare_sources(data, first=False)
        self.articles = article_table(data)
        return self

    def _prepare_sources(self, data: TrainData, first: bool) -> None:
        """Sources as of `data.cutoff`: the `fit_once` ones fitted on the first call (unless `warm`: fitted before
        on earlier data) and refreshed (weights kept) on the others; the rest refitted every time."""
        once = tuple(self.config.fit_once)
        self._fit_sources(data, skip=self.prefitted + (self.warm if first else once))
        for name in once:
            source = self.sources.get(name)
            if source is not None and name not in self.prefitted and (not first or name in self.warm):
                source.refresh(data)

    def _fit_sources(self, data: TrainData, skip: tuple[str, ...]) -> None:
        for name, source in self.sources.items():
            if name in skip:
                continue
            started = time.perf_counter()
            source.fit(data)
            log.info("fitted source %s on data before %s in %.1f s", name, data.cutoff, time.perf_counter() - started)

    def _training_frame(self, early: TrainData, labels: pl.DataFrame) -> pl.DataFrame:
        """Features and labels of the label window's buyers, as of the window's first day."""
        cfg = self.config
        buyers = np.sort(labels["customer_idx"].unique().to_numpy())
        per_week = None if cfg.max_train_customers is None else cfg.max_train_customers // max(cfg.label_weeks, 1)
        if per_week is not None and buyers.size > per_week:  # the sample is shared out over the label weeks
            rng = np.random.default_rng(cfg.seed)
            buyers = np.sort(rng.choice(buyers, per_week, replace=False))
        query = Query.for_customers(buyers, early.customers, early.transactions, as_of=early.cutoff)
        articles = ArticleLookup.of(article_table(early))
        with logs.bar(f"ranker training frame ({buyers.size:,} buyers)", None):  # one call: a spinner, no ETA
            frame = pl.DataFrame(self._features(query, articles)[1])
        rows = pl.DataFrame({"customer_idx": buyers}).with_row_index("row")
        bought = labels.join(rows, on="customer_idx").select("row", "article_idx").unique()
        frame = frame.join(bought.with_columns(pl.lit(1, pl.Int8).alias("label")), on=["row", "article_idx"],
                           how="left").with_columns(pl.col("label").fill_null(0))
        positives = frame.group_by("row").agg(pl.col("label").max().alias("has_positive"))
        frame = frame.join(positives.filter(pl.col("has_positive") == 1).select("row"), on="row", how="semi")
        log.info(
            "ranker training week: %d buyers, %d with a positive among %d candidates (recall %.3f)",
            buyers.size, frame["row"].n_unique(), frame.height, frame["label"].sum() / max(bought.height, 1),
        )
        if frame.height == 0:
            raise ValueError("no buyer of the ranker's training window has a bought article among its candidates")
        return frame.sort("row", "article_idx")

    def _features(self, query: Query, articles: ArticleLookup) -> tuple[Candidates, dict[str, np.ndarray]]:
        """The candidates of every query row and their `feature_arrays`, with the two-tower's and ALS's user x
        article scores for every line (the user vectors are most of a one-customer query's cost: computed once,
        for retrieval and pair scores)."""
        from hmrec.recommenders.als import ALSRecommender
        from hmrec.retrieval.recommender import TwoTowerRecommender

        retrieved, pair = {}, {}
        two_tower = self.sources.get("two_tower")
        if isinstance(two_tower, TwoTowerRecommender):
            users = two_tower.user_vectors(query)
            if self.n_per_source["two_tower"]:
                retrieved["two_tower"] = two_tower.search(users, self.n_per_source["two_tower"])
            pair[PAIR_SCORE] = lambda rows, items: pair_scores(users, two_tower.article_vectors(), rows, items)
        als = self.sources.get("als")
        if isinstance(als, ALSRecommender):
            factors = als.user_factors(query)
            if self.n_per_source["als"]:
                retrieved["als"] = als.recommend_from(factors, query, self.n_per_source["als"])
            pair[ALS_SCORE] = lambda rows, items: als.pair_scores(factors, rows, items)
        candidates = propose(self.sources, query, self.n_per_source, answered=retrieved)
        features = feature_arrays(candidates, query, articles)
        for name, score in pair.items():
            features[name] = score(candidates.row.astype(np.int64), candidates.article_idx.astype(np.int64))
        return candidates, features

    def _train(self, frame: pl.DataFrame) -> lgb.Booster:
        cfg = self.config
        cfg.feature_names = feature_columns(frame)
        rows = frame["row"].unique().sort().to_numpy()
        rng = np.random.default_rng(cfg.seed)
        n_valid = int(round(rows.size * cfg.valid_fraction)) if rows.size >= 10 else 0
        valid_rows = rng.choice(rows, n_valid, replace=False) if n_valid else np.array([], dtype=rows.dtype)
        is_valid = np.isin(frame["row"].to_numpy(), valid_rows)
        params = {
            "objective": "lambdarank",
            "metric": "map",
            "eval_at": [12],
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_data_in_leaf,
            "num_threads": cfg.num_threads,
            "seed": cfg.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        train_set = self._dataset(frame.filter(~pl.Series(is_valid)))
        valid = frame.filter(pl.Series(is_valid))
        valid_sets, callbacks = [], []
        if n_valid:
            valid_sets = [self._dataset(valid, reference=train_set)]
            callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)]
        booster = lgb.train(params, train_set, cfg.num_boost_round, valid_sets=valid_sets, callbacks=callbacks)
        log.info("ranker: %d trees, %d features, best valid %s", booster.num_trees(), len(cfg.feature_names),
                 dict(booster.best_score.get("valid_0", {})))
        cfg.leader, cfg.validation_map = None, {}
        if n_valid:
            self._choose_leader(booster, valid)
        return booster

    def _choose_leader(self, booster: lgb.Booster, valid: pl.DataFrame) -> None:
        """Compare LightGBM's order with each source's own (its candidates first by its rank, LightGBM's for the
        rest) on the validation customers' candidates, by MAP@12; keep a source's order only where it is better."""
        cfg = self.config
        rows, labels = valid["row"].to_numpy(), valid["label"].to_numpy()
        scores = booster.predict(self.matrix(valid), num_threads=cfg.num_threads)
        cfg.validation_map = {"lightgbm": _map12(rows, labels, scores)}
        for name in self.sources:
            if self.n_per_source.get(name) and f"{name}_rank" in valid.columns:  # the sources that propose
                led = _led_by(valid[f"{name}_rank"].cast(pl.Float32).fill_null(np.nan).to_numpy(), scores)
                cfg.validation_map[name] = _map12(rows, labels, led)
        best = max(cfg.validation_map, key=cfg.validation_map.get)
        cfg.leader = None if cfg.validation_map[best] <= cfg.validation_map["lightgbm"] else best
        log.info("ranker order on %d validation customers: MAP@12 %s; answering with %s", np.unique(rows).size,
                 ", ".join(f"{n} {v:.4f}" for n, v in cfg.validation_map.items()),
                 f"{cfg.leader}'s order first" if cfg.leader else "LightGBM's order")

    def _dataset(self, frame: pl.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        groups = frame.group_by("row", maintain_order=True).len()["len"].to_numpy()
        return lgb.Dataset(self.matrix(frame), label=frame["label"].to_numpy(), group=groups,
                           feature_name=self.config.feature_names, reference=reference, free_raw_data=True)

    def matrix(self, features: pl.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
        """The model inputs in training order, float32 with nan for missing; from a table or `feature_arrays`."""
        present = features.columns if isinstance(features, pl.DataFrame) else features
        missing = [name for name in self.config.feature_names if name not in present]
        if missing:
            raise ValueError(f"the ranker was trained with features {missing} that these candidates lack")
        if isinstance(features, pl.DataFrame):
            # one conversion to the common supertype (nulls -> nan), then float32: a cast per column costs more
            return features.select(self.config.feature_names).to_numpy().astype(np.float32, copy=False)
        matrix = np.empty((len(features["row"]), len(self.config.feature_names)), dtype=np.float32)
        for j, name in enumerate(self.config.feature_names):
            matrix[:, j] = features[name]
        return matrix

    def _scored(self, query: Query) -> tuple[Candidates, np.ndarray]:
        """Every candidate of every query row and its ranker score (float32)."""
        if self.booster is None or self.articles is None:
            raise RuntimeError("FinalRecommender used before fit or load")
        candidates, features = self._features(query, self.article_lookup())
        # threads cost more than they save on a few thousand lines (13 ms against 0.1 ms for one customer)
        threads = 1 if len(candidates) < SINGLE_THREAD_ROWS else self.config.num_threads
        scores = self.booster.predict(self.matrix(features), num_threads=threads) if len(candidates) else np.zeros(0)
        if self.config.leader is not None and len(candidates):
            scores = _led_by(features[f"{self.config.leader}_rank"], scores)
        return candidates, scores.astype(np.float32)

    def article_lookup(self) -> ArticleLookup:
        """The answering cutoff's article table, ready for `feature_arrays` (built once)."""
        if self._lookup is None or self._lookup.table is not self.articles:
            self._lookup = ArticleLookup.of(self.articles)
        return self._lookup

    def recommend(self, query: Query, k: int) -> Recs:
        if len(query) > SCORE_ROWS:  # a large query in slices: the candidate lines and features stay bounded
            parts = [self.recommend(query.rows(start, min(start + SCORE_ROWS, len(query))), k)
                     for start in range(0, len(query), SCORE_ROWS)]
            return Recs(np.concatenate([p.items for p in parts]), np.concatenate([p.scores for p in parts]))
        candidates, scores = self._scored(query)
        best = _best_first(candidates, scores, k)
        return Recs.from_sorted(candidates.row[best], candidates.article_idx[best], scores[best], len(query), k)

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        candidates, scores = self._scored(query)
        best = _best_first(candidates, scores, k)
        answers: list[list[Explained]] = [[] for _ in range(len(query))]
        lines = zip(candidates.row[best].tolist(), candidates.article_idx[best].tolist(), scores[best].tolist(),
                    candidates.proposed_by(best), strict=True)
        for row, item, score, sources in lines:
            answers[row].append((item, score, sources))
        return answers

    def reasons(self) -> dict[str, Reason]:
        """Each source's declared reason, by the name `explain` lists it under."""
        return {name: source.reason for name, source in self.sources.items()}

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The first source (in order) that can tell article likeness answers."""
        for source in self.sources.values():
            found = source.similar(article_idx, k)
            if found is not None:
                return found
        return None

    def bought_with(self, article_idx: int) -> np.ndarray:
        found = [source.bought_with(article_idx) for source in self.sources.values()]
        return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)

    def feature_importance(self) -> pl.DataFrame:
        """`feature, gain, splits` of the trained ranker, most gain first."""
        if self.booster is None:
            raise RuntimeError("FinalRecommender.feature_importance called before fit or load")
        return pl.DataFrame(
            {
                "feature": self.booster.feature_name(),
                "gain": self.booster.feature_importance("gain").astype(np.float64),
                "splits": self.booster.feature_importance("split").astype(np.int64),
            }
        ).sort("gain", descending=True)

    def importance_section(self, top: int = 20) -> str:
        """Markdown for the report: the ranker's features by total gain."""
        importance = self.feature_importance().head(top)
        total = float(self.feature_importance()["gain"].sum()) or 1.0
        lines = ["## Ranker feature importance", "", f"LightGBM lambdarank, {self.booster.num_trees()} trees; "
                 "gain = total loss reduction of the splits on the feature.", ""]
        if self.config.validation_map:
            compared = ", ".join(f"{name} {value:.4f}" for name, value in self.config.validation_map.items())
            chosen = f"**{self.config.leader}**'s order first" if self.config.leader else "**LightGBM**'s order"
            lines += [f"Order chosen on the ranker's validation customers (MAP@12 of LightGBM's order and of each "
                      f"source's own order over the same candidates: {compared}): {chosen}.", ""]
        lines += ["| feature | gain share | splits |", "|---|---:|---:|"]
        for feature, gain, splits in importance.iter_rows():
            lines.append(f"| {feature} | {gain / total:.3f} | {splits} |")
        return "\n".join(lines) + "\n"

    def save(self, directory: Path) -> None:
        if self.booster is None or self.articles is None:
            raise RuntimeError("FinalRecommender.save called before fit")
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE))
        settings = {"config": asdict(self.config), "sources": list(self.sources), "prefitted": list(self.prefitted)}
        (directory / CONFIG_FILE).write_text(json.dumps(settings, indent=2))
        self.articles.write_parquet(directory / ARTICLES_FILE)
        for name, source in self.sources.items():
            save_recommender(source, directory / SOURCES_DIR / name)

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = json.loads((directory / CONFIG_FILE).read_text())
        config = FinalConfig(**settings["config"])
        config.fit_once = tuple(config.fit_once)
        sources = {name: load_recommender(directory / SOURCES_DIR / name) for name in settings["sources"]}
        model = cls(sources, config, prefitted=settings["prefitted"])
        model.booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        model.articles = pl.read_parquet(directory / ARTICLES_FILE)
        return model


def _best_first(candidates: Candidates, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of each row's k best candidate lines: by row, best score first, ties to the smaller article_idx."""
    rows = candidates.row.astype(np.int64)
    order = np.lexsort((candidates.article_idx, -scores, rows))
    return order[ranks_in_row(rows[order]) < k]


def _led_by(rank: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores that put the lines a source proposed first, in its rank order (rank nan: not proposed), and order
    the rest by `scores` (squashed below every proposed line's)."""
    squashed = 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64))) - 1.0  # in (-1, 0)
    return np.where(np.isnan(rank), squashed, LEADER_BASE - np.nan_to_num(rank))


def _map12(rows: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """MAP@12 over the rows with a positive, of the lines ordered by score (ties to the earlier line); the
    denominator is each row's positives among its lines, as LightGBM's own `map@12`."""
    order = np.lexsort((np.arange(rows.size), -scores, rows))
    rows, hits = rows[order].astype(np.int64), labels[order].astype(np.float64)
    rank = ranks_in_row(rows)
    top = rank < 12
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    running = np.cumsum(hits)
    cumulative = running - np.repeat(np.r_[0.0, running][starts], np.diff(np.r_[starts, rows.size]))  # within row
    precision = np.where(top & (hits > 0), cumulative / (rank + 1), 0.0)
    keys, inverse = np.unique(rows, return_inverse=True)
    positives = np.bincount(inverse, weights=hits, minlength=keys.size)
    ap = np.bincount(inverse, weights=precision, minlength=keys.size)
    has = positives > 0
    return float((ap[has] / np.minimum(positives[has], 12)).mean()) if has.any() else 0.0
