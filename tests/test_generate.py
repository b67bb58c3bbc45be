"""The synthetic sample: the real files' exact format, determinism, and the behaviour the profile bands demand."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from hmrec.evaluation.profile import format_profile, out_of_band, profile
from hmrec.raw.schema import ARTICLE_COLUMNS, CUSTOMER_COLUMNS, RAW_FILES, TRANSACTION_COLUMNS
from hmrec.sample.generate import SCALES, Scale, generate
from hmrec.sample.worlds import WORLDS

HEX64 = r"^[0-9a-f]{64}$"
# The small sample cut to its last year: the same customers and weekly volume, and the articles launched in
# that year (and the months before), so its validation week behaves like the small one's in a few seconds.
MID = Scale(customers=50_000, articles=5_700, transactions=750_000, days=364)


def _read(folder: Path, name: str) -> pl.DataFrame:
    """Every cell as the exact string written (empty cells come back null)."""
    return pl.read_csv(folder / name, infer_schema=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "sample"
    counts = generate("tiny", seed=7, out=out)
    assert counts["customers"] == SCALES["tiny"].customers and counts["articles"] == SCALES["tiny"].articles
    return out


@pytest.fixture(scope="module")
def mid(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mid") / "sample"
    generate(MID, seed=7, out=out)
    return out


def test_header_lines_are_the_real_ones(tiny):
    for name, columns in (("customers.csv", CUSTOMER_COLUMNS), ("articles.csv", ARTICLE_COLUMNS),
                          ("transactions_train.csv", TRANSACTION_COLUMNS)):
        assert (tiny / name).read_text().split("\n", 1)[0] == ",".join(columns)


def test_transaction_cells(tiny):
    rows = _read(tiny, "transactions_train.csv")
    assert 40_000 <= rows.height <= 65_000
    assert rows.select(
        pl.col("t_dat").str.contains(r"^\d{4}-\d{2}-\d{2}$").all(),
        pl.col("customer_id").str.contains(HEX64).all(),
        pl.col("article_id").str.contains(r"^0\d{9}$").all(),
        pl.col("price").str.contains(r"^0\.\d+$").all(),
        pl.col("sales_channel_id").is_in(["1", "2"]).all(),
    ).row(0) == (True,) * 5
    days = rows["t_dat"].str.to_date()
    assert days.is_sorted() and days.max() == date(2020, 9, 22)
    prices = rows["price"].cast(pl.Float64)
    assert 0.02 < prices.mean() < 0.04 and prices.max() < 0.6
    assert 0.6 < (rows["sales_channel_id"] == "2").mean() < 0.8


def test_customer_cells_and_proportions(tiny):
    rows = _read(tiny, "customers.csv")
    assert rows["customer_id"].str.contains(HEX64).all() and rows["customer_id"].is_unique().all()
    assert rows["postal_code"].str.contains(HEX64).all()
    for flag in ("FN", "Active"):
        assert set(rows[flag].drop_nulls()) == {"1.0"}
        assert 0.28 < rows[flag].is_not_null().mean() < 0.42
    assert set(rows["club_member_status"].drop_nulls()) <= {"ACTIVE", "PRE-CREATE", "LEFT CLUB"}
    assert {"NONE", "Regularly", "None"} <= set(rows["fashion_news_frequency"].drop_nulls())
    ages = rows["age"].drop_nulls()
    assert ages.str.contains(r"^\d{2}$").all() and 0.002 < rows["age"].is_null().mean() < 0.03
    postal = rows["postal_code"].value_counts(sort=True)
    assert postal["count"][0] > 10 * postal["count"][1]  # one postal code shared by many (~8.7%)


def test_empty_cells_are_empty(tiny):
    text = (tiny / "customers.csv").read_text()
    assert ",," in text and "nan" not in text.lower().replace("none", "")
    assert "null" not in (tiny / "articles.csv").read_text().lower()


def test_article_families_and_hierarchy(tiny):
    rows = _read(tiny, "articles.csv")
    assert rows["article_id"].str.contains(r"^0\d{9}$").all() and rows["article_id"].is_sorted()
    ids = rows["article_id"].cast(pl.Int64)
    assert (ids // 1000 == rows["product_code"].cast(pl.Int64)).all()
    colours = rows.group_by("product_code").len()["len"]
    assert 1.8 < colours.mean() < 2.8 and colours.max() >= 4
    for column in ARTICLE_COLUMNS[:-1]:
        assert rows[column].null_count() == 0, column
    assert rows["index_group_name"].n_unique() == 5 and rows["product_type_name"].n_unique() > 25
    # a code has one name: the hierarchy is consistent
    for code, name in (("product_type_no", "product_type_name"), ("section_no", "section_name"),
                       ("department_no", "department_name"), ("colour_group_code", "colour_group_name")):
        assert rows.group_by(code).agg(pl.col(name).n_unique())[name].max() == 1, code


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    def digest(folder: Path) -> list[str]:
        return [hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in RAW_FILES]

    again, other = tmp_path / "again", tmp_path / "other"
    generate("tiny", seed=7, out=again)
    generate("tiny", seed=8, out=other)
    assert digest(again) == digest(tiny)
    assert all(a != b for a, b in zip(digest(other), digest(tiny), strict=True))


def test_other_dates_and_output_folder_replaced_whole(tmp_path):
    out = tmp_path / "sample"
    out.mkdir()
    (out / "stale.csv").write_text("old")
    generate(Scale(customers=200, articles=100, transactions=2_000, days=30, end=date(2023, 3, 5)), seed=1, out=out)
    assert sorted(p.name for p in out.iterdir()) == sorted(RAW_FILES)
    days = _read(out, "transactions_train.csv")["t_dat"].str.to_date()
    assert days.max() == date(2023, 3, 5) and days.min() >= date(2023, 2, 4)  # any date range, not the real one
    assert [p.name for p in tmp_path.iterdir()] == ["sample"]  # no temporary folder left behind


def test_repeat_purchases_baskets_and_other_colours(tiny):
    rows = _read(tiny, "transactions_train.csv").with_columns(
        (pl.col("article_id").cast(pl.Int64) // 1000).alias("product"))
    per_day = rows.group_by("customer_id", "t_dat").len()["len"]
    assert (per_day > 1).mean() > 0.3  # multi-item baskets
    assert rows.is_duplicated().any()  # the same item twice on one day
    repeat = rows.unique(["customer_id", "article_id", "t_dat"]).group_by("customer_id", "article_id").len()
    assert (repeat["len"] > 1).sum() > 200  # the same article again on another day
    colours = rows.group_by("customer_id", "product").agg(pl.col("article_id").n_unique())
    assert (colours["article_id"] > 1).sum() > 200  # several colours of one product


def test_taste_depends_on_age_and_sales_on_season(mid):
    rows = _read(mid, "transactions_train.csv")
    customers = _read(mid, "customers.csv").select("customer_id", pl.col("age").cast(pl.Int64))
    articles = _read(mid, "articles.csv").select("article_id", "index_group_name", "product_group_name")
    sales = rows.join(customers, on="customer_id").join(articles, on="article_id")
    divided = sales.group_by(pl.col("age") < 25).agg((pl.col("index_group_name") == "Divided").mean())
    young, old = (divided.filter(pl.col("age") == flag)["index_group_name"][0] for flag in (True, False))
    assert young > 2 * old
    month = pl.col("t_dat").str.slice(5, 2)
    swim = sales.group_by(month.alias("month")).agg((pl.col("product_group_name") == "Swimwear").mean())
    share = dict(zip(swim["month"], swim["product_group_name"], strict=True))
    assert share["07"] > 2 * share["01"]


def test_profile_bands(mid):
    """The fashion world's bands (issue 2, issue 11), which the small and the full sample must fall in."""
    figures = profile(mid)
    assert out_of_band(figures, WORLDS["fashion"].bands) == [], format_profile(figures, WORLDS["fashion"].bands)
