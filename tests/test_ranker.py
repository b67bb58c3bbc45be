"""The `final` ranker on a fixture with a planted signal: it must beat each of its candidate sources."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from toy_source import NewArrivalsRecommender

from hmrec.candidates.generate import Candidates
from hmrec.data import Query, TrainData
from hmrec.evaluation.metrics import map_at_k
from hmrec.evaluation.report import importance_section
from hmrec.evaluation.selection import ranker_settings_section
from hmrec.ranking.features import SHARED_COLUMNS, ArticleLookup, article_table, feature_arrays, feature_columns
from hmrec.ranking.ranker import FinalConfig, FinalRecommender
from hmrec.ranking.scoring import FILL_ROWS, candidate_features, feature_matrix, pair_score_name
from hmrec.ranking.training import training_frame
from hmrec.recommenders.base import load_recommender, save_recommender
from hmrec.recommenders.colours import OtherColoursRecommender
from hmrec.recommenders.popularity import PopularityRecommender
from hmrec.recommenders.together import BoughtTogetherRecommender

CUTOFF = date(2019, 6, 17)  # any date: nothing below depends on it
N_PRODUCTS, N_COLOURS = 60, 3
N_ARTICLES = N_PRODUCTS * N_COLOURS
N_PER_SOURCE = {"other_colours": 10, "bought_together": 10, "popularity": 20}


def partner(article: int) -> int:
    """The planted bought-together partner: an article of another product."""
    return (article + N_ARTICLES // 2) % N_ARTICLES


def next_colour(article: int) -> int:
    return article - article % N_COLOURS + (article + 1) % N_COLOURS


def planted_world(seed: int = 0):
    """Baskets that pair each article with its partner; then customers who buy an article a ("trigger")
    and, a few days later, either the next colour of a or a's partner. Trainers do so in the week before
    the cutoff, testers in the week after it. Everybody also bought three random articles long ago."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, int]] = []  # (customer_idx, article_idx, day relative to the cutoff)
    customer = 0
    for _ in range(700):  # basket makers
        article, day = int(rng.integers(N_ARTICLES)), -int(rng.integers(8, 35))
        rows += [(customer, article, day), (customer, partner(article), day)]
        customer += 1
    held_out: dict[int, int] = {}
    for group, (trigger_days, target_days) in enumerate([((-12, -8), (-7, -1)), ((-5, -1), (0, 6))]):
        for _ in range(400):
            article = int(rng.integers(N_ARTICLES))
            trigger = int(rng.integers(trigger_days[0], trigger_days[1] + 1))
            target = next_colour(article) if rng.random() < 0.5 else partner(article)
            day = max(trigger + 1, int(rng.integers(target_days[0], target_days[1] + 1)))
            rows += [(customer, int(a), -int(rng.integers(40, 90))) for a in rng.integers(N_ARTICLES, size=3)]
            rows += [(customer, article, trigger), (customer, target, day)]
            if group == 1:
                held_out[customer] = target
            customer += 1
    frame = pl.DataFrame(
        {
            "t_dat": [CUTOFF + timedelta(days=d) for _, _, d in rows],
            "customer_idx": pl.Series([c for c, _, _ in rows], dtype=pl.Int32),
            "article_idx": pl.Series([a for _, a, _ in rows], dtype=pl.Int32),
            "price": pl.Series(rng.uniform(0.01, 0.05, len(rows)), dtype=pl.Float32),
            "sales_channel_id": pl.Series(rng.integers(1, 3, len(rows)), dtype=pl.Int8),
        }
    ).sort("t_dat")
    articles = pl.DataFrame(
        {
            "article_idx": np.arange(N_ARTICLES, dtype=np.int32),
            "product_code": np.arange(N_ARTICLES) // N_COLOURS + 500000,
            "index_group_no": np.arange(N_ARTICLES) % 2 + 1,
            "product_group_name": ["Garment Upper body", "Shoes"] * (N_ARTICLES // 2),
            "index_group_name": ["Ladieswear", "Menswear"] * (N_ARTICLES // 2),
        }
    )
    customers = pl.DataFrame(
        {
            "customer_idx": np.arange(customer, dtype=np.int32),
            "age": pl.Series(rng.integers(18, 70, customer), dtype=pl.Int16),
        }
    )
    data = TrainData(frame.filter(pl.col("t_dat") < CUTOFF), customers, articles, CUTOFF)
    return data, held_out


def make_sources():
    return {
        "other_colours": OtherColoursRecommender(),
        "bought_together": BoughtTogetherRecommender(),
        "popularity": PopularityRecommender(),
    }


@pytest.fixture(scope="module")
def world():
    data, held_out = planted_world()
    testers = np.array(sorted(held_out), dtype=np.int32)
    query = Query.for_customers(testers, data.customers, data.transactions, as_of=CUTOFF)
    relevant = [[held_out[int(c)]] for c in testers]
    final = FinalRecommender(make_sources(), FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1,
                                                         line_windows=(4,))).fit(data)
    return data, query, relevant, final


def test_ranker_beats_each_of_its_sources(world):
    data, query, relevant, final = world
    final_map = map_at_k(final.recommend(query, 12).items, relevant)
    for name, source in final.sources.items():
        source_map = map_at_k(source.recommend(query, 12).items, relevant)
        assert final_map > 1.15 * source_map, (name, final_map, source_map)
    # the sources were refitted on everything before the cutoff, so they know the testers' trigger week
    assert final.sources["other_colours"].variants["sales"].sum() > 0
    assert final_map > 0.5


def test_a_large_query_is_scored_in_slices_with_the_same_answers(world, monkeypatch):
    from hmrec.ranking import ranker

    _, query, _, final = world
    whole = final.recommend(query, 12)
    assert query._user_features is not None  # computed by the first answer: the slices carry theirs along
    monkeypatch.setattr(ranker, "SCORE_ROWS", 37)  # 400 testers in 11 slices, the last one short
    sliced = final.recommend(query, 12)
    np.testing.assert_array_equal(sliced.items, whole.items)
    np.testing.assert_array_equal(sliced.scores, whole.scores)
    part = query.rows(37, 74)
    assert len(part) == 37 and part.history["row"].max() < 37
    assert part.customers["customer_idx"].to_list() == query.customers["customer_idx"][37:74].to_list()


def test_validation_map_is_the_competition_metric_over_candidates():
    from hmrec.ranking.training import lines_map12

    lines = pl.DataFrame({"row": [0, 0, 0, 1, 1, 2], "article_idx": [4, 5, 6, 4, 7, 8], "label": [0, 1, 1, 1, 0, 0]})
    scores = np.array([3.0, 2.0, 1.0, 0.0, 5.0, 1.0])
    # row 0 ranks its hits 2nd and 3rd: (1/2 + 2/3) / 2; row 1 its hit 2nd: 1/2; row 2 has none and does not count
    assert lines_map12(lines, scores) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 2) / 2)
    assert lines_map12(lines, -scores) == pytest.approx((1.0 + 1.0) / 2)
    assert lines_map12(lines, np.zeros(6)) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1.0) / 2)  # ties: earlier line


