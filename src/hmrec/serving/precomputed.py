"""The precomputed answers of a served version: lookup by customer, in the shape the online path's `explain` gives.

The table lives in the version's bundle (registry/model_bundle.py's `Answers`, scored offline by
scale/precompute.py with the code the online path runs) and is memory-mapped, so the worker processes share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property

import numpy as np

from hmrec.data import PAD_ITEM
from hmrec.registry.model_bundle import Answers

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
    def _names(self) -> list[tuple[int, str]]:
        return [(1 << j, name) for j, name in enumerate(self.answers.source_names)]

    def row(self, customer_idx: int) -> int | None:
        keys = self.answers.customer_idx
        at = int(np.searchsorted(keys, customer_idx))
        return at if at < len(keys) and int(keys[at]) == customer_idx else None

    def ranked(self, customer_idx: int, k: int, as_of: date) -> list[dict] | None:
        """The customer's answers best first, as `RecommendService.answer_many` builds them from `explain`; None
        when the table does not hold the customer, holds fewer than k answers a row, or was computed for another day."""
        row = self.row(customer_idx) if k <= self.k and as_of == self.as_of else None
        if row is None:
            return None
        items, scores, bits = self.answers.items[row], self.answers.scores[row], self.answers.sources[row]
        return [{"article_idx": int(a), "score": float(s), "score_kind": "model",
                 "sources": [name for bit, name in self._names if int(b) & bit]}
                for a, s, b in zip(items.tolist(), scores.tolist(), bits.tolist(), strict=True) if a != PAD_ITEM]
