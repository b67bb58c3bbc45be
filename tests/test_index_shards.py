"""An IVF index for a large catalogue: lists trained on a sample, vectors added shard by shard, still near exact."""

from __future__ import annotations

import numpy as np

from hmrec.retrieval import index as index_module
from hmrec.retrieval.index import ArticleIndex, train_sample


def clustered(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    centres = unit(rng.standard_normal((60, 24)))
    items = unit(centres[rng.integers(0, 60, n)] + 0.35 * unit(rng.standard_normal((n, 24))))
    return items.astype(np.float32), np.arange(n, dtype=np.int32), unit(rng.standard_normal((100, 24))).astype(
        np.float32)


def recall_at_10(index: ArticleIndex, items: np.ndarray, queries: np.ndarray) -> float:
    found, _ = index.search(queries, 10)
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))


def test_train_sample_caps_the_rows_per_list_and_is_seeded():
    items, _, _ = clustered(3000)
    sample = train_sample(items, n_lists=8, seed=1)
    assert sample.shape == (8 * index_module.TRAIN_PER_LIST, 24)
    np.testing.assert_array_equal(sample, train_sample(items, n_lists=8, seed=1))
    assert train_sample(items, n_lists=100, seed=1) is items  # fewer vectors than the cap: all of them


def test_shard_wise_add_builds_the_same_index_as_one_add(monkeypatch):
    items, ids, queries = clustered(5000)
    whole = ArticleIndex.build(items, ids, kind="ivf", ivf_lists=32, seed=2)
    monkeypatch.setattr(index_module, "ADD_SHARD", 700)
    sharded = ArticleIndex.build(items, ids, kind="ivf", ivf_lists=32, seed=2)
    assert sharded.index.ntotal == 5000
    np.testing.assert_array_equal(sharded.search(queries, 10)[0], whole.search(queries, 10)[0])


def test_ivf_trained_on_a_sample_stays_near_exact_search(monkeypatch):
    items, ids, queries = clustered(5000)
    on_all = recall_at_10(ArticleIndex.build(items, ids, kind="ivf", ivf_lists=32, seed=2), items, queries)
    monkeypatch.setattr(index_module, "TRAIN_PER_LIST", 40)  # 1,280 of the 5,000 vectors train the lists
    on_sample = recall_at_10(ArticleIndex.build(items, ids, kind="ivf", ivf_lists=32, seed=2), items, queries)
    assert on_sample >= 0.9 and on_sample >= on_all - 0.05, (on_sample, on_all)