def test_the_ranker_answers_with_the_order_that_wins_validation(world):
    """In this small world LightGBM's order and bought_together's score within about 0.01 of each other on the ~60
    validation customers, either ahead depending on the seed and on features that carry nothing here (measured over
    seeds 0-2): a source's order is its own lines first, then the rest in LightGBM's order, and LightGBM too puts the
    partner first (held out: the partner first for 387 of 400 testers, the next colour second or third). So the test
    holds the rule, not a winner: the best figure's order is kept (LightGBM's on a tie), and both are far ahead of the
    sources that see half of the signal or none."""
    state = world[3].state_
    proposing = {name for name, n in N_PER_SOURCE.items() if n}
    assert set(state.validation_map) == {"lightgbm", *proposing}
    figures = state.validation_map
    assert figures[state.leader or "lightgbm"] == max(figures.values())
    assert state.leader is None or figures[state.leader] > figures["lightgbm"]
    assert state.leader in (None, "bought_together")
    assert min(figures["lightgbm"], figures["bought_together"]) > 1.3 * figures["other_colours"]
    assert "leader" not in world[3].config.__dataclass_fields__  # fitted state stays out of the config


def test_a_leading_source_answers_first_in_its_own_order(world, monkeypatch):
    _, query, _, final = world
    monkeypatch.setattr(final.state_, "leader", "other_colours")
    led = final.recommend(query, 12)
    candidates, _ = candidate_features(final.sources, final.n_per_source, query, ArticleLookup.of(final.articles_))
    rank = candidates.ranks["other_colours"]
    for row in range(0, len(query), 50):
        mine = rank[candidates.row == row] >= 0
        proposed = candidates.article_idx[candidates.row == row][mine]
        by_rank = proposed[np.argsort(rank[candidates.row == row][mine], kind="stable")]
        n = min(12, by_rank.size)
        np.testing.assert_array_equal(led.items[row, :n], by_rank[:n])


