"""Reading and validating the raw files: one test per bad input, fatal ones leave no store behind."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from raw_helpers import (
    ARTICLE_HEADER,
    ARTICLES,
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
from hmrec.store.build import build_store
from hmrec.store.indexing import index_whole
from hmrec.store.tables import ARTICLES_SCHEMA, Store

# --- fatal problems ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    raw = write_raw(tmp_path / "raw")
    (raw / schema.ARTICLES_FILE).unlink()
    message = fails(tmp_path, raw)
    assert message.startswith("articles.csv: file is missing")


def test_missing_required_column(tmp_path):
    raw = write_raw(tmp_path / "raw")
    header = TRANSACTION_HEADER.replace(",price", "")
    write_csv(raw / schema.TRANSACTIONS_FILE, header, [",".join(r.split(",")[:3] + r.split(",")[4:]) for r in TRANSACTIONS])
    message = fails(tmp_path, raw)
    assert message.startswith("transactions_train.csv: required column 'price' is missing")
    assert "found 4 columns, e.g. 't_dat', 'customer_id'" in message


def test_unparseable_date_column(tmp_path):
    rows = [r.replace("2020-09-01", "01/09/2020").replace("2020-09-03", "03/09/2020") for r in TRANSACTIONS]
    rows = [r.replace("2020-09-08", "08/09/2020").replace("2020-09-10", "10/09/2020") for r in rows]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: column t_dat: 5 of 5 rows are not dates written YYYY-MM-DD")
    assert "(e.g. '01/09/2020', '01/09/2020')" in message


def test_unparseable_key_column(tmp_path):
    rows = [r.replace(",0", ",A") for r in TRANSACTIONS]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: column article_id: 5 of 5 rows are not article ids written as digits")
    assert "(e.g. 'A663713001', 'A663713001')" in message


def test_non_numeric_price_column(tmp_path):
    rows = [",".join([*r.split(",")[:3], "cheap", r.split(",")[4]]) for r in TRANSACTIONS]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: column price: 5 of 5 rows are not numbers (e.g. 'cheap', 'cheap')")


def test_row_with_more_fields_than_the_header(tmp_path):
    rows = [*TRANSACTIONS[:2], TRANSACTIONS[2] + ",stray,fields", *TRANSACTIONS[3:]]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: 1 row(s) have more fields than the header's 5")
    assert "line 4: " in message and "stray,fields" in message


def test_empty_table(tmp_path):
    message = fails(tmp_path, write_raw(tmp_path / "raw", articles=[]))
    assert message == "articles.csv: the table is empty (a header line and 0 data rows)"


def test_table_emptied_by_cleaning(tmp_path):
    rows = ["2020-09-01,c1,0999999001,0.05,2", "2020-09-02,c1,0999999002,0.05,2"]
    message = fails(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    assert message.startswith("transactions_train.csv: column reason: the table is empty after cleaning: all 2 rows")
    assert "unknown_article 2" in message and "'2020-09-01', '2020-09-02'" in message


def test_failed_rebuild_keeps_the_old_store(tmp_path):
    good = write_raw(tmp_path / "good")
    store = built(tmp_path, good)
    before = {p.name: p.read_bytes() for p in store.path.iterdir() if p.is_file()}
    bad = write_raw(tmp_path / "bad", customers=[])
    with pytest.raises(RawDataError, match="customers.csv: the table is empty"):
        build_store(bad, store.path)
    assert {p.name: p.read_bytes() for p in store.path.iterdir() if p.is_file()} == before


def test_successful_rebuild_replaces_the_store(tmp_path):
    store = built(tmp_path, write_raw(tmp_path / "a"))
    first = store.fingerprint
    build_store(write_raw(tmp_path / "b", transactions=TRANSACTIONS[:4]), store.path)
    assert Store(store.path).fingerprint != first
    assert Store(store.path).manifest["rows"]["transactions"] == 4


# --- file format -------------------------------------------------------------------------------------------


def test_bom_crlf_and_quoted_commas(tmp_path):
    articles = [*ARTICLES[:2], article("0541518023", 541518, 2, desc="Top in jersey, with a sheen, loose fit")]
    store = built(tmp_path, write_raw(tmp_path / "raw", articles=articles, newline="\r\n", bom=True))
    customers = store.read("customers")
    assert customers["customer_id"].to_list()[:3] == ["c1", "c2", "c3"]
    assert customers["postal_code"].to_list()[:3] == ["p1", "p2", "p3"]  # no stray \r
    descs = store.read("articles").filter(pl.col("article_id") == 541518023)["detail_desc"].to_list()
    assert descs == ["Top in jersey, with a sheen, loose fit"]
    assert store.read("transactions")["sales_channel_id"].to_list() == [2, 2, 1, 2, 2]
    assert sum(store.manifest["quality"].values()) == 1 + 1  # only the '49.0' age and the 'None' spelling


def test_cr_only_line_endings_are_read(tmp_path):
    rows = [f"2020-09-{1 + i % 10:02d},c{1 + i % 3},0663713001,0.05,2" for i in range(2_000)]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows, newline="\r"))
    assert store.manifest["rows"]["transactions"] == 2_000 and store.read("customers").height == 3
    assert store.read("customers")["postal_code"].to_list() == ["p1", "p2", "p3"]
    assert "transactions_train.csv: lines ending with CR alone read as line breaks" in store.manifest["normalisations"]
    raw_bytes = (tmp_path / "raw" / schema.TRANSACTIONS_FILE).read_bytes()  # the manifest describes the file as given
    assert store.manifest["sources"][schema.TRANSACTIONS_FILE] == {
        "bytes": len(raw_bytes), "sha256": hashlib.sha256(raw_bytes).hexdigest()}


def test_a_file_appended_to_during_the_etl_gives_a_manifest_of_what_was_stored(tmp_path):
    raw = write_raw(tmp_path / "raw")
    path = raw / schema.TRANSACTIONS_FILE
    before = path.read_bytes()

    def appending_indexer(raw_file, known_ids, articles):  # another process appends after the file was checked
        with path.open("ab") as handle:
            handle.write(b"2020-09-10,c2,0663713001,0.0508,2\n" * 1_000)
        return index_whole(raw_file, known_ids, articles)

    build_store(raw, tmp_path / "store", indexer=appending_indexer)
    store = Store(tmp_path / "store")
    assert path.stat().st_size > len(before)
    assert store.manifest["sources"][schema.TRANSACTIONS_FILE] == {
        "bytes": len(before), "sha256": hashlib.sha256(before).hexdigest()}
    assert store.manifest["rows"]["transactions"] == len(TRANSACTIONS)


def test_file_ending_mid_line(tmp_path):
    rows = [*TRANSACTIONS, "2020-09-11,c2,06637"]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows, final_newline=False))
    assert store.manifest["rows"]["transactions"] == 5
    assert store.manifest["quality"]["transactions.truncated_line"] == 1
    quarantined = store.quarantine(schema.TRANSACTIONS_FILE)
    assert quarantined.select("line", "t_dat", "article_id", "reason").rows() == [
        (7, "2020-09-11", "06637", "truncated_line")
    ]
    assert any(n.startswith("transactions_train.csv: the file ends mid-line") for n in store.manifest["normalisations"])


def test_complete_last_line_without_newline_is_kept(tmp_path):
    store = built(tmp_path, write_raw(tmp_path / "raw", final_newline=False))
    assert store.manifest["rows"]["transactions"] == 5
    assert store.manifest["quality"]["transactions.truncated_line"] == 0


def test_stray_index_column_is_ignored(tmp_path):
    raw = write_raw(tmp_path / "raw")
    write_csv(raw / schema.ARTICLES_FILE, "," + ARTICLE_HEADER, [f"{i},{row}" for i, row in enumerate(ARTICLES)])
    store = built(tmp_path, raw)
    assert store.read("articles").schema == ARTICLES_SCHEMA
    assert store.read("articles")["article_id"].to_list() == [541518023, 663713001, 663713002]
    assert store.manifest["quality"]["articles.index_column_ignored"] == 1
    assert "articles.csv: ignored an unnamed leading index column (header '')" in store.manifest["normalisations"]


# --- rows set aside, kept or normalised -------------------------------------------------------------------------


def test_bad_rows_are_quarantined_with_reasons(tmp_path):
    transactions = [
        *TRANSACTIONS,
        "2020-09-02,,0663713001,0.05,2",  # null key
        "2020-09-02,c1,0663713001,-0.05,2",  # negative price
        "2020-09-02,c1,0663713001,0.05,3",  # unknown channel
        "2020-09-02,c1,0999999001,0.05,1",  # unknown article
        "2020-09-31,c1,0663713001,0.05,1",  # one unparseable date: a bad row, not a bad file
    ]
    articles = [*ARTICLES, article("0663713001", 663713, desc="duplicate")]
    customers = [*CUSTOMERS, "c1,,,ACTIVE,NONE,30,p9", ",,,ACTIVE,NONE,30,p9"]
    store = built(tmp_path, write_raw(tmp_path / "raw", customers=customers, articles=articles,
                                      transactions=transactions))
    quality = store.manifest["quality"]
    assert store.manifest["rows"]["transactions"] == 5
    expected = {"null_customer_id": 1, "negative_price": 1, "unknown_channel": 1, "unknown_article": 1,
                "bad_t_dat": 1}
    assert {k.split(".", 1)[1]: v for k, v in quality.items() if k.startswith("transactions.") and v} == expected
    tx = store.quarantine(schema.TRANSACTIONS_FILE)
    assert tx.select("line", "customer_id", "price", "reason").rows() == [
        (7, None, "0.05", "null_customer_id"), (8, "c1", "-0.05", "negative_price"),
        (9, "c1", "0.05", "unknown_channel"), (10, "c1", "0.05", "unknown_article"),
        (11, "c1", "0.05", "bad_t_dat"),
    ]
    assert store.quarantine(schema.ARTICLES_FILE).select("line", "detail_desc", "reason").rows() == [
        (5, "duplicate", "duplicate_article_id")
    ]
    assert store.quarantine(schema.CUSTOMERS_FILE).select("line", "reason").rows() == [
        (5, "duplicate_customer_id"), (6, "null_customer_id")
    ]
    assert quality["articles.duplicate_article_id"] == 1
    assert quality["customers.duplicate_customer_id"] == 1 and quality["customers.null_customer_id"] == 1


def test_identical_transactions_are_both_kept(tmp_path):
    store = built(tmp_path, write_raw(tmp_path / "raw"))
    first_day = store.read("transactions").filter(pl.col("t_dat") == pl.date(2020, 9, 1))
    assert first_day.height == 2 and first_day.n_unique() == 1


def test_unknown_customers_are_kept_with_known_false(tmp_path):
    rows = [*TRANSACTIONS, "2020-09-09,zz,0663713001,0.05,2", "2020-09-09,yy,0663713001,0.05,2",
            "2020-09-10,zz,0663713002,0.05,2"]
    store = built(tmp_path, write_raw(tmp_path / "raw", transactions=rows))
    customers = store.read("customers")
    assert customers.select("customer_idx", "customer_id", "known").rows() == [
        (0, "c1", True), (1, "c2", True), (2, "c3", True), (3, "yy", False), (4, "zz", False)
    ]
    assert customers.filter(~pl.col("known")).select("FN", "Active", "age", "club_member_status").null_count().row(0) == (2, 2, 2, 2)
    tx = store.read("transactions")
    assert tx.height == 8
    assert tx.filter(pl.col("customer_idx") == 4).height == 2
    assert store.manifest["quality"]["transactions.unknown_customer_rows"] == 3
    assert store.manifest["quality"]["customers.unknown_added"] == 2


def test_article_id_with_and_without_leading_zero_is_one_article(tmp_path):
    rows = ["2020-09-01,c1,0663713001,0.05,2", "2020-09-02,c2,663713001,0.05,2"]
    articles = [article("663713001", 663713), article("0541518023", 541518)]
    store = built(tmp_path, write_raw(tmp_path / "raw", articles=articles, transactions=rows))
    assert store.read("articles")["article_id"].to_list() == [541518023, 663713001]
    assert store.read("transactions")["article_idx"].to_list() == [1, 1]
    quality = store.manifest["quality"]
    assert quality["articles.id_without_leading_zero"] == 1
    assert quality["transactions.id_without_leading_zero"] == 1


def test_profile_values_are_normalised(tmp_path):
    store = built(tmp_path, write_raw(tmp_path / "raw"))
    customers = store.read("customers")
    assert customers.select("FN", "Active", "age", "fashion_news_frequency").rows() == [
        (1, 1, 49, "Regularly"), (0, 0, 23, "NONE"), (0, 0, None, "NONE")
    ]
    assert store.manifest["quality"]["customers.news_none_normalised"] == 1
    assert store.manifest["quality"]["customers.age_decimal"] == 1


def test_manifest_quality_keys_never_change(tmp_path):
    clean = built(tmp_path / "a", write_raw(tmp_path / "a" / "raw"))
    rows = [*TRANSACTIONS, "2020-09-09,zz,0663713001,0.05,3"]
    messy = built(tmp_path / "b", write_raw(tmp_path / "b" / "raw", transactions=rows))
    assert list(clean.manifest["quality"]) == list(messy.manifest["quality"])
    assert messy.manifest["quality"]["transactions.unknown_channel"] == 1
    assert json.loads((clean.path / "manifest.json").read_text())["quality"]["transactions.unknown_channel"] == 0
