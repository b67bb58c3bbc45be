"""Candidate sources (other colours, bought together) and their union, on hand-made data with known answers."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from hmrec.candidates.generate import candidate_recall, generate_candidates
from hmrec.data import PAD_ITEM, Query, TrainData
from hmrec.evaluation.report import candidate_recall_section
from hmrec.ranking.ranker import FinalConfig, FinalRecommender
from hmrec.recommenders.base import load_recommender, save_recommender
from hmrec.recommenders.colours import OtherColoursConfig, OtherColoursRecommender
from hmrec.recommenders.together import BoughtTogetherConfig, BoughtTogetherRecommender

CUTOFF = date(2021, 3, 10)  # any date: nothing below depends on it

# article_idx -> product_code: product 100 has three colours, 200 two, 300 one.
PRODUCT_CODES = [100, 100, 100, 200, 200, 300, 400, 400]


def articles() -> pl.DataFrame:
    n = len(PRODUCT_CODES)
    return pl.DataFrame(
        {
            "article_idx": np.arange(n, dtype=np.int32),
            "article_id": [code * 1000 + i for i, code in enumerate(PRODUCT_CODES)],
            "product_code": PRODUCT_CODES,
            "product_group_name": ["Garment Upper body"] * n,
            "index_group_name": ["Ladieswear"] * n,
        }
    )


def customers(n: int = 30) -> pl.DataFrame:
    return pl.DataFrame({"customer_idx": np.arange(n, dtype=np.int32), "age": pl.Series([30] * n, dtype=pl.Int16)})


def transactions(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """(customer_idx, article_idx, days before the cutoff) -> a transactions table."""
    return pl.DataFrame(
        {
            "t_dat": [CUTOFF - timedelta(days=d) for _, _, d in rows],
            "customer_idx": pl.Series([c for c, _, _ in rows], dtype=pl.Int32),
            "article_idx": pl.Series([a for _, a, _ in rows], dtype=pl.Int32),
            "price": pl.Series([0.03] * len(rows), dtype=pl.Float32),
            "sales_channel_id": pl.Series([2] * len(rows), dtype=pl.Int8),
        }
    ).sort("t_dat")


def train_data(rows: list[tuple[int, int, int]]) -> TrainData:
    return TrainData(transactions(rows), customers(), articles(), CUTOFF)


def query(data: TrainData, customer_idx: list[int]) -> Query:
    return Query.for_customers(np.array(customer_idx), data.customers, data.transactions, as_of=CUTOFF)


def answer(recs, row: int) -> list[int]:
    return [int(i) for i in recs.items[row] if i != PAD_ITEM]


# Customer 29 makes the recent sales: article 1 three times, 2 and 4 once; 5 was last sold 60 days ago.
SALES = [(29, 1, 1), (29, 1, 2), (29, 1, 3), (29, 2, 1), (29, 4, 1), (29, 5, 60), (29, 0, 5)]


def test_other_colours_finds_exactly_the_other_variants_most_sold_first():
    data = train_data([(0, 0, 3), *SALES])
    recs = OtherColoursRecommender().fit(data).recommend(query(data, [0]), k=12)
    assert answer(recs, 0) == [1, 2]  # not 0 itself; 1 sold three times, 2 once


def test_other_colours_recent_purchase_comes_first_and_single_variant_products_give_nothing():
    data = train_data([(0, 0, 60), (0, 3, 2), (0, 5, 2), *SALES])
    recs = OtherColoursRecommender().fit(data).recommend(query(data, [0]), k=12)
    assert answer(recs, 0) == [4, 1, 2]


def test_other_colours_can_include_the_bought_variant_and_unsold_ones():
    data = train_data([(0, 6, 3), (0, 0, 3), *SALES])
    default = OtherColoursRecommender().fit(data).recommend(query(data, [0]), k=12)
    assert answer(default, 0) == [1, 2]  # 7 never sold: not proposed by default
    config = OtherColoursConfig(include_bought=True, active_days=None)
    recs = OtherColoursRecommender(config).fit(data).recommend(query(data, [0]), k=12)
    assert set(answer(recs, 0)) == {0, 1, 2, 6, 7}


def test_other_colours_customer_without_history_gets_nothing():
    data = train_data([(0, 0, 3), *SALES])
    recs = OtherColoursRecommender().fit(data).recommend(query(data, [1]), k=5)
    assert answer(recs, 0) == []


BASKETS = [(c, a, 10) for c in (10, 11, 12, 13) for a in (0, 3)] + [(14, 0, 10), (14, 5, 10)]


def test_bought_together_finds_the_planted_pair():
    data = train_data([(0, 0, 1), *BASKETS])
    model = BoughtTogetherRecommender().fit(data)
    recs = model.recommend(query(data, [0]), k=12)
    assert answer(recs, 0) == [3]  # (0, 5) was in one basket only: below min_count
    pair = model.pairs.filter((pl.col("article_idx") == 0) & (pl.col("partner_idx") == 3))
    # 4 of article 0's 6 baskets hold 3 (customer 0's own one-article basket counts too)
    assert pair["strength"].item() == pytest.approx(4 / 6)


def test_bought_together_weights_recent_buys_more():
    baskets = BASKETS + [(c, a, 10) for c in (15, 16) for a in (6, 1)]
    config = BoughtTogetherConfig(min_count=1)
    data = train_data([(0, 0, 20), (0, 6, 1), *baskets])
    recs = BoughtTogetherRecommender(config).fit(data).recommend(query(data, [0]), k=12)
    # 6 -> 1 (strength 2/3) was bought yesterday; 0 -> 3 (4/6) and 0 -> 5 (1/6) twenty days ago
    assert answer(recs, 0) == [1, 3, 5]


def test_bought_together_skips_huge_baskets_and_already_bought():
    huge = [(20, a, 10) for a in range(8)] * 1
    config = BoughtTogetherConfig(max_basket=5, min_count=1)
    data = train_data([(0, 0, 1), (0, 3, 1), *BASKETS, *huge])
    recs = BoughtTogetherRecommender(config).fit(data).recommend(query(data, [0]), k=12)
    assert answer(recs, 0) == [5]  # 3 was bought already; the 8-article basket pairs nothing


@pytest.mark.parametrize("cls", [OtherColoursRecommender, BoughtTogetherRecommender])
def test_sources_save_and_load_give_identical_answers(tmp_path, cls):
    data = train_data([(0, 0, 1), (1, 3, 2), *BASKETS, *SALES])
    model = cls().fit(data)
    save_recommender(model, tmp_path / "model")
    loaded = load_recommender(tmp_path / "model")
    assert isinstance(loaded, cls)
    q = query(data, [0, 1, 2])
    expected, got = model.recommend(q, k=5), loaded.recommend(q, k=5)
    np.testing.assert_array_equal(expected.items, got.items)
    np.testing.assert_array_equal(expected.scores, got.scores)


def union_setup():
    baskets = [(c, a, 10) for c in (10, 11, 12) for a in (0, 1, 3)]
    data = train_data([(0, 0, 1), (1, 3, 1), *baskets, *SALES])
    sources = {
        "other_colours": OtherColoursRecommender().fit(data),
        "bought_together": BoughtTogetherRecommender().fit(data),
    }
    return data, sources


def test_union_keeps_each_sources_rank_and_score_without_duplicates():
    data, sources = union_setup()
    q = query(data, [0, 1, 2])
    candidates = generate_candidates(sources, q, {"other_colours": 5, "bought_together": 5})
    assert candidates.columns == [
        "row", "article_idx", "other_colours_rank", "other_colours_score", "bought_together_rank",
        "bought_together_score",
    ]
    assert candidates.select("row", "article_idx").is_duplicated().sum() == 0
    for name, source in sources.items():
        expected = source.recommend(q, 5).to_frame().sort("row", "article_idx")
        got = candidates.filter(pl.col(f"{name}_rank").is_not_null())
        assert got["article_idx"].to_list() == expected["article_idx"].to_list()
        assert got[f"{name}_rank"].to_list() == expected["rank"].to_list()
        assert got[f"{name}_score"].to_list() == pytest.approx(expected["score"].to_list())
    # row 0 bought 0: colours gives 1, 2; together gives 1, 3; article 1 keeps both ranks
    row0 = candidates.filter(pl.col("row") == 0)
    assert row0["article_idx"].to_list() == [1, 2, 3]
    both = row0.filter(pl.col("article_idx") == 1)
    assert both["other_colours_rank"].item() == 0 and both["bought_together_rank"].item() is not None
    assert candidates.filter(pl.col("row") == 2).height == 0  # no history, no candidates


def test_union_needs_a_count_for_every_source():
    data, sources = union_setup()
    with pytest.raises(ValueError, match="bought_together"):
        generate_candidates(sources, query(data, [0]), {"other_colours": 5})


def test_candidate_recall_per_source_and_combined():
    data, sources = union_setup()
    q = query(data, [0, 1, 2])
    candidates = generate_candidates(sources, q, {"other_colours": 5, "bought_together": 5})
    # row 0 buys 2 (colours) and 3 (together) and 7 (nobody); row 1 buys 4 (colours); row 2 buys 0.
    relevant = [[2, 3, 7], [4], [0]]
    recall = candidate_recall(candidates, relevant)
    assert recall == pytest.approx({"other_colours": 2 / 5, "bought_together": 1 / 5, "all": 3 / 5})
    assert candidate_recall(candidates, [[], [], []])["all"] == 0.0


def test_candidate_recall_section_is_a_markdown_table():
    data, sources = union_setup()

    final = FinalRecommender(sources, FinalConfig(n_per_source={"other_colours": 5, "bought_together": 5}))
    section = candidate_recall_section(final, query(data, [0, 1, 2]), [[2, 3, 7], [4], [0]])
    assert section.startswith("## Candidate recall")
    assert "| other_colours | 5 | 0.4000 |" in section
    assert "| **all (union)** |" in section and "0.6000" in section


def test_candidate_recall_on_a_sample_is_that_of_the_sampled_customers_alone():
    data, sources = union_setup()
    final = FinalRecommender(sources, FinalConfig(n_per_source={"other_colours": 5, "bought_together": 5}))
    relevant = [[2, 3, 7], [4], [0]]
    sampled = candidate_recall_section(final, query(data, [0, 1, 2]), relevant, at_most=2)
    rows = np.sort(np.random.default_rng(0).choice(3, 2, replace=False))
    alone = candidate_recall_section(final, query(data, [[0, 1, 2][r] for r in rows]), [relevant[r] for r in rows])
    assert "2 of the 3 customers, drawn at random" in sampled
    assert sampled.split("|", 1)[1] == alone.split("|", 1)[1]  # the same table


def test_taking_query_rows_renumbers_them_and_keeps_their_history():
    data, _ = union_setup()
    whole = query(data, [0, 1, 2, 29])
    whole.user_features(np.zeros(100, dtype=np.int64))
    part, alone = whole.take(np.array([1, 3])), query(data, [1, 29])
    assert part.customers.equals(alone.customers)
    assert part.history.sort(pl.all()).equals(alone.history.sort(pl.all())) and part.history.height == 8
    assert all(np.array_equal(part.user_features(None)[name], values[[1, 3]], equal_nan=True)
               for name, values in whole.user_features(None).items())
    assert whole.take(np.array([0, 1])).history.equals(whole.rows(0, 2).history)


def test_a_query_history_keeps_the_stores_line_order_within_a_day():
    """Same-day lines in the store's order, whatever order the customers are asked in: the two-tower's "last n
    lines" must be the same set in every run (an inner join's own order is not promised)."""
    rng = np.random.default_rng(5)
    n = 200_000
    transactions = pl.DataFrame({
        "t_dat": [date(2020, 1, 1) + timedelta(days=int(d)) for d in np.sort(rng.integers(0, 30, n))],
        "customer_idx": rng.integers(0, 2_000, n).astype(np.int32),
        "article_idx": np.arange(n, dtype=np.int32),  # the line's position: the store's order
        "price": np.ones(n), "sales_channel_id": np.ones(n, dtype=np.int8),
    })
    asked = rng.permutation(2_000).astype(np.int32)
    customers = pl.DataFrame({"customer_idx": np.arange(2_000, dtype=np.int32), "age": np.full(2_000, 30.0)})
    history = Query.for_customers(asked, customers, transactions, as_of=date(2020, 3, 1)).history
    for row in (0, 7, 1_999):
        lines = history.filter(pl.col("row") == row)["article_idx"].to_numpy()
        assert lines.size > 50 and np.all(np.diff(lines) > 0)