class _Stateful(NewArrivalsRecommender):
    """New arrivals with a user state and a pair score, counting the states asked for."""

    name = "stateful"

    def __init__(self):
        super().__init__()
        self.states = 0

    def user_state(self, query):
        self.states += 1
        return np.ones(len(query), dtype=np.float32)

    def pair_scores(self, state, rows, articles):
        return state[rows]


def test_a_source_without_budget_computes_its_state_only_where_its_pair_score_is_read(world):
    data, query, _, final = world
    probe = _Stateful().fit(data)
    sources, n_per_source = {**final.sources, "stateful": probe}, {**final.n_per_source, "stateful": 0}
    lookup = ArticleLookup.of(final.articles_)
    read = [*final.state_.feature_names, pair_score_name("stateful")]
    for wanted, asked in ((final.state_.feature_names, 0), (read, 1), (None, 1)):
        probe.states = 0
        _, features = candidate_features(sources, n_per_source, query, lookup, wanted)
        assert (probe.states, pair_score_name("stateful") in features) == (asked, bool(asked))


def test_ranker_learns_the_planted_signal_first(world):
    importance = world[3].feature_importance()
    assert importance.columns == ["feature", "gain", "splits"]
    assert importance["gain"].is_sorted(descending=True)
    # popularity is noise here: all it can tell the ranker is which candidates nobody else proposed
    gain = dict(importance.select("feature", "gain").iter_rows())
    signal = ("other_colours", "bought_together", "days_since_product", "product_times_bought")
    planted = sum(g for name, g in gain.items() if name.startswith(signal))
    noise = sum(g for name, g in gain.items() if name.startswith("popularity"))
    assert planted > noise, gain
    top = importance["feature"][0]
    section = importance_section(world[3])
    assert section.startswith("## Ranker feature importance") and f"| {top} |" in section
    state = world[3].state_
    chosen = f"**{state.leader}**'s order first" if state.leader else "**LightGBM**'s order."
    assert f"over the same candidates: lightgbm {state.validation_map['lightgbm']:.4f}, " in section
    assert chosen in section


def test_save_and_load_give_identical_answers(world, tmp_path):
    _, query, _, final = world
    save_recommender(final, tmp_path / "final")
    assert (tmp_path / "final" / "ranker.txt").read_text().startswith("tree")
    assert sorted(p.name for p in (tmp_path / "final" / "sources").iterdir()) == sorted(N_PER_SOURCE)
    loaded = load_recommender(tmp_path / "final")
    assert sorted(loaded.parts()) == sorted(N_PER_SOURCE) and loaded.state_ == final.state_
    assert loaded.config.line_windows == (4,) and "line_count_4" in loaded.state_.feature_names
    expected, got = final.recommend(query, 12), loaded.recommend(query, 12)
    np.testing.assert_array_equal(expected.items, got.items)
    np.testing.assert_allclose(expected.scores, got.scores, rtol=1e-6)


def explained_frame(final: FinalRecommender, query: Query, k: int) -> pl.DataFrame:
    """`explain` in long form: `row, rank, article_idx, score, sources`."""
    lines = [(row, rank, *answer) for row, answers in enumerate(final.explain(query, k))
             for rank, answer in enumerate(answers)]
    schema = {"row": pl.UInt32, "rank": pl.Int16, "article_idx": pl.Int32, "score": pl.Float32,
              "sources": pl.List(pl.String)}
    return pl.DataFrame(lines, schema=schema, orient="row")


