"""The feature store's layout: table names, their columns and dtypes, and a reader for a built store.

A store is one folder written by `hmrec etl`:

    customers.parquet        customer_idx (row i has idx i) + profile; `known` is False for customers
                             seen only in transactions
    articles.parquet         article_idx (row i has idx i) + attributes; article_id as Int64
    transactions.parquet     t_dat, customer_idx, article_idx, price, sales_channel_id; sorted by t_dat
      or transactions/       the same rows partitioned by customer (the Ray engine's store, `partitions` in the
                             manifest): part-K.parquet holds the customers with customer_idx % N == K, so each
                             customer's whole history is in one file; `_row` keeps each row's place in the table
    user_features.parquet    customer_idx + features computed as of the cutoff
    item_features.parquet    article_idx + features computed as of the cutoff
    quarantine/<file>.parquet  rows set aside, with a `reason` column
    manifest.json            counts, schemas, source checksums, cutoff, test window, quality counts
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl

from hmrec.raw.schema import ARTICLE_CODE_COLUMNS, ARTICLE_COLUMNS

CUSTOMERS = "customers"
ARTICLES = "articles"
TRANSACTIONS = "transactions"
USER_FEATURES = "user_features"
ITEM_FEATURES = "item_features"
MANIFEST = "manifest.json"
QUARANTINE = "quarantine"  # folder of <raw file stem>.parquet: rows set aside, with a `reason` column
PARTITION_ROW = "_row"  # a partitioned table's rows carry their place in the table: read back, the order is the same

TRANSACTIONS_SCHEMA = {
    "t_dat": pl.Date,
    "customer_idx": pl.Int32,
    "article_idx": pl.Int32,
    "price": pl.Float32,
    "sales_channel_id": pl.Int8,
}

CUSTOMERS_SCHEMA = {
    "customer_idx": pl.Int32,
    "customer_id": pl.String,
    "FN": pl.Int8,
    "Active": pl.Int8,
    "club_member_status": pl.String,
    "fashion_news_frequency": pl.String,
    "age": pl.Int16,
    "postal_code": pl.String,
    "known": pl.Boolean,
}

ARTICLES_SCHEMA = {
    "article_idx": pl.Int32,
    "article_id": pl.Int64,
    "product_code": pl.Int32,
    # the *_no / *_code / *_id columns are Int32 (index_code is a letter); names and detail_desc are String
    **{c: pl.Int32 if c in ARTICLE_CODE_COLUMNS else pl.String for c in ARTICLE_COLUMNS[2:]},
}

# Age buckets shared by every stage (baselines, features, serving): lower bounds, inclusive.
AGE_BUCKET_EDGES = (16, 25, 35, 45, 55, 65)
AGE_BUCKET_LABELS = ("16-24", "25-34", "35-44", "45-54", "55-64", "65+")
UNKNOWN_AGE_BUCKET = -1


def age_bucket(age: pl.Expr) -> pl.Expr:
    """Age -> bucket number 0..5 (see AGE_BUCKET_LABELS); -1 where the age is missing."""
    bucket = pl.lit(0, dtype=pl.Int8)
    for number, edge in enumerate(AGE_BUCKET_EDGES[1:], start=1):
        bucket = pl.when(age >= edge).then(pl.lit(number, dtype=pl.Int8)).otherwise(bucket)
    return pl.when(age.is_null()).then(pl.lit(UNKNOWN_AGE_BUCKET, dtype=pl.Int8)).otherwise(bucket)


class Store:
    """A built feature store folder, read lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a feature store: {MANIFEST} is missing; build one with `hmrec etl`"
            )
        self.manifest = json.loads(manifest_path.read_text())

    def scan(self, table: str) -> pl.LazyFrame:
        return scan_table(self.table_path(table))

    def read(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()

    def table_path(self, table: str) -> Path:
        """`<table>.parquet`, or the folder of a table written in partitions."""
        folder = self.path / table
        return folder if folder.is_dir() else self.path / f"{table}.parquet"

    def partitions(self, table: str) -> list[Path]:
        """The files of `table`: one per customer partition (part-K holds customer_idx % N == K), else one."""
        return partition_files(self.table_path(table))

    @property
    def cutoff(self) -> date:
        """First day of the held-out window: every feature and every training row is strictly before it."""
        return date.fromisoformat(self.manifest["cutoff"])

    @property
    def test_end(self) -> date:
        """Last day of the held-out window (inclusive)."""
        return date.fromisoformat(self.manifest["test_window"][1])

    @property
    def fingerprint(self) -> str:
        """Identifies the data a model was trained on: the sources' checksums plus the cutoff."""
        return self.manifest["fingerprint"]

    def quarantine(self, raw_file: str) -> pl.DataFrame:
        """Rows of `raw_file` (e.g. "transactions_train.csv") set aside by the build, with their reason."""
        return pl.read_parquet(self.path / QUARANTINE / f"{Path(raw_file).stem}.parquet")

    def train_transactions(self) -> pl.LazyFrame:
        return self.scan(TRANSACTIONS).filter(pl.col("t_dat") < self.cutoff)

    def test_transactions(self) -> pl.LazyFrame:
        return self.scan(TRANSACTIONS).filter(pl.col("t_dat") >= self.cutoff)


def customer_partition(n: int) -> pl.Expr:
    """The partition (0..n-1) of each row: customer_idx modulo n, so a customer's rows all fall in one."""
    return (pl.col("customer_idx") % n).cast(pl.Int32)


def write_partitioned(frame: pl.DataFrame, folder: Path, n: int) -> None:
    """`frame` as folder/part-K.parquet for K in 0..n-1 by `customer_partition(n)` (an empty file where a partition
    has no row), each row with its place in `frame` so `scan_table` gives the rows back in the same order."""
    folder.mkdir()
    numbered = frame.with_row_index(PARTITION_ROW).with_columns(pl.col(PARTITION_ROW).cast(pl.Int64))
    parts = numbered.with_columns(customer_partition(n).alias("_part")).partition_by("_part", as_dict=True,
                                                                                       include_key=False)
    for k in range(n):
        part = parts.get((k,), numbered.clear())
        part.write_parquet(folder / f"part-{k:05d}.parquet", statistics=True)


def partition_files(path: Path) -> list[Path]:
    """A partitioned table's part-K files in K order, or [path] for a table in one file."""
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]


def scan_partitions(path: Path, partitions: list[int]) -> pl.LazyFrame:
    """The rows of some partitions of a partitioned table, in the table's order (`_row` dropped)."""
    files = partition_files(path)
    return pl.scan_parquet([files[k] for k in partitions]).sort(PARTITION_ROW).drop(PARTITION_ROW)


def scan_table(path: Path) -> pl.LazyFrame:
    """A table's rows from its .parquet file or from its partition folder (in the table's order, `_row` dropped)."""
    if path.is_dir():
        return scan_partitions(path, list(range(len(partition_files(path)))))
    return pl.scan_parquet(path)
