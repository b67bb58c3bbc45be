"""Cleaning each raw table: typed columns, normalised ids and values, and bad rows set aside with a reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import polars as pl

from hmrec.raw import schema
from hmrec.raw.read import RawFile, shown
from hmrec.raw.validate import (
    REASON,
    TRUNCATED,
    UNBALANCED,
    Cleaned,
    Parse,
    checked,
    count_reasons,
    digits,
    integer,
    iso_date,
    number,
    quarantine_rows,
    raise_if_nothing_left,
    raise_if_unreadable,
)

log = logging.getLogger(__name__)

ID_DIGITS = len(schema.format_article_id(0))

CUSTOMER_REASONS = (TRUNCATED, UNBALANCED, "null_customer_id", "bad_customer_id", "duplicate_customer_id")
ARTICLE_REASONS = (
    TRUNCATED, UNBALANCED, "null_article_id", "null_product_code", "bad_article_id", "bad_product_code",
    "duplicate_article_id",
)
TRANSACTION_REASONS = (
    TRUNCATED,
    UNBALANCED,
    *(f"null_{c}" for c in schema.TRANSACTION_COLUMNS),
    "bad_t_dat", "bad_customer_id", "bad_article_id", "bad_price", "bad_sales_channel_id",
    "negative_price", "absurd_price", "non_finite_price", "future_date", "past_date", "unknown_channel",
    "unknown_article",
)

_FLAGS = ("FN", "Active")


def customer_id(name: str = "customer_id") -> pl.Expr:
    """An id trimmed of spaces at its ends -> itself; null when it breaks schema.CUSTOMER_ID_PATTERN."""
    trimmed = pl.col(name).str.strip_chars(" ")
    return pl.when(trimmed.str.contains(schema.CUSTOMER_ID_PATTERN)).then(trimmed)


def spaced_id(name: str = "customer_id") -> pl.Expr:
    """The id had spaces at an end (trimmed)."""
    return pl.col(name).str.starts_with(" ") | pl.col(name).str.ends_with(" ")


CUSTOMER_ID = Parse("customer_id", customer_id(), f"customer ids of {schema.CUSTOMER_ID_RULE}")
CUSTOMER_PARSES = (CUSTOMER_ID,)
ARTICLE_PARSES = (
    Parse("article_id", digits("article_id"), "article ids written as digits"),
    Parse("product_code", integer("product_code", pl.Int32), "whole-number product codes"),
)
TRANSACTION_PARSES = (
    Parse("t_dat", iso_date("t_dat"), "dates written YYYY-MM-DD"),
    CUSTOMER_ID,
    Parse("article_id", digits("article_id"), "article ids written as digits"),
    Parse("price", number("price").cast(pl.Float32), "numbers"),
    # a plain cast: the channel is a small integer in every export, and this column is 31.8M rows long
    Parse("sales_channel_id", pl.col("sales_channel_id").cast(pl.Int8, strict=False), "whole-number channel ids"),
)


def clean_customers(raw: RawFile) -> Cleaned:
    """customers.csv -> typed profiles in file order; flags 0/1, whole-year ages, 'None' spelled 'NONE'."""
    rows = checked(raw, CUSTOMER_PARSES, []).collect()
    quality = _customer_value_counts(rows, raw)
    first = pl.col("customer_id").is_first_distinct() | pl.col(REASON).is_not_null()
    rows = rows.with_columns(
        pl.when(first).then(pl.col(REASON)).otherwise(pl.lit("duplicate_customer_id")).alias(REASON)
    )
    clean = rows.filter(pl.col(REASON).is_null()).select(
        pl.col("customer_id"),
        *[(number(f) == 1).fill_null(False).cast(pl.Int8).alias(f) for f in _FLAGS],
        pl.col("club_member_status"),
        pl.col("fashion_news_frequency").replace({"None": "NONE"}),
        _age().alias("age"),
        pl.col("postal_code"),
    )
    return _finish(raw, rows, clean, CUSTOMER_PARSES, CUSTOMER_REASONS, "customers", quality)


def _age() -> pl.Expr:
    age = number("age").round(0)
    return pl.when(age.is_between(0, 130)).then(age).cast(pl.Int16)


def _customer_value_counts(rows: pl.DataFrame, raw: RawFile) -> dict[str, int]:
    """Counts of values that were normalised or dropped to null (rows are kept)."""
    unreadable = [pl.col(f).is_not_null() & number(f).is_null() for f in _FLAGS]
    flags_bad = int(rows.select(pl.sum_horizontal(unreadable).sum()).item())
    age_bad = int(rows.select((pl.col("age").is_not_null() & _age().is_null()).sum()).item())
    age_decimal = int(rows.select(pl.col("age").str.contains(r"\.").sum()).item() or 0)
    none = int(rows.select((pl.col("fashion_news_frequency") == "None").sum()).item() or 0)
    spaced = int(rows.select((spaced_id("raw_customer_id") & pl.col("customer_id").is_not_null()).sum()).item() or 0)
    if spaced:
        raw.notes.append(f"{raw.name}: {spaced:,} customer ids with spaces at an end trimmed")
    if none:
        raw.notes.append(f"{raw.name}: {none:,} fashion_news_frequency values 'None' normalised to 'NONE'")
    if age_decimal:
        raw.notes.append(f"{raw.name}: {age_decimal:,} ages written as decimals (e.g. '49.0') read as whole years")
    for count, what in ((flags_bad, "FN/Active flags"), (age_bad, "ages")):
        if count:
            log.warning("%s: %d unreadable or out-of-range %s read as empty", raw.name, count, what)
            raw.notes.append(f"{raw.name}: {count:,} unreadable or out-of-range {what} read as empty")
    return {
        "customers.bad_flag": flags_bad,
        "customers.bad_age": age_bad,
        "customers.age_decimal": age_decimal,
        "customers.news_none_normalised": none,
        "customers.customer_id_spaces_trimmed": spaced,
    }


def clean_articles(raw: RawFile) -> Cleaned:
    """articles.csv -> typed attributes sorted by article_id (so article_idx is deterministic)."""
    rows = checked(raw, ARTICLE_PARSES, []).collect()
    codes = [c for c in schema.ARTICLE_CODE_COLUMNS if c != "product_code"]
    unreadable = [pl.col(f"raw_{c}").is_not_null() & integer(f"raw_{c}", pl.Int32).is_null() for c in codes]
    bad_codes = int(rows.select(pl.sum_horizontal(unreadable)).sum().item())
    rows = rows.with_columns(*[integer(f"raw_{c}", pl.Int32).alias(c) for c in codes])
    first = pl.col("article_id").is_first_distinct() | pl.col(REASON).is_not_null()
    rows = rows.with_columns(
        pl.when(first).then(pl.col(REASON)).otherwise(pl.lit("duplicate_article_id")).alias(REASON)
    )
    clean = rows.filter(pl.col(REASON).is_null()).select(schema.ARTICLE_COLUMNS).sort("article_id")
    short = _short_ids(rows.filter(pl.col(REASON).is_null()))
    if short:
        raw.notes.append(f"{raw.name}: {short:,} article ids without the leading zero (e.g. "
                         f"{_short_example(rows)}) read as the same Int64 id")
    if bad_codes:
        log.warning("%s: %d unreadable code values read as empty", raw.name, bad_codes)
        raw.notes.append(f"{raw.name}: {bad_codes:,} unreadable code values (*_no, *_code, *_id) read as empty")
    quality = {"articles.bad_code_value": bad_codes, "articles.id_without_leading_zero": short}
    return _finish(raw, rows, clean, ARTICLE_PARSES, ARTICLE_REASONS, "articles", quality)


def _short_ids(rows: pl.DataFrame | pl.LazyFrame) -> int:
    frame = rows.lazy().select((pl.col("raw_article_id").str.strip_chars().str.len_bytes() < ID_DIGITS).sum())
    return int(frame.collect().item() or 0)


def _short_example(rows: pl.DataFrame) -> str:
    text = rows.filter(pl.col("raw_article_id").str.len_bytes() < ID_DIGITS)["raw_article_id"][0]
    return f"{shown(text)} = {schema.format_article_id(int(text))!r}"


def _finish(raw: RawFile, rows: pl.DataFrame, clean: pl.DataFrame, parses: tuple[Parse, ...],
            reasons: tuple[str, ...], table: str, quality: dict[str, int]) -> Cleaned:
    """Split off the quarantine, stop on a unreadable or emptied table, and count everything."""
    quarantine = quarantine_rows(rows.filter(pl.col(REASON).is_not_null()), raw.spec.columns)
    raise_if_unreadable(raw, quarantine, rows.height, parses)
    raise_if_nothing_left(raw, clean.height, quarantine)
    if quarantine.height:
        log.warning("%s: %d rows set aside in quarantine", raw.name, quarantine.height)
    counts = {**count_reasons(table, reasons, quarantine), **quality, **file_counts(table, raw)}
    return Cleaned(frame=clean, quarantine=quarantine, quality=counts, notes=raw.notes)


def file_counts(table: str, raw: RawFile) -> dict[str, int]:
    return {f"{table}.index_column_ignored": int(raw.index_column),
            f"{table}.other_columns_ignored": len(raw.ignored_columns)}


@dataclass(frozen=True)
class Plausible:
    """Bounds taken from the data itself: prices above `max_price` are absurd, dates after `last_day` future,
    dates before `first_day` past (store.indexing.plausible_bounds computes them)."""

    max_price: float = float("inf")
    last_day: date = date.max
    first_day: date = date.min


def transaction_checks(raw: RawFile, plausible: Plausible = Plausible()) -> pl.LazyFrame:
    """transactions_train.csv with typed columns, `raw_<name>` texts and a `reason` for each bad row."""
    price = pl.col("price")
    extra = [
        ("negative_price", price < 0),
        ("non_finite_price", price.is_nan()),  # before the next check: NaN sorts above every number in Polars
        ("absurd_price", price > plausible.max_price),  # +inf, and 1e300 (inf as Float32), land here
        ("future_date", pl.col("t_dat") > plausible.last_day),
        ("past_date", pl.col("t_dat") < plausible.first_day),
        ("unknown_channel", ~pl.col("sales_channel_id").is_in(list(schema.SALES_CHANNELS))),
    ]
    return checked(raw, TRANSACTION_PARSES, extra)