def test_explain_lists_the_sources_that_proposed_each_article(world):
    _, query, _, final = world
    explained = explained_frame(final, query, 12)
    assert explained.columns == ["row", "rank", "article_idx", "score", "sources"]
    recs = final.recommend(query, 12).to_frame()
    expected = recs.select("row", pl.col("rank").cast(pl.Int16), "article_idx")
    assert explained.select("row", "rank", "article_idx").equals(expected)
    for name, source in final.sources.items():
        own = source.recommend(query, N_PER_SOURCE[name]).to_frame().select("row", "article_idx")
        own = own.with_columns(pl.lit(True).alias("proposed"))
        check = explained.join(own, on=["row", "article_idx"], how="left").with_columns(
            pl.col("sources").list.contains(name).alias("listed"), pl.col("proposed").fill_null(False)
        )
        assert check["listed"].to_list() == check["proposed"].to_list(), name
    assert explained["sources"].list.len().min() >= 1


def test_explain_lines_are_explain_as_arrays(world):
    """The precomputed batch reads `explain_lines` and serving reads `explain`: the same lines, order, scores and
    sources, for the final recommender and for one source (the base class's lines)."""
    _, query, _, final = world
    for recommender in (final, final.sources["popularity"]):
        names = list(recommender.reasons())
        row, items, scores, bits = recommender.explain_lines(query, 12)
        as_lists: list[list] = [[] for _ in range(len(query))]
        for r, a, sc, b in zip(row.tolist(), items.tolist(), scores.tolist(), bits.tolist(), strict=True):
            as_lists[r].append((a, sc, [name for j, name in enumerate(names) if b >> j & 1]))
        explained = recommender.explain(query, 12)
        assert [[(a, sorted(n)) for a, _, n in answers] for answers in as_lists] == \
            [[(a, sorted(n)) for a, _, n in answers] for answers in explained]
        np.testing.assert_allclose([sc for answers in as_lists for _, sc, _ in answers],
                                   [sc for answers in explained for _, sc, _ in answers], rtol=1e-6)
        assert row.size > len(query)  # answers to compare, several a row


def test_one_live_customer_gets_the_same_answer_as_in_the_batch(world):
    data, query, _, final = world
    batch = final.recommend(query, 12)
    customer = query.customers["customer_idx"][3:4].to_numpy()
    one = Query.for_customers(customer, data.customers, data.transactions, CUTOFF)
    np.testing.assert_array_equal(final.recommend(one, 12).items[0], batch.items[3])


def test_prefitted_sources_are_not_refitted():
    data, held_out = planted_world(seed=1)
    colours = OtherColoursRecommender().fit(
        TrainData(data.transactions.filter(pl.col("t_dat") < CUTOFF - timedelta(days=30)), data.customers,
                  data.articles, CUTOFF - timedelta(days=30))
    )
    variants = colours.variants
    sources = make_sources() | {"other_colours": colours}
    config = FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1)
    final = FinalRecommender(sources, config, prefitted=["other_colours"])
    final.fit(data)
    assert final.sources["other_colours"].variants is variants
    assert final.sources["popularity"].ranking is not None


class FitOnceTogether(BoughtTogetherRecommender):
    fit_once = True  # declared by the source: the ranker fits it once, before the first label week


def test_fit_once_sources_keep_the_early_fit():
    data, _ = planted_world(seed=2)
    config = FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1)
    final = FinalRecommender(make_sources() | {"bought_together": FitOnceTogether()}, config).fit(data)
    first = config.label_starts(CUTOFF)[0]  # fitted once, before the first of the label weeks
    assert first == CUTOFF - timedelta(days=7 * config.label_windows)
    early = BoughtTogetherRecommender().fit(
        TrainData(data.transactions.filter(pl.col("t_dat") < first), data.customers, data.articles, first)
    )
    assert final.sources["bought_together"].pairs.equals(early.pairs)


class RecordingTogether(FitOnceTogether):
    """Remembers the cutoffs it was fitted and refreshed on."""

    def __init__(self):
        super().__init__()
        self.fits, self.refreshes = [], []

    def fit(self, data):
        self.fits.append(data.cutoff)
        return super().fit(data)

    def refresh(self, data):
        self.refreshes.append(data.cutoff)
        return super().refresh(data)


