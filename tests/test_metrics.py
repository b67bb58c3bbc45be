"""Metrics: against slow obviously-correct loops on random data, and hand-computed known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hmrec.evaluation.metrics import (
    ap_from_hits,
    ap_per_customer,
    hit_matrix,
    map_at_k,
    ndcg_at_k,
    ndcg_from_hits,
    ndcg_per_customer,
    recall_at_k,
    recall_curve,
    recall_from_hits,
    recall_per_customer,
)


def slow_ranked(row: list[int], k: int) -> list[int]:
    """The first k entries, with repeats and pads replaced by None (they can never hit)."""
    seen, out = set(), []
    for item in row[:k]:
        out.append(None if item < 0 or item in seen else item)
        seen.add(item)
    return out


def slow_ap(row, bought, k):
    bought = {b for b in bought if b >= 0}
    hits, total = 0, 0.0
    for j, item in enumerate(slow_ranked(row, k), start=1):
        if item is not None and item in bought:
            hits += 1
            total += hits / j
    return total / min(len(bought), k)


def slow_recall(row, bought, k):
    bought = {b for b in bought if b >= 0}
    return sum(1 for item in slow_ranked(row, k) if item is not None and item in bought) / len(bought)


def slow_ndcg(row, bought, k):
    bought = {b for b in bought if b >= 0}
    dcg = sum(1 / math.log2(j + 2) for j, item in enumerate(slow_ranked(row, k)) if item in bought)
    ideal = sum(1 / math.log2(j + 2) for j in range(min(len(bought), k)))
    return dcg / ideal


def random_case(seed: int, n: int = 300, width: int = 20, n_items: int = 30):
    rng = np.random.default_rng(seed)
    items = rng.integers(-1, n_items, size=(n, width))  # repeats and pads on purpose
    relevant = [list(rng.integers(0, n_items, size=rng.integers(0, 15))) for _ in range(n)]
    return items, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 12, 20])
def test_vectorised_metrics_match_slow_loops(seed, k):
    items, relevant = random_case(seed)
    buyers = [i for i, r in enumerate(relevant) if r]
    rows = items.tolist()
    for fast, slow in [(ap_per_customer, slow_ap), (recall_per_customer, slow_recall), (ndcg_per_customer, slow_ndcg)]:
        got = fast(items, relevant, k)
        expected = np.array([slow(rows[i], relevant[i], k) for i in buyers])
        np.testing.assert_allclose(got[buyers], expected, rtol=1e-12, err_msg=fast.__name__)
        assert np.isnan(np.delete(got, buyers)).all()
    assert map_at_k(items, relevant, k) == pytest.approx(np.mean([slow_ap(rows[i], relevant[i], k) for i in buyers]))


def test_one_hit_matrix_at_the_largest_k_serves_every_smaller_k():
    items, relevant = random_case(4)
    hits, counts = hit_matrix(items, relevant, 20)
    for k in (1, 7, 12, 20):
        np.testing.assert_array_equal(hits[:, :k], hit_matrix(items, relevant, k)[0])
        np.testing.assert_allclose(ap_from_hits(hits, counts, k), ap_per_customer(items, relevant, k))
        np.testing.assert_allclose(ndcg_from_hits(hits, counts, k), ndcg_per_customer(items, relevant, k))
        np.testing.assert_allclose(recall_from_hits(hits, counts, k), recall_per_customer(items, relevant, k))


def test_recall_curve_matches_recall_at_each_k():
    items, relevant = random_case(3)
    curve = recall_curve(items, relevant, 20)
    assert curve.shape == (20,)
    np.testing.assert_allclose(curve, [recall_at_k(items, relevant, k) for k in range(1, 21)])
    assert np.all(np.diff(curve) >= 0)


def test_perfect_ranking_scores_one():
    items = np.array([[3, 1, 2, -1], [7, -1, -1, -1]])
    relevant = [{1, 2, 3}, [7]]
    assert map_at_k(items, relevant, 4) == 1.0
    assert ndcg_at_k(items, relevant, 4) == pytest.approx(1.0)
    assert recall_at_k(items, relevant, 4) == 1.0


def test_no_hit_scores_zero():
    items = np.array([[4, 5, 6], [-1, -1, -1]])
    relevant = [{1, 2}, {3}]
    assert map_at_k(items, relevant, 3) == 0.0
    assert ndcg_at_k(items, relevant, 3) == 0.0
    assert recall_at_k(items, relevant, 3) == 0.0


def test_pinned_hand_computed_values():
    # bought {1, 2, 3}; list 1, 9, 2, 2(repeat), 3: hits at ranks 1, 3 and 5
    items = np.array([[1, 9, 2, 2, 3]])
    relevant = [[1, 2, 3, 3]]
    assert map_at_k(items, relevant, 5) == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert map_at_k(items, relevant, 3) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert recall_at_k(items, relevant, 3) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(6)
    ideal = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(items, relevant, 5) == pytest.approx(dcg / ideal)


def test_more_bought_than_k_divides_by_k_for_map_and_ndcg():
    items = np.array([[0, 1]])
    relevant = [range(10)]
    assert map_at_k(items, relevant, 2) == 1.0
    assert ndcg_at_k(items, relevant, 2) == pytest.approx(1.0)
    assert recall_at_k(items, relevant, 2) == pytest.approx(0.2)


def test_customers_who_bought_nothing_are_skipped():
    items = np.array([[1, 2], [1, 2]])
    assert map_at_k(items, [[1], []], 2) == 1.0
    assert map_at_k(items, [[], []], 2) == 0.0


def test_misaligned_inputs_are_refused():
    with pytest.raises(ValueError, match="2 rows but relevant has 1"):
        map_at_k(np.zeros((2, 12), dtype=int), [[1]])
    with pytest.raises(ValueError, match=r"\(n, >=12\)"):
        map_at_k(np.zeros((2, 5), dtype=int), [[1], [2]])
