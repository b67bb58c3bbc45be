"""Hostile and careless raw files: each is a one-line fatal error or rows quarantined with a reason, never a crash."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from raw_helpers import (
    ARTICLE_HEADER,
    ARTICLES,
    CUSTOMER_HEADER,
    CUSTOMERS,
    TRANSACTION_HEADER,
    TRANSACTIONS,
    article,
    built,
    fails,
    write_csv,
    write_raw,
)

from hmrec.raw import schema
from hmrec.raw.read import RawDataError
from hmrec.store.build import StorePathError, build_store
from hmrec.store.tables import Store

# --- encodings and binary content: fatal, naming the byte offset and line -------------------------------------


def test_latin1_byte_names_file_offset_and_line(tmp_path):
    raw = write_raw(tmp_path / "raw")
    body = "\n".join([CUSTOMER_HEADER, *CUSTOMERS[:2], "c9,,,ACTIVE,NONE,30,Malm"]).encode() + b"\xf6\n"
    (raw / schema.CUSTOMERS_FILE).write_bytes(body)
    offset = body.index(b"\xf6")
    message = fails(tmp_path, raw)
    assert message.startswith(f"customers.csv: byte {offset:,} (line 4, field 7) is not UTF-8 (0xf6; Latin-1 or cp1252?)")
    assert "iconv" in message


def test_utf16_file_is_refused(tmp_path):
    raw = write_raw(tmp_path / "raw")
    text = "\n".join([TRANSACTION_HEADER, *TRANSACTIONS]) + "\n"
    (raw / schema.TRANSACTIONS_FILE).write_bytes(text.encode("utf-16"))
    message = fails(tmp_path, raw)
    assert message.startswith("transactions_train.csv: the file is UTF-16 (it starts with the byte-order mark ff fe)")


def test_binary_bytes_after_a_valid_header(tmp_path):
    raw = write_raw(tmp_path / "raw")
    junk = bytes(range(256)) * 4
    (raw / schema.ARTICLES_FILE).write_bytes((ARTICLE_HEADER + "\n").encode() + junk)
    message = fails(tmp_path, raw)
    assert message.startswith(f"articles.csv: byte {len(ARTICLE_HEADER) + 1:,} (line 2) is a NUL byte")
    assert "\\x" not in message and "\x01" not in message


def test_unreadable_file(tmp_path):
    raw = write_raw(tmp_path / "raw")
    (raw / schema.CUSTOMERS_FILE).unlink()
    # a regular file that no one, root included, can read: reading it fails with EIO
    (raw / schema.CUSTOMERS_FILE).symlink_to("/proc/self/mem")
    message = fails(tmp_path, raw)
    assert message.startswith("customers.csv: cannot be read (Input/output error); check its permissions")


# --- quotes: the broken rows are set aside, the rest parses ---------------------------------------------------


def test_unclosed_opening_quote_quarantines_only_its_row(tmp_path):
    rows = [*TRANSACTIONS[:2], '2020-09-02,"c2,0663713001,0.05,2', *TRANSACTIONS[2:]]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["rows"]["transactions"] == 5
    assert store.manifest["quality"]["transactions.unbalanced_quote"] == 1
    quarantined = store.quarantine(schema.TRANSACTIONS_FILE)
    assert quarantined.select("line", "t_dat", "reason").rows() == [
        (4, '2020-09-02,"c2,0663713001,0.05,2', "unbalanced_quote")
    ]


def test_stray_quote_in_articles_with_quoted_fields_elsewhere(tmp_path):
    articles = [*ARTICLES, article("0663713003", 663713).replace(',Top,', ',Top 5" wide,')]
    articles += [article("0663713004", 663713, desc="a, b")]
    store = built(tmp_path, write_raw(tmp_path / "raw", articles=articles))
    assert store.read("articles")["article_id"].to_list() == [541518023, 663713001, 663713002, 663713004]
    assert store.quarantine(schema.ARTICLES_FILE).select("line", "reason").rows() == [(5, "unbalanced_quote")]
    assert any("1 rows with an unbalanced quote set aside" in n for n in store.manifest["normalisations"])


def test_last_line_cut_inside_a_quoted_field_is_truncated(tmp_path):
    articles = [*ARTICLES, article("0663713003", 663713, desc="Soft cotton top with")[:-1].rsplit(" ", 1)[0]]
    store = built(tmp_path, write_raw(tmp_path / "raw", articles=articles, final_newline=False))
    assert store.read("articles").height == 3
    assert store.quarantine(schema.ARTICLES_FILE).select("line", "reason").rows() == [(5, "truncated_line")]
    assert store.manifest["quality"]["articles.truncated_line"] == 1


def test_header_with_unbalanced_quote_is_fatal(tmp_path):
    raw = write_raw(tmp_path / "raw")
    write_csv(raw / schema.TRANSACTIONS_FILE, '"' + TRANSACTION_HEADER, TRANSACTIONS)
    assert fails(tmp_path, raw).startswith("transactions_train.csv: the header line has an unbalanced quote")


def test_mostly_broken_quotes_is_fatal(tmp_path):
    rows = [f'2020-09-0{i},"c1,0663713001,0.05,2' for i in range(1, 6)]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: 5 of 5 rows have an unbalanced quote")
    assert "line 2: '2020-09-01,\"c1,0663713001,0.05,2'" in message


# --- values: quarantined ----------------------------------------------------------------------------------------


def test_non_finite_and_absurd_prices_are_set_aside(tmp_path):
    rows = [*TRANSACTIONS, "2020-09-02,c1,0663713001,NaN,2", "2020-09-02,c1,0663713001,inf,2",
            "2020-09-02,c1,0663713001,1e300,2", "2020-09-02,c1,0663713001,-inf,2", "2020-09-02,c1,0663713001,5.0,2"]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.read("transactions")["price"].is_finite().all() and store.read("transactions").height == 5
    assert store.quarantine(schema.TRANSACTIONS_FILE).select("price", "reason").rows() == [
        ("NaN", "non_finite_price"), ("inf", "absurd_price"), ("1e300", "absurd_price"),
        ("-inf", "negative_price"), ("5.0", "absurd_price"),
    ]


def _busy_days(first: date, days: int, per_day: int) -> list[str]:
    return [f"{first + timedelta(days=d)},c{1 + i % 3},0663713001,0.05,2" for d in range(days) for i in range(per_day)]


def test_a_far_future_date_is_set_aside_and_the_window_uses_kept_rows(tmp_path):
    rows = [*_busy_days(date(2020, 9, 1), 14, 20), "2031-01-01,c1,0663713001,0.05,2"]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["quality"]["transactions.future_date"] == 1
    assert store.manifest["test_window"] == ["2020-09-08", "2020-09-14"]
    assert store.quarantine(schema.TRANSACTIONS_FILE)["t_dat"].to_list() == ["2031-01-01"]


def test_the_day_after_the_last_busy_day_is_still_plausible(tmp_path):
    rows = [*_busy_days(date(2020, 9, 1), 10, 20), "2020-09-11,c1,0663713001,0.05,2", "2020-09-12,c1,0663713001,0.05,2"]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["data_range"] == ["2020-09-01", "2020-09-11"]
    assert store.quarantine(schema.TRANSACTIONS_FILE).select("t_dat", "reason").rows() == [
        ("2020-09-12", "future_date")
    ]


@pytest.mark.parametrize("stray", ["0001-01-01", "1899-12-31"])
def test_a_far_past_date_is_set_aside_as_past_date(tmp_path, stray):
    rows = [f"{stray},c2,0663713001,0.05,2", *_busy_days(date(2020, 9, 1), 14, 20)]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["quality"]["transactions.past_date"] == 1
    assert store.manifest["data_range"] == ["2020-09-01", "2020-09-14"]
    assert store.quarantine(schema.TRANSACTIONS_FILE).select("t_dat", "reason").rows() == [(stray, "past_date")]


def test_one_row_a_day_through_1970_is_set_aside_though_it_makes_the_median_day_small(tmp_path):
    old = [f"{date(1970, 1, 1) + timedelta(days=d)},c3,0541518023,0.03,1" for d in range(365)]
    rows = [*old, *_busy_days(date(2020, 9, 1), 14, 30)]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["quality"]["transactions.past_date"] == 365
    assert store.manifest["data_range"] == ["2020-09-01", "2020-09-14"]
    assert store.read("transactions").height == 14 * 30


def test_a_new_shops_slow_first_months_keep_every_row(tmp_path):
    """A shop opening on 2020-01-01: a sale every third day in January, then 2 a day, 5 a day, 20 a day."""
    ramp = [(date(2020, 1, 1), 31, 3, 1), (date(2020, 2, 1), 29, 1, 2), (date(2020, 3, 1), 31, 1, 5),
            (date(2020, 4, 1), 91, 1, 20)]
    rows = [f"{first + timedelta(days=d)},c{1 + i % 3},0663713001,0.05,2"
            for first, days, every, per_day in ramp for d in range(0, days, every) for i in range(per_day)]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["data_range"] == ["2020-01-01", "2020-06-30"]
    assert store.quarantine(schema.TRANSACTIONS_FILE).height == 0
    assert store.read("transactions").height == len(rows)


def test_a_year_long_gap_inside_busy_history_cuts_nothing_when_the_older_part_is_larger(tmp_path):
    rows = [*_busy_days(date(2018, 9, 1), 30, 20), *_busy_days(date(2020, 9, 1), 14, 20)]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert store.manifest["quality"]["transactions.past_date"] == 0
    assert store.manifest["data_range"] == ["2018-09-01", "2020-09-14"]


def test_customer_ids_are_trimmed_counted_and_bad_ones_set_aside_with_a_reason(tmp_path):
    customers = [" c1,1.0,1.0,ACTIVE,Regularly,49.0,p1", "c2 ,,,ACTIVE,None,23,p2", "c3,,,PRE-CREATE,NONE,,p3",
                 f"{'x' * 65},,,ACTIVE,NONE,,p4", "c\x01ctl,,,ACTIVE,NONE,,p5"]
    transactions = [*TRANSACTIONS, "2020-09-10,c3 ,0541518023,0.0300,2", f"2020-09-10,{'y' * 200},0541518023,0.03,2",
                    "2020-09-10, ,0541518023,0.03,2", "2020-09-10,new one ,0541518023,0.03,2"]
    store = built(tmp_path, write_raw(tmp_path / "raw", customers=customers, transactions=transactions))
    quality = store.manifest["quality"]
    assert quality["customers.customer_id_spaces_trimmed"] == 2 and quality["customers.bad_customer_id"] == 2
    assert quality["transactions.customer_id_spaces_trimmed"] == 2 and quality["transactions.bad_customer_id"] == 2
    assert store.read("customers")["customer_id"].to_list() == ["c1", "c2", "c3", "new one"]
    c3 = store.read("transactions").filter(pl.col("customer_idx") == 2)
    assert c3.height == 2  # 'c3 ' is c3
    bad = store.quarantine(schema.TRANSACTIONS_FILE)
    assert bad["reason"].to_list() == ["bad_customer_id", "bad_customer_id"] and bad["customer_id"][0] == "y" * 200
    assert store.quarantine(schema.CUSTOMERS_FILE)["reason"].to_list() == ["bad_customer_id", "bad_customer_id"]


def test_the_etl_and_the_api_share_one_customer_id_rule():
    from hmrec.serving.schemas import CUSTOMER_ID_PATTERN

    assert CUSTOMER_ID_PATTERN == schema.CUSTOMER_ID_PATTERN
    ok, bad = ["a", "a b", "é中-1.x/y", "f" * 64], ["", " a", "a ", "a\tb", "a\x7fb", "a\x85", "f" * 65]
    assert pl.Series(ok).str.contains(schema.CUSTOMER_ID_PATTERN).all()
    assert not pl.Series(bad).str.contains(schema.CUSTOMER_ID_PATTERN).any()


def test_ten_thousand_ignored_columns_warn_ten_times_and_count_the_rest(tmp_path, caplog):
    extra = [f"x{i}" for i in range(10_000)]
    raw = write_raw(tmp_path / "raw")
    write_csv(raw / schema.CUSTOMERS_FILE, ",".join([CUSTOMER_HEADER, *extra]),
              [",".join([row, *["1"] * len(extra)]) for row in CUSTOMERS])
    with caplog.at_level(logging.WARNING, logger="hmrec.raw.read"):
        store = built(tmp_path, raw)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 11 and warnings[-1] == "customers.csv: and 9,990 more ignored columns (10,000 in all)"
    assert store.manifest["quality"]["customers.other_columns_ignored"] == 10_000
    assert len(store.manifest["normalisations"]) < 20


# --- header and store path: fatal -------------------------------------------------------------------------------


def test_duplicated_header_name_is_called_duplicated(tmp_path):
    raw = write_raw(tmp_path / "raw")
    write_csv(raw / schema.TRANSACTIONS_FILE, TRANSACTION_HEADER + ",price", [r + ",0.1" for r in TRANSACTIONS])
    message = fails(tmp_path, raw)
    assert message == ("transactions_train.csv: column 'price' is duplicated in the header (columns 4 and 6 of 6); "
                       "remove or rename one of them")


def test_examples_in_messages_are_escaped_and_cut(tmp_path):
    hostile = "\x1b[31m<script>" + "A" * 5000
    rows = [",".join([r.split(",")[0], r.split(",")[1], hostile, *r.split(",")[3:]]) for r in TRANSACTIONS]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: column article_id: 5 of 5 rows are not article ids")
    assert "\x1b" not in message and "AAAAAAAAAA" * 10 not in message and len(message) < 400


@pytest.mark.parametrize("kind", ["file", "foreign folder"])
def test_store_path_that_cannot_be_a_store_is_left_untouched(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("notes")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("notes")
    with pytest.raises(StorePathError, match=f"^--store {target} (is a file|exists and is not a feature store)"):
        build_store(write_raw(tmp_path / "raw"), target)
    assert (target if kind == "file" else target / "notes.txt").read_text() == "notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "target"]


def test_store_under_a_file_is_refused(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StorePathError, match="cannot create a folder beside it"):
        build_store(write_raw(tmp_path / "raw"), tmp_path / "plain" / "store")


def test_repaired_copies_never_reach_the_store(tmp_path):
    rows = [*TRANSACTIONS, '2020-09-02,"c2,0663713001,0.05,2']
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert not list(Path(store.path).rglob("*.csv")) and not (Path(store.path) / ".repaired").exists()
    assert Store(store.path).quarantine(schema.TRANSACTIONS_FILE).height == 1
    assert pl.read_parquet(Path(store.path) / "transactions.parquet").height == 5


def test_a_refused_rebuild_leaves_the_existing_store_byte_for_byte(tmp_path):
    store = built(tmp_path, write_raw(tmp_path / "good"))
    before = {p.relative_to(store.path): p.read_bytes() for p in Path(store.path).rglob("*") if p.is_file()}
    bad = write_raw(tmp_path / "bad")
    (bad / schema.CUSTOMERS_FILE).write_bytes((bad / schema.CUSTOMERS_FILE).read_text().encode("utf-16"))
    with pytest.raises(RawDataError, match="^customers.csv: the file is UTF-16"):
        build_store(bad, store.path)
    after = {p.relative_to(store.path): p.read_bytes() for p in Path(store.path).rglob("*") if p.is_file()}
    assert after == before
