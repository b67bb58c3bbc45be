"""The built feature store: its contract (tables, dtypes, indices, manifest), the id map, the CLI and a real export."""

from __future__ import annotations

import hashlib
import resource
import subprocess
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from raw_helpers import TRANSACTIONS, write_raw
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.raw import schema
from hmrec.sample.generate import generate
from hmrec.store import tables
from hmrec.store.build import StorePathError, build_store
from hmrec.store.features import ITEM_FEATURE_COLUMNS, USER_FEATURE_COLUMNS
from hmrec.store.idmap import IdMap, UnknownIdError
from hmrec.store.tables import Store
from hmrec.support.launcher import HMREC, files_of_at_most

FIXTURE = Path(__file__).parent / "fixtures" / "hm-real-head10k"  # a copy of ../shared/fixtures


@pytest.fixture
def store(tmp_path) -> Store:
    rows = [*TRANSACTIONS, "2020-09-09,zz,0663713001,0.05,2"]
    build_store(write_raw(tmp_path / "raw", transactions=rows), tmp_path / "store", test_days=7)
    return Store(tmp_path / "store")


def test_tables_follow_the_contract(store):
    assert store.read(tables.TRANSACTIONS).schema == pl.Schema(tables.TRANSACTIONS_SCHEMA)
    assert store.read(tables.CUSTOMERS).schema == pl.Schema(tables.CUSTOMERS_SCHEMA)
    assert store.read(tables.ARTICLES).schema == pl.Schema(tables.ARTICLES_SCHEMA)
    assert store.read(tables.USER_FEATURES).columns == ["customer_idx", *USER_FEATURE_COLUMNS]
    assert store.read(tables.ITEM_FEATURES).columns == ["article_idx", *ITEM_FEATURE_COLUMNS]


def test_indices_are_row_numbers_and_transactions_sorted(store):
    customers, articles = store.read(tables.CUSTOMERS), store.read(tables.ARTICLES)
    assert customers["customer_idx"].to_list() == list(range(customers.height))
    assert articles["article_idx"].to_list() == list(range(articles.height))
    assert articles["article_id"].is_sorted()
    tx = store.read(tables.TRANSACTIONS)
    assert tx["t_dat"].is_sorted()
    assert tx.select("customer_idx", "article_idx").rows() == [(0, 1), (0, 1), (1, 0), (2, 2), (3, 1), (0, 0)]
    assert store.read(tables.ITEM_FEATURES)["article_idx"].to_list() == [0, 1, 2]


