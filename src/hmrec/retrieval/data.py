"""The two-tower's inputs: each customer's last purchases before a day, and the training examples of a window."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.data import TrainData
from hmrec.retrieval.encoders import Encoders, NumericScaler, numeric_columns
from hmrec.store.features import user_features
from hmrec.store.tables import age_bucket

logger = logging.getLogger(__name__)

# Feature columns holding codes rather than quantities; the pooled purchases already carry these attributes.
CODED_USER_FEATURES = ("favourite_index_group",)
_EPOCH = date(1970, 1, 1)
_DAY_BITS = 20  # day numbers up to ~2870 AD fit below the key in one int64


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def _day_numbers(series: pl.Series) -> np.ndarray:
    return series.cast(pl.Date).cast(pl.Int32).to_numpy().astype(np.int64)


class PurchaseHistory:
    """Purchases sorted by (key, day), answering "the last n articles of key k strictly before day d"."""

    def __init__(self, keys: np.ndarray, days: np.ndarray, articles: np.ndarray):
        order = np.lexsort((days, keys))
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.days = np.asarray(days, dtype=np.int64)[order]
        self.articles = np.asarray(articles, dtype=np.int64)[order]
        self._composite = (self.keys << _DAY_BITS) + self.days

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, key: str) -> PurchaseHistory:
        """From rows `key, t_dat, article_idx` (the store's transactions or a Query's history)."""
        return cls(frame[key].to_numpy(), _day_numbers(frame["t_dat"]), frame["article_idx"].to_numpy())

    def last(
        self, keys: np.ndarray, before_days: np.ndarray, n_last: int, half_life_days: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(len(keys), n_last) articles (-1 pad) and recency weights 0.5 ** (age / half-life) (0 on pads)."""
        keys = np.asarray(keys, dtype=np.int64)
        before_days = np.asarray(before_days, dtype=np.int64)
        end = np.searchsorted(self._composite, (keys << _DAY_BITS) + before_days, side="left")
        start = np.searchsorted(self._composite, keys << _DAY_BITS, side="left")
        positions = end[:, None] - n_last + np.arange(n_last)[None, :]  # (n, n_last), oldest first
        valid = positions >= start[:, None]
        safe = np.where(valid, positions, 0)
        if len(self.articles) == 0:
            return np.full(positions.shape, -1, dtype=np.int64), np.zeros(positions.shape, dtype=np.float32)
        items = np.where(valid, self.articles[safe], -1)
        age = before_days[:, None] - self.days[safe]
        weights = np.where(valid, 0.5 ** (age / half_life_days), 0.0).astype(np.float32)
        return items, weights


@dataclass
class Examples:
    """Training examples (customer state before the purchase day, purchased article), one row each."""

    customer_idx: np.ndarray  # (n,) int64
    day: np.ndarray  # (n,) int64 day numbers
    article_idx: np.ndarray  # (n,) int64
    snapshot: np.ndarray  # (n,) int64: which item-feature snapshot the example's day uses
    user_numeric: np.ndarray  # (n, n_user_numeric) float32, scaled

    def __len__(self) -> int:
        return len(self.article_idx)


def window_rows(transactions: pl.DataFrame, cutoff: date, window_days: int) -> pl.DataFrame:
    """Distinct (customer, day, article) purchases of the `window_days` days before `cutoff`, in day order."""
    start = cutoff - timedelta(days=window_days)
    rows = transactions.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < cutoff))
    return rows.unique(["customer_idx", "t_dat", "article_idx"], maintain_order=True).sort(
        ["t_dat", "customer_idx", "article_idx"]
    )


def snapshot_days(cutoff: date, window_days: int, every_days: int) -> list[date]:
    """The as-of days of the item-feature snapshots covering the window: its start, then every `every_days`."""
    start = cutoff - timedelta(days=window_days)
    return [start + timedelta(days=d) for d in range(0, window_days, every_days)]


def item_numeric_snapshots(
    data: TrainData, days: list[date], scaler: NumericScaler | None
) -> tuple[np.ndarray, NumericScaler]:
    """(n_days, n_articles, n_item_numeric) scaled item features as of each day; fits the scaler if None."""
    frames = [_in_article_order(data, frame) for frame in data.item_features_on(days)]
    if scaler is None:
        scaler = NumericScaler.fit(pl.concat(frames), numeric_columns(frames[0], "article_idx"))
    return np.stack([scaler.transform(frame) for frame in frames]), scaler


def _in_article_order(data: TrainData, frame: pl.DataFrame) -> pl.DataFrame:
    # One row per article in article_idx order, whatever order the feature code returns.
    return data.articles.select("article_idx").join(frame, on="article_idx", how="left", maintain_order="left")


def user_numeric_frame(
    history: pl.DataFrame, articles: pl.DataFrame, as_of: date, key: str, keys: np.ndarray
) -> pl.DataFrame:
    """Customer features as of `as_of` for `keys` (one row each, in order; nulls where a key has no history)."""
    asked = pl.DataFrame({key: keys}, schema={key: history.schema[key]})
    own = history.join(asked.unique(), on=key, how="semi")
    features = user_features(own, articles, as_of, key=key)
    return asked.join(features, on=key, how="left", maintain_order="left")


def build_examples(
    transactions: pl.DataFrame,
    articles: pl.DataFrame,
    cutoff: date,
    window_days: int,
    snapshot_every_days: int,
    encoders: Encoders,
) -> Examples:
    """Examples of the window before `cutoff`; fits `encoders.user_scaler` on their customer features."""
    rows = window_rows(transactions, cutoff, window_days)
    if rows.height == 0:
        raise ValueError(
            f"no transactions in the {window_days} days before the cutoff {cutoff}; "
            "the two-tower model needs a recent window to train on (raise window_days?)"
        )
    frames = []
    for (day,), day_rows in rows.group_by("t_dat", maintain_order=True):
        keys = day_rows["customer_idx"].to_numpy()
        frames.append(user_numeric_frame(transactions, articles, day, "customer_idx", keys))
    user_frame = pl.concat(frames, how="diagonal_relaxed")
    if encoders.user_scaler is None:
        encoders.user_scaler = NumericScaler.fit(
            user_frame, numeric_columns(user_frame, "customer_idx", CODED_USER_FEATURES)
        )
    days = _day_numbers(rows["t_dat"])
    logger.info("built %d training examples from %s to %s", rows.height, rows["t_dat"].min(), rows["t_dat"].max())
    return Examples(
        customer_idx=rows["customer_idx"].to_numpy().astype(np.int64),
        day=days,
        article_idx=rows["article_idx"].to_numpy().astype(np.int64),
        snapshot=(days - day_number(cutoff - timedelta(days=window_days))) // snapshot_every_days,
        user_numeric=encoders.user_scaler.transform(user_frame),
    )


def customer_profiles(customers: pl.DataFrame) -> pl.DataFrame:
    """The store's customers table with the shared age bucket, as the user vocabularies expect."""
    if "age_bucket" in customers.columns:
        return customers
    return customers.with_columns(age_bucket(pl.col("age")).alias("age_bucket"))
