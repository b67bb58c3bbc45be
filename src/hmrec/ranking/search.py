"""The ranker's LightGBM settings chosen on its validation customers within a budget of fits: successive halving
over a seeded sample of `GRID` (the defaults always among them), each rung on twice the training buyers of the one
before and half its settings, the last rung one fit on all of them (the booster kept). Trees by early stopping on
the validation MAP@12 in every fit."""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, fields

import lightgbm as lgb
import numpy as np

log = logging.getLogger(__name__)

OBJECTIVES = {"lambdarank": "lambdarank", "binary": "binary", "xendcg": "rank_xendcg"}


@dataclass(frozen=True)
class Trial:
    """One setting of the ranker. buyer_share: the share of the label windows' training buyers it learns from
    (the same share of each window in expectation); negatives_per_buyer: the unbought candidates kept per buyer, a
    seeded sample (None: all); every bought one is kept."""

    objective: str = "lambdarank"
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    buyer_share: float = 1.0
    negatives_per_buyer: int | None = None


# the values tried: 3 x 3 x 3 x 3 x 2 x 3 = 486 settings, of which a budget of 15 fits tries 8 on an eighth of
# the buyers, the better 4 on a quarter, 2 on half and 1 on all
GRID = {"objective": ("lambdarank", "binary", "xendcg"), "learning_rate": (0.03, 0.05, 0.1),
        "num_leaves": (15, 31, 63), "min_data_in_leaf": (10, 20, 100), "buyer_share": (1.0, 0.5),
        "negatives_per_buyer": (None, 50, 20)}


@dataclass
class Lines:
    """Candidate lines as LightGBM reads them: features (float32), labels, each line's group (row)."""

    matrix: np.ndarray
    label: np.ndarray
    row: np.ndarray  # sorted: a row's lines are contiguous

    def take(self, keep: np.ndarray) -> Lines:
        if keep.size == self.row.size:  # every line: no copy of the matrix (the largest array of the search)
            return self
        return Lines(self.matrix[keep], self.label[keep], self.row[keep])

    def dataset(self, names: list[str], reference: lgb.Dataset | None = None) -> lgb.Dataset:
        groups = np.diff(np.flatnonzero(np.r_[True, self.row[1:] != self.row[:-1], True]))
        return lgb.Dataset(self.matrix, label=self.label, group=groups, feature_name=names, reference=reference,
                           free_raw_data=True)


def rungs(fits: int) -> list[int]:
    """Settings tried at each rung, halving to 1: the most settings whose rungs sum to at most `fits` (>= 1)."""
    best = [1]
    for first in range(2, fits + 1):
        sizes = [first]
        while sizes[-1] > 1:
            sizes.append(-(-sizes[-1] // 2))
        if sum(sizes) > fits:
            break
        best = sizes
    return best


def trials(default: Trial, count: int, seed: int) -> list[Trial]:
    """`default` first, then a seeded sample of the rest of `GRID` (without repeats)."""
    names = list(GRID)
    others = [Trial(**dict(zip(names, values, strict=True))) for values in itertools.product(*GRID.values())]
    others = [trial for trial in others if trial != default]
    picked = np.random.default_rng(seed).choice(len(others), min(count - 1, len(others)), replace=False)
    return [default, *(others[i] for i in sorted(picked))]


def sample_lines(lines: Lines, trial: Trial, share: float, seed: int) -> np.ndarray:
    """Indices of the lines a trial learns from at a rung: the rows drawn (a fixed seeded draw per row, so a larger
    share holds a smaller one's rows), then per row every positive and at most `negatives_per_buyer` negatives."""
    rows, first = np.unique(lines.row, return_index=True)
    sizes = np.diff(np.r_[first, lines.row.size])  # lines per row
    draw = np.random.default_rng(seed).random(rows.size)
    keep = np.repeat(draw < share * trial.buyer_share, sizes)
    if trial.negatives_per_buyer is not None:
        noise = np.random.default_rng(seed + 1).random(lines.row.size)
        order = np.lexsort((noise, lines.label <= 0, lines.row))  # per row: positives, then negatives at random
        rank = np.empty(order.size, np.int64)
        rank[order] = np.arange(order.size) - np.repeat(first, sizes)
        positives = np.repeat(np.add.reduceat((lines.label > 0).astype(np.int64), first), sizes)
        keep &= (lines.label > 0) | (rank < positives + trial.negatives_per_buyer)
    return np.flatnonzero(keep)


def lightgbm_params(trial: Trial, base: dict) -> dict:
    return {**base, "objective": OBJECTIVES[trial.objective], "learning_rate": trial.learning_rate,
            "num_leaves": trial.num_leaves, "min_data_in_leaf": trial.min_data_in_leaf}


def fit_one(trial: Trial, train: Lines, valid: Lines, names: list[str], base: dict, rounds: int,
            patience: int) -> tuple[lgb.Booster, float]:
    """One LightGBM fit with early stopping on the validation MAP@12; the booster and its best figure."""
    train_set = train.dataset(names)
    booster = lgb.train(lightgbm_params(trial, base), train_set, rounds, valid_sets=[valid.dataset(names, train_set)],
                        callbacks=[lgb.early_stopping(patience, verbose=False)])
    return booster, float(booster.best_score["valid_0"]["map@12"])


def search(train: Lines, valid: Lines, names: list[str], default: Trial, fits: int, base: dict, rounds: int,
           patience: int, seed: int) -> tuple[lgb.Booster, Trial, list[dict]]:
    """Successive halving within `fits` fits; the last rung's booster, its setting and a record of every fit."""
    sizes = rungs(max(fits, 1))
    alive, record, booster = trials(default, sizes[0], seed), [], None
    for rung, size in enumerate(sizes):
        share = 0.5 ** (len(sizes) - 1 - rung)
        scored = []
        for trial in alive[:size]:
            booster, figure = fit_one(trial, train.take(sample_lines(train, trial, share, seed)), valid, names, base,
                                      rounds, patience)
            scored.append((figure, -len(scored), trial))
            record.append({"rung": rung, "share": share, **asdict(trial), "trees": booster.best_iteration,
                           "valid_map12": figure})
            log.info("ranker search rung %d (%.3f of the buyers): %s -> MAP@12 %.4f, %d trees", rung, share,
                     _short(trial), figure, booster.best_iteration)
        alive = [trial for *_, trial in sorted(scored, key=lambda s: s[:2], reverse=True)]
    return booster, alive[0], record


def _short(trial: Trial) -> str:
    return ", ".join(f"{f.name} {getattr(trial, f.name)}" for f in fields(trial))