def test_windows_behind_the_settings_window_fit_their_own_instance_before_the_oldest():
    """Three windows, one near: label windows start 28, 21 and 7 days before the cutoff; the settings' window
    (14 to 7 days before) lies between them. The warm source was fitted before it, so it saw the labels of the two
    windows behind: those use their own instance, fitted before the oldest window; the warm one is only refreshed."""
    data, _ = planted_world(seed=2)
    config = FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1, label_windows=3, near_windows=1)
    days = [CUTOFF - timedelta(days=d) for d in (28, 21, 14, 7)]
    assert config.label_starts(CUTOFF) == [days[0], days[1], days[3]] and config.settings_end(CUTOFF) == days[3]
    warm = RecordingTogether().fit(TrainData(data.transactions.filter(pl.col("t_dat") < days[2]), data.customers,
                                             data.articles, days[2]))
    behind = RecordingTogether()
    final = FinalRecommender(make_sources() | {"bought_together": warm}, config, warm=["bought_together"],
                             behind={"bought_together": behind}).fit(data)
    assert final.sources["bought_together"] is warm and final.behind is None
    assert warm.fits == [days[2]] and warm.refreshes == [days[3], CUTOFF]
    assert behind.fits == [days[0]] and behind.refreshes == [days[1]]
    assert [window["start"] for window in final.state_.windows] == [d.isoformat() for d in (days[0], days[1], days[3])]
    assert f"Label windows: 3 of 7 day(s), from {days[0]} to the cutoff (2 behind the settings window, 1 after it)" \
        in ranker_settings_section(final)
    with pytest.raises(ValueError, match="behind"):
        FinalRecommender(make_sources() | {"bought_together": warm}, config, warm=["bought_together"]).fit(data)


def test_near_windows_default_to_all_of_them():
    config = FinalConfig(label_windows=2, label_days=7)
    assert config.label_starts(CUTOFF) == [CUTOFF - timedelta(days=14), CUTOFF - timedelta(days=7)]
    assert config.settings_end(CUTOFF) == CUTOFF - timedelta(days=14)
    assert FinalConfig(label_windows=2, near_windows=5).label_starts(CUTOFF) == config.label_starts(CUTOFF)


def test_missing_candidate_count_is_refused():
    with pytest.raises(ValueError, match="popularity"):
        FinalRecommender(make_sources(), FinalConfig(n_per_source={"other_colours": 5, "bought_together": 5}))


def test_interaction_features_have_known_values():
    data, _ = planted_world()
    customer = 700  # the first trainer: three old random buys, a trigger, then a target in the label week
    query = Query.for_customers(np.array([customer]), data.customers, data.transactions, as_of=CUTOFF)
    bought = query.history.sort("t_dat")
    article, last_day = int(bought["article_idx"][-1]), bought["t_dat"][-1]
    candidates = Candidates(np.zeros(2, dtype=np.uint32), np.array([article, next_colour(article)], dtype=np.int32),
                            ranks={}, scores={})
    features = feature_arrays(candidates, query, ArticleLookup.of(article_table(data)))
    own, colour = ({name: values[line] for name, values in features.items()} for line in (0, 1))
    days = (CUTOFF - last_day).days
    assert own["times_bought"] == bought.filter(pl.col("article_idx") == article).height
    assert own["days_since_bought"] == days and np.isnan(colour["days_since_bought"])
    assert colour["times_bought"] == 0 and colour["days_since_product"] == days
    assert colour["product_times_bought"] >= 1
    assert own["user_purchases_all"] == bought.height
    assert 0 < own["share_product_group_name"] <= 1
    assert own["item_repeat_share"] == 0 and np.isnan(own["rebuy_gap_due"])  # nobody bought it on two days
    assert own["item_variants"] == colour["item_variants"] == N_COLOURS
    assert own["lines_since_product"] == colour["lines_since_product"] == 0  # the product of its newest line


def test_the_articles_rebuy_interval_from_all_buyers_against_the_customers_wait():
    """Customer 0 buys customer 700's last article on two days 6 days apart: the one buyer of it who came back, so
    the article's interval is 6 days, and customer 700's wait since buying it is measured against it."""
    planted, _ = planted_world()
    query = Query.for_customers(np.array([700]), planted.customers, planted.transactions, as_of=CUTOFF)
    bought = query.history.sort("t_dat")
    article, days = int(bought["article_idx"][-1]), (CUTOFF - bought["t_dat"][-1]).days
    again = planted.transactions.filter(pl.col("article_idx") == article).head(2).with_columns(
        pl.lit(0, dtype=pl.Int32).alias("customer_idx"),
        pl.Series("t_dat", [CUTOFF - timedelta(days=30), CUTOFF - timedelta(days=24)]))
    data = TrainData(pl.concat([planted.transactions, again]).sort("t_dat"), planted.customers, planted.articles,
                     CUTOFF)
    candidates = Candidates(np.zeros(1, dtype=np.uint32), np.array([article], dtype=np.int32), ranks={}, scores={})
    own = {name: values[0] for name, values in
           feature_arrays(candidates, query, ArticleLookup.of(article_table(data))).items()}
    buyers = data.transactions.filter((pl.col("article_idx") == article) & (pl.col("t_dat") < CUTOFF))
    assert own["item_rebuy_interval"] == 6.0
    assert own["item_repeat_share"] == pytest.approx(1 / buyers["customer_idx"].n_unique())
    assert own["rebuy_gap_due"] == pytest.approx(days / 6.0)


