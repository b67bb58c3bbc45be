"""The training data stage: the contracts between the feature store and the models. `TrainData` (what a model
learns from), `Query` and `HistoryArrays` (whom it answers, with their history), `Recs` (its answer, padded with
`PAD_ITEM`), and `files` (a model's config.json, the not-fitted guard, the atomic folder swap)."""

from hmrec.data.query import HistoryArrays, Query
from hmrec.data.recs import PAD_ITEM, Recs, ranks_in_row
from hmrec.data.train import TrainData

__all__ = ["PAD_ITEM", "HistoryArrays", "Query", "Recs", "TrainData", "ranks_in_row"]
