"""One suite of checks run against every recommender, plus each baseline's known answer on hand-made data.

The suite runs over every method of the catalogue (candidates/sources.py), each built with its defaults or the
small settings in SMALL, and over `final`: a source added to the catalogue goes through it with no edit here.
Each is fitted on the hand-made TrainData below (40 articles, 30 customers), and on a planted world whose right
answer is known (`test_every_method_finds_the_planted_block`, implicit's checkerboard in spirit).
Candidate sources that declare `personal_only` (they answer only from a customer's own purchases) leave a customer
without history with no answer; every other recommender fills the list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from hmrec.candidates.sources import CATALOGUE, candidate_sources
from hmrec.data import PAD_ITEM, Query, Recs, TrainData
from hmrec.evaluation.metrics import recall_at_k
from hmrec.ranking.ranker import FinalConfig, FinalRecommender
from hmrec.raw.schema import ARTICLE_COLUMNS
from hmrec.recommenders.als import ALSConfig, ALSRecommender
from hmrec.recommenders.base import Reason, Recommender, load_recommender, save_recommender
from hmrec.recommenders.popularity import (
    AgePopularityRecommender,
    PopularityConfig,
    PopularityRecommender,
    fill_with,
)
from hmrec.recommenders.repurchase import RepurchaseConfig, RepurchaseRecommender
from hmrec.recommenders.together import BoughtTogetherConfig, BoughtTogetherRecommender
from hmrec.retrieval.recommender import TwoTowerConfig

TOGETHER = BoughtTogetherConfig(min_count=1, window_days=60, history_days=60)  # the month-old baskets count
TINY_TOWER = TwoTowerConfig(window_days=60, epochs=2, hidden_dim=16, wide_dim=8, narrow_dim=4, out_dim=8,
                            batch_size=32, extra_negatives=16, index_window_days=None, threads=1, seed=3)


# The suite's small settings for the catalogue's slow or picky sources (the others take their defaults).
SMALL = {"als": ALSConfig(factors=8, iterations=5, seed=3), "two_tower": TINY_TOWER, "bought_together": TOGETHER}
FINAL_PARTS = ("two_tower", "repurchase", "other_colours", "age_popularity", "bought_together")


def tiny_final() -> FinalRecommender:
    """The final ranker over some of the catalogue's candidate sources, its label week the data's last week."""
    sources = {source.name: source.build(SMALL.get(source.name)) for source in candidate_sources()
               if source.name in FINAL_PARTS}
    config = FinalConfig(n_per_source=dict.fromkeys(sources, 20), num_threads=1, min_data_in_leaf=2,
                         num_boost_round=20, label_windows=1)
    return FinalRecommender(sources, config)


# Every method of the catalogue, and `final`: a new catalogue entry goes through the suite with no edit here.
RECOMMENDERS: dict[str, Callable[[], Recommender]] = {
    **{source.name: functools.partial(source.build, SMALL.get(source.name)) for source in CATALOGUE},
    "final": tiny_final,
}

CUTOFF = date(2031, 5, 14)  # deliberately unlike the sample's dates
N_ARTICLES, N_CUSTOMERS = 40, 30
YOUNG, OLD, UNKNOWN_AGE = range(0, 10), range(10, 20), range(20, 30)


def make_articles(n: int = N_ARTICLES) -> pl.DataFrame:
    """An articles table in the store's layout: article_idx i in row i, every raw column filled; articles 2p and
    2p + 1 are two colours of one product."""
    idx = np.arange(n)
    columns: dict[str, object] = {"article_idx": idx.astype(np.int32)}
    for name in ARTICLE_COLUMNS:
        if name.endswith(("_no", "_code", "_id")) and name != "index_code":
            columns[name] = (idx % 5).astype(np.int64)
        else:
            columns[name] = [f"{name} {i % 5}" for i in idx]
    columns["article_id"] = (100_000_000 + idx * 1000 + 1).astype(np.int64)
    columns["product_code"] = (100_000 + idx // 2).astype(np.int64)  # two colours per product
    columns["prod_name"] = [f"Item {i}" for i in idx]
    return pl.DataFrame(columns)


def make_customers(n: int = N_CUSTOMERS) -> pl.DataFrame:
    """Customers 0-9 aged 20, 10-19 aged 60, 20-29 of unknown age."""
    ages = [20 if i in YOUNG else 60 if i in OLD else None for i in range(n)]
    return pl.DataFrame(
        {
            "customer_idx": np.arange(n, dtype=np.int32),
            "customer_id": [f"{i:064x}" for i in range(n)],
            "FN": [1] * n,
            "Active": [1] * n,
            "club_member_status": ["ACTIVE"] * n,
            "fashion_news_frequency": ["NONE"] * n,
            "age": pl.Series(ages, dtype=pl.Int16),
            "postal_code": ["0" * 64] * n,
            "known": [True] * n,
        },
        schema_overrides={"FN": pl.Int8, "Active": pl.Int8},
    )


def purchases(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """Transactions from (days before the cutoff, customer_idx, article_idx)."""
    return pl.DataFrame(
        {
            "t_dat": [CUTOFF - timedelta(days=d) for d, _, _ in rows],
            "customer_idx": [c for _, c, _ in rows],
            "article_idx": [a for _, _, a in rows],
            "price": [0.02] * len(rows),
            "sales_channel_id": [2] * len(rows),
        },
        schema={"t_dat": pl.Date, "customer_idx": pl.Int32, "article_idx": pl.Int32,
                "price": pl.Float32, "sales_channel_id": pl.Int8},
    ).sort("t_dat")


def hand_made_transactions() -> pl.DataFrame:
    """Last week: article 10 x5 (young), 20 x4 (old), 30 x3 (unknown age), 31 x2 (one young, one old).
    A month earlier: every article 0..39 once (so every article has been sold), article 0 x6 more.
    Customer 6 bought article 2 twenty days ago and article 3 three days ago."""
    rows = [(2, c, 10) for c in range(5)] + [(3, c, 20) for c in range(10, 14)]
    rows += [(4, c, 30) for c in range(20, 23)] + [(1, 0, 31), (1, 10, 31)]
    rows += [(30, i % N_CUSTOMERS, i) for i in range(N_ARTICLES)] + [(31, 25, 0)] * 6
    rows += [(20, 6, 2), (3, 6, 3)]
    return purchases(rows)


@pytest.fixture(scope="module")
def train_data() -> TrainData:
    return TrainData(hand_made_transactions(), make_customers(), make_articles(), CUTOFF)


def query_for(data: TrainData, customers: list[int]) -> Query:
    return Query.for_customers(np.array(customers), data.customers, data.transactions, as_of=CUTOFF)


def stranger_query(data: TrainData) -> Query:
    """One customer the store has never seen: no history, unknown age."""
    profile = data.customers.head(1).with_columns(
        pl.lit(-1, dtype=pl.Int32).alias("customer_idx"), pl.lit(None, dtype=pl.Int16).alias("age"),
        pl.lit(-1, dtype=pl.Int8).alias("age_bucket"),
    )
    history = query_for(data, [0]).history.clear()
    return Query(profile, history, CUTOFF)


@pytest.fixture(scope="module", params=sorted(RECOMMENDERS))
def factory(request) -> Callable[[], Recommender]:
    return RECOMMENDERS[request.param]


@pytest.fixture(scope="module")
def fitted(factory, train_data) -> Recommender:
    return factory().fit(train_data)


# ---- the suite every recommender goes through ----------------------------------------------------------


def test_answers_have_shape_pads_and_no_repeats(fitted, train_data):
    query = query_for(train_data, list(range(N_CUSTOMERS)))
    for k in (1, 12, 60):  # 60 > the 40 articles: rows must end in pads
        recs = fitted.recommend(query, k)
        assert recs.items.shape == recs.scores.shape == (N_CUSTOMERS, k)
        assert recs.items.dtype == np.int32
        for row in recs.items:
            real = row[row != PAD_ITEM]
            assert len(set(real.tolist())) == real.size, f"{fitted.name} repeats an article: {row}"
            assert np.all((real >= 0) & (real < N_ARTICLES))
            assert np.all(row[real.size :] == PAD_ITEM), f"{fitted.name} has a pad before a real answer: {row}"
        real_scores = recs.scores[recs.items != PAD_ITEM]
        assert not np.isnan(real_scores).any()


def test_scores_fall_along_each_row(fitted, train_data):
    recs = fitted.recommend(query_for(train_data, list(range(N_CUSTOMERS))), 12)
    rising = np.diff(recs.scores, axis=1) > 1e-6  # False where a pad (nan) is involved
    assert not rising.any(), f"{fitted.name} scores are not best first"
    assert (recs.items != PAD_ITEM).any(), f"{fitted.name} answered nobody: the suite would check nothing"


def test_customers_without_history_get_a_full_list(fitted, train_data):
    if fitted.personal_only:
        recs = fitted.recommend(stranger_query(train_data), 12)
        assert (recs.items == PAD_ITEM).all(), f"{fitted.name} answered a customer it knows nothing of"
        return
    for query in (stranger_query(train_data), query_for(train_data, [29])):  # 29 bought only a month ago
        recs = fitted.recommend(query, 12)
        assert (recs.items != PAD_ITEM).all(), f"{fitted.name} left pads for a customer without history"


def test_explain_lists_the_answers_of_recommend_with_declared_sources(fitted, train_data):
    query = query_for(train_data, list(range(N_CUSTOMERS)))
    recs, explained = fitted.recommend(query, 12), fitted.explain(query, 12)
    reasons = fitted.reasons()
    assert all(isinstance(reason, Reason) for reason in reasons.values())
    for row, answers in enumerate(explained):
        assert [a for a, _, _ in answers] == [a for a in recs.items[row].tolist() if a != PAD_ITEM]
        np.testing.assert_allclose([s for _, s, _ in answers], recs.scores[row][: len(answers)], rtol=1e-5)
        for _, _, sources in answers:
            assert sources and set(sources) <= set(reasons), f"{fitted.name}: {sources} not in {sorted(reasons)}"


def test_declared_capabilities_answer_or_decline(fitted, train_data):
    assert fitted.refresh(train_data) is fitted
    similar = fitted.similar(0, 5)
    if similar is not None:
        items, scores = similar
        assert 0 not in items.tolist() and len(items) == len(scores) <= 5
        assert np.all(np.diff(scores) <= 1e-6)
    partners = fitted.bought_with(0)
    assert np.all((partners >= 0) & (partners < N_ARTICLES))
    assert (similar is None) == (fitted.similar_by() is None), "similar and similar_by must agree"
    assert all(isinstance(loss, float) for loss in fitted.training_losses())
    assert all(part.name == name for name, part in fitted.parts().items())
    query = query_for(train_data, [0, 6, 25])
    state = fitted.user_state(query)
    if state is None:  # no state: no pair score, and recommend_from is recommend
        assert fitted.pair_scores(None, np.array([0]), np.array([0])) is None
        return
    rows, items = np.repeat(np.arange(3), N_ARTICLES), np.tile(np.arange(N_ARTICLES), 3)
    scores = fitted.pair_scores(state, rows, items)
    assert scores.shape == rows.shape and scores.dtype == np.float32
    np.testing.assert_array_equal(fitted.recommend_from(state, query, 12).items, fitted.recommend(query, 12).items)


def planted_blocks() -> tuple[TrainData, Query]:
    """Implicit's checkerboard, made so that every kind of method has the same right answer. Block A is articles
    0-19, block B 20-39 (each product's two colours in the same block). Customers 0-14 (aged 20) bought only A, in
    the last 10 days, several times each; customers 15-29 (aged 60) bought only B, 40 to 60 days ago. So for a
    customer of A, A is their own history, their products' other colours, their baskets' partners, their age
    bucket's and everybody's recent bestsellers, and their co-purchase neighbourhood."""
    rng = np.random.default_rng(5)
    rows = []
    for customer in range(N_CUSTOMERS):
        young = customer < 15
        for article in rng.choice(20, size=6, replace=False) + (0 if young else 20):
            rows.append((int(rng.integers(1, 11) if young else rng.integers(40, 61)), customer, int(article)))
        basket_day = int(rng.integers(1, 11) if young else rng.integers(40, 61))
        product = int(rng.integers(10)) * 2 + (0 if young else 20)
        rows += [(basket_day, customer, product), (basket_day, customer, product + 1)]
    ages = pl.Series([20] * 15 + [60] * 15, dtype=pl.Int16)
    data = TrainData(purchases(rows), make_customers().with_columns(ages.alias("age")), make_articles(), CUTOFF)
    return data, query_for(data, list(range(15)))


@pytest.fixture(scope="module")
def planted() -> tuple[TrainData, Query]:
    return planted_blocks()


def test_every_method_finds_the_planted_block(factory, planted):
    """The known answer: whatever a method proposes to a customer of block A is of block A."""
    data, query = planted
    model = factory().fit(data)
    recs = model.recommend(query, 5)
    answered = recs.items[recs.items != PAD_ITEM]
    assert answered.size > 0, f"{model.name} answered nobody"
    assert np.all(answered < 20), f"{model.name} proposed block B to block A: {recs.items.tolist()}"


def test_the_small_settings_name_sources_of_the_catalogue():
    names = {source.name for source in CATALOGUE}
    assert set(SMALL) <= names and set(FINAL_PARTS) <= names
    for name, settings in SMALL.items():  # each small setting is of the type its source is built from
        assert isinstance(settings, next(source.settings for source in CATALOGUE if source.name == name))


def test_a_customer_alone_gets_the_same_answer_as_in_a_batch(fitted, train_data):
    everyone = fitted.recommend(query_for(train_data, list(range(N_CUSTOMERS))), 12)
    for customer in (0, 6, 15, 25):
        alone = fitted.recommend(query_for(train_data, [customer]), 12)
        np.testing.assert_array_equal(alone.items[0], everyone.items[customer])
        np.testing.assert_allclose(alone.scores[0], everyone.scores[customer], rtol=1e-5)


def test_save_and_load_give_identical_answers(fitted, train_data, tmp_path):
    query = query_for(train_data, list(range(N_CUSTOMERS)))
    save_recommender(fitted, tmp_path / "model")
    loaded = load_recommender(tmp_path / "model")
    before, after = fitted.recommend(query, 12), loaded.recommend(query, 12)
    np.testing.assert_array_equal(before.items, after.items)
    np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)


def test_fitting_twice_gives_the_same_answers(factory, fitted, train_data):
    query = query_for(train_data, list(range(N_CUSTOMERS)))
    again = factory().fit(train_data)
    np.testing.assert_array_equal(fitted.recommend(query, 12).items, again.recommend(query, 12).items)


# ---- each baseline's known answer ----------------------------------------------------------------------


def test_popularity_returns_last_weeks_bestsellers_in_order(train_data):
    recs = PopularityRecommender().fit(train_data).recommend(query_for(train_data, [0, 15, 25]), 6)
    # 10 x5, 20 x4, 30 x3, 31 x2, 3 x1 sold in the last week; then the all-time bestseller 0 (7 sales a month ago)
    assert recs.items.tolist() == [[10, 20, 30, 31, 3, 0]] * 3


def test_popularity_window_is_configurable(train_data):
    recs = PopularityRecommender(PopularityConfig(window_days=2)).fit(train_data).recommend(query_for(train_data, [0]), 3)
    assert recs.items[0].tolist() == [10, 31, 0]  # only days 1-2 count; article 0 leads the all-time fill


def test_age_popularity_differs_by_bucket_and_falls_back_to_global(train_data):
    recs = AgePopularityRecommender().fit(train_data).recommend(query_for(train_data, [0, 15, 25]), 4)
    young, old, unknown = recs.items.tolist()
    assert young == [10, 3, 31, 20]  # young bought 10 x5, 3 and 31 once (tie: lower index); then global
    assert old == [20, 31, 10, 30]
    assert unknown == [10, 20, 30, 31]


def test_age_popularity_answers_beyond_keep_and_after_loading(train_data, tmp_path):
    # the per-bucket answers are built once at fit: a bucket's own 2 then the global 2 not already there
    model = AgePopularityRecommender(PopularityConfig(window_days=14, keep=2)).fit(train_data)
    query = query_for(train_data, [0, 15, 25])
    recs = model.recommend(query, 6)
    assert recs.items.tolist() == [[10, 3, 20, -1, -1, -1], [20, 31, 10, -1, -1, -1], [10, 20, -1, -1, -1, -1]]
    assert np.all(np.diff(recs.scores[:2, :3], axis=1) < 0)  # the global fill scores below the bucket's own
    model.save(tmp_path)
    loaded = AgePopularityRecommender.load(tmp_path).recommend(query, 6)
    np.testing.assert_array_equal(loaded.items, recs.items)
    np.testing.assert_array_equal(loaded.scores, recs.scores)


def test_repurchase_puts_own_recent_purchases_first_then_fills(train_data):
    recs = RepurchaseRecommender().fit(train_data).recommend(query_for(train_data, [6, 15]), 6)
    # customer 6 (young) bought 3 three days ago, 2 twenty days ago, 6 and 36 a month ago (tie: lower index);
    # then the young bestsellers 10, (3 already there), 31
    assert recs.items[0].tolist() == [3, 2, 6, 36, 10, 31]
    assert recs.items[1].tolist()[:3] == [15, 20, 31]  # old customer 15: own 15 (a month ago), then old bestsellers


def test_repurchase_window_drops_old_purchases(train_data):
    recs = RepurchaseRecommender(RepurchaseConfig(window_days=10)).fit(train_data).recommend(query_for(train_data, [6]), 3)
    assert recs.items[0].tolist() == [3, 10, 31]


def test_repurchase_window_in_lines_keeps_the_newest_lines_alike(train_data):
    query = query_for(train_data, [6])
    # customer 6's two newest lines (3, then 2 seventeen days older) count alike, however old; the month-old day's
    # two lines are out of a 2-line window and half in a 3-line one (which of them is the third newest is not known)
    recs = RepurchaseRecommender(RepurchaseConfig(window_lines=2)).fit(train_data).recommend(query, 4)
    assert recs.items[0].tolist() == [3, 2, 10, 31]
    recs = RepurchaseRecommender(RepurchaseConfig(window_lines=3)).fit(train_data).recommend(query, 6)
    assert recs.items[0].tolist() == [3, 2, 6, 36, 10, 31]
    assert recs.scores[0, :4].tolist() == [1.0, 1.0, 0.5, 0.5]


def test_fill_with_keeps_primary_first_skips_repeats_and_pads():
    primary = Recs(np.array([[4, 2, -1, -1], [-1, -1, -1, -1], [1, 2, 3, 5]], dtype=np.int32),
                   np.array([[3, 1, np.nan, np.nan], [np.nan] * 4, [4, 3, 2, 1]], dtype=np.float32))
    fill = Recs(np.array([[2, 7, 4, 8, 9]] * 3, dtype=np.int32), np.ones((3, 5), dtype=np.float32))
    merged = fill_with(primary, fill, 4)
    assert merged.items.tolist() == [[4, 2, 7, 8], [2, 7, 4, 8], [1, 2, 3, 5]]
    assert merged.scores.tolist() == [[3, 1, -2, -4], [-1, -2, -3, -4], [4, 3, 2, 1]]
    short = fill_with(Recs(primary.items[:, :1], primary.scores[:, :1]), Recs(fill.items[:, :1], fill.scores[:, :1]), 3)
    assert short.items.tolist() == [[4, 2, -1], [2, -1, -1], [1, 2, -1]]


def block_structured_data(seed: int = 0) -> tuple[TrainData, Query, list[list[int]]]:
    """Four tastes: customers of block b buy only articles 20b..20b+19; block 0 has the fewest buyers.

    The query holds new customers of block 0 who bought 3 of its articles; they then buy 3 others of it.
    A random list of 10 finds ~13% of those; ten of the 17 other block-0 articles find 10/17 = 59%.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for customer in range(350):
        block = 0 if customer < 50 else 20 * (1 + customer % 3)
        for article in rng.choice(20, size=5, replace=False) + block:
            rows.append((int(rng.integers(1, 30)), customer, int(article)))
    transactions = purchases(rows)
    data = TrainData(transactions, make_customers(350), make_articles(80), CUTOFF)
    n_query = 50
    profiles = make_customers(n_query).with_columns(pl.lit(-1, dtype=pl.Int32).alias("customer_idx"),
                                                    pl.lit(-1, dtype=pl.Int8).alias("age_bucket"))
    history, relevant = [], []
    for row in range(n_query):
        picked = rng.choice(20, size=6, replace=False)
        history += [(row, CUTOFF - timedelta(days=2), int(a)) for a in picked[:3]]
        relevant.append(picked[3:].tolist())
    history_frame = pl.DataFrame(
        {"row": [r for r, _, _ in history], "t_dat": [d for _, d, _ in history], "article_idx": [a for _, _, a in history],
         "price": [0.02] * len(history), "sales_channel_id": [2] * len(history)},
        schema={"row": pl.UInt32, "t_dat": pl.Date, "article_idx": pl.Int32, "price": pl.Float32,
                "sales_channel_id": pl.Int8},
    )
    return data, Query(profiles, history_frame, CUTOFF), relevant


def test_als_recovers_planted_co_purchase_structure_better_than_popularity():
    data, query, relevant = block_structured_data()
    als = ALSRecommender(ALSConfig(factors=8, iterations=10, seed=1)).fit(data)
    popularity = PopularityRecommender(PopularityConfig(window_days=30)).fit(data)
    als_recall = recall_at_k(als.recommend(query, 10).items, relevant, 10)
    popularity_recall = recall_at_k(popularity.recommend(query, 10).items, relevant, 10)
    assert popularity_recall < 0.1  # the bestsellers are the other blocks'
    assert als_recall > 0.3
    assert len(als.losses) == 10


def test_als_searches_a_large_query_in_slices_with_the_same_answers(monkeypatch):
    from hmrec.recommenders import als as als_module

    data, query, _ = block_structured_data()
    als = ALSRecommender(ALSConfig(factors=8, iterations=5, seed=1)).fit(data)
    whole = als.recommend(query, 10)
    monkeypatch.setattr(als_module, "SEARCH_CELLS", 3 * als.active.size)  # three rows per slice
    sliced = als.recommend(query, 10)
    assert np.any(als.user_factors(query) != 0, axis=1).sum() > 3  # more warm rows than one slice holds
    np.testing.assert_array_equal(sliced.items, whole.items)
    np.testing.assert_allclose(sliced.scores, whole.scores, rtol=1e-6)  # BLAS sums in another order


def test_bought_together_names_the_purchases_that_propose_an_article(train_data):
    # customers 0..9 bought articles c and c + 30 on one day a month ago; customer 1 also bought 31 with 1
    model = BoughtTogetherRecommender(TOGETHER).fit(train_data)
    assert model.bought_with(1).tolist() == [31]
    assert model.bought_with(31).tolist() == [1]
    assert model.bought_with(39).tolist() == [9]
