"""One interface for every recommender and candidate source: fit on the past, recommend for a query.

A model's learned state (popularity tables, co-purchase pairs, network weights) comes from `fit`.
A customer's state (profile and purchase history) comes with each `Query` (`hmrec.data`), so the same code
scores a whole held-out week in one batch and one live customer whose history changed a second ago.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from enum import StrEnum
from pathlib import Path
from typing import Self

import numpy as np

from hmrec.data import PAD_ITEM, Query, Recs, TrainData
from hmrec.data.files import read_config, write_config

Explained = tuple[int, float, list[str]]  # article_idx, score, the sources that proposed it
# `explain` as arrays, one line per answer, each row's lines best first: (query row, article_idx, score, sources as
# a bitmask: bit j set when the j-th name of `reasons()` proposed it)
ExplainedLines = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class Reason(StrEnum):
    """Why a recommender proposes an article: each recommender declares one (serving words it for the customer)."""

    BOUGHT_BEFORE = "bought_before"
    OTHER_COLOUR = "other_colour"
    BOUGHT_WITH = "bought_with"
    STYLE = "style"
    AGE = "age"
    POPULAR = "popular"


class Recommender(ABC):
    """Fit on data before a cutoff; recommend up to k articles for every row of a query.

    Besides `fit` and `recommend`, the interface declares everything a caller may ask of any recommender, each
    with a default for those that cannot, so nobody looks a source up by name or type: why it proposes
    (`reasons`), time-dependent state as of a later cutoff (`refresh`), article likeness (`similar`,
    `similar_by`), co-purchase partners (`bought_with`), the ranker's per-customer state and pair scores
    (`user_state`, `recommend_from`, `pair_scores`), an index window (`with_index_window`), an engine trainer
    (`use_trainer`), training losses (`training_losses`) and the sources it merges (`parts`). More than 12
    methods on purpose: this is the one interface, each method a declared capability with its default."""

    name: str
    reason: Reason = Reason.STYLE
    personal_only: bool = False  # answers only customers with a purchase history (no fill of its own)
    fit_once: bool = False  # slow to train: fitted once, then only `refresh`ed as of each later cutoff

    @abstractmethod
    def fit(self, data: TrainData) -> Self: ...

    @abstractmethod
    def recommend(self, query: Query, k: int) -> Recs: ...

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        """Per query row, its answers best first, each with the sources that proposed it (this one, unless the
        recommender merges several)."""
        recs = self.recommend(query, k)
        return [[(int(a), float(s), [self.name]) for a, s in zip(items, scores, strict=True) if a != PAD_ITEM]
                for items, scores in zip(recs.items, recs.scores, strict=True)]

    def explain_lines(self, query: Query, k: int) -> ExplainedLines:
        """What `explain` answers, as arrays (ExplainedLines): a batch of many customers (the precomputed answers)
        builds no Python list per answer."""
        recs = self.recommend(query, k)
        row, position = np.nonzero(recs.items != PAD_ITEM)  # row-major: each row's answers in their order
        return (row.astype(np.int64), recs.items[row, position], recs.scores[row, position],
                np.ones(row.size, dtype=np.uint32))

    def reasons(self) -> dict[str, Reason]:
        """The reason of each source name `explain` can list (one, unless the recommender merges several)."""
        return {self.name: self.reason}

    def refresh(self, data: TrainData) -> Self:
        """Bring time-dependent state (what sells now) up to `data.cutoff` without relearning; most hold none."""
        return self

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Up to k articles like `article_idx` (itself excluded) and their scores, best first; None if this
        recommender has no notion of article likeness."""
        return None

    def similar_by(self) -> str | None:
        """The name of the source whose notion of likeness `similar` answers with (None: it has none)."""
        return None

    def bought_with(self, article_idx: int) -> np.ndarray:
        """Articles whose purchase makes this recommender propose `article_idx` (empty: none, or no such notion)."""
        return np.empty(0, dtype=np.int64)

    def user_state(self, query: Query) -> object | None:
        """What this source computes per query row before answering (user vectors, factors), computed once by the
        ranker for both `recommend_from` and `pair_scores`; None: no such state (no pair-score feature)."""
        return None

    def recommend_from(self, state: object, query: Query, k: int) -> Recs:
        """`recommend` from a `user_state(query)` already computed."""
        return self.recommend(query, k)

    def pair_scores(self, state: object, rows: np.ndarray, articles: np.ndarray) -> np.ndarray | None:
        """A user x article score (float32, nan: unknown) for every (query row, article_idx) line, from
        `user_state`; the ranker's `<name>_pair_score` feature. None: no such score."""
        return None

    def with_index_window(self, data: TrainData, window_days: int | None) -> Recommender:
        """A copy answering from an index of the articles sold `window_days` before `data.cutoff`, fitted state
        shared (how an index window is chosen on validation); only sources with an index window have one."""
        raise NotImplementedError(f"{type(self).__name__} has no index window")

    def use_trainer(self, train_fn) -> None:
        """Train on `train_fn` (an engine's trainer) instead of in this process; most have nothing to hand over."""
        return None

    def training_losses(self) -> list[float]:
        """The training loss of the last fit, one value per logging window, plotted in the report (empty: nothing
        to plot)."""
        return []

    def training_epochs(self) -> int:
        """How many epochs `training_losses` spans, marked on the report's loss plot (0: not trained in epochs)."""
        return 0

    def parts(self) -> dict[str, Recommender]:
        """The sources this recommender merges, by name (empty: it answers on its own)."""
        return {}

    def save(self, directory: Path) -> None:
        """Write the fitted state into `directory` (no pickle); only recommenders that are served need it."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def load(cls, directory: Path) -> Self:
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")


RECOMMENDER_FILE = "recommender.json"


def save_recommender(recommender: Recommender, directory: Path) -> None:
    """Save a fitted recommender with a note of its class, so `load_recommender` needs no guessing."""
    directory.mkdir(parents=True, exist_ok=True)
    recommender.save(directory)
    kind = {"module": type(recommender).__module__, "class": type(recommender).__qualname__}
    write_config(directory, kind, RECOMMENDER_FILE)


def load_recommender(directory: Path) -> Recommender:
    """Load what `save_recommender` wrote. A class of the hmrec package is imported; one from outside it (a source
    added as a plugin) is accepted only once its module has been imported by the caller, never imported here."""
    kind = read_config(directory, name=RECOMMENDER_FILE)
    module, name = kind["module"], kind["class"]
    if module.startswith("hmrec."):
        cls = getattr(importlib.import_module(module), name)
    else:
        cls = next((c for c in _subclasses(Recommender) if (c.__module__, c.__qualname__) == (module, name)), None)
        if cls is None:
            raise ValueError(f"{directory / RECOMMENDER_FILE} names {module}, which is not part of hmrec")
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ValueError(f"{directory / RECOMMENDER_FILE} names {name}, which is not a Recommender")
    return cls.load(directory)


def _subclasses(cls: type) -> list[type]:
    """Every subclass of `cls` imported so far, at any depth."""
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