def test_manifest(store):
    m = store.manifest
    assert m["rows"] == {"customers": 4, "articles": 3, "transactions": 6, "user_features": 2, "item_features": 3}
    assert m["schemas"]["transactions"] == {"t_dat": "Date", "customer_idx": "Int32", "article_idx": "Int32",
                                            "price": "Float32", "sales_channel_id": "Int8"}
    raw = store.path.parent / "raw"
    for name in schema.RAW_FILES:
        data = (raw / name).read_bytes()
        assert m["sources"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert (m["cutoff"], m["test_window"], m["data_range"]) == (
        "2020-09-04", ["2020-09-04", "2020-09-10"], ["2020-09-01", "2020-09-10"])
    assert m["test_days"] == 7 and m["build_seconds"] >= 0 and m["created"].endswith("+00:00")
    assert all(isinstance(v, int) for v in m["quality"].values())
    assert store.fingerprint == m["fingerprint"] and len(store.fingerprint) == 64


def test_builds_are_deterministic_and_fingerprint_follows_the_split(tmp_path, store):
    again = tmp_path / "again"
    build_store(store.path.parent / "raw", again, test_days=7)
    for table in (tables.CUSTOMERS, tables.ARTICLES, tables.TRANSACTIONS, tables.USER_FEATURES, tables.ITEM_FEATURES):
        assert store.read(table).equals(Store(again).read(table)), table
    assert Store(again).fingerprint == store.fingerprint
    build_store(store.path.parent / "raw", again, test_days=3)
    assert Store(again).fingerprint != store.fingerprint


def test_user_features_are_as_of_the_cutoff(store):
    features = store.read(tables.USER_FEATURES)
    # c1 bought on 09-01 (twice) and 09-10; only the two purchases before the 09-04 cutoff count
    c1 = features.filter(pl.col("customer_idx") == 0).to_dicts()[0]
    assert (c1["purchases_all"], c1["days_since_last_purchase"]) == (2, 3)


def test_refuses_to_replace_a_folder_that_is_not_a_store(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(StorePathError, match="is not a feature store"):
        build_store(write_raw(tmp_path / "raw"), precious)
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_id_map(store):
    articles = IdMap.articles(store.read(tables.ARTICLES))
    assert articles.to_index(["0663713001", 663713001, "541518023"]).tolist() == [1, 1, 0]
    assert articles.to_index_or_missing(["0999999999", "not-an-id"]).tolist() == [-1, -1]
    assert articles.to_id(np.array([2, 0])).to_list() == [663713002, 541518023]
    assert articles.index("0663713002") == 2 and articles.get(5) is None
    customers = IdMap.customers(store.read(tables.CUSTOMERS))
    assert customers.to_index(pl.Series(["zz", "c1"])).tolist() == [3, 0]
    with pytest.raises(UnknownIdError, match=r"customer id 'nobody' is not in the id map \(1 of 2 ids unknown\); "
                                             r"was it in the training data\?"):
        customers.to_index(["c1", "nobody"])
    with pytest.raises(IndexError, match="customer index 4 is outside 0..3"):
        customers.to_id([4])


def test_id_map_refuses_duplicates():
    with pytest.raises(ValueError, match=r"article id map: 1 duplicate ids, e.g. \[5\]"):
        IdMap(pl.Series([5, 6, 5]), "article")


def test_cli_etl(tmp_path):
    runner = CliRunner()
    raw = write_raw(tmp_path / "raw")
    ok = runner.invoke(app, ["etl", "--raw", str(raw), "--store", str(tmp_path / "store")])
    assert ok.exit_code == 0, ok.output
    assert "transactions 5" in ok.output
    (raw / schema.CUSTOMERS_FILE).unlink()
    failed = runner.invoke(app, ["etl", "--raw", str(raw), "--store", str(tmp_path / "other")])
    assert failed.exit_code == 1
    assert "error: customers.csv: file is missing" in failed.output
    assert not (tmp_path / "other").exists()


def test_real_export_loads(tmp_path):
    m = build_store(FIXTURE, tmp_path / "store")
    store = Store(tmp_path / "store")
    assert m["rows"]["transactions"] == 10_000 and m["rows"]["articles"] == 4_903
    tx = store.read(tables.TRANSACTIONS)
    customers = store.read(tables.CUSTOMERS)
    buyers = customers.join(tx.select("customer_idx").unique(), on="customer_idx")
    assert buyers.height == 2_954
    known_share = buyers["known"].mean()
    assert 0.02 < known_share < 0.05
    assert customers.filter(pl.col("known")).height == 10_000
    q = m["quality"]
    assert q["customers.unknown_added"] == buyers.filter(~pl.col("known")).height
    assert q["transactions.unknown_customer_rows"] == tx.join(
        customers.filter(~pl.col("known")), on="customer_idx").height
    assert q["articles.index_column_ignored"] == 1
    assert q["articles.id_without_leading_zero"] == 4_903 and q["transactions.id_without_leading_zero"] == 10_000
    assert q["transactions.unknown_article"] == 0
    assert sum(v for k, v in q.items() if k.split(".")[1] in _SET_ASIDE) == 0
    notes = " | ".join(m["normalisations"])
    assert "unnamed leading index column" in notes and "without the leading zero" in notes
    assert "customers missing from customers.csv kept" in notes
    assert customers.filter(pl.col("customer_id") == "00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657")[
        "age"].to_list() == [49]
    article_map = IdMap.articles(store.read(tables.ARTICLES))
    assert article_map.to_index(["0663713001"]).tolist() == article_map.to_index([663713001]).tolist()


_SET_ASIDE = {"truncated_line", "null_customer_id", "null_article_id", "bad_article_id", "duplicate_article_id",
              "duplicate_customer_id", "bad_t_dat", "bad_price", "negative_price", "unknown_channel",
              "unbalanced_quote", "absurd_price", "non_finite_price", "future_date"}


def test_id_map_finds_one_id_by_binary_search():
    customers = IdMap(pl.Series(["c2", "a9", "b1"]), "customer")
    assert [customers.get(c) for c in ("a9", "b1", "c2", "zz", "")] == [1, 2, 0, None, None]
    articles = IdMap(pl.Series([700, 5, 42]), "article")
    assert [articles.get(a) for a in (5, "0000000042", np.int64(700), "x7", -1)] == [1, 2, 0, None, None]


def test_the_stored_user_features_are_the_ones_a_query_at_the_cutoff_computes(store):
    """user_features.parquet is what the evaluation's query reads instead of computing it again."""
    from hmrec.data import Query
    from hmrec.store.features import index_groups

    customers, train = store.read(tables.CUSTOMERS), store.train_transactions().collect()
    asked = np.arange(customers.height, dtype=np.int32)[::-1].copy()  # every customer, some with no purchase
    groups = index_groups(store.read(tables.ARTICLES))
    computed = Query.for_customers(asked, customers, train, store.cutoff).user_features(groups)
    stored = Query.for_customers(asked, customers, train, store.cutoff).use_user_features(
        store.read(tables.USER_FEATURES)).user_features(groups)
    assert computed.keys() == stored.keys()
    for name, values in computed.items():
        assert stored[name].dtype == values.dtype, name
        np.testing.assert_array_equal(stored[name], values, err_msg=name)


def test_the_stored_item_features_are_the_ones_the_cutoffs_article_table_computes(store):
    """item_features.parquet is what the ranker's article table and the two-tower's refresh read at the cutoff."""
    from dataclasses import replace

    from hmrec.pipeline import load_train_data
    from hmrec.ranking.features import article_table

    data = load_train_data(store)
    assert data.item_table is not None and data.item_features(data.cutoff) is data.item_table
    computed = replace(data, item_table=None)
    assert_frame_equal(article_table(data), article_table(computed))
    earlier = data.cutoff - timedelta(days=3)  # any other day is computed, never read from the cutoff's table
    assert_frame_equal(data.item_features(earlier), computed.item_features(earlier))
    assert data.item_features(earlier)["sales_all"].sum() < data.item_table["sales_all"].sum()


def test_a_store_written_in_customer_partitions_reads_back_as_the_one_file_store(store, tmp_path):
    """The Ray engine's layout (transactions/part-K.parquet by customer_idx % N) gives the same rows in the same
    order through Store, an empty partition included."""
    build_store(write_raw(tmp_path / "raw2", transactions=[*TRANSACTIONS, "2020-09-09,zz,0663713001,0.05,2"]),
                tmp_path / "parts", test_days=7, partitions=7)
    parts = Store(tmp_path / "parts")
    files = parts.partitions(tables.TRANSACTIONS)
    assert [f.name for f in files] == [f"part-{k:05d}.parquet" for k in range(7)]
    assert parts.manifest["partitions"] == {"transactions": 7} and store.manifest["partitions"] == {}
    sizes = [pl.read_parquet(f).height for f in files]
    assert 0 in sizes and sum(sizes) == store.read(tables.TRANSACTIONS).height
    for k, path in enumerate(files):
        assert (pl.read_parquet(path)["customer_idx"] % 7 == k).all()
    assert_frame_equal(parts.read(tables.TRANSACTIONS), store.read(tables.TRANSACTIONS))
    assert_frame_equal(parts.train_transactions().collect(), store.train_transactions().collect())
    assert parts.partitions(tables.ARTICLES) == [tmp_path / "parts" / "articles.parquet"]


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no RLIMIT_FSIZE on this system to fill a disk")
def test_a_disk_filling_up_while_the_store_is_written_is_one_line(tmp_path):
    generate("tiny", seed=3, out=tmp_path / "raw")
    result = subprocess.run([str(HMREC), "etl", "--raw", str(tmp_path / "raw"), "--store", str(tmp_path / "store")],
                            capture_output=True, text=True, timeout=600, preexec_fn=files_of_at_most(20_000))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"error: --store {tmp_path / 'store'}: the disk filled up while the store was written (File too "
                    f"large); free space beside {tmp_path / 'store'} and run again (nothing was replaced)")
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "store.lock"]
