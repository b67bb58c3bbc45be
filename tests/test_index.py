"""The FAISS article index: exact answers, approximate agreement with exact, filtering, and save/load."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from hmrec.data import PAD_ITEM
from hmrec.retrieval import index as index_module
from hmrec.retrieval.index import ArticleIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    # Clustered vectors, like trained article embeddings, rather than uniform noise.
    centres = _unit(rng, 40, 32)
    items = centres[rng.integers(0, 40, 5000)] + 0.35 * _unit(rng, 5000, 32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    ids = rng.permutation(20_000)[:5000].astype(np.int32)
    queries = _unit(rng, 200, 32)
    return items, ids, queries


def test_flat_index_is_exact_and_maps_rows_to_article_idx(vectors):
    items, ids, queries = vectors
    index = ArticleIndex.build(items, ids, kind="flat")
    found, scores = index.search(queries, 10)
    brute = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[brute])
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ items.T, brute, axis=1), rtol=1e-5)
    assert found.dtype == np.int32 and np.all(np.diff(scores, axis=1) <= 1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_top100_agrees_with_exact_search(vectors, kind):
    items, ids, queries = vectors
    exact, _ = ArticleIndex.build(items, ids, kind="flat").search(queries, 100)
    approx, _ = ArticleIndex.build(items, ids, kind=kind, seed=1).search(queries, 100)
    agreement = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(approx, exact, strict=True)])
    assert agreement >= 0.98, f"{kind} top-100 agrees with exact search on only {agreement:.1%}"


def test_ivf_searches_more_lists_when_the_probed_ones_hold_fewer_than_k(vectors):
    items, ids, queries = vectors
    small = ArticleIndex.build(items[:200], ids[:200], kind="ivf")  # 5 lists of ~40, one probed at first
    assert small.search_depth == 1
    found, scores = small.search(queries[:20], 100)
    assert (found != PAD_ITEM).all() and not np.isnan(scores).any()
    assert all(len(set(row)) == 100 for row in found) and np.all(np.diff(scores, axis=1) <= 1e-6)


def test_auto_index_is_exact_for_a_small_catalogue_and_ivf_for_a_large_one(vectors, monkeypatch):
    items, ids, _ = vectors
    monkeypatch.setattr(index_module, "IVF_FROM", 1000)
    assert ArticleIndex.build(items[:999], ids[:999], kind="auto").kind == "flat"
    large = ArticleIndex.build(items, ids, kind="auto")
    assert large.kind == "ivf" and large.search_depth == faiss.downcast_index(large.index).nlist // 4


def test_filtered_search_returns_exactly_k_when_enough_remain(vectors):
    items, ids, queries = vectors
    index = ArticleIndex.build(items, ids, kind="flat")
    unfiltered, _ = index.search(queries[:5], 50)
    # Exclude each query's whole unfiltered top-50 (250 articles): the first fetch cannot be enough.
    exclude = set(unfiltered.ravel().tolist())
    found, scores = index.search(queries[:5], 50, exclude=exclude)
    assert (found != -1).all() and not np.isnan(scores).any()
    assert not set(found.ravel().tolist()) & exclude
    brute = queries[:5] @ items.T
    brute[:, np.isin(ids, list(exclude))] = -np.inf
    np.testing.assert_array_equal(found, ids[np.argsort(-brute, axis=1)[:, :50]])


def test_allow_set_keeps_only_allowed_and_pads_when_too_few(vectors):
    items, ids, queries = vectors
    index = ArticleIndex.build(items, ids, kind="flat")
    allow = set(ids[:7].tolist())
    found, scores = index.search(queries[:3], 12, allow=allow)
    assert all(set(row[:7].tolist()) == allow for row in found)
    assert (found[:, 7:] == -1).all() and np.isnan(scores[:, 7:]).all()


def test_k_larger_than_index_pads(vectors):
    items, ids, _ = vectors
    index = ArticleIndex.build(items[:5], ids[:5], kind="flat")
    found, _ = index.search(items[:2], 8)
    assert (found[:, :5] != -1).all() and (found[:, 5:] == -1).all()
    assert found[0, 0] == ids[0] and found[1, 0] == ids[1]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(vectors, kind, tmp_path):
    items, ids, queries = vectors
    index = ArticleIndex.build(items, ids, kind=kind, search_depth=64)
    index.save(tmp_path)
    loaded = ArticleIndex.load(tmp_path)
    assert loaded.kind == kind and loaded.search_depth == 64
    for before, after in zip(index.search(queries, 20), loaded.search(queries, 20), strict=True):
        np.testing.assert_array_equal(before, after)


def test_build_rejects_bad_input(vectors):
    items, ids, _ = vectors
    with pytest.raises(ValueError, match="index kind must be one of"):
        ArticleIndex.build(items, ids, kind="lsh")
    with pytest.raises(ValueError, match="vectors must be"):
        ArticleIndex.build(items[:10], ids, kind="flat")
