"""Categorical vocabularies and numeric scalers for the towers' inputs, fitted once and saved as JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)

OOV = 0  # index of unseen and missing values in every vocabulary
ENCODERS_FILE = "encoders.json"
SMALL_SERIES = 1024  # encoded with a dict; longer series with a join

ITEM_CATEGORICALS = (
    "article_idx",
    "product_code",
    "product_type_no",
    "product_group_name",
    "colour_group_code",
    "perceived_colour_value_id",
    "department_no",
    "index_group_no",
    "section_no",
    "garment_group_no",
    "graphical_appearance_no",
)
USER_CATEGORICALS = ("age_bucket", "club_member_status", "fashion_news_frequency", "FN", "Active")


@dataclass
class Vocabulary:
    """Values of one column -> indices 1..n; index 0 (OOV) stands for unseen and missing values."""

    column: str
    values: list[str]
    _code_of: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def fit(cls, series: pl.Series, min_count: int = 1) -> Vocabulary:
        counts = series.drop_nulls().cast(pl.String).value_counts(name="n")
        kept = counts.filter(pl.col("n") >= min_count).sort(series.name)[series.name].to_list()
        return cls(series.name, kept)

    @property
    def size(self) -> int:
        """Rows the embedding table needs, OOV included."""
        return len(self.values) + 1

    def encode(self, series: pl.Series) -> np.ndarray:
        """(n,) int64 indices; values never seen at fit time and nulls map to OOV."""
        values = series.cast(pl.String)
        if len(values) <= SMALL_SERIES:  # a live query: a dict look-up, not a join's per-call overhead
            codes = self._codes()
            return np.array([codes.get(v, OOV) for v in values.to_list()], dtype=np.int64)
        mapping = pl.DataFrame(
            {"value": self.values, "code": np.arange(1, self.size, dtype=np.int64)},
            schema={"value": pl.String, "code": pl.Int64},
        )
        codes = pl.DataFrame({"value": values}).join(mapping, on="value", how="left", maintain_order="left")["code"]
        return codes.fill_null(OOV).to_numpy().astype(np.int64)

    def _codes(self) -> dict[str, int]:
        if self._code_of is None:
            self._code_of = {value: code for code, value in enumerate(self.values, start=1)}
        return self._code_of


@dataclass
class NumericScaler:
    """Standardises numeric columns, log1p first for the non-negative ones (counts, prices, day gaps).

    Missing values become 0 after scaling, the mean of the training data.
    """

    columns: list[str]
    log: list[bool]
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, frame: pl.DataFrame, columns: list[str]) -> NumericScaler:
        log = [bool(frame[c].drop_nulls().min() is not None and frame[c].drop_nulls().min() >= 0) for c in columns]
        raw = cls(columns, log, [0.0] * len(columns), [1.0] * len(columns))._transformed(frame)
        mean = np.nanmean(raw, axis=0) if len(raw) else np.zeros(len(columns))
        std = np.nanstd(raw, axis=0) if len(raw) else np.ones(len(columns))
        mean = np.nan_to_num(mean)
        std = np.where(np.nan_to_num(std) > 1e-6, np.nan_to_num(std), 1.0)
        return cls(columns, log, mean.tolist(), std.tolist())

    def _transformed(self, frame: pl.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        present = frame.columns if isinstance(frame, pl.DataFrame) else list(frame)
        missing = [c for c in self.columns if c not in present]
        if missing:
            raise ValueError(f"numeric feature columns {missing} are missing; the frame has {present}")
        # (n, n_columns), nan where missing
        if isinstance(frame, pl.DataFrame):
            values = frame.select([pl.col(c).cast(pl.Float64) for c in self.columns]).to_numpy().astype(np.float64)
            values = values.reshape(frame.height, len(self.columns))
        else:
            values = np.column_stack([np.asarray(frame[c], dtype=np.float64) for c in self.columns])
        log = np.array(self.log, dtype=bool)
        values[:, log] = np.log1p(np.maximum(values[:, log], 0.0))
        return values

    def transform(self, frame: pl.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, n_columns) float32, standardised, missing -> 0; `frame` a table or its columns as arrays (nan:
        missing)."""
        scaled = (self._transformed(frame) - np.array(self.mean)) / np.array(self.std)
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def numeric_columns(frame: pl.DataFrame, key: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The numeric and boolean columns of a feature table, its key and `exclude` left out, in table order."""
    skip = {key, *exclude}
    return [c for c, t in frame.schema.items() if c not in skip and (t.is_numeric() or t == pl.Boolean)]


@dataclass
class Encoders:
    """Everything that turns store rows into tower inputs: one vocabulary per categorical, two scalers."""

    item_vocabs: dict[str, Vocabulary] = field(default_factory=dict)
    user_vocabs: dict[str, Vocabulary] = field(default_factory=dict)
    item_scaler: NumericScaler | None = None
    user_scaler: NumericScaler | None = None

    def encode_items(self, articles: pl.DataFrame) -> np.ndarray:
        """(n_articles, n_item_categoricals) int64 codes; a column the table lacks is all OOV."""
        return _encode(self.item_vocabs, articles)

    def encode_users(self, customers: pl.DataFrame) -> np.ndarray:
        """(n_customers, n_user_categoricals) int64 codes; a column the table lacks is all OOV."""
        return _encode(self.user_vocabs, customers)

    def to_dict(self) -> dict:
        def vocabs(d: dict[str, Vocabulary]) -> dict:
            return {name: v.values for name, v in d.items()}

        return {
            "item_vocabs": vocabs(self.item_vocabs),
            "user_vocabs": vocabs(self.user_vocabs),
            "item_scaler": vars(self.item_scaler) if self.item_scaler else None,
            "user_scaler": vars(self.user_scaler) if self.user_scaler else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Encoders:
        def scaler(d: dict | None) -> NumericScaler | None:
            return NumericScaler(**d) if d else None

        return cls(
            item_vocabs={n: Vocabulary(n, v) for n, v in data["item_vocabs"].items()},
            user_vocabs={n: Vocabulary(n, v) for n, v in data["user_vocabs"].items()},
            item_scaler=scaler(data["item_scaler"]),
            user_scaler=scaler(data["user_scaler"]),
        )

    def save(self, directory: Path) -> None:
        (directory / ENCODERS_FILE).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, directory: Path) -> Encoders:
        return cls.from_dict(json.loads((directory / ENCODERS_FILE).read_text()))


def _encode(vocabs: dict[str, Vocabulary], frame: pl.DataFrame) -> np.ndarray:
    columns = []
    for name, vocab in vocabs.items():
        if name in frame.columns:
            columns.append(vocab.encode(frame[name]))
        else:
            columns.append(np.full(frame.height, OOV, dtype=np.int64))
    return np.stack(columns, axis=1) if columns else np.zeros((frame.height, 0), dtype=np.int64)