@pytest.mark.parametrize("column", SHARED_COLUMNS)
def test_attribute_shares_count_the_customers_purchases_in_the_candidates_value(column):
    planted, _ = planted_world()
    idx = pl.col("article_idx")
    articles = planted.articles.with_columns((idx % (2 + n)).alias(name) for n, name in enumerate(SHARED_COLUMNS))
    data = TrainData(planted.transactions, planted.customers, articles, planted.cutoff)
    customer = 700
    query = Query.for_customers(np.array([customer]), data.customers, data.transactions, as_of=CUTOFF)
    values = data.articles.select("article_idx", pl.col(column))
    history = query.history.join(values, on="article_idx")
    bought = int(history["article_idx"][0])
    # a candidate the customer bought, and one in a value the customer never bought (if the catalogue has one)
    unseen = values.filter(~pl.col(column).is_in(history[column].unique().implode()))["article_idx"]
    items = np.array([bought, *unseen.head(1)], dtype=np.int32)
    candidates = Candidates(np.zeros(items.size, dtype=np.uint32), items, ranks={}, scores={})
    shares = feature_arrays(candidates, query, ArticleLookup.of(article_table(data)))[f"share_{column}"]
    same = history.filter(pl.col(column) == history.filter(pl.col("article_idx") == bought)[column][0]).height
    assert shares[0] == pytest.approx(same / history.height)
    assert 0 < shares[0] <= 1 and (items.size == 1 or shares[1] == 0.0)


def test_a_paired_share_counts_the_purchases_with_both_values():
    """Section and product type by article_idx % 2 and % 3: of customer 700's purchases, those sharing the candidate's
    section and type together are fewer than those sharing either."""
    planted, _ = planted_world()
    idx = pl.col("article_idx")
    articles = planted.articles.with_columns((idx % 2).alias("section_no"), (idx % 3).alias("product_type_no"))
    data = TrainData(planted.transactions, planted.customers, articles, planted.cutoff)
    query = Query.for_customers(np.array([700]), data.customers, data.transactions, as_of=CUTOFF)
    history = query.history["article_idx"].to_numpy()
    items = np.arange(6, dtype=np.int32)  # every (section, type) value once
    candidates = Candidates(np.zeros(items.size, dtype=np.uint32), items, ranks={}, scores={})
    got = feature_arrays(candidates, query, ArticleLookup.of(article_table(data)))
    both = [np.mean((history % 2 == item % 2) & (history % 3 == item % 3)) for item in items]
    np.testing.assert_allclose(got["share_section_no_product_type_no"], both)
    np.testing.assert_allclose(got["share_section_no"], [np.mean(history % 2 == item % 2) for item in items])


def test_article_lookup_refuses_a_table_not_indexed_by_article_idx():
    data, _ = planted_world()
    table = article_table(data)
    ArticleLookup.of(table)
    with pytest.raises(ValueError, match="does not hold article_idx i in row i"):
        ArticleLookup.of(table.reverse())


