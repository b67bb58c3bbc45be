"""TIFU-KNN and EASE: each on a hand-made planted answer computed by hand, the checks every recommender passes
(test_recommenders.py's suite, with pads allowed where a customer has no usable history), and a run on the tiny
sample."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from test_recommenders import CUTOFF, hand_made_transactions, make_articles, make_customers, purchases, query_for

from hmrec.data import PAD_ITEM, Query, TrainData
from hmrec.pipeline import held_out_query, load_train_data
from hmrec.recommenders.base import Reason, Recommender, load_recommender, save_recommender
from hmrec.recommenders.ease import EaseConfig, EaseRecommender
from hmrec.recommenders.popularity import AgePopularityRecommender
from hmrec.recommenders.tifu import TifuConfig, TifuKnnRecommender, tifu_vectors

HALVES = TifuConfig(group_size=2, within_decay=0.5, across_decay=0.5, neighbours=5, units=False)  # the paper's baskets


def data_of(rows: list[tuple[int, int, int]], n_customers: int = 30, n_articles: int = 40) -> TrainData:
    return TrainData(purchases(rows), make_customers(n_customers), make_articles(n_articles), CUTOFF)


def live_query(customer: int, lines: list[tuple[int, int]]) -> Query:
    """One known customer whose history is `lines` (days before the cutoff, article_idx), nothing else."""
    history = purchases([(d, customer, a) for d, a in lines]).select(
        pl.lit(0, dtype=pl.UInt32).alias("row"), "t_dat", "article_idx", "price", "sales_channel_id")
    profile = make_customers(customer + 1).slice(customer, 1).with_columns(pl.lit(-1, dtype=pl.Int8).alias("age_bucket"))
    return Query(profile, history, CUTOFF)


# ---- TIFU-KNN -------------------------------------------------------------------------------------------------


def test_tifu_vector_is_the_two_level_decayed_frequency():
    # baskets oldest first: day 10 {0}, day 5 {0, 1} (0 bought twice that day: counted once), day 2 {2}.
    # m = 2, counted back from the newest: groups {day 5, day 2} and {day 10}.
    # newest group: (0.5 * {0, 1} + {2}) / 2 = {0: .25, 1: .25, 2: .5}; oldest group: {0: 1}
    # vector: (0.5 * oldest + newest) / 2 = {0: .375, 1: .125, 2: .25}
    days, articles = np.array([10, 5, 5, 5, 2]), np.array([0, 0, 0, 1, 2])
    keys, values = tifu_vectors(np.zeros(5, np.int64), days, articles, HALVES)
    assert (keys & 0xFFFFFFFF).tolist() == [0, 1, 2]
    np.testing.assert_allclose(values, [0.375, 0.125, 0.25])
    # a second row with the same lines gets the same vector: rows never mix
    keys, values = tifu_vectors(np.repeat([0, 1], 5), np.tile(days, 2), np.tile(articles, 2), HALVES)
    np.testing.assert_allclose(values, [0.375, 0.125, 0.25] * 2)
    # counting units: day 5's basket is {0: 2, 1: 1}, the newest group {0: .5, 1: .25, 2: .5}, the vector
    # (0.5 * {0: 1} + newest) / 2 = {0: .5, 1: .125, 2: .25}
    _, values = tifu_vectors(np.zeros(5, np.int64), days, articles, TifuConfig(**{**HALVES.__dict__, "units": True}))
    np.testing.assert_allclose(values, [0.5, 0.125, 0.25])


def test_tifu_vector_does_not_depend_on_the_order_of_the_lines():
    """Bit for bit: the pool's lines come from a join whose order polars does not promise, and a sum of the same
    floats in another order can differ in its last bits (and so tie-break candidates differently from run to run)."""
    rng = np.random.default_rng(0)
    rows, days, articles = rng.integers(0, 50, 20_000), rng.integers(1, 200, 20_000), rng.integers(0, 30, 20_000)
    for config in (TifuConfig(), HALVES):
        keys, values = tifu_vectors(rows, days, articles, config)
        for _ in range(3):
            shuffled = rng.permutation(rows.size)
            again = tifu_vectors(rows[shuffled], days[shuffled], articles[shuffled], config)
            np.testing.assert_array_equal(again[0], keys)
            np.testing.assert_array_equal(again[1], values)


def test_tifu_own_part_orders_by_decayed_frequency_not_by_recency():
    data = data_of([(10, 0, 0), (5, 0, 0), (5, 0, 1), (2, 0, 2)])
    recs = TifuKnnRecommender(TifuConfig(**{**HALVES.__dict__, "alpha": 1.0})).fit(data).recommend(query_for(data, [0]), 5)
    assert recs.items[0].tolist() == [0, 2, 1, PAD_ITEM, PAD_ITEM]
    np.testing.assert_allclose(recs.scores[0, :3], [0.375, 0.25, 0.125], rtol=1e-6)


def neighbourhood() -> TrainData:
    """Customer 0 bought article 1 nine days ago and 1 and 2 three days ago; customers 10-14 (like them) bought
    1 and 5 four days ago; customers 20-24 (unlike them) bought 7 six days ago and 7 and 8 four days ago,
    customer 24 also 9."""
    rows = [(9, 0, 1), (3, 0, 1), (3, 0, 2)]
    rows += [(4, c, a) for c in range(10, 15) for a in (1, 5)]
    rows += [(6, c, 7) for c in range(20, 25)] + [(4, c, a) for c in range(20, 25) for a in (7, 8)] + [(4, 24, 9)]
    return data_of(rows)


def tifu(**settings) -> TifuKnnRecommender:
    return TifuKnnRecommender(TifuConfig(**{**HALVES.__dict__, **settings}))


def test_tifu_neighbours_bring_what_similar_customers_bought_into_the_list():
    # own (m = 2, one group of two baskets): (0.5 * {1} + {1, 2}) / 2 = {1: .75, 2: .5}
    # neighbours 10-14 (each {1: 1, 5: 1}); 20-24 share nothing (cosine 0); customer 0 is not their own neighbour
    # alpha .5: 1: .375 + .5 = .875, 5: .5, 2: .25; never 7 or 8
    data = neighbourhood()
    assert tifu(alpha=1.0).fit(data).recommend(query_for(data, [0]), 4).items[0].tolist() == [1, 2, PAD_ITEM, PAD_ITEM]
    recs = tifu(alpha=0.5, neighbours=20).fit(data).recommend(query_for(data, [0]), 4)
    assert recs.items[0].tolist() == [1, 5, 2, PAD_ITEM]
    np.testing.assert_allclose(recs.scores[0, :3], [0.875, 0.5, 0.25], rtol=1e-6)


def test_tifu_answers_from_the_live_history_with_the_k_nearest():
    data = neighbourhood()
    # today's purchase of 7 and 8 (not in the fitted data): own {7: 1, 8: 1}, like 20-24 now. Customers 20-23:
    # (0.5 * {7} + {7, 8}) / 2 = {7: .75, 8: .5}, cosine .98; customer 24 also {9: .5}, cosine .86
    live = live_query(0, [(1, 7), (1, 8), (1, 7)])
    nearest = tifu(alpha=0.5, neighbours=1).fit(data).recommend(live, 4)
    assert nearest.items[0].tolist() == [7, 8, PAD_ITEM, PAD_ITEM]
    np.testing.assert_allclose(nearest.scores[0, :2], [0.5 + 0.375, 0.5 + 0.25], rtol=1e-6)
    five = tifu(alpha=0.5, neighbours=5).fit(data).recommend(live, 4)
    assert five.items[0].tolist() == [7, 8, 9, PAD_ITEM]
    np.testing.assert_allclose(five.scores[0, :3], [0.875, 0.75, 0.5 * 0.5 / 5], rtol=1e-6)


def test_tifu_tie_at_the_kth_neighbour_goes_to_the_earlier_pool_customer():
    # customer 0 bought 1; customers 10 and 11 are equally like them (1 and one other article, the same day): with
    # one neighbour, the lower customer_idx is it, whichever of them bought which
    for first, second in ((5, 6), (6, 5)):
        data = data_of([(3, 0, 1), (4, 10, 1), (4, 10, first), (4, 11, 1), (4, 11, second)])
        recs = tifu(alpha=0.5, neighbours=1).fit(data).recommend(query_for(data, [0]), 3)
        assert recs.items[0].tolist() == [1, first, PAD_ITEM]


def test_tifu_pool_and_vector_length_are_capped():
    data = neighbourhood()
    capped = tifu(alpha=0.5, max_pool=3, max_articles=2).fit(data)
    assert capped.pool_customers_.tolist() == [0, 10, 11]  # the most recent buyers, ties to the lower customer_idx
    assert capped.vocabulary_.tolist() == [1, 7]  # the most sold: 7 ten times, 1 seven times
    # the neighbours' part holds only those articles: 5 (sold five times) is not proposed
    assert capped.recommend(query_for(data, [0]), 4).items[0].tolist() == [1, 2, PAD_ITEM, PAD_ITEM]


def test_tifu_explains_own_articles_as_bought_before_and_the_neighbours_as_style():
    data = neighbourhood()
    (answers,) = tifu(alpha=0.5).fit(data).explain(query_for(data, [0]), 3)
    assert [(a, sources) for a, _, sources in answers] == [(1, ["tifu_knn"]), (5, ["tifu_knn_neighbours"]),
                                                           (2, ["tifu_knn"])]
    assert tifu().reasons() == {"tifu_knn": Reason.BOUGHT_BEFORE, "tifu_knn_neighbours": Reason.STYLE}


def test_tifu_answers_and_explains_in_blocks_of_rows_as_all_at_once(monkeypatch):
    import hmrec.recommenders.tifu as tifu_module

    data = TrainData(hand_made_transactions(), make_customers(), make_articles(), CUTOFF)
    model, query = tifu(alpha=0.5).fit(data), query_for(data, list(range(N_CUSTOMERS)))
    whole, explained = model.recommend(query, 12), model.explain(query, 12)
    monkeypatch.setattr(tifu_module, "ANSWER_ROWS", 7)  # 30 rows: blocks of 7, 7, 7, 7 and 2
    blocks = model.recommend(query, 12)
    np.testing.assert_array_equal(blocks.items, whole.items)
    np.testing.assert_array_equal(blocks.scores, whole.scores)
    assert model.explain(query, 12) == explained
    assert {name for row in explained for _, _, names in row for name in names} == {"tifu_knn", "tifu_knn_neighbours"}


# ---- EASE ------------------------------------------------------------------------------------------------------


def two_blocks(second: int = 10) -> TrainData:
    """Customers 0-9 bought articles 0 and 1 together five days ago, customers 10..10+second-1 articles 2 and 3."""
    rows = [(5, c, a) for c in range(10) for a in (0, 1)] + [(5, c, a) for c in range(10, 10 + second) for a in (2, 3)]
    return data_of(rows)


def test_ease_answers_the_other_article_of_the_block():
    # X^T X + l2 I is block diagonal; each block [[n + l2, n], [n, n + l2]] has inverse ~ [[n + l2, -n], [-n, n + l2]]
    # so B_01 = B_10 = n / (n + l2) = 10 / 15, B_jj = 0, and nothing across blocks
    model = EaseRecommender(EaseConfig(l2=5.0)).fit(two_blocks())
    assert model.articles_.tolist() == [0, 1, 2, 3]
    expected = np.array([[0, 2 / 3, 0, 0], [2 / 3, 0, 0, 0], [0, 0, 0, 2 / 3], [0, 0, 2 / 3, 0]])
    np.testing.assert_allclose(model.weights_, expected, atol=1e-6)
    recs = model.recommend(live_query(0, [(1, 0)]), 4)  # bought only article 0 (yesterday)
    assert recs.items[0].tolist() == [1, PAD_ITEM, PAD_ITEM, PAD_ITEM]  # 0, 2, 3 score 0: no answer
    np.testing.assert_allclose(recs.scores[0, :1], [2 / 3], rtol=1e-6)
    items, scores = model.similar(2, 3)
    assert items[0] == 3 and scores[0] == pytest.approx(2 / 3, rel=1e-6) and 2 not in items.tolist()


def test_ease_sums_the_weights_of_the_whole_history_and_keeps_what_was_bought():
    # bought 0 and 2: 1 and 3 both score 2/3 (ties to the lower article_idx); bought 0 and 1: each scores 2/3
    model = EaseRecommender(EaseConfig(l2=5.0)).fit(two_blocks())
    assert model.recommend(live_query(0, [(2, 0), (1, 2)]), 3).items[0].tolist() == [1, 3, PAD_ITEM]
    both = model.recommend(live_query(0, [(2, 0), (1, 1)]), 3)
    assert both.items[0].tolist() == [0, 1, PAD_ITEM]  # repurchases are answers unless exclude_bought
    excluding = EaseRecommender(EaseConfig(l2=5.0, exclude_bought=True)).fit(two_blocks())
    assert (excluding.recommend(live_query(0, [(2, 0), (1, 1)]), 3).items == PAD_ITEM).all()


def test_ease_models_only_the_most_bought_articles_of_its_window():
    data = two_blocks(second=5)
    model = EaseRecommender(EaseConfig(l2=5.0, max_articles=2)).fit(data)
    assert model.articles_.tolist() == [0, 1]  # bought 10 times each; 2 and 3 five times
    assert (model.recommend(live_query(12, [(1, 2)]), 3).items == PAD_ITEM).all()  # nothing modelled in its history
    old = EaseRecommender(EaseConfig(l2=5.0, window_days=3)).fit(data)  # the blocks were bought 5 days ago
    assert old.articles_.size == 0 and (old.recommend(live_query(0, [(1, 0)]), 3).items == PAD_ITEM).all()


def test_ease_recency_weights_put_the_partner_of_the_newest_buy_first():
    # half-life 7 days, counted from yesterday: 0 bought 15 days ago weighs .5 ** 2 = .25, 2 bought yesterday 1
    model = EaseRecommender(EaseConfig(l2=5.0, half_life_days=7.0)).fit(two_blocks())
    recs = model.recommend(live_query(0, [(15, 0), (1, 2)]), 2)
    assert recs.items[0].tolist() == [3, 1]
    np.testing.assert_allclose(recs.scores[0], [2 / 3, 0.25 * 2 / 3], rtol=1e-6)
    assert model.reasons() == {"ease": Reason.STYLE}


# ---- the checks every recommender passes (test_recommenders.py's suite), on its hand-made data ---------------

METHODS: dict[str, Callable[[], Recommender]] = {
    "tifu_knn": lambda: TifuKnnRecommender(TifuConfig(group_size=3, neighbours=5)),
    "tifu_knn+fill": lambda: TifuKnnRecommender(TifuConfig(group_size=3, neighbours=5), fill=AgePopularityRecommender()),
    "ease": lambda: EaseRecommender(EaseConfig(l2=10.0)),
    "ease+fill": lambda: EaseRecommender(EaseConfig(l2=10.0), fill=AgePopularityRecommender()),
}
N_CUSTOMERS = 30


@pytest.fixture(scope="module")
def suite_data() -> TrainData:
    return TrainData(hand_made_transactions(), make_customers(), make_articles(), CUTOFF)


@pytest.fixture(scope="module", params=sorted(METHODS))
def factory(request) -> Callable[[], Recommender]:
    return METHODS[request.param]


@pytest.fixture(scope="module")
def fitted(factory, suite_data) -> Recommender:
    return factory().fit(suite_data)


def check_answers(recs, n_articles: int) -> None:
    """Distinct real articles, pads only at the end, real scores present and falling."""
    for items, scores in zip(recs.items, recs.scores, strict=True):
        real = items[items != PAD_ITEM]
        assert len(set(real.tolist())) == real.size and np.all((real >= 0) & (real < n_articles))
        assert np.all(items[real.size :] == PAD_ITEM), items
        assert not np.isnan(scores[: real.size]).any() and np.all(np.diff(scores[: real.size]) <= 1e-6)


def test_answers_are_distinct_best_first_and_padded(fitted, suite_data):
    for k in (1, 12, 60):  # 60 > the 40 articles
        recs = fitted.recommend(query_for(suite_data, list(range(N_CUSTOMERS))), k)
        assert recs.items.shape == recs.scores.shape == (N_CUSTOMERS, k) and recs.items.dtype == np.int32
        check_answers(recs, 40)
        assert (recs.items[:, 0] != PAD_ITEM).any()


def test_a_customer_without_history_gets_pads_or_the_fill(fitted, suite_data):
    stranger = live_query(3, [])
    recs = fitted.recommend(stranger, 12)
    if getattr(fitted, "fill", None) is None:
        assert (recs.items == PAD_ITEM).all()
    else:
        assert (recs.items != PAD_ITEM).all()


def test_a_customer_alone_gets_the_same_answer_as_in_a_batch(fitted, suite_data):
    everyone = fitted.recommend(query_for(suite_data, list(range(N_CUSTOMERS))), 12)
    for customer in (0, 6, 15, 25, 29):
        alone = fitted.recommend(query_for(suite_data, [customer]), 12)
        np.testing.assert_array_equal(alone.items[0], everyone.items[customer])
        np.testing.assert_allclose(alone.scores[0], everyone.scores[customer], rtol=1e-6)


def test_explain_lists_the_answers_under_declared_reasons(fitted, suite_data):
    query = query_for(suite_data, list(range(N_CUSTOMERS)))
    recs, explained, reasons = fitted.recommend(query, 12), fitted.explain(query, 12), fitted.reasons()
    for row, answers in enumerate(explained):
        assert [a for a, _, _ in answers] == [a for a in recs.items[row].tolist() if a != PAD_ITEM]
        assert all(len(sources) == 1 and sources[0] in reasons for _, _, sources in answers)


def test_save_and_load_give_identical_answers(fitted, suite_data, tmp_path):
    query = query_for(suite_data, list(range(N_CUSTOMERS)))
    save_recommender(fitted, tmp_path / "model")
    loaded = load_recommender(tmp_path / "model")
    assert type(loaded) is type(fitted) and not list((tmp_path / "model").rglob("*.pkl"))
    before, after = fitted.recommend(query, 12), loaded.recommend(query, 12)
    np.testing.assert_array_equal(before.items, after.items)
    np.testing.assert_array_equal(before.scores, after.scores)


def test_fitting_twice_gives_the_same_answers(factory, fitted, suite_data):
    query = query_for(suite_data, list(range(N_CUSTOMERS)))
    again = fitted.fit(suite_data).recommend(query, 12)  # the same object fitted again
    fresh = factory().fit(suite_data).recommend(query, 12)
    np.testing.assert_array_equal(again.items, fresh.items)
    np.testing.assert_array_equal(again.scores, fresh.scores)


# ---- the tiny sample ----------------------------------------------------------------------------------------


def test_valid_answers_for_the_held_out_buyers_of_the_tiny_sample(factory, tiny_store):
    data = load_train_data(tiny_store)
    query, relevant = held_out_query(tiny_store, data)
    model = factory().fit(data)
    recs = model.recommend(query, 12)
    assert recs.items.shape == (len(relevant), 12)
    check_answers(recs, data.n_articles)
    recent = query.history.filter(pl.col("t_dat") >= data.cutoff - timedelta(days=28))["row"].unique().to_numpy()
    assert (recs.items[recent, 0] != PAD_ITEM).all()  # every buyer with history gets answers
    if getattr(model, "fill", None) is not None:
        assert (recs.items != PAD_ITEM).all()
