"""A FAISS inner-product index over article vectors that maps rows back to article_idx and filters results."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from pathlib import Path

import faiss
import numpy as np

from hmrec.data import PAD_ITEM

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
INDEX_META_FILE = "index.json"
INDEX_KINDS = ("flat", "hnsw", "ivf", "auto")
IVF_FROM = 20_000  # "auto" builds an IVF index from this many vectors, a flat (exact) one below
TRAIN_PER_LIST = 256  # IVF lists are trained on a sample of at most this many vectors per list
ADD_SHARD = 100_000  # vectors are added this many at a time, so a large catalogue's copies stay small


def _build_faiss(vectors: np.ndarray, kind: str, hnsw_m: int, ivf_lists: int, seed: int) -> faiss.Index:
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
    elif kind == "ivf":
        # Too many lists for the data leaves most of them empty; keep ~39+ training points per list.
        n_lists = max(1, min(ivf_lists, vectors.shape[0] // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(train_sample(vectors, n_lists, seed))
    else:
        raise ValueError(f"index kind must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    for start in range(0, vectors.shape[0], ADD_SHARD):  # a large catalogue is added shard by shard
        index.add(vectors[start : start + ADD_SHARD])
    return index


def train_sample(vectors: np.ndarray, n_lists: int, seed: int) -> np.ndarray:
    """At most TRAIN_PER_LIST vectors per list, drawn without replacement: IVF's k-means needs no more."""
    cap = TRAIN_PER_LIST * n_lists
    if vectors.shape[0] <= cap:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(vectors.shape[0], size=cap, replace=False))
    return vectors[rows]


class ArticleIndex:
    """Article vectors searchable by inner product; FAISS row r holds article `ids[r]`.

    `kind` is "flat" (exact), "hnsw" or "ivf" (approximate); `search_depth` is HNSW's least efSearch or IVF's
    nprobe (how many of its lists a search visits).
    """

    def __init__(self, index: faiss.Index, ids: np.ndarray, kind: str, search_depth: int):
        if index.ntotal != len(ids):
            raise ValueError(f"the FAISS index holds {index.ntotal} vectors but the id map has {len(ids)} ids")
        self.index = index
        self.ids = np.asarray(ids, dtype=np.int32)
        self.kind = kind
        self.search_depth = search_depth

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: np.ndarray,
        kind: str = "flat",
        search_depth: int | None = None,
        hnsw_m: int = 32,
        ivf_lists: int = 256,
        seed: int = 0,
    ) -> ArticleIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"vectors must be (n_ids, dim) = ({len(ids)}, dim), not {vectors.shape}")
        if kind == "auto":  # exact search of a small catalogue costs little; a large one's dominates an answer
            kind = "ivf" if len(ids) >= IVF_FROM else "flat"
        index = _build_faiss(vectors, kind, hnsw_m, ivf_lists, seed)
        if search_depth is None:
            # IVF probes a quarter of its lists; HNSW's list grows with the fetch size anyway (see _apply_depth).
            search_depth = max(1, index.nlist // 4) if kind == "ivf" else 64
        logger.debug("built a %s index of %d article vectors (dim %d)", kind, len(ids), vectors.shape[1])
        return cls(index, ids, kind, search_depth)

    def _apply_depth(self, fetch: int, depth: int) -> None:
        if self.kind == "hnsw":
            # HNSW's candidate list must be well above the number of results asked for.
            faiss.downcast_index(self.index).hnsw.efSearch = max(depth, 4 * fetch)
        elif self.kind == "ivf":
            faiss.downcast_index(self.index).nprobe = depth

    def _deepest(self) -> int:
        """The search depth at which the index searches everything it holds (IVF: all its lists)."""
        return faiss.downcast_index(self.index).nlist if self.kind == "ivf" else self.search_depth

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Collection[int] | None = None,
        allow: Collection[int] | None = None,
        overfetch: int = 2,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k article_idx and scores per query row, best first, padded with -1 / nan.

        Articles in `exclude` are dropped and, when `allow` is given, only articles in it are kept. The index
        is asked for `overfetch` times more than needed, and asked again with a deeper fetch (and, for IVF, twice
        the lists, whose few vectors may hold fewer than k) while a row has fewer than k survivors and the index
        holds more; so exactly k come back whenever k articles pass.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        keep = self._keep_mask(exclude, allow)
        n_pass = int(keep.sum())
        fetch = min(len(self), k if n_pass == len(self) else max(k, k * overfetch))
        depth, deepest = self.search_depth, self._deepest()
        while True:
            self._apply_depth(fetch, depth)
            scores, rows = self.index.search(queries, max(fetch, 1))
            items, kept_scores, short = self._filter(scores, rows, keep, k)
            if not short.any() or (fetch >= len(self) and depth >= deepest):
                return items, kept_scores
            fetch, depth = min(len(self), fetch * 2), min(deepest, depth * 2)

    def _keep_mask(self, exclude: Collection[int] | None, allow: Collection[int] | None) -> np.ndarray:
        keep = np.ones(len(self), dtype=bool)
        if exclude:
            keep &= ~np.isin(self.ids, np.fromiter(exclude, dtype=np.int64))
        if allow is not None:
            keep &= np.isin(self.ids, np.fromiter(allow, dtype=np.int64))
        return keep

    def _filter(
        self, scores: np.ndarray, rows: np.ndarray, keep: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # FAISS pads with row -1 when it finds fewer than asked for.
        valid = rows >= 0
        valid[valid] = keep[rows[valid]]
        n = len(rows)
        items = np.full((n, k), PAD_ITEM, dtype=np.int32)
        out_scores = np.full((n, k), np.nan, dtype=np.float32)
        # Stable sort on "not valid" moves survivors to the front without changing their order.
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
        taken_rows = np.take_along_axis(rows, order, axis=1)
        taken_valid = np.take_along_axis(valid, order, axis=1)
        width = taken_rows.shape[1]
        items[:, :width] = np.where(taken_valid, self.ids[np.maximum(taken_rows, 0)], PAD_ITEM)
        out_scores[:, :width] = np.where(taken_valid, np.take_along_axis(scores, order, axis=1), np.nan)
        short = valid.sum(axis=1) < min(k, int(keep.sum()))
        return items, out_scores, short

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        meta = {"kind": self.kind, "search_depth": self.search_depth, "ids": self.ids.tolist()}
        (directory / INDEX_META_FILE).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> ArticleIndex:
        meta = json.loads((directory / INDEX_META_FILE).read_text())
        index = faiss.read_index(str(directory / INDEX_FILE))
        return cls(index, np.asarray(meta["ids"], dtype=np.int32), meta["kind"], meta["search_depth"])
