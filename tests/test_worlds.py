"""The sample's worlds: grocery and media generate in the raw format, sit inside their bands, and say what they are."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.evaluation.profile import format_profile, out_of_band, profile
from hmrec.raw.schema import ARTICLE_CODE_COLUMNS, ARTICLE_COLUMNS, RAW_FILES
from hmrec.sample.generate import Scale, generate
from hmrec.sample.worlds import ALWAYS_KEPT, UNKNOWN, WORLDS

WEE = Scale(customers=400, articles=300, transactions=6_000, days=56)  # for byte comparisons, well under a second


def _read(folder: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(folder / name, infer_schema=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for world in ("grocery", "media"):
        folders[world] = tmp_path_factory.mktemp(world) / "sample"
        generate("tiny", seed=7, out=folders[world], world=world)
    return folders


@pytest.mark.parametrize("world", ["grocery", "media"])
def test_world_sits_inside_its_bands(tiny, world):
    figures = profile(tiny[world])
    assert out_of_band(figures, WORLDS[world].bands) == [], format_profile(figures, WORLDS[world].bands, world)


def test_media_never_sells_an_article_twice_to_one_customer(tiny):
    rows = _read(tiny["media"], "transactions_train.csv")
    assert rows.height > 40_000
    assert rows.select("customer_id", "article_id").is_duplicated().sum() == 0


def test_grocery_buyers_mostly_restock(tiny):
    rows = _read(tiny["grocery"], "transactions_train.csv").with_columns(pl.col("t_dat").str.to_date())
    last_week = rows.filter(pl.col("t_dat") > pl.col("t_dat").max() - pl.duration(days=7))
    before = rows.filter(pl.col("t_dat") <= pl.col("t_dat").max() - pl.duration(days=7))
    again = last_week.join(before.select("customer_id", "article_id").unique(), on=["customer_id", "article_id"])
    assert again.height / last_week.height > 0.6  # most of a buyer's week was bought before
    per_buyer = last_week.group_by("customer_id").len()["len"]
    assert 10 <= per_buyer.mean() <= 30


@pytest.mark.parametrize("world", ["grocery", "media"])
def test_articles_say_unknown_outside_the_signal_columns(tiny, world):
    articles = _read(tiny[world], "articles.csv")
    assert articles.columns == list(ARTICLE_COLUMNS)
    signal = WORLDS[world].signal_columns
    for column in ARTICLE_COLUMNS:
        values = set(articles[column].unique())
        if column in signal or column in ALWAYS_KEPT:
            assert len(values) > 3 and UNKNOWN not in values, column
        else:
            assert values == ({"-1"} if column in ARTICLE_CODE_COLUMNS else {UNKNOWN}), column
    # the world's own words, one name per code
    assert "T-shirt" not in set(articles["product_type_name"])
    assert articles.group_by("product_type_no").agg(pl.col("product_type_name").n_unique())["product_type_name"].max() == 1


@pytest.mark.parametrize("world", ["fashion", "grocery", "media"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, world):
    def digest(seed: int, name: str) -> list[str]:
        generate(WEE, seed=seed, out=tmp_path / name, world=world)
        return [hashlib.sha256((tmp_path / name / file).read_bytes()).hexdigest() for file in RAW_FILES]

    first = digest(7, "first")
    assert digest(7, "again") == first
    assert all(a != b for a, b in zip(digest(8, "other"), first, strict=True))


def test_worlds_differ_from_each_other(tmp_path):
    for world in WORLDS:
        generate(WEE, seed=7, out=tmp_path / world, world=world)
    digests = {hashlib.sha256((tmp_path / w / "transactions_train.csv").read_bytes()).digest() for w in WORLDS}
    assert len(digests) == len(WORLDS)


def test_cli_profiles_a_world_against_its_bands_and_names_a_wrong_world(tiny, tmp_path):
    runner = CliRunner()
    table = runner.invoke(app, ["data", "profile", str(tiny["media"]), "--world", "media"])
    assert table.exit_code == 0, table.output
    assert "| media band |" in table.stdout
    assert "| week's purchases of an article the buyer had bought before | 0.00% | - | 0.00% | in band |" in table.stdout
    as_json = json.loads(runner.invoke(app, ["data", "profile", str(tiny["grocery"]), "--world", "media", "--json"]).stdout)
    assert as_json["world"] == "media" and "repeat_share" in as_json["out_of_band"]  # grocery is not media
    wrong = runner.invoke(app, ["data", "generate", "--out", str(tmp_path / "x"), "--world", "pets"])
    assert wrong.exit_code == 1 and "--world must be one of fashion, grocery, media, not 'pets'" in wrong.output
    assert not (tmp_path / "x").exists()


def test_unknown_world_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown world 'pets'; choose one of fashion, grocery, media"):
        generate(WEE, seed=7, out=tmp_path / "x", world="pets")
