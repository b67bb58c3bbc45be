"""The `final` method: candidates from several sources, ordered by a LightGBM lambdarank model trained on the
weeks before the cutoff (`ranking.training`); this module answers, fans the interface out to the sources, saves
and loads. Its report sections are in `evaluation.report`."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec import cpus
from hmrec.candidates.generate import Candidates
from hmrec.data import Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.ranking.ensemble import Ensemble
from hmrec.ranking.features import ArticleLookup
from hmrec.ranking.scoring import best_first, candidate_features, feature_matrix, led_by
from hmrec.ranking.training import FinalConfig, RankerState, fit_ranker
from hmrec.recommenders.base import Explained, ExplainedLines, Reason, Recommender, load_recommender, save_recommender

__all__ = ["FinalConfig", "FinalRecommender", "RankerState"]

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
ARTICLES_FILE = "articles.parquet"
SOURCES_DIR = "sources"
SINGLE_THREAD_ROWS = 20_000
SCORE_ROWS = 10_000  # query rows scored at a time (about 1.6M candidate lines at the default budget)


class FinalRecommender(Recommender):
    """Multi-source candidates ranked by LightGBM. `prefitted` names sources passed in already fitted: fit() then
    uses them as they are for both the ranker's training weeks and the answers (if they were fitted on data up to
    the cutoff, their scores on the training weeks saw its labels: a small leak that makes the ranker trust them a
    little more than it should). `warm` names sources that declare `fit_once`, passed in fitted on data before the
    first label week (by the validation that chose the settings): they are only refreshed.

    What fitting learned is in `booster_`, `state_` and `articles_` (None before fit or load), never in the config.
    More than 12 methods because it implements the interface's capabilities by asking its sources."""

    name = "final"

    def __init__(
        self,
        sources: dict[str, Recommender],
        config: FinalConfig | None = None,
        prefitted: tuple[str, ...] | list[str] = (),
        warm: tuple[str, ...] | list[str] = (),
        behind: dict[str, Recommender] | None = None,
    ):
        self.sources = dict(sources)
        self.config = config or FinalConfig()
        self.prefitted = tuple(prefitted)
        self.warm = tuple(warm)
        self.behind = behind  # unfitted instances of the warm sources for the windows behind the settings' window
        missing = sorted(set(self.sources) - set(self.config.n_per_source))
        if missing:
            raise ValueError(f"FinalConfig.n_per_source has no candidate count for the sources {missing}")
        self.booster_: Ensemble | None = None  # one booster or a few averaged (`ranking.ensemble`)
        self.state_: RankerState | None = None
        self.articles_: pl.DataFrame | None = None  # article_table() as of the cutoff
        self._lookup: ArticleLookup | None = None  # of `articles_`, built on first use

    @property
    def n_per_source(self) -> dict[str, int]:
        return {name: self.config.n_per_source[name] for name in self.sources}

    def fit(self, data: TrainData) -> Self:
        self.booster_, self.state_, self.articles_ = fit_ranker(self.sources, self.n_per_source, self.config, data,
                                                                self.prefitted, self.warm, self.behind)
        self.behind = None  # fitted on old data, used only for training: not kept
        return self

    def _scored(self, query: Query) -> tuple[Candidates, np.ndarray]:
        """Every candidate of every query row and its ranker score (float32)."""
        require_fitted(self, self.booster_)
        if self._lookup is None or self._lookup.table is not self.articles_:
            self._lookup = ArticleLookup.of(self.articles_)
        candidates, features = candidate_features(self.sources, self.n_per_source, query, self._lookup,
                                                  self.state_.feature_names, self.config.line_windows)
        # threads cost more than they save on a few thousand lines (13 ms against 0.1 ms for one customer); never
        # more than this process may use (the same scores for any count)
        threads = 1 if len(candidates) < SINGLE_THREAD_ROWS else cpus.at_most(self.config.num_threads)
        matrix = feature_matrix(self.state_.feature_names, features)
        scores = self.booster_.predict(matrix, num_threads=threads) if len(candidates) else np.zeros(0)
        if self.state_.leader is not None and len(candidates):
            scores = led_by(features[f"{self.state_.leader}_rank"], scores)
        return candidates, scores.astype(np.float32)

    def recommend(self, query: Query, k: int) -> Recs:
        if len(query) > SCORE_ROWS:  # a large query in slices: the candidate lines and features stay bounded
            parts = [self.recommend(query.rows(start, min(start + SCORE_ROWS, len(query))), k)
                     for start in range(0, len(query), SCORE_ROWS)]
            return Recs.stacked(parts, k)
        candidates, scores = self._scored(query)
        best = best_first(candidates, scores, k)
        return Recs.from_sorted(candidates.row[best], candidates.article_idx[best], scores[best], len(query), k)

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        candidates, scores = self._scored(query)
        best = best_first(candidates, scores, k)
        answers: list[list[Explained]] = [[] for _ in range(len(query))]
        lines = zip(candidates.row[best].tolist(), candidates.article_idx[best].tolist(), scores[best].tolist(),
                    candidates.proposed_by(best), strict=True)
        for row, item, score, sources in lines:
            answers[row].append((item, score, sources))
        return answers

    def explain_lines(self, query: Query, k: int) -> ExplainedLines:
        """`explain`'s answers as arrays: the same lines, scores and order (`best_first`), sources as bits."""
        candidates, scores = self._scored(query)
        best = best_first(candidates, scores, k)
        return (candidates.row[best].astype(np.int64), candidates.article_idx[best], scores[best].astype(np.float32),
                candidates.source_bits(best, list(self.reasons())))

    def reasons(self) -> dict[str, Reason]:
        """Each source's declared reason, by the name `explain` lists it under."""
        return {name: source.reason for name, source in self.sources.items()}

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The first source (in order) that can tell article likeness answers."""
        for source in self.sources.values():
            if source.similar_by() is not None:
                return source.similar(article_idx, k)
        return None

    def similar_by(self) -> str | None:
        return next((found for s in self.sources.values() if (found := s.similar_by()) is not None), None)

    def bought_with(self, article_idx: int) -> np.ndarray:
        found = [f for f in (source.bought_with(article_idx) for source in self.sources.values()) if f.size]
        if len(found) == 1:  # one source pairs articles (bought-together): its partners are distinct already
            return found[0]
        return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)

    def parts(self) -> dict[str, Recommender]:
        return dict(self.sources)

    def feature_importance(self) -> pl.DataFrame:
        """`feature, gain, splits` of the trained ranker, most gain first."""
        require_fitted(self, self.booster_)
        return pl.DataFrame(
            {
                "feature": self.booster_.feature_name(),
                "gain": self.booster_.feature_importance("gain").astype(np.float64),
                "splits": self.booster_.feature_importance("split").astype(np.int64),
            }
        ).sort("gain", descending=True)

    def save(self, directory: Path) -> None:
        require_fitted(self, self.booster_)
        write_config(directory, {"config": asdict(self.config), "sources": list(self.sources),
                                 "prefitted": list(self.prefitted)})
        write_config(directory, self.state_, STATE_FILE)
        self.booster_.save(directory)
        self.articles_.write_parquet(directory / ARTICLES_FILE)
        for name, source in self.sources.items():
            save_recommender(source, directory / SOURCES_DIR / name)

    @classmethod
    def load(cls, directory: Path) -> Self:
        settings = read_config(directory)
        sources = {name: load_recommender(directory / SOURCES_DIR / name) for name in settings["sources"]}
        model = cls(sources, FinalConfig.from_saved(settings["config"]), prefitted=settings["prefitted"])
        model.booster_ = Ensemble.load(directory)
        model.state_ = read_config(directory, RankerState, STATE_FILE)
        model.articles_ = pl.read_parquet(directory / ARTICLES_FILE)
        return model
