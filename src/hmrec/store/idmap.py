"""One object owns the mapping between external ids (customer_id, article_id) and dense store indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from hmrec.raw.validate import digits

MISSING = -1



class UnknownIdError(LookupError):
    """An external id that the store never saw."""


class IdMap:
    """Index i <-> ids[i]. Article ids may be given as ints or as digit strings with or without leading zeros.

    13 methods: the one owner of the id <-> index mapping (STYLE.md) answers it for one id, many ids, with and
    without missing ones, and as a join table; its private helpers share the one sorted lookup it builds."""

    def __init__(self, ids: pl.Series, entity: str):
        if ids.null_count():
            raise ValueError(f"{entity} id map: {ids.null_count():,} null ids; every index needs an id")
        if ids.n_unique() != ids.len():
            dupes = ids.filter(ids.is_duplicated()).unique().head(2).to_list()
            raise ValueError(f"{entity} id map: {ids.len() - ids.n_unique():,} duplicate ids, e.g. {dupes}")
        self.entity = entity
        self.ids = ids.rename("id")
        self._table = pl.DataFrame({"id": self.ids, "index": np.arange(ids.len(), dtype=np.int32)})
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted keys, their indices), for get()
        self._digit_ids = ids.dtype == pl.Int64  # asked once: a Polars dtype comparison per request adds up

    @classmethod
    def customers(cls, customers: pl.DataFrame) -> IdMap:
        """From the store's customers table (row i has customer_idx i)."""
        return cls(customers["customer_id"], "customer")

    @classmethod
    def articles(cls, articles: pl.DataFrame) -> IdMap:
        """From the store's articles table (row i has article_idx i)."""
        return cls(articles["article_id"].cast(pl.Int64), "article")

    def __len__(self) -> int:
        return self.ids.len()

    def join_table(self, id_column: str, index_column: str) -> pl.DataFrame:
        """The map as a table (`id_column`, `index_column` Int32) for mapping many rows with one join."""
        return self._table.rename({"id": id_column, "index": index_column})

    def _normalise(self, ids: Iterable | pl.Series) -> pl.Series:
        """The ids as the map's dtype; an article id that is not all digits becomes null (so: unknown)."""
        if isinstance(ids, pl.Series):
            series = ids
        elif isinstance(ids, np.ndarray):
            series = pl.Series(ids)
        else:
            series = pl.Series([str(i) for i in ids] if self._digit_ids else list(ids), dtype=None)
        if self._digit_ids and not series.dtype.is_integer():
            series = series.cast(pl.String).to_frame("id").select(digits("id"))["id"]
        return series.cast(self.ids.dtype).rename("id")

    def to_index_or_missing(self, ids: Sequence | np.ndarray | pl.Series) -> np.ndarray:
        """Indices (int32) of `ids` in order; MISSING (-1) for an id the map does not hold."""
        asked = self._normalise(ids).to_frame()
        found = asked.join(self._table, on="id", how="left", maintain_order="left")["index"]
        return found.fill_null(MISSING).to_numpy().astype(np.int32, copy=False)

    def to_index(self, ids: Sequence | np.ndarray | pl.Series) -> np.ndarray:
        """Indices (int32) of `ids` in order; raises UnknownIdError naming the first unknown id."""
        index = self.to_index_or_missing(ids)
        unknown = np.flatnonzero(index == MISSING)
        if unknown.size:
            first = list(ids)[unknown[0]] if not isinstance(ids, pl.Series) else ids[int(unknown[0])]
            raise UnknownIdError(
                f"{self.entity} id {first!r} is not in the id map ({unknown.size:,} of {index.size:,} ids "
                f"unknown); was it in the training data?"
            )
        return index

    def index(self, one_id: str | int) -> int:
        """The index of one id (a binary search, fast for serving); raises UnknownIdError."""
        found = self.get(one_id)
        if found is None:
            raise UnknownIdError(f"{self.entity} id {one_id!r} is not in the id map; was it in the training data?")
        return found

    def get(self, one_id: str | int) -> int | None:
        """The index of one id, or None when the map does not hold it: a binary search over sorted keys (a
        microsecond, and no dictionary of a million Python strings per serving process)."""
        key = self._key(one_id)
        if key is None:
            return None
        keys, rows = self._lookup()
        position = int(np.searchsorted(keys, key))
        return int(rows[position]) if position < len(keys) and keys[position] == key else None

    def _key(self, one_id: str | int) -> bytes | int | None:
        """One id as the sorted keys hold it: UTF-8 bytes for string ids, int for digit ids (None: not an id)."""
        if not self._digit_ids:
            return str(one_id).encode()
        if isinstance(one_id, (int, np.integer)):
            return int(one_id)
        text = str(one_id)
        return int(text) if text.isascii() and text.isdigit() else None

    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            # bytewise order, as numpy compares "S" values
            keys = self.ids if self._digit_ids else self.ids.cast(pl.Binary)
            order = keys.arg_sort().to_numpy()
            values = keys.to_numpy() if self._digit_ids else np.array(keys.to_list(), dtype=np.bytes_)
            self._sorted = values[order], order.astype(np.int32)
        return self._sorted

    def to_id(self, index: Sequence[int] | np.ndarray) -> pl.Series:
        """The external ids of dense indices; raises IndexError naming an out-of-range index."""
        index = np.asarray(index, dtype=np.int64)
        bad = index[(index < 0) | (index >= len(self))]
        if bad.size:
            raise IndexError(f"{self.entity} index {int(bad[0])} is outside 0..{len(self) - 1} ({bad.size:,} such)")
        return self.ids.gather(index)
