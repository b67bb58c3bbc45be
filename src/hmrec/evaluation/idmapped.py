"""A model trained on another store, asked on this one: questions and answers translated through each side's id maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import polars as pl

from hmrec.data import PAD_ITEM, Query, Recs, TrainData
from hmrec.recommenders.base import Recommender
from hmrec.store.tables import age_bucket


@dataclass(frozen=True)
class IdMaps:
    """The id tables of the store a query comes from and of the model's own bundle (customer_idx + customer_id,
    the bundle's customers with their profile columns; article_idx + article_id on both sides)."""

    store_customers: pl.DataFrame
    store_articles: pl.DataFrame
    model_customers: pl.DataFrame
    model_articles: pl.DataFrame

    def to_store_articles(self) -> np.ndarray:
        """The store's article_idx of each of the model's article_idx (PAD_ITEM: an article the store lacks)."""
        pairs = self.model_articles.select("article_idx", "article_id").join(
            self.store_articles.select(pl.col("article_idx").alias("store_idx"), "article_id"), on="article_id")
        out = np.full(int(self.model_articles["article_idx"].max() or 0) + 1, PAD_ITEM, dtype=np.int32)
        out[pairs["article_idx"].to_numpy()] = pairs["store_idx"].to_numpy()
        return out


class IdMapped(Recommender):
    """`inner` (fitted on its bundle's ids) answering a query of the store's ids, as the service would ask it: a
    customer the bundle knows with the bundle's profile, one it does not as a new customer (blank profile); the
    history's articles it does not know left out; its answers translated back, an article the store lacks dropped.

    Both sides of a retrain's comparison go through this, so each is scored by the same code on the same window."""

    def __init__(self, inner: Recommender, maps: IdMaps):
        self.inner, self.maps = inner, maps
        self.name = inner.name
        self._to_store = maps.to_store_articles()

    def fit(self, data: TrainData) -> Self:
        raise NotImplementedError("an IdMapped recommender is already fitted on its own bundle")

    def parts(self) -> dict[str, Recommender]:
        return {name: IdMapped(part, self.maps) for name, part in self.inner.parts().items()}

    def recommend(self, query: Query, k: int) -> Recs:
        recs = self.inner.recommend(self.translate(query), k)
        items = np.where(recs.items >= 0, self._to_store[np.clip(recs.items, 0, None)], PAD_ITEM)
        scores = np.where(items >= 0, recs.scores, np.nan).astype(np.float32)
        return Recs.from_sorted(*_compact(items, scores), n_rows=len(query), k=k)

    def translate(self, query: Query) -> Query:
        """The query in the bundle's ids (profiles, history), as of the same day."""
        m = self.maps
        ids = query.customers.select("customer_idx").join(
            m.store_customers.select("customer_idx", "customer_id"), on="customer_idx", how="left",
            maintain_order="left")
        profiles = ids.select("customer_id").join(m.model_customers, on="customer_id", how="left",
                                                  maintain_order="left")
        profiles = profiles.select(m.model_customers.columns).with_columns(
            pl.col("customer_idx").fill_null(-1), age_bucket(pl.col("age")).alias("age_bucket"))
        articles = m.store_articles.select("article_idx", "article_id").join(
            m.model_articles.select(pl.col("article_idx").alias("model_idx"), "article_id"), on="article_id")
        history = query.history.join(articles.select("article_idx", "model_idx"), on="article_idx", how="inner",
                                     maintain_order="left")
        history = history.with_columns(pl.col("model_idx").cast(query.history.schema["article_idx"])
                                       .alias("article_idx")).select(query.history.columns)
        return Query(profiles, history, query.as_of)


def _compact(items: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, items, scores) of the kept answers in answer order, the dropped ones (PAD_ITEM) closed up."""
    rows, columns = np.nonzero(items >= 0)
    return rows, items[rows, columns], scores[rows, columns]
