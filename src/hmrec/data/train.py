"""The training data: everything known strictly before a cutoff, in the store's dense indices."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from hmrec.store.features import item_features, item_features_on


@dataclass
class TrainData:
    """Everything known strictly before `cutoff`, in the store's dense indices."""

    transactions: pl.DataFrame  # t_dat, customer_idx, article_idx, price, sales_channel_id; all < cutoff
    customers: pl.DataFrame  # the store's customers table (row i has customer_idx i)
    articles: pl.DataFrame  # the store's articles table (row i has article_idx i)
    cutoff: date
    # the store's item_features.parquet, computed as of `cutoff` by the build; None: computed when first asked
    item_table: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    # that computation, kept for the next caller (init=False: `dataclasses.replace` starts a new copy without it)
    _computed_items: pl.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    def item_features(self, as_of: date) -> pl.DataFrame:
        """`store.features.item_features` of the rows before `as_of`: at the cutoff, the store's table (or the one
        computed the first time it was asked, kept for the next caller), computed for any other day."""
        if as_of != self.cutoff:
            return item_features(self.transactions, self.articles, as_of)
        if self.item_table is not None:
            return self.item_table
        if self._computed_items is None:
            self._computed_items = item_features(self.transactions, self.articles, as_of)
        return self._computed_items

    def item_features_on(self, days: list[date]) -> list[pl.DataFrame]:
        """`item_features` of each of `days`; those of days other than the cutoff from one pass over the history and
        an increment per day (`store.features.item_features_on`), not a pass per day."""
        others = sorted({day for day in days if day != self.cutoff})
        computed = dict(zip(others, item_features_on(self.transactions, self.articles, others), strict=True))
        return [self.item_features(day) if day == self.cutoff else computed[day] for day in days]

    @property
    def n_articles(self) -> int:
        return self.articles.height

    @property
    def n_customers(self) -> int:
        return self.customers.height
