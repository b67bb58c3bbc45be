"""The union of several sources' top-N per customer, keeping each source's rank and score; candidate recall."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from hmrec.data import PAD_ITEM, Query, Recs
from hmrec.recommenders.base import Recommender
from hmrec.store.arrays import pair_key, split_key

log = logging.getLogger(__name__)

KEYS = ("row", "article_idx")


@dataclass
class Candidates:
    """Per query row, the union of several sources' answers as arrays: one line per (row, article_idx), sorted by
    row then article_idx, with each source's rank (0 = its best; -1 where it did not propose the line) and score
    (nan there). `frame()` gives the same as a Polars table; the ranker reads the arrays."""

    row: np.ndarray  # (n,) uint32
    article_idx: np.ndarray  # (n,) int32
    ranks: dict[str, np.ndarray]  # source -> (n,) int16
    scores: dict[str, np.ndarray]  # source -> (n,) float32

    def __len__(self) -> int:
        return self.row.size

    def frame(self) -> pl.DataFrame:
        """`row, article_idx`, then `<source>_rank` (Int16) and `<source>_score` (Float32) for every source, null
        where that source did not propose the article."""
        columns = [pl.Series("row", self.row), pl.Series("article_idx", self.article_idx)]
        for name, ranks in self.ranks.items():
            columns.append(pl.Series(f"{name}_rank", pa.array(ranks, mask=ranks < 0), dtype=pl.Int16))
            columns.append(pl.Series(f"{name}_score", self.scores[name], dtype=pl.Float32, nan_to_null=True))
        return pl.DataFrame(columns)

    def source_bits(self, lines: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """uint32 per line of `lines` (positions): bit j set when `names[j]` proposed it."""
        bits = np.zeros(len(lines), dtype=np.uint32)
        for j, name in enumerate(names):
            if name in self.ranks:
                bits |= (self.ranks[name][lines] >= 0).astype(np.uint32) << np.uint32(j)
        return bits

    def proposed_by(self, lines: np.ndarray) -> list[list[str]]:
        """The names of the sources that proposed each of `lines` (positions), in source order."""
        names = list(self.ranks)
        out: list[list[str]] = [[] for _ in range(len(lines))]
        if names:  # one nonzero over (line, source) flags, not one per line: an answer asks this for every item
            line, source = np.nonzero(np.stack([self.ranks[name][lines] >= 0 for name in names], axis=1))
            for i, j in zip(line.tolist(), source.tolist(), strict=True):
                out[i].append(names[j])
        return out


def propose(
    sources: Mapping[str, Recommender],
    query: Query,
    n_per_source: Mapping[str, int],
    answered: Mapping[str, Recs] | None = None,
) -> Candidates:
    """Every source's top-N for every query row, merged.

    answered: top-N already computed for some sources (say the two-tower's, from user vectors the caller
    also needs for something else); those sources are not asked again."""
    missing = sorted(set(sources) - set(n_per_source))
    if missing:
        raise ValueError(f"n_per_source has no count for the sources {missing}; it has {sorted(n_per_source)}")
    if not sources:
        raise ValueError("candidates need at least one source")
    answers = {}
    for name, source in sources.items():
        started = time.perf_counter()
        if n_per_source[name] == 0:  # given no share of the budget: a column of its own, never a candidate
            answers[name] = Recs.empty(len(query), 0)
        elif answered is not None and name in answered:
            answers[name] = answered[name]
        else:
            answers[name] = source.recommend(query, n_per_source[name])
        log.debug("candidates from %s in %.4f s", name, time.perf_counter() - started)
    return union_of(answers)


def generate_candidates(
    sources: Mapping[str, Recommender],
    query: Query,
    n_per_source: Mapping[str, int],
    answered: Mapping[str, Recs] | None = None,
) -> pl.DataFrame:
    """`propose(...)` as a table: see `Candidates.frame`."""
    return propose(sources, query, n_per_source, answered).frame()


def union_of(answers: Mapping[str, Recs]) -> Candidates:
    """The candidates of each source's answers (same number of rows each; a source proposes an article at most
    once per row, as every Recs does). Built with numpy on one sorted key array rather than one Polars join per
    source: a one-customer query spent most of its time in join overhead."""
    # name -> (kept mask, keys); a source given no share of the budget proposes nothing: only its column of pads
    keys = {name: _line_keys(recs) for name, recs in answers.items() if recs.items.size}
    sizes = [k.size for _, k in keys.values()]
    union, place = np.unique(np.concatenate([k for _, k in keys.values()] or [np.empty(0, dtype=np.int64)]),
                             return_inverse=True)  # (row, article) keys, and each proposed line's place among them
    starts = dict(zip(keys, np.cumsum([0, *sizes])[:-1].tolist(), strict=True))
    ranks, scores = {}, {}
    for name, recs in answers.items():
        ranks[name] = np.full(union.size, -1, dtype=np.int16)
        scores[name] = np.full(union.size, np.nan, dtype=np.float32)
        if name not in keys:
            continue
        kept, line_keys = keys[name]
        where = place[starts[name]:starts[name] + line_keys.size]  # each proposed line's place in the union
        ranks[name][where] = np.broadcast_to(np.arange(recs.items.shape[1], dtype=np.int16), recs.items.shape)[kept]
        scores[name][where] = recs.scores[kept]
    rows, items = split_key(union)
    return Candidates(rows.astype(np.uint32), items.astype(np.int32), ranks, scores)


def _line_keys(recs: Recs) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the real (not padded) answers and their `pair_key(row, article_idx)` keys, in row-major order."""
    kept = recs.items != PAD_ITEM
    rows = np.broadcast_to(np.arange(recs.items.shape[0], dtype=np.int64)[:, None], recs.items.shape)
    return kept, pair_key(rows[kept], recs.items[kept])


def candidate_recall(candidates: pl.DataFrame, relevant_by_row: Sequence[Sequence[int]]) -> dict[str, float]:
    """Share of held-out purchases (distinct row, article pairs) found among the candidates: one entry per
    source (its own top-N) and "all" (the union). In [0, 1]; 0.0 when nothing was bought."""
    truth = pl.DataFrame(
        {
            "row": [row for row, items in enumerate(relevant_by_row) for _ in set(items)],
            "article_idx": [item for items in relevant_by_row for item in set(items)],
        },
        schema={"row": pl.UInt32, "article_idx": pl.Int32},
    )
    if truth.height == 0:
        names = [c.removesuffix("_rank") for c in candidates.columns if c.endswith("_rank")]
        return {name: 0.0 for name in [*names, "all"]}
    found = truth.join(candidates, on=KEYS, how="left")
    names = [c.removesuffix("_rank") for c in candidates.columns if c.endswith("_rank")]
    recall = {name: found[f"{name}_rank"].is_not_null().sum() / truth.height for name in names}
    in_union = found.select(pl.any_horizontal([pl.col(f"{n}_rank").is_not_null() for n in names])).to_series()
    recall["all"] = in_union.sum() / truth.height
    return {name: float(value) for name, value in recall.items()}