def test_two_tower_source_scores_every_candidate():
    from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender

    data, held_out = planted_world(seed=3)
    tiny = TwoTowerConfig(window_days=60, epochs=1, hidden_dim=32, wide_dim=8, out_dim=16, batch_size=256,
                          extra_negatives=64, index_window_days=None, threads=1)
    sources = make_sources() | {"two_tower": TwoTowerRecommender(tiny)}
    n_per_source = N_PER_SOURCE | {"two_tower": 10}
    final = FinalRecommender(sources, FinalConfig(n_per_source=n_per_source, num_threads=1)).fit(data)
    assert pair_score_name("two_tower") in final.state_.feature_names
    query = Query.for_customers(np.array(sorted(held_out)[:50]), data.customers, data.transactions, CUTOFF)
    retrieved = sources["two_tower"].recommend(query, 10).to_frame()
    # on the articles it retrieved, the pair score is the index's own (exact inner product) score
    users = sources["two_tower"].user_state(query)
    lines = retrieved["row"].to_numpy(), retrieved["article_idx"].to_numpy()
    np.testing.assert_allclose(sources["two_tower"].pair_scores(users, *lines), retrieved["score"].to_numpy(),
                               rtol=1e-4, atol=1e-5)
    explained = explained_frame(final, query, 12)
    assert explained.height == 50 * 12
    # one customer alone (user vectors, retrieval and pair scores on a one-row query) ranks as in the batch
    for row in (0, 3, 49):
        one = Query.for_customers(np.array([sorted(held_out)[row]]), data.customers, data.transactions, CUTOFF)
        alone = explained_frame(final, one, 12)
        in_batch = explained.filter(pl.col("row") == row)
        assert alone["article_idx"].to_list() == in_batch["article_idx"].to_list()
        assert alone["sources"].to_list() == in_batch["sources"].to_list()
        np.testing.assert_allclose(alone["score"].to_numpy(), in_batch["score"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_a_new_customer_and_an_empty_query_are_answered(world):
    data, _, _, final = world
    stranger = Query.for_customers(np.array([-1]), data.customers, data.transactions, CUTOFF)
    assert stranger.history.height == 0
    recs = final.recommend(stranger, 12)
    assert (recs.items[0] >= 0).all()  # popularity proposes 20, so 12 answers
    empty = Query.for_customers(np.array([], dtype=np.int32), data.customers, data.transactions, CUTOFF)
    assert final.recommend(empty, 12).items.shape == (0, 12)


def test_feature_matrix_from_arrays_equals_the_table_over_several_row_blocks():
    """The model input from `feature_arrays` (filled a block of rows at a time) equals the one from a table, in the
    asked order, whatever each column's type, over a count of lines that is not a multiple of the block."""
    rng = np.random.default_rng(2)
    n = 2 * FILL_ROWS + 123
    arrays = {"row": np.arange(n), "a": rng.random(n), "b": rng.integers(0, 9, n).astype(np.int32),
              "c": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)).astype(np.float32), "d": rng.random(n) < 0.5}
    names = ["c", "a", "d", "b"]
    from_arrays = feature_matrix(names, arrays)
    assert from_arrays.dtype == np.float32 and from_arrays.flags.c_contiguous
    np.testing.assert_array_equal(from_arrays, feature_matrix(names, pl.DataFrame(arrays)))
    np.testing.assert_array_equal(from_arrays[:, 1], arrays["a"].astype(np.float32))


def test_the_training_frame_holds_float32_features_equal_to_what_answering_computes():
    """The training frame stores its features as float32 (half the memory); the model reads them exactly as it reads
    the same buyers' lines when answering (`feature_arrays` through `feature_matrix`)."""
    data, _ = planted_world(seed=3)
    start = CUTOFF - timedelta(days=7)
    early = TrainData(data.transactions.filter(pl.col("t_dat") < start), data.customers, data.articles, start)
    labels = data.transactions.filter(pl.col("t_dat") >= start)
    sources = make_sources()
    for source in sources.values():
        source.fit(early)
    frame = training_frame(sources, N_PER_SOURCE, early, labels, None, seed=7, line_windows=(4, 16))
    names = feature_columns(frame)
    assert {"line_count_4", "line_count_16"} <= set(names)
    assert {frame.schema[name] for name in names} == {pl.Float32}
    buyers = np.sort(labels["customer_idx"].unique().to_numpy())
    query = Query.for_customers(buyers, early.customers, early.transactions, as_of=start)
    answered = pl.DataFrame(candidate_features(sources, N_PER_SOURCE, query, ArticleLookup.of(article_table(early)),
                                               line_windows=(4, 16))[1])
    kept = answered.join(frame.select("row", "article_idx"), on=["row", "article_idx"], how="semi")
    assert kept.height == frame.height
    np.testing.assert_array_equal(feature_matrix(names, frame), feature_matrix(names, kept))
