"""The evaluation runner on a hand-made week with known metric values and a known segment split."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Self

import numpy as np
import polars as pl
import pytest

from hmrec.data import Query, Recs, TrainData
from hmrec.evaluation.runner import default_segments, evaluate_methods, ground_truth
from hmrec.recommenders.base import Recommender
from hmrec.recommenders.repurchase import RepurchaseRecommender

CUTOFF = date(2027, 2, 3)
SCHEMA = {"t_dat": pl.Date, "customer_idx": pl.Int32, "article_idx": pl.Int32, "price": pl.Float32,
          "sales_channel_id": pl.Int8}


class FixedLists(Recommender):
    """Answers a given list per customer_idx (a real, if simple, recommender: no learning)."""

    name = "fixed"

    def __init__(self, lists: dict[int, list[int]]):
        self.lists = lists

    def fit(self, data: TrainData) -> Self:
        return self

    def recommend(self, query: Query, k: int) -> Recs:
        asked = query.customers["customer_idx"].to_list()
        answers = [self.lists.get(c, []) for c in asked]
        rows = np.repeat(np.arange(len(answers)), [len(a) for a in answers])
        items = np.array([a for answer in answers for a in answer], dtype=np.int32)
        scores = -np.concatenate([np.arange(len(a)) for a in answers] + [[]]).astype(np.float32)
        return Recs.from_sorted(rows, items, scores, len(answers), k)


def transactions(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """From (days before the cutoff (negative: inside the held-out week), customer_idx, article_idx)."""
    return pl.DataFrame(
        {"t_dat": [CUTOFF - timedelta(days=d) for d, _, _ in rows], "customer_idx": [c for _, c, _ in rows],
         "article_idx": [a for _, _, a in rows], "price": [0.01] * len(rows), "sales_channel_id": [1] * len(rows)},
        schema=SCHEMA,
    )


CUSTOMERS = pl.DataFrame(
    {"customer_idx": np.arange(6, dtype=np.int32), "age": pl.Series([20, 60, None, 40, 30, 50], dtype=pl.Int16)}
)
# before the cutoff: 0 bought 10 days ago (warm), 1 100 days ago, 4 61 days ago (both cold), 5 exactly 60 (warm)
TRAIN = transactions([(10, 0, 1), (100, 1, 2), (61, 4, 1), (60, 5, 9), (5, 3, 3)])
# the held-out week: 0 buys 1 and 5, 1 buys 2, 2 buys 7, 4 buys 1 twice, 5 buys 9; 3 buys nothing
TEST = transactions([(0, 0, 1), (-1, 0, 5), (-2, 1, 2), (0, 2, 7), (-3, 4, 1), (-3, 4, 1), (-6, 5, 9)])
LISTS = {0: [5, 9, 1], 1: [9, 2], 2: [9, 8], 4: [], 5: [3]}


@pytest.fixture(scope="module")
def setup():
    customer_idx, relevant = ground_truth(TEST)
    query = Query.for_customers(customer_idx, CUSTOMERS, TRAIN, as_of=CUTOFF)
    methods = {"fixed": FixedLists(LISTS), "repurchase": RepurchaseRecommender()}
    data = TrainData(TRAIN, CUSTOMERS, pl.DataFrame({"article_idx": np.arange(10, dtype=np.int32)}), CUTOFF)
    for method in methods.values():
        method.fit(data)
    return query, relevant, evaluate_methods(methods, query, relevant)


def test_ground_truth_lists_buyers_and_their_distinct_articles():
    customer_idx, relevant = ground_truth(TEST)
    assert customer_idx.tolist() == [0, 1, 2, 4, 5]
    assert [r.tolist() for r in relevant] == [[1, 5], [2], [7], [1], [9]]


def test_segments_split_warm_cold_at_sixty_days_and_by_age(setup):
    query, _, result = setup
    segments = default_segments(query)
    assert segments["warm"].tolist() == [True, False, False, False, True]  # rows: customers 0, 1, 2, 4, 5
    assert segments["cold"].tolist() == [False, True, True, True, False]
    assert segments["age 16-24"].tolist() == [True, False, False, False, False]
    assert segments["age 25-34"].tolist() == [False, False, False, True, False]
    assert segments["age unknown"].tolist() == [False, False, True, False, False]
    assert result.segment_sizes["warm"] == 2 and result.segment_sizes["age 35-44"] == 0


def test_known_metric_values_overall_and_by_segment(setup):
    _, _, result = setup
    fixed = result.methods["fixed"]
    ap = {0: (1 + 2 / 3) / 2, 1: 1 / 2, 2: 0.0, 4: 0.0, 5: 0.0}  # customer 5 gets 3, buys 9
    assert fixed.metrics["map@12"] == pytest.approx(sum(ap.values()) / 5)
    assert fixed.metrics["recall@12"] == pytest.approx((1 + 1 + 0 + 0 + 0) / 5)
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert fixed.metrics["ndcg@12"] == pytest.approx((ndcg0 + 1 / math.log2(3)) / 5)
    assert fixed.segments["warm"]["map@12"] == pytest.approx((ap[0] + ap[5]) / 2)
    assert fixed.segments["cold"]["map@12"] == pytest.approx((ap[1] + ap[2] + ap[4]) / 3)
    assert fixed.segments["age 55-64"]["recall@12"] == 1.0
    assert fixed.segments["age 35-44"]["map@12"] == 0.0  # empty segment


def test_repurchase_scores_where_customers_rebuy(setup):
    _, _, result = setup
    # repurchase puts each warm customer's own article first: 1 for customer 0 (bought 1, 5), 9 for customer 5
    repurchase = result.methods["repurchase"]
    assert repurchase.top[0, 0] == 1 and repurchase.top[4, 0] == 9
    assert repurchase.segments["warm"]["map@12"] >= (1 / 2 + 1) / 2
    assert repurchase.metrics["map@12"] > result.methods["fixed"].metrics["map@12"]


def test_curve_top_lists_and_timing_are_kept(setup):
    _, relevant, result = setup
    fixed = result.methods["fixed"]
    assert result.customers == 5 and result.k_max == 100
    assert fixed.recall_curve.shape == (100,)
    assert fixed.recall_curve[0] == pytest.approx(0.5 / 5)  # only customer 0's first answer hits, 1 of 2 bought
    assert fixed.recall_curve[-1] == pytest.approx(fixed.metrics["recall@100"])
    assert fixed.top.shape == (5, 12) and fixed.top[0, :3].tolist() == [5, 9, 1]
    assert fixed.seconds >= 0 and len(result.relevant) == len(relevant)


def test_misaligned_query_and_relevant_are_refused(setup):
    query, relevant, _ = setup
    with pytest.raises(ValueError, match="5 customers but relevant has 4"):
        evaluate_methods({"fixed": FixedLists(LISTS)}, query, relevant[:4])
    with pytest.raises(ValueError, match="k_max is 5; it must be at least 12"):
        evaluate_methods({"fixed": FixedLists(LISTS)}, query, relevant, k_max=5)
    with pytest.raises(ValueError, match="segment 'odd' has a mask of shape"):
        evaluate_methods({"fixed": FixedLists(LISTS)}, query, relevant, segments={"odd": np.ones(3, dtype=bool)})
