"""The behaviour profile: every figure on a hand-made dataset with known answers, real-export quirks, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.evaluation.profile import FACTS, format_profile, out_of_band, profile
from hmrec.raw.read import RawDataError
from hmrec.sample.worlds import Band

FIXTURE = Path(__file__).parent / "fixtures" / "hm-real-head10k"  # a copy of ../shared/fixtures

# Articles as the ints the profile works with; the file spells some with and some without the leading zero.
ART = {n: 108775000 + n for n in range(1, 9)}

# (day, customer, article, channel); the validation window is 2020-01-08 .. 2020-01-14 (7 days).
WEEK = [
    ("2020-01-10", "a", 1, 2), ("2020-01-10", "a", 2, 2), ("2020-01-12", "a", 2, 2),
    ("2020-01-09", "b", 3, 2),
    ("2020-01-14", "c", 1, 2), ("2020-01-14", "c", 4, 2),
]
BEFORE = [
    ("2020-01-05", "a", 2, 1),  # a: prior 7 days
    ("2019-11-20", "a", 7, 1),  # a: 49 days before, once ...
    ("2019-10-01", "a", 8, 1), ("2019-10-01", "a", 8, 1), ("2019-10-01", "a", 8, 1),  # ... beats 3 buys 99 days before
    ("2019-12-01", "b", 5, 1),  # b: 38 days before (within 60)
    ("2019-09-01", "c", 6, 1),  # c: 129 days before (outside 90)
    ("2020-01-06", "d", 1, 1), ("2020-01-06", "d", 1, 1), ("2020-01-07", "d", 5, 1),  # d buys nothing in the week
    ("2019-12-20", "e", 3, 1),  # article 3: sold in the prior 60 days, not the prior 7
]


def _write_raw(folder: Path) -> Path:
    """A transactions file with a pandas-style unnamed index column and mixed article id spellings."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [",t_dat,customer_id,article_id,price,sales_channel_id"]
    for i, (day, customer, article, channel) in enumerate(BEFORE + WEEK):
        spelled = f"{ART[article]:010d}" if i % 2 else str(ART[article])
        lines.append(f"{i},{day},{customer * 64},{spelled},0.02,{channel}")
    (folder / "transactions_train.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    return profile(_write_raw(tmp_path_factory.mktemp("hand")), test_days=7)


def test_window_counts(result):
    assert result["validation_start"] == "2020-01-08"
    assert (result["week_transactions"], result["week_buyers"], result["week_articles"]) == (6, 3, 4)
    assert result["purchases_per_buyer_mean"] == pytest.approx(2.0)  # a 3, b 1, c 2
    assert result["purchases_per_buyer_median"] == pytest.approx(2.0)


def test_buyer_history_shares(result):
    assert result["buyers_with_prior_60d"] == pytest.approx(2 / 3)  # a and b; c last bought 129 days before
    assert result["buyers_without_prior_90d"] == pytest.approx(1 / 3)  # c


def test_article_history_shares(result):
    assert result["articles_sold_prior_7d"] == pytest.approx(2 / 4)  # 1 and 2 of {1, 2, 3, 4}
    assert result["articles_sold_prior_60d"] == pytest.approx(3 / 4)  # and 3


def test_bestseller_coverage(result):
    # prior week's bestsellers: 1 (twice), then 2 and 5; the week's rows of 1 or 2: a's three, c's one
    assert result["top12_prior_week_coverage"] == pytest.approx(4 / 6)


def test_popularity_map(result):
    # every buyer gets [1, 5, 2] (the popularity recommender's ranking: 2 and 5 tie in the prior week, 5 sold
    # twice in all, 2 once): a {1, 2} -> (1/1 + 2/3) / 2, b {3} -> 0, c {1, 4} -> (1/1) / 2
    assert result["map12_popularity"] == pytest.approx(((1 + 2 / 3) / 2 + 0 + 0.5) / 3)


def test_repurchase_map_uses_time_decay(result):
    # a: [2, 7, 8, 1, 5] (7 bought once 49 days ago outranks 8 bought 3 times 99 days ago): (1 + 2/4) / 2
    # b: [5, 1, 2] misses 3; c: [6, 1, 2, 5] hits 1 at rank 2: (1/2) / 2
    assert result["map12_repurchase"] == pytest.approx((0.75 + 0 + 0.25) / 3)


def test_repeat_and_novelty_shares(result):
    # the week's rows a1 a2 a2 b3 c1 c4: only a had bought 2 before (b's 3 was e's); no week article was sold
    # before 2019-12-11 (28 days before the window), so every row is of a new article
    assert result["repeat_share"] == pytest.approx(2 / 6)
    assert result["new_article_share"] == pytest.approx(1.0)
    assert result["repurchase_over_popularity"] == pytest.approx((1 / 3) / (((1 + 2 / 3) / 2 + 0.5) / 3))


def test_bands_are_shown_beside_the_figures_with_their_verdict(result):
    bands = (Band("repeat_share", 0.5, None, "most"), Band("week_buyers", 1, 3, "few"))
    text = format_profile(result, bands, "grocery")
    assert "| fact | this dataset | real H&M | grocery band | |" in text
    assert "| week's purchases of an article the buyer had bought before | 33.3% | - | >= 50.0% | **OUT of band** |" in text
    assert "| validation week: buyers | 3 | 68,984 | 1 .. 3 | in band |" in text
    assert out_of_band(result, bands) == ["repeat_share"]


def test_whole_file_figures(result):
    assert result["transactions"] == len(WEEK) + len(BEFORE)
    assert result["online_share"] == pytest.approx(len(WEEK) / (len(WEEK) + len(BEFORE)))
    assert result["mean_price"] == pytest.approx(0.02)
    assert result["notes"] == []


def test_format_has_every_fact_beside_the_real_value(result):
    text = format_profile(result)
    assert "| fact | this dataset | real H&M |" in text
    for _, label, *_ in FACTS:
        assert label in text
    assert "| validation week: transactions | 6 | 240,311 |" in text
    assert "| week's purchases covered by the prior week's 12 bestsellers | 66.7% | 2.35% |" in text


def test_real_export_with_a_single_day_gives_window_figures_and_says_why_the_rest_is_missing():
    real = profile(FIXTURE)
    assert (real["week_transactions"], real["week_buyers"], real["week_articles"]) == (10_000, 2_954, 4_903)
    assert real["buyers_with_prior_60d"] is None and real["map12_repurchase"] is None
    assert "no day before the validation window" in real["notes"][0]
    assert "| buyers who also bought in the prior 60 days | n/a | 63.0% |" in format_profile(real)


def test_cli_prints_json(tmp_path):
    out = CliRunner().invoke(app, ["data", "profile", str(_write_raw(tmp_path)), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["week_buyers"] == 3  # logs go to stderr


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RawDataError, match="transactions_train.csv: file is missing from"):
        profile(tmp_path)


def test_missing_column_is_named(tmp_path):
    (tmp_path / "transactions_train.csv").write_text("t_dat,customer_id,price\n2020-01-01,x,0.1\n")
    with pytest.raises(RawDataError, match="required column 'article_id' is missing from the header \\(2 required"):
        profile(tmp_path)


def test_unparseable_dates_are_counted_with_examples(tmp_path):
    rows = ["t_dat,customer_id,article_id,price,sales_channel_id", "2020-01-01,x,0108775001,0.1,1",
            "01/02/2020,x,0108775001,0.1,1", "yesterday,y,0108775002,0.1,2"]
    (tmp_path / "transactions_train.csv").write_text("\n".join(rows) + "\n")
    expected = r"column t_dat has 2 unparseable row\(s\), e.g. \['01/02/2020', 'yesterday'\]"
    with pytest.raises(RawDataError, match=expected):
        profile(tmp_path)
