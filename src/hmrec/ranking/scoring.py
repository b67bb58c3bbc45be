"""What the ranker scores: every source's candidates for a query with their features (each source's pair score
among them), the model's input matrix, a leading source's order, and each row's best lines."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import polars as pl

from hmrec.candidates.generate import Candidates, propose
from hmrec.data import Query, ranks_in_row
from hmrec.ranking.features import ArticleLookup, feature_arrays
from hmrec.recommenders.base import Recommender
from hmrec.store.arrays import best_first_order

LEADER_BASE = 1000.0  # a leading source's line scores LEADER_BASE - its rank: above every other line


def pair_score_name(source: str) -> str:
    """The ranker feature holding a source's `pair_scores`."""
    return f"{source}_pair_score"


def candidate_features(sources: Mapping[str, Recommender], n_per_source: Mapping[str, int], query: Query,
                       articles: ArticleLookup, wanted: Collection[str] | None = None,
                       line_windows: tuple[int, ...] = ()):
    """The candidates of every query row and their `feature_arrays`, with the pair score of every source that
    declares a `user_state` for every line (the state, user vectors say, is most of a one-customer query's cost:
    computed once, for retrieval and pair scores). wanted: the features the caller reads (a trained ranker's), or
    None for all; a source that proposes nothing and whose pair score is not wanted never computes its state;
    `line_windows`: as in `feature_arrays`."""
    retrieved, states = {}, {}
    for name, source in sources.items():
        if not n_per_source[name] and wanted is not None and pair_score_name(name) not in wanted:
            continue
        state = source.user_state(query)
        if state is None:
            continue
        states[name] = state
        if n_per_source[name]:
            retrieved[name] = source.recommend_from(state, query, n_per_source[name])
    candidates = propose(sources, query, n_per_source, answered=retrieved)
    features = feature_arrays(candidates, query, articles, line_windows)
    rows, items = candidates.row.astype(np.int64), candidates.article_idx.astype(np.int64)
    for name, state in states.items():
        scores = sources[name].pair_scores(state, rows, items)
        if scores is not None:
            features[pair_score_name(name)] = scores
    return candidates, features


FILL_ROWS = 4096  # lines of the feature matrix filled at a time (~1 MB at ~60 features)


def feature_matrix(names: list[str], features: pl.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
    """The model inputs in training order (`names`), float32 with nan for missing; from a table or
    `feature_arrays`."""
    present = features.columns if isinstance(features, pl.DataFrame) else features
    missing = [name for name in names if name not in present]
    if missing:
        raise ValueError(f"the ranker was trained with features {missing} that these candidates lack")
    if isinstance(features, pl.DataFrame):
        # one conversion to the common supertype (nulls -> nan), then float32: a cast per column costs more
        return features.select(names).to_numpy().astype(np.float32, copy=False)
    n, columns = len(features["row"]), [features[name] for name in names]
    matrix = np.empty((n, len(names)), dtype=np.float32)
    # Row blocks that stay in cache while each column is written into them: a whole column at a time writes one
    # float per cache line of the matrix, over and over (4x slower on a batch's 2.6M lines).
    for start in range(0, n, FILL_ROWS):
        block = matrix[start : start + FILL_ROWS]
        for j, column in enumerate(columns):
            block[:, j] = column[start : start + FILL_ROWS]
    return matrix


def best_first(candidates: Candidates, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of each row's k best candidate lines: by row, best score first, ties to the smaller article_idx."""
    rows = candidates.row.astype(np.int64)
    order = best_first_order(rows, scores)  # candidates are in (row, article_idx) order: ties in article order
    return order[ranks_in_row(rows[order]) < k]


def led_by(rank: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores that put the lines a source proposed first, in its rank order (rank nan: not proposed), and order
    the rest by `scores` (squashed below every proposed line's)."""
    squashed = 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64))) - 1.0  # in (-1, 0)
    return np.where(np.isnan(rank), squashed, LEADER_BASE - np.nan_to_num(rank))
