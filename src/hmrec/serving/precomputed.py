"""The precomputed answers of a served version: lookup by customer, in the shape the online path's `explain` gives.

The table lives in the version's bundle (registry/model_bundle.py's `Answers`, scored offline by
scale/precompute.py with the code the online path runs) and is memory-mapped, so the worker processes share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

from hmrec.data import PAD_ITEM
from hmrec.registry.model_bundle import Answers
from hmrec.store.arrays import equal_range

PRECOMPUTED, ONLINE = "precomputed", "online"  # which path served an answer (the response's `path`)


@dataclass(frozen=True)
class PrecomputedAnswers:
    """One version's table of answers; `ranked` gives a customer's, or None where the batch cannot answer."""

    answers: Answers

    @property
    def as_of(self) -> date:
        return self.answers.as_of

    @property
    def k(self) -> int:
        return self.answers.k

    def __len__(self) -> int:
        return len(self.answers.customer_idx)

    @cached_property
    def _sources(self) -> dict[int, list[str]]:
        """The source names of each bit set met so far (a handful of distinct sets: built once, not per item)."""
        return {}

    def sources(self, bits: int) -> list[str]:
        names = self._sources.get(bits)
        if names is None:
            names = self._sources[bits] = [name for j, name in enumerate(self.answers.source_names) if bits >> j & 1]
        return list(names)  # a copy: the answer's list is the caller's

    def row(self, customer_idx: int) -> int | None:
        first, last = equal_range(self.answers.customer_idx, customer_idx)
        return first if last > first else None

    def ranked(self, customer_idx: int, k: int, as_of: date, limit: int | None = None) -> list[dict] | None:
        """The customer's answers best first, as `RecommendService.answer_many` builds them from `explain` (the
        first `limit` of them, default all the row holds); None when the table does not hold the customer, holds
        fewer than k answers a row, or was computed for another day."""
        row = self.row(customer_idx) if k <= self.k and as_of == self.as_of else None
        if row is None:
            return None
        width = self.k if limit is None else min(max(limit, k), self.k)
        items, scores, bits = (self.answers.items[row, :width], self.answers.scores[row, :width],
                               self.answers.sources[row, :width])
        return [{"article_idx": int(a), "score": float(s), "score_kind": "model", "sources": self.sources(b)}
                for a, s, b in zip(items.tolist(), scores.tolist(), bits.tolist(), strict=True) if a != PAD_ITEM]
