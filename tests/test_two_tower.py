"""The two-tower recommender on hand-made data with planted structure: shapes, cold and live customers,
determinism, quality against popularity, save/load, and the pieces (history look-up, encoders, loss)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
import torch

from hmrec.data import Query, TrainData
from hmrec.evaluation.metrics import recall_at_k
from hmrec.recommenders.popularity import PopularityRecommender
from hmrec.retrieval.data import PurchaseHistory, day_number
from hmrec.retrieval.encoders import OOV, Encoders, NumericScaler, Vocabulary
from hmrec.retrieval.model import PastItems, TowerShapes, TwoTower, sampled_softmax_loss
from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender

CUTOFF = date(2021, 3, 1)  # deliberately not the H&M dates
FAMILIES, PER_FAMILY, CUSTOMERS = 3, 60, 900
FAMILY_AGE = (22, 42, 62)  # each family's buyers sit in their own age bucket

FAST = TwoTowerConfig(
    window_days=42, epochs=6, batch_size=256, extra_negatives=256, hidden_dim=64, out_dim=32,
    wide_dim=16, narrow_dim=4, temperature=0.1, index_window_days=None, threads=1, seed=3, item_bias=True,
)


def _family(article_idx: np.ndarray | int) -> np.ndarray | int:
    return np.asarray(article_idx) // PER_FAMILY


def _articles() -> pl.DataFrame:
    idx = np.arange(FAMILIES * PER_FAMILY)
    family = idx // PER_FAMILY
    return pl.DataFrame({
        "article_idx": idx.astype(np.int32),
        "article_id": (100_000_000 + idx).astype(np.int64),
        "product_code": (idx // 2).astype(np.int32),
        "product_type_no": (family * 10 + idx % 4).astype(np.int32),
        "product_group_name": [f"group {f}" for f in family],
        "colour_group_code": (idx % 2).astype(np.int32),
        "index_group_no": (family + 1).astype(np.int32),
        "garment_group_no": (1000 + family).astype(np.int32),
        "prod_name": [f"article {i}" for i in idx],
    })


def _customers() -> pl.DataFrame:
    idx = np.arange(CUSTOMERS)
    return pl.DataFrame({
        "customer_idx": idx.astype(np.int32),
        "customer_id": [f"{i:064x}" for i in idx],
        "FN": [1 if i % 2 == 0 else None for i in idx],
        "Active": [1 if i % 2 == 0 else None for i in idx],
        "club_member_status": ["ACTIVE"] * CUSTOMERS,
        "fashion_news_frequency": ["NONE" if i % 3 else "Regularly" for i in idx],
        "age": np.array(FAMILY_AGE)[idx % FAMILIES].astype(np.int16) + (idx % 3).astype(np.int16),
        "postal_code": ["p"] * CUSTOMERS,
        "known": [True] * CUSTOMERS,
    }, schema_overrides={"FN": pl.Int8, "Active": pl.Int8})


def _transactions(seed: int = 11) -> pl.DataFrame:
    """Customer c buys from family c % 3 only, Zipf-skewed inside the family, over 70 days + a test week.

    Family 0's customers buy most often, so the global bestsellers are mostly family 0: popularity serves
    the other two groups badly, and a model that learns the families serves every group.
    """
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, PER_FAMILY + 1) ** 0.8
    zipf /= zipf.sum()
    rows = []
    for offset in range(-70, 7):
        day = CUTOFF + timedelta(days=offset)
        for c in np.flatnonzero(rng.random(CUSTOMERS) < np.array([0.25, 0.12, 0.12])[np.arange(CUSTOMERS) % 3]):
            article = (c % FAMILIES) * PER_FAMILY + rng.choice(PER_FAMILY, p=np.roll(zipf, 7 * (c % 2)))
            rows.append((day, int(c), int(article), 0.01 + 0.001 * (article % 10), 1 + int(c % 2)))
    return pl.DataFrame(rows, orient="row", schema={
        "t_dat": pl.Date, "customer_idx": pl.Int32, "article_idx": pl.Int32, "price": pl.Float32,
        "sales_channel_id": pl.Int8,
    })


@pytest.fixture(scope="module")
def world() -> dict:
    transactions = _transactions()
    data = TrainData(transactions.filter(pl.col("t_dat") < CUTOFF), _customers(), _articles(), CUTOFF)
    test = transactions.filter(pl.col("t_dat") >= CUTOFF)
    return {"data": data, "all": transactions, "test": test}


@pytest.fixture(scope="module")
def fitted(world) -> TwoTowerRecommender:
    return TwoTowerRecommender(FAST).fit(world["data"])


def _query(world, customer_idx) -> Query:
    data = world["data"]
    return Query.for_customers(np.asarray(customer_idx), data.customers, data.transactions, CUTOFF)


def _live_query(world, ages: list[int | None], purchases: list[list[int]]) -> Query:
    """Customers the store has never seen (customer_idx -1), with the given ages and purchases."""
    from hmrec.store.tables import age_bucket

    customers = pl.DataFrame({"customer_idx": [-1] * len(ages), "age": ages},
                             schema={"customer_idx": pl.Int32, "age": pl.Int16})
    customers = customers.with_columns(age_bucket(pl.col("age")).alias("age_bucket"))
    history = pl.DataFrame(
        [(row, CUTOFF - timedelta(days=1 + i), a, 0.02, 2)
         for row, items in enumerate(purchases) for i, a in enumerate(items)],
        orient="row",
        schema={"row": pl.UInt32, "t_dat": pl.Date, "article_idx": pl.Int32, "price": pl.Float32,
                "sales_channel_id": pl.Int8},
    )
    return Query(customers=customers, history=history, as_of=CUTOFF)


# ---- the pieces -------------------------------------------------------------------------------------


def test_history_gives_last_purchases_strictly_before_the_day_with_recency_weights():
    days = np.array([day_number(CUTOFF) + d for d in (-10, -3, -1, 0, -2)])
    history = PurchaseHistory(np.array([7, 7, 7, 7, 8]), days, np.array([70, 71, 72, 73, 80]))
    items, weights = history.last(np.array([7, 8, 9]), np.full(3, day_number(CUTOFF)), 2, half_life_days=2.0)
    # key 7: the purchase on the day itself (73) is not history; the two latest before it, oldest first.
    np.testing.assert_array_equal(items, [[71, 72], [-1, 80], [-1, -1]])
    np.testing.assert_allclose(weights, [[0.5**1.5, 0.5**0.5], [0.0, 0.5], [0.0, 0.0]], rtol=1e-6)


def test_vocabulary_maps_unseen_and_missing_to_oov_and_round_trips(tmp_path):
    vocab = Vocabulary.fit(pl.Series("colour", [3, 1, 3, None, 2]), min_count=1)
    np.testing.assert_array_equal(vocab.encode(pl.Series("colour", [1, 2, 3, 99, None])), [1, 2, 3, OOV, OOV])
    rare = Vocabulary.fit(pl.Series("colour", [3, 1, 3]), min_count=2)
    np.testing.assert_array_equal(rare.encode(pl.Series("colour", [1, 3])), [OOV, 1])
    scaler = NumericScaler.fit(pl.DataFrame({"n": [0, 1, 3], "d": [-1.0, 1.0, None]}), ["n", "d"])
    encoders = Encoders(item_vocabs={"colour": vocab}, user_scaler=scaler)
    encoders.save(tmp_path)
    loaded = Encoders.load(tmp_path)
    assert loaded.item_vocabs["colour"].values == vocab.values and loaded.user_scaler == scaler
    scaled = scaler.transform(pl.DataFrame({"n": [0, 3, None], "d": [-1.0, 1.0, None]}))
    assert scaler.log == [True, False] and scaled[2].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(scaled[:2, 1], [-1.0, 1.0])


def test_sampled_softmax_known_values_and_duplicate_masking():
    users = torch.zeros(3, 4)
    candidates = torch.randn(5, 4)
    no_q = torch.zeros(5)
    # All logits equal: the loss is log(number of candidates a row competes against).
    loss = sampled_softmax_loss(users, candidates, torch.tensor([0, 1, 2, 3, 4]), no_q, 0.1)
    assert loss.item() == pytest.approx(math.log(5))
    # Rows 0 and 1 bought the same article: each one's copy is masked for the other, leaving 4 candidates.
    loss = sampled_softmax_loss(users, candidates, torch.tensor([0, 0, 2, 3, 4]), no_q, 0.1)
    assert loss.item() == pytest.approx((2 * math.log(4) + math.log(5)) / 3)
    # log-Q: a candidate sampled e^2 times more often loses exactly that much of its logit.
    log_q = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0])
    expected = -math.log(1 / (4 + math.exp(-2.0)))
    assert sampled_softmax_loss(users, candidates, torch.arange(5), log_q, 0.1).item() == pytest.approx(expected)


def test_towers_give_unit_vectors_of_the_configured_size():
    shapes = TowerShapes({"article_idx": 11, "colour": 4}, {"age_bucket": 8}, 3, 2, hidden_dim=16, out_dim=8)
    model = TwoTower(shapes)
    items = model.items(torch.randint(0, 4, (5, 2)), torch.randn(5, 3))
    weights = torch.tensor([[0.0, 0.0], [0.5, 1.0], [0.0, 1.0], [1.0, 1.0]])
    past = PastItems(torch.randint(0, 4, (3, 2)), torch.randn(3, 3), torch.randint(0, 3, (4, 2)), weights)
    users = model.users(torch.randint(0, 8, (4, 1)), past, torch.randn(4, 2))
    assert items.shape == (5, 8) and users.shape == (4, 8)
    torch.testing.assert_close(items.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(users.norm(dim=1), torch.ones(4))


# ---- the fitted recommender -------------------------------------------------------------------------


def test_fitted_vectors_are_unit_length_and_losses_fall(fitted, world):
    # Both vectors are the unit tower output, then the bias slot: the article's bias, a constant 1 for users.
    vectors = fitted.article_vectors()
    assert vectors.shape == (world["data"].n_articles, FAST.out_dim + 1)
    np.testing.assert_allclose(np.linalg.norm(vectors[:, :-1], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[:, -1], fitted.item_bias)
    users = fitted.user_vectors(_query(world, np.arange(10)))
    np.testing.assert_allclose(np.linalg.norm(users[:, :-1], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(users[:, -1], 1.0)
    assert len(fitted.losses) >= 3 and fitted.losses[-1] < 0.9 * fitted.losses[0]
    assert fitted.examples_per_second > 0


def test_two_tower_recall_beats_popularity_clearly(fitted, world):
    test = world["test"]
    buyers = np.sort(test["customer_idx"].unique().to_numpy())
    bought = test.group_by("customer_idx").agg("article_idx").sort("customer_idx")["article_idx"].to_list()
    query = _query(world, buyers)
    ours = recall_at_k(fitted.recommend(query, 20).items, bought, 20)
    popular = recall_at_k(PopularityRecommender().fit(world["data"]).recommend(query, 20).items, bought, 20)
    assert ours >= 1.5 * popular, f"two_tower Recall@20 {ours:.3f} vs popularity {popular:.3f}"


def test_cold_and_unseen_customers_get_vectors_from_their_profile(fitted, world):
    query = _live_query(world, ages=[22, 62, None], purchases=[[], [], []])
    users = fitted.user_vectors(query)
    assert np.isfinite(users).all()
    np.testing.assert_allclose(np.linalg.norm(users[:, :-1], axis=1), 1.0, rtol=1e-5)
    recs = fitted.recommend(query, 10)
    assert (recs.items != -1).all()
    # Age alone tells the families apart: the young cold customer gets mostly family 0, the old one family 2.
    assert np.mean(_family(recs.items[0]) == 0) >= 0.7 and np.mean(_family(recs.items[1]) == 2) >= 0.7


def test_a_new_purchase_changes_the_vector_and_the_answer(fitted, world):
    before = _live_query(world, ages=[22], purchases=[[]])
    after = _live_query(world, ages=[22], purchases=[[2 * PER_FAMILY + 3, 2 * PER_FAMILY + 5, 2 * PER_FAMILY + 8]])
    v_before, v_after = fitted.user_vectors(before), fitted.user_vectors(after)
    assert not np.allclose(v_before, v_after)
    recs_before, recs_after = fitted.recommend(before, 20).items[0], fitted.recommend(after, 20).items[0]
    assert np.mean(_family(recs_after) == 2) > np.mean(_family(recs_before) == 2) + 0.3


def test_user_vectors_pool_the_models_item_vectors_as_the_item_tower_gives_them(fitted, world, monkeypatch):
    """Answering gathers the past articles' vectors from the model's table; the item tower run on them again (as in
    training) gives the same user vectors, an article the model lacks (the OOV row) included."""
    known = _query(world, np.arange(40))
    unknown = _live_query(world, ages=[22, 42], purchases=[[PER_FAMILY + 1, 10_000], [3]])
    from_table = [fitted.user_vectors(known), fitted.user_vectors(unknown)]
    monkeypatch.setattr(fitted, "_past_vectors", lambda: None)
    np.testing.assert_allclose(from_table[0], fitted.user_vectors(known), atol=1e-6)
    np.testing.assert_allclose(from_table[1], fitted.user_vectors(unknown), atol=1e-6)


def test_recommend_answers_each_row_from_its_own_state(fitted, world):
    alone = fitted.recommend(_query(world, [5]), 12)
    together = fitted.recommend(_query(world, [3, 5, 7]), 12)
    np.testing.assert_array_equal(alone.items[0], together.items[1])


def test_similar_excludes_the_article_and_stays_in_its_family(fitted):
    items, scores = fitted.similar(PER_FAMILY + 4, 10)
    assert len(items) == 10 and PER_FAMILY + 4 not in items
    assert np.all(np.diff(scores) <= 1e-6) and np.mean(_family(items) == 1) >= 0.8
    with pytest.raises(KeyError, match="article_idx 100000 is not in the model's articles"):
        fitted.similar(100_000, 5)


def test_save_load_round_trip_gives_identical_answers(fitted, world, tmp_path):
    fitted.save(tmp_path)
    loaded = TwoTowerRecommender.load(tmp_path)
    query = _query(world, np.arange(0, CUSTOMERS, 7))
    before, after = fitted.recommend(query, 50), loaded.recommend(query, 50)
    np.testing.assert_array_equal(before.items, after.items)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert loaded.config == fitted.config and loaded.losses == fitted.losses
    np.testing.assert_array_equal(loaded.item_bias, fitted.item_bias)
    np.testing.assert_array_equal(loaded.article_vectors(), fitted.article_vectors())


def test_index_score_is_the_dot_product_of_user_and_article_vectors(fitted, world):
    query = _query(world, np.arange(0, CUSTOMERS, 50))
    recs = fitted.recommend(query, 20)
    users, items = fitted.user_vectors(query), fitted.article_vectors()
    expected = np.einsum("nd,nkd->nk", users, items[recs.items])
    np.testing.assert_allclose(recs.scores, expected, rtol=1e-5, atol=1e-5)
    assert np.ptp(fitted.item_bias) > 0  # the bias slot carries information, not a constant


def test_bias_lifts_a_trending_article_for_cold_customers(world):
    # Article TREND (a tail article of family 1) suddenly sells to a third of all customers, every family,
    # in the last 6 days: only its recent sales tell the model it is everybody's article now.
    trend, data = PER_FAMILY + PER_FAMILY - 1, world["data"]
    rng = np.random.default_rng(5)
    rows = [(CUTOFF - timedelta(days=d), int(c), trend, 0.02, 2)
            for d in range(1, 7) for c in np.flatnonzero(rng.random(CUSTOMERS) < 0.3)]
    extra = pl.DataFrame(rows, orient="row", schema=data.transactions.schema)
    model = TwoTowerRecommender(replace(FAST, epochs=3)).fit(
        replace(data, transactions=pl.concat([data.transactions, extra])))
    assert int(np.argmax(model.item_bias)) == trend
    cold = _live_query(world, ages=[22, 42, 62, None], purchases=[[], [], [], []])
    items = model.recommend(cold, 5).items
    assert all(trend in row for row in items), items


def test_same_seed_gives_identical_vectors(world):
    config = replace(FAST, epochs=1)
    first = TwoTowerRecommender(config).fit(world["data"])
    second = TwoTowerRecommender(config).fit(world["data"])
    np.testing.assert_array_equal(first.article_vectors(), second.article_vectors())
    query = _query(world, np.arange(50))
    np.testing.assert_array_equal(first.user_vectors(query), second.user_vectors(query))
    other = TwoTowerRecommender(replace(config, seed=4)).fit(world["data"])
    assert not np.array_equal(first.article_vectors(), other.article_vectors())


@pytest.mark.parametrize(("n_examples", "epochs"), [(0, 3), (300, 3), (333, 3), (334, 2), (500, 2), (999, 1),
                                                   (1_001, 1), (10**6, 1)])
def test_epochs_shrink_to_the_example_budget_but_never_below_one(n_examples, epochs):
    assert TwoTowerConfig(epochs=3, max_examples=1_000).epochs_for(n_examples) == epochs
    assert TwoTowerConfig(epochs=3, max_examples=None).epochs_for(n_examples) == 3


def test_a_window_over_the_example_budget_trains_fewer_epochs_and_saves_what_it_trained(world, tmp_path):
    one = TwoTowerRecommender(replace(FAST, epochs=1)).fit(world["data"])
    budgeted = TwoTowerRecommender(replace(FAST, epochs=3, max_examples=2 * one.n_examples - 1)).fit(world["data"])
    assert budgeted.config.epochs == 1 and budgeted.training_epochs() == 1
    np.testing.assert_array_equal(budgeted.article_vectors(), one.article_vectors())  # the same single epoch
    budgeted.save(tmp_path)
    assert TwoTowerRecommender.load(tmp_path).config.epochs == 1  # a refit from the saved config trains the same


def test_index_holds_only_recently_sold_articles_by_default(world):
    data = world["data"]
    # Family 2 stops selling 30 days before the cutoff; a 28-day index window must leave it out.
    early = data.transactions.filter(
        (pl.col("article_idx") < 2 * PER_FAMILY) | (pl.col("t_dat") < CUTOFF - timedelta(days=30))
    )
    config = replace(FAST, epochs=1, index_window_days=28)
    model = TwoTowerRecommender(config).fit(replace(data, transactions=early))
    assert len(model.index) == 2 * PER_FAMILY
    items = model.recommend(_query(world, np.arange(30)), 100).items
    assert (items[:, :2 * PER_FAMILY] >= 0).all() and (_family(items[items >= 0]) < 2).all()


def test_refresh_moves_the_index_to_a_later_cutoff_without_retraining(world, tmp_path):
    data = world["data"]
    early = data.transactions.filter(
        (pl.col("article_idx") < 2 * PER_FAMILY) | (pl.col("t_dat") < CUTOFF - timedelta(days=30))
    )
    model = TwoTowerRecommender(replace(FAST, epochs=1, index_window_days=28)).fit(replace(data, transactions=early))
    weights = {name: p.clone() for name, p in model.model.state_dict().items()}
    assert len(model.index) == 2 * PER_FAMILY
    model.refresh(data)  # family 2 sells again in the full data: it must come back into the index
    assert len(model.index) == data.transactions.filter(
        pl.col("t_dat") >= CUTOFF - timedelta(days=28))["article_idx"].n_unique()
    assert len(model.index) > 2 * PER_FAMILY
    assert all(torch.equal(weights[name], p) for name, p in model.model.state_dict().items())
    model.save(tmp_path / "refreshed")  # a refreshed model is served, so it must save and load as it answers
    loaded = TwoTowerRecommender.load(tmp_path / "refreshed")
    query = _query(world, np.arange(10))
    np.testing.assert_array_equal(loaded.recommend(query, 20).items, model.recommend(query, 20).items)


def test_unfitted_model_says_what_to_do():
    with pytest.raises(RuntimeError, match="not fitted"):
        TwoTowerRecommender().article_vectors()


def test_vocabulary_encodes_short_and_long_series_alike():
    """A live query's few values go through a dict, a batch's through a join: the codes must not differ."""
    from hmrec.retrieval.encoders import SMALL_SERIES

    vocab = Vocabulary.fit(pl.Series("FN", [1.0, 1.0, 0.0, None]))
    values = pl.Series("FN", [1.0, None, 0.0, 7.0] * (SMALL_SERIES // 2))
    long_codes = vocab.encode(values)
    short_codes = vocab.encode(values.head(4))
    assert short_codes.tolist() == long_codes[:4].tolist() == [vocab.values.index("1.0") + 1, OOV,
                                                               vocab.values.index("0.0") + 1, OOV]
