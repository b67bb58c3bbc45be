"""The cold-start answer: the bundle's cold-start recommender asked with a profile and no history."""

from __future__ import annotations

import polars as pl

from hmrec.data import Query
from hmrec.serving.live import history_frame
from hmrec.serving.model import LoadedModel
from hmrec.serving.reasons import word


def cold_answer(model: LoadedModel, profile: pl.DataFrame, k: int) -> list[dict]:
    """The bundle's cold-start recommender (the one the report evaluates under its name) for one profile."""
    query = Query(profile, history_frame([]), model.today)
    reasons = model.cold_start.reasons()
    (answer,) = model.cold_start.explain(query, k)
    return [{"article_idx": a, "score": s, "score_kind": "recent_sales", "sources": sources,
             "reason": word(reasons[sources[0]])} for a, s, sources in answer]
