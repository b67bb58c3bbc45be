"""The transactions file -> dense indices: a fast streaming pass, the odd rows read as text, the data's own bounds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.raw import schema
from hmrec.raw.clean import (
    ID_DIGITS,
    TRANSACTION_PARSES,
    TRANSACTION_REASONS,
    Plausible,
    file_counts,
    spaced_id,
    transaction_checks,
)
from hmrec.raw.read import LINE, RawFile, shown
from hmrec.raw.validate import (
    REASON,
    count_reasons,
    digits,
    empty_quarantine,
    iso_date,
    quarantine_rows,
    raise_if_nothing_left,
    raise_if_unreadable,
)
from hmrec.store import tables
from hmrec.store.idmap import IdMap

log = logging.getLogger(__name__)

STREAMING = "streaming"  # bounded memory: the 3.5 GB transactions file is never held as text
# A price this many times the median is absurd (the real file's dearest sale is ~23 times its median price).
ABSURD_PRICE_FACTOR = 100.0
# The data ends on the last day selling at least this share of the median day's volume; later dates are future.
PLAUSIBLE_DAY_SHARE = 0.1
# The data starts after the last gap of this many days selling fewer rows in all than the median day, when rows
# before the gap exist and are fewer than those after it: a clock reset, a placeholder date, a test import.
PAST_GAP_DAYS = 365


@dataclass
class Indexed:
    """Transactions in dense indices, plus what was set aside, counted and noted on the way."""

    frame: pl.DataFrame
    quarantine: pl.DataFrame
    new_customer_ids: pl.Series
    quality: dict[str, int]
    notes: list[str]


Indexer = Callable[[RawFile, pl.Series, pl.DataFrame], Indexed]  # (raw, known customer ids, articles)

# The fast pass parses numbers in the CSV reader; a value it cannot parse becomes null and sends its row to the
# slow pass. Dates are parsed with the declared format instead: the reader would also accept e.g. 01/09/2020.
_FAST_DTYPES = {"price": pl.Float32, "sales_channel_id": pl.Int8}


def index_whole(raw: RawFile, known_ids: pl.Series, articles: pl.DataFrame) -> Indexed:
    """A fast streaming pass maps clean rows to integers; a second pass reads only the odd rows as text.

    Odd rows (anything null or out of range, an unknown customer or article, a truncated line) are few in
    real exports, so the 31.8M-row file is normally parsed once and never held as text. The Ray engine
    (hmrec.scale) runs `index_block` on each block of the file and the same `combine_blocks`.
    """
    customer_map, article_map = id_maps(known_ids, articles)
    return combine_blocks(raw, [index_block(raw, customer_map, article_map)], known_ids)


def id_maps(known_ids: pl.Series, articles: pl.DataFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """customer_id -> customer_idx for customers.csv's customers, article_id -> article_idx: the IdMaps serving
    looks ids up in, as tables, since millions of rows are mapped with one join rather than id by id."""
    customers = IdMap(known_ids, "customer").join_table("customer_id", "customer_idx")
    return customers.lazy(), IdMap.articles(articles).join_table("article_id", "article_idx").lazy()


@dataclass
class Block:
    """One block of the transactions file checked: rows kept, odd rows that passed, rows set aside.

    LINE (and the quarantine's `line`) count from the block's first row; `combine_blocks` shifts them.
    """

    kept: pl.DataFrame  # LINE, the transaction columns, short_id
    good: pl.DataFrame  # odd rows that passed: LINE, the transaction columns (customer_idx null: unknown), customer_id
    quarantine: pl.DataFrame
    rows: int


def index_block(raw: RawFile, customer_map: pl.LazyFrame, article_map: pl.LazyFrame) -> Block:
    """The fast pass over one file (or block), then the slow pass over its odd rows.

    The bounds the whole data sets (absurd prices, future dates) are not known to a block: `combine_blocks`
    applies them to every block's rows at once.
    """
    fast = _fast_pass(raw, customer_map, article_map)
    odd_lines = fast.filter(pl.col("odd"))[LINE]
    kept = fast.filter(~pl.col("odd")).drop("odd")
    if not odd_lines.len():
        good = pl.DataFrame(schema={LINE: fast.schema[LINE], **tables.TRANSACTIONS_SCHEMA, "customer_id": pl.String,
                                    "short_id": pl.Boolean, "spaced_id": pl.Boolean})
        return Block(kept, good, empty_quarantine(schema.TRANSACTION_COLUMNS), fast.height)
    log.info("%s: reading %d odd rows as text", raw.name, odd_lines.len())
    slow = _slow_pass(raw, odd_lines, customer_map, article_map)
    quarantine = quarantine_rows(slow.filter(pl.col(REASON).is_not_null()), schema.TRANSACTION_COLUMNS)
    good = slow.filter(pl.col(REASON).is_null()).select(LINE, *tables.TRANSACTIONS_SCHEMA, "customer_id", "short_id",
                                                        "spaced_id")
    return Block(kept, good, quarantine, fast.height)


def combine_blocks(raw: RawFile, blocks: list[Block], known_ids: pl.Series) -> Indexed:
    """Blocks in file order -> one table: file-wide line numbers, the data's own bounds, new customers' indices,
    the file's checks."""
    offsets = np.cumsum([0] + [b.rows for b in blocks[:-1]])
    shift = [(b, int(o)) for b, o in zip(blocks, offsets, strict=True)]
    kept = pl.concat([b.kept.with_columns(pl.col(LINE) + o) for b, o in shift])
    good = pl.concat([b.good.with_columns(pl.col(LINE) + o) for b, o in shift])
    quarantine = pl.concat([b.quarantine.with_columns(pl.col("line") + o) for b, o in shift])
    kept, good, quarantine = _set_aside_implausible(raw, kept, good, quarantine)
    unknown_rows = good["customer_idx"].null_count()
    spaced = int(good["spaced_id"].sum())
    new_ids = good.filter(pl.col("customer_idx").is_null())["customer_id"].unique().sort()
    if good.height:
        kept = pl.concat([kept, _index_new_customers(good, new_ids, known_ids.len()).select(kept.columns)])
    raise_if_unreadable(raw, quarantine, sum(b.rows for b in blocks), TRANSACTION_PARSES)
    raise_if_nothing_left(raw, kept.height, quarantine)
    short = int(kept["short_id"].sum())
    frame = kept.sort(["t_dat", LINE]).select(list(tables.TRANSACTIONS_SCHEMA)).cast(tables.TRANSACTIONS_SCHEMA)
    quality = {
        **count_reasons("transactions", TRANSACTION_REASONS, quarantine),
        "transactions.unknown_customer_rows": unknown_rows,
        "customers.unknown_added": new_ids.len(),
        "transactions.id_without_leading_zero": short,
        "transactions.customer_id_spaces_trimmed": spaced,
        **file_counts("transactions", raw),
    }
    return Indexed(frame, quarantine, new_ids, quality, raw.notes + _transaction_notes(raw, quality, quarantine))


def _fast_pass(raw: RawFile, customer_map: pl.LazyFrame, article_map: pl.LazyFrame) -> pl.DataFrame:
    """Every row as integers, with `odd` marking the rows the slow pass must look at."""
    typed = raw.scan(_FAST_DTYPES).with_columns(
        iso_date("t_dat").alias("t_dat"),
        digits("article_id").alias("article_key"),
        (pl.col("article_id").str.len_bytes() < ID_DIGITS).alias("short_id"),
    )
    joined = (typed.join(customer_map, on="customer_id", how="left")
              .join(article_map, left_on="article_key", right_on="article_id", how="left"))
    odd = (
        pl.any_horizontal(pl.col(c).is_null() for c in (*tables.TRANSACTIONS_SCHEMA, "short_id"))
        | (pl.col("price") < 0)
        | ~pl.col("sales_channel_id").is_in(list(schema.SALES_CHANNELS))
    )
    if raw.truncated_line is not None:
        odd = odd | (pl.col(LINE) == raw.truncated_line)
    if raw.broken_lines:
        odd = odd | pl.col(LINE).is_in(raw.broken_lines)
    return joined.select(LINE, *tables.TRANSACTIONS_SCHEMA, "short_id", odd.alias("odd")).collect(engine=STREAMING)


def plausible_bounds(fast: pl.DataFrame) -> Plausible:
    """The price and date bounds the data itself sets (never the day the build runs): see Plausible."""
    prices = fast.select(pl.col("price").filter(pl.col("price").is_finite() & (pl.col("price") > 0)).median()).item()
    max_price = ABSURD_PRICE_FACTOR * prices if prices else float("inf")
    days = fast.filter(pl.col("t_dat").is_not_null()).group_by("t_dat").len()
    if days.is_empty():
        return Plausible(max_price=max_price)
    busy = days.filter(pl.col("len") >= PLAUSIBLE_DAY_SHARE * days["len"].median())
    last_day = busy["t_dat"].max()
    last_day = last_day + timedelta(days=1) if last_day < date.max else last_day
    return Plausible(max_price=max_price, last_day=last_day, first_day=first_plausible_day(days))


def first_plausible_day(days: pl.DataFrame) -> date:
    """The first day after the data's last long quiet gap (`t_dat`, `len`: rows per day with sales), or date.min.

    A day D starts the data when the PAST_GAP_DAYS days before it sold fewer rows in all than the median day,
    some rows lie before that gap, and they are fewer than the rows from D on. A slow ramp-up has nothing before
    it, and a busy history is not outnumbered, so both are kept; the rule reads the data alone, never the clock.
    """
    days = days.sort("t_dat")
    day = days["t_dat"].cast(pl.Int64).to_numpy()  # days since 1970-01-01, negative before
    rows = days["len"].to_numpy().astype(np.int64)
    before = np.concatenate([[0], np.cumsum(rows)])  # rows strictly before day[i] is before[i]
    before_gap = before[np.searchsorted(day, day - PAST_GAP_DAYS)]  # rows strictly before each gap's first day
    in_gap = before[:-1] - before_gap
    starts = (in_gap < np.median(rows)) & (before_gap > 0) & (before[:-1] < before[-1] - before[:-1])
    if not starts.any():
        return date.min
    return days["t_dat"][int(np.flatnonzero(starts)[-1])]


def _implausible(plausible: Plausible) -> pl.Expr:
    price = pl.col("price")
    day = pl.col("t_dat")
    return (price > plausible.max_price) | ~price.is_finite() | (day > plausible.last_day) | (day < plausible.first_day)


def _set_aside_implausible(raw: RawFile, kept: pl.DataFrame, good: pl.DataFrame,
                           quarantine: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Rows past the bounds the whole data sets move from kept (or good) to the quarantine with their reason.

    Such rows are rare, so the text of only those lines is read again (one more streaming pass, only then).
    """
    plausible = plausible_bounds(pl.concat([kept.select("t_dat", "price"), good.select("t_dat", "price")]))
    lines = pl.concat([frame.filter(_implausible(plausible).fill_null(False))[LINE] for frame in (kept, good)])
    if not lines.len():
        return kept, good, quarantine
    log.info("%s: %d rows outside the data's own price and date bounds", raw.name, lines.len())
    checked = transaction_checks(raw, plausible).filter(pl.col(LINE).is_in(lines.implode()))
    bad = checked.filter(pl.col(REASON).is_not_null()).collect(engine=STREAMING)
    gone = bad[LINE].implode()
    quarantine = pl.concat([quarantine, quarantine_rows(bad, schema.TRANSACTION_COLUMNS)]).sort("line")
    return kept.filter(~pl.col(LINE).is_in(gone)), good.filter(~pl.col(LINE).is_in(gone)), quarantine


def _slow_pass(raw: RawFile, lines: pl.Series, customer_map: pl.LazyFrame, article_map: pl.LazyFrame) -> pl.DataFrame:
    """The odd rows read as text and checked one by one: a reason for each bad row, ids for the rest."""
    plan = (
        transaction_checks(raw)
        .filter(pl.col(LINE).is_in(lines.implode()))
        .join(customer_map, on="customer_id", how="left")
        .join(article_map, on="article_id", how="left")
        .with_columns(pl.coalesce(REASON, pl.when(pl.col("article_idx").is_null()).then(pl.lit("unknown_article"))))
    )
    short = (pl.col("raw_article_id").str.len_bytes() < ID_DIGITS).alias("short_id")
    spaced = spaced_id("raw_customer_id").alias("spaced_id")
    rows = plan.select(LINE, *tables.TRANSACTIONS_SCHEMA, "customer_id", short, spaced, REASON,
                       *(f"raw_{c}" for c in schema.TRANSACTION_COLUMNS))
    return rows.collect(engine=STREAMING).sort(LINE)


def _index_new_customers(good: pl.DataFrame, new_ids: pl.Series, n_known: int) -> pl.DataFrame:
    """Customers missing from customers.csv get the indices after the known ones, in sorted id order."""
    new_index = np.arange(n_known, n_known + new_ids.len(), dtype=np.int32)
    new_map = pl.DataFrame({"customer_id": new_ids, "new_idx": new_index})
    joined = good.join(new_map, on="customer_id", how="left", maintain_order="left")
    return joined.with_columns(pl.coalesce("customer_idx", "new_idx").alias("customer_idx"))


def _transaction_notes(raw: RawFile, quality: dict[str, int], quarantine: pl.DataFrame) -> list[str]:
    notes = []
    if quality["transactions.id_without_leading_zero"]:
        notes.append(f"{raw.name}: {quality['transactions.id_without_leading_zero']:,} article ids without the "
                     f"leading zero matched as the same Int64 id")
    if quality["transactions.customer_id_spaces_trimmed"]:
        notes.append(f"{raw.name}: {quality['transactions.customer_id_spaces_trimmed']:,} customer ids with spaces "
                     f"at an end trimmed")
    if quality["customers.unknown_added"]:
        notes.append(f"{raw.name}: {quality['transactions.unknown_customer_rows']:,} rows of "
                     f"{quality['customers.unknown_added']:,} customers missing from {schema.CUSTOMERS_FILE} kept; "
                     f"those customers were added with known=False and an empty profile")
    unmatched = quarantine.filter(pl.col(REASON) == "unknown_article")
    if unmatched.height:
        examples = ", ".join(shown(v) for v in unmatched["article_id"].head(2).to_list())
        notes.append(f"{raw.name}: {unmatched.height:,} rows whose article is missing from {schema.ARTICLES_FILE} "
                     f"set aside (e.g. {examples})")
    for note in notes:
        log.warning(note)
    return notes
