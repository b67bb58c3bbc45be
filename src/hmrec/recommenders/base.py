"""One interface for every recommender and candidate source: fit on the past, recommend for a query.

A model's learned state (popularity tables, co-purchase pairs, network weights) comes from `fit`.
A customer's state (profile and purchase history) comes with each `Query`, so the same code scores
a whole held-out week in one batch and one live customer whose history changed a second ago.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl

from hmrec.store.arrays import days_before, pair_key, split_key
from hmrec.store.features import USER_FEATURE_COLUMNS, item_features, user_feature_arrays
from hmrec.store.tables import age_bucket

PAD_ITEM = -1
Explained = tuple[int, float, list[str]]  # article_idx, score, the sources that proposed it


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

    @property
    def n_articles(self) -> int:
        return self.articles.height

    @property
    def n_customers(self) -> int:
        return self.customers.height


# the numpy dtype of each user feature as `user_feature_arrays` gives it (float64 for the others)
_FEATURE_DTYPES = {"avg_price": pl.Float32, "online_share": pl.Float32}


@dataclass
class Query:
    """The customers to recommend for, each with their profile and history as of `as_of`.

    customers: one row per asked customer, in answer order: `customer_idx` (Int32, -1 for a customer
        the store has never seen), `age` (Int16, null if unknown), `age_bucket` (Int8, -1 if unknown) and
        any other profile columns of the store's customers table.
    history: their purchases strictly before `as_of`: `row` (UInt32, position in `customers`), `t_dat`,
        `article_idx`, `price`, `sales_channel_id`.
    """

    customers: pl.DataFrame
    history: pl.DataFrame
    as_of: date
    _user_features: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    _arrays: HistoryArrays | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.customers.height

    def user_features(self, groups: np.ndarray) -> dict[str, np.ndarray]:
        """`store.features.user_features` of every query row, in order, as numpy columns (nan for a row without
        history), computed once per query: the two-tower and the ranker both need them.
        groups: index_group_no by article_idx (`store.features.index_groups` of the store's articles)."""
        if self._user_features is None:
            h, history = self.arrays(), self.history
            self._user_features = user_feature_arrays(h.row, h.days, h.article_idx, history["price"].to_numpy(),
                                                      history["sales_channel_id"].to_numpy(), groups, len(self))
        return self._user_features

    def use_user_features(self, table: pl.DataFrame) -> Query:
        """Take the user features from `table` (keyed by customer_idx, computed as of `as_of` from the same rows
        as `history`: the store's user_features.parquet for a query at its cutoff) instead of computing them;
        a customer the table lacks has no purchase before `as_of`, so nan, as `user_features` gives."""
        joined = self.customers.select("customer_idx").join(table, on="customer_idx", how="left",
                                                            maintain_order="left")
        self._user_features = {name: joined[name].cast(_FEATURE_DTYPES.get(name, pl.Float64)).to_numpy()
                               for name in USER_FEATURE_COLUMNS}
        return self

    def rows(self, start: int, stop: int) -> Query:
        """Query rows start..stop-1 as a query of their own (rows renumbered from 0, user features kept)."""
        history = self.history.filter(pl.col("row").is_between(start, stop, closed="left"))
        part = Query(self.customers.slice(start, stop - start),
                     history.with_columns((pl.col("row") - start).cast(pl.UInt32)), self.as_of)
        if self._user_features is not None:
            part._user_features = {name: values[start:stop] for name, values in self._user_features.items()}
        return part

    def arrays(self) -> HistoryArrays:
        """The history as numpy arrays, built once per query (every personal source and the ranker read it)."""
        if self._arrays is None:
            self._arrays = HistoryArrays.of(self)
        return self._arrays

    @classmethod
    def for_customers(
        cls, customer_idx: np.ndarray, customers: pl.DataFrame, transactions: pl.DataFrame, as_of: date
    ) -> Query:
        """Build a query for known customers from the store's tables, using only rows before `as_of`."""
        asked = pl.DataFrame({"customer_idx": np.asarray(customer_idx, dtype=np.int32)}).with_row_index("row")
        profiles = asked.join(customers, on="customer_idx", how="left", maintain_order="left")
        profiles = profiles.with_columns(age_bucket(pl.col("age")).alias("age_bucket")).drop("row")
        history = (
            transactions.lazy()
            .filter(pl.col("t_dat") < as_of)
            .join(asked.lazy(), on="customer_idx", how="inner")
            .select("row", "t_dat", "article_idx", "price", "sales_channel_id")
            .collect()
        )
        return cls(customers=profiles, history=history, as_of=as_of)


@dataclass
class HistoryArrays:
    """A query's history as arrays: `row`, `article_idx`, and `days`, whole days before the query's as_of."""

    row: np.ndarray  # (n,) int64
    article_idx: np.ndarray  # (n,) int64
    days: np.ndarray  # (n,) int64, >= 1 for a purchase strictly before as_of

    @classmethod
    def of(cls, query: Query) -> HistoryArrays:
        h = query.history
        days = days_before(h["t_dat"].to_numpy(), query.as_of)
        return cls(h["row"].to_numpy().astype(np.int64), h["article_idx"].to_numpy().astype(np.int64), days)

    def within(self, max_days: int | None) -> HistoryArrays:
        """Only the purchases at most `max_days` days before as_of (all of them for None)."""
        if max_days is None:
            return self
        keep = self.days <= max_days
        return HistoryArrays(self.row[keep], self.article_idx[keep], self.days[keep])

    def owned(self) -> np.ndarray:
        """Sorted distinct `pair_key(row, article_idx)` of everything bought."""
        return np.unique(pair_key(self.row, self.article_idx))


def ranks_in_row(rows: np.ndarray) -> np.ndarray:
    """Each line's position within its row (0 = first), for lines sorted by row."""
    return np.arange(rows.size) - np.searchsorted(rows, rows, side="left")


@dataclass
class Recs:
    """Top-k answers for each query row: article indices and scores, best first, padded with -1 / nan."""

    items: np.ndarray  # (n_customers, k) int32
    scores: np.ndarray  # (n_customers, k) float32

    @classmethod
    def from_sorted(cls, rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, k: int) -> Recs:
        """From parallel arrays sorted by row and, within a row, in answer order: the first k of each row.
        Numpy rather than a Polars group-by: a one-customer query pays per-operation overhead, not per row."""
        rows = np.asarray(rows, dtype=np.int64)
        ranks = ranks_in_row(rows)
        kept = ranks < k
        out = cls(np.full((n_rows, k), PAD_ITEM, dtype=np.int32), np.full((n_rows, k), np.nan, dtype=np.float32))
        out.items[rows[kept], ranks[kept]] = items[kept]
        out.scores[rows[kept], ranks[kept]] = scores[kept]
        return out

    @classmethod
    def top_k(cls, keys: np.ndarray, scores: np.ndarray, n_rows: int, k: int, owned: np.ndarray | None = None) -> Recs:
        """From distinct `pair_key(row, article_idx)` keys and their scores: best (as float32) first, ties to
        the smaller article_idx; keys found in `owned` are left out."""
        if owned is not None and owned.size:
            keep = ~np.isin(keys, owned)
            keys, scores = keys[keep], scores[keep]
        rows, items = split_key(keys)
        scores = scores.astype(np.float32)
        order = np.lexsort((items, -scores, rows))
        return cls.from_sorted(rows[order], items[order], scores[order], n_rows, k)

    def to_frame(self) -> pl.DataFrame:
        """Long form `row, rank, article_idx, score`, pads dropped."""
        n, k = self.items.shape
        frame = pl.DataFrame(
            {
                "row": np.repeat(np.arange(n, dtype=np.uint32), k),
                "rank": np.tile(np.arange(k, dtype=np.int16), n),
                "article_idx": self.items.ravel(),
                "score": self.scores.ravel(),
            }
        )
        return frame.filter(pl.col("article_idx") != PAD_ITEM)


class Reason(StrEnum):
    """Why a recommender proposes an article: each recommender declares one (serving words it for the customer)."""

    BOUGHT_BEFORE = "bought_before"
    OTHER_COLOUR = "other_colour"
    BOUGHT_WITH = "bought_with"
    STYLE = "style"
    AGE = "age"
    POPULAR = "popular"


class Recommender(ABC):
    """Fit on data before a cutoff; recommend up to k articles for every row of a query.

    Besides `fit` and `recommend`, the interface declares everything a caller may ask of any recommender, each
    with a default for those that cannot, so nobody looks a source up by name or type: why it proposes
    (`reasons`), time-dependent state as of a later cutoff (`refresh`), article likeness (`similar`,
    `similar_by`), co-purchase partners (`bought_with`), the ranker's per-customer state and pair scores
    (`user_state`, `recommend_from`, `pair_scores`), an index window (`with_index_window`), an engine trainer
    (`use_trainer`), training losses (`training_losses`) and the sources it merges (`parts`). More than 12
    methods on purpose: this is the one interface, each method a declared capability with its default."""

    name: str
    reason: Reason = Reason.STYLE
    personal_only: bool = False  # answers only customers with a purchase history (no fill of its own)
    fit_once: bool = False  # slow to train: fitted once, then only `refresh`ed as of each later cutoff

    @abstractmethod
    def fit(self, data: TrainData) -> Self: ...

    @abstractmethod
    def recommend(self, query: Query, k: int) -> Recs: ...

    def explain(self, query: Query, k: int) -> list[list[Explained]]:
        """Per query row, its answers best first, each with the sources that proposed it (this one, unless the
        recommender merges several)."""
        recs = self.recommend(query, k)
        return [[(int(a), float(s), [self.name]) for a, s in zip(items, scores, strict=True) if a != PAD_ITEM]
                for items, scores in zip(recs.items, recs.scores, strict=True)]

    def reasons(self) -> dict[str, Reason]:
        """The reason of each source name `explain` can list (one, unless the recommender merges several)."""
        return {self.name: self.reason}

    def refresh(self, data: TrainData) -> Self:
        """Bring time-dependent state (what sells now) up to `data.cutoff` without relearning; most hold none."""
        return self

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Up to k articles like `article_idx` (itself excluded) and their scores, best first; None if this
        recommender has no notion of article likeness."""
        return None

    def similar_by(self) -> str | None:
        """The name of the source whose notion of likeness `similar` answers with (None: it has none)."""
        return None

    def bought_with(self, article_idx: int) -> np.ndarray:
        """Articles whose purchase makes this recommender propose `article_idx` (empty: none, or no such notion)."""
        return np.empty(0, dtype=np.int64)

    def user_state(self, query: Query) -> object | None:
        """What this source computes per query row before answering (user vectors, factors), computed once by the
        ranker for both `recommend_from` and `pair_scores`; None: no such state (no pair-score feature)."""
        return None

    def recommend_from(self, state: object, query: Query, k: int) -> Recs:
        """`recommend` from a `user_state(query)` already computed."""
        return self.recommend(query, k)

    def pair_scores(self, state: object, rows: np.ndarray, articles: np.ndarray) -> np.ndarray | None:
        """A user x article score (float32, nan: unknown) for every (query row, article_idx) line, from
        `user_state`; the ranker's `<name>_pair_score` feature. None: no such score."""
        return None

    def with_index_window(self, data: TrainData, window_days: int | None) -> Recommender:
        """A copy answering from an index of the articles sold `window_days` before `data.cutoff`, fitted state
        shared (how an index window is chosen on validation); only sources with an index window have one."""
        raise NotImplementedError(f"{type(self).__name__} has no index window")

    def use_trainer(self, train_fn) -> None:
        """Train on `train_fn` (an engine's trainer) instead of in this process; most have nothing to hand over."""
        return None

    def training_losses(self) -> list[float]:
        """The loss of each training epoch of the last fit, plotted in the report (empty: nothing to plot)."""
        return []

    def parts(self) -> dict[str, Recommender]:
        """The sources this recommender merges, by name (empty: it answers on its own)."""
        return {}

    def save(self, directory: Path) -> None:
        """Write the fitted state into `directory` (no pickle); only recommenders that are served need it."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def load(cls, directory: Path) -> Self:
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")


RECOMMENDER_FILE = "recommender.json"


def save_recommender(recommender: Recommender, directory: Path) -> None:
    """Save a fitted recommender with a note of its class, so `load_recommender` needs no guessing."""
    directory.mkdir(parents=True, exist_ok=True)
    recommender.save(directory)
    kind = {"module": type(recommender).__module__, "class": type(recommender).__qualname__}
    (directory / RECOMMENDER_FILE).write_text(json.dumps(kind))


def load_recommender(directory: Path) -> Recommender:
    """Load what `save_recommender` wrote; only classes from the hmrec package are accepted."""
    kind = json.loads((directory / RECOMMENDER_FILE).read_text())
    if not kind["module"].startswith("hmrec."):
        raise ValueError(f"{directory / RECOMMENDER_FILE} names {kind['module']}, which is not part of hmrec")
    cls = getattr(importlib.import_module(kind["module"]), kind["class"])
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ValueError(f"{directory / RECOMMENDER_FILE} names {kind['class']}, which is not a Recommender")
    return cls.load(directory)
