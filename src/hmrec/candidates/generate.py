"""The union of several sources' top-N per customer, keeping each source's rank and score; candidate recall."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from hmrec.recommenders.base import PAD_ITEM, Query, Recommender, Recs

log = logging.getLogger(__name__)

KEYS = ("row", "article_idx")


class CandidateSourceSet(Protocol):
    """What `candidate_recall_section` needs of a multi-source recommender such as the `final` ranker."""

    sources: Mapping[str, Recommender]
    n_per_source: Mapping[str, int]


def source_columns(names: Sequence[str]) -> list[str]:
    return [f"{name}_{part}" for name in names for part in ("rank", "score")]


def generate_candidates(
    sources: Mapping[str, Recommender],
    query: Query,
    n_per_source: Mapping[str, int],
    answered: Mapping[str, Recs] | None = None,
) -> pl.DataFrame:
    """Per query row, the union of every source's top-N: `row, article_idx` then, for every source,
    `<source>_rank` (0 = its best, Int16) and `<source>_score` (Float32), both null where that source did
    not propose the article. One line per (row, article_idx), sorted by row then article_idx.

    answered: top-N already computed for some sources (say the two-tower's, from user vectors the caller
    also needs for something else); those sources are not asked again."""
    missing = sorted(set(sources) - set(n_per_source))
    if missing:
        raise ValueError(f"n_per_source has no count for the sources {missing}; it has {sorted(n_per_source)}")
    if not sources:
        raise ValueError("generate_candidates needs at least one source")
    answers = {}
    for name, source in sources.items():
        started = time.perf_counter()
        if answered is not None and name in answered:
            answers[name] = answered[name]
        else:
            answers[name] = source.recommend(query, n_per_source[name])
        log.debug("candidates from %s in %.4f s", name, time.perf_counter() - started)
    return union_of(answers)


def union_of(answers: Mapping[str, Recs]) -> pl.DataFrame:
    """The candidate frame of `generate_candidates` from each source's answers (same number of rows each; a
    source proposes an article at most once per row, as every Recs does). Built with numpy on one sorted key
    array rather than one Polars join per source: a one-customer query spent most of its time in join overhead."""
    keys = {name: _line_keys(recs) for name, recs in answers.items()}  # name -> (kept mask, keys)
    union = np.unique(np.concatenate([k for _, k in keys.values()]))  # sorted: row, then article_idx
    columns = {
        "row": pl.Series("row", (union >> 32).astype(np.uint32)),
        "article_idx": pl.Series("article_idx", (union & 0xFFFFFFFF).astype(np.int32)),
    }
    for name, recs in answers.items():
        kept, line_keys = keys[name]
        where = np.searchsorted(union, line_keys)  # each proposed line's place in the union
        ranks = np.broadcast_to(np.arange(recs.items.shape[1], dtype=np.int16), recs.items.shape)[kept]
        columns[f"{name}_rank"] = _scattered(f"{name}_rank", union.size, where, ranks, pl.Int16)
        columns[f"{name}_score"] = _scattered(f"{name}_score", union.size, where, recs.scores[kept], pl.Float32)
    return pl.DataFrame(columns)


def _line_keys(recs: Recs) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the real (not padded) answers and their `row << 32 | article_idx` keys, in row-major order."""
    kept = recs.items != PAD_ITEM
    rows = np.broadcast_to(np.arange(recs.items.shape[0], dtype=np.int64)[:, None], recs.items.shape)
    return kept, (rows[kept] << 32) | recs.items[kept].astype(np.int64)


def _scattered(name: str, size: int, where: np.ndarray, values: np.ndarray, dtype: pl.DataType) -> pl.Series:
    """A column of `size` nulls with `values` placed at `where` (the cheapest null-aware constructors: this
    runs ten times per one-customer query)."""
    if dtype.is_float():
        filled = np.full(size, np.nan, dtype=values.dtype)
        filled[where] = values
        return pl.Series(name, filled, dtype=dtype, nan_to_null=True)
    filled = np.zeros(size, dtype=values.dtype)
    filled[where] = values
    present = np.zeros(size, dtype=bool)
    present[where] = True
    return pl.Series(name, pa.array(filled, mask=~present)).cast(dtype)


def proposed_by(names: Sequence[str]) -> pl.Expr:
    """List of the source names whose rank is set on each candidate line."""
    parts = [pl.when(pl.col(f"{name}_rank").is_not_null()).then(pl.lit(name)) for name in names]
    return pl.concat_list(parts).list.drop_nulls().alias("sources")


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


def candidate_recall_section(
    final: CandidateSourceSet, query: Query, relevant_by_row: Sequence[Sequence[int]]
) -> str:
    """Markdown for the report: candidate recall per source and combined, with candidates per customer."""
    candidates = generate_candidates(final.sources, query, final.n_per_source)
    recall = candidate_recall(candidates, relevant_by_row)
    per_row = candidates.height / max(len(query), 1)
    lines = [
        "## Candidate recall",
        "",
        f"Share of the held-out purchases found among the candidates ({per_row:.1f} per customer on average, "
        f"{len(query):,} customers). A source's figure counts only its own top-N.",
        "",
        "| source | top-N | recall |",
        "|---|---:|---:|",
    ]
    for name in final.sources:
        lines.append(f"| {name} | {final.n_per_source[name]} | {recall[name]:.4f} |")
    lines.append(f"| **all (union)** | {per_row:.1f} | {recall['all']:.4f} |")
    return "\n".join(lines) + "\n"
