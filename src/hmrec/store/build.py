"""`hmrec etl`: the raw CSV files -> a validated, indexed Parquet feature store, built aside and swapped in whole."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path

import polars as pl

from hmrec.raw import schema
from hmrec.raw.clean import clean_articles, clean_customers
from hmrec.raw.read import RawDataError, checked_bytes, open_raw, parse_errors
from hmrec.store import tables
from hmrec.store.features import item_features, user_features
from hmrec.store.indexing import Indexer, index_whole
from hmrec.store.manifest import build_manifest, write_manifest
from hmrec.store.split import assert_no_leakage, time_split
from hmrec.workdir import disk_full_reason, exclusive, store_lock_path

log = logging.getLogger(__name__)


class StorePathError(RawDataError):
    """--store names something that cannot become a store (a file, a folder holding other data, no access)."""


def build_store(raw_dir: str | Path, store_dir: str | Path, test_days: int = 7, indexer: Indexer | None = None,
                features: Featurer | None = None, partitions: int | None = None) -> dict:
    """Validate and clean the three raw files and write the store; return its manifest.

    The store is built in a temporary folder beside `store_dir` and renamed into place at the end, so a
    failed build (RawDataError and anything else) leaves nothing new there and an older store untouched.
    `indexer` checks and indexes the transactions file and `features` computes the features as of the cutoff
    (default: in this process; hmrec.scale passes Ray's). With `partitions`, the transactions are written as
    that many files by customer (tables.write_partitioned), as the Ray engine's workers read them.
    """
    raw_dir, store_dir = Path(raw_dir), Path(store_dir)
    _refuse_foreign_folder(store_dir)
    with store_writer(store_dir):
        remove_leftovers(store_dir)
        return _build_aside(raw_dir, store_dir, test_days, indexer, features, partitions)


@contextmanager
def store_writer(store_dir: str | Path, wait: bool = False) -> Iterator[None]:
    """Hold `<store>.lock` (hmrec.workdir.exclusive: another holder raises LockedError, or is waited for); a
    folder where the lock cannot be made is a StorePathError."""
    store_dir = Path(store_dir)
    with ExitStack() as held:
        with _beside(store_dir):
            store_dir.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(exclusive(store_lock_path(store_dir), wait=wait))
        yield


@contextmanager
def _beside(store_dir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise StorePathError(f"--store {store_dir}: cannot create a folder beside it ({error.strerror or error}); "
                             f"choose a writable path") from None


def remove_leftovers(store_dir: Path) -> list[Path]:
    """Delete the build and swap folders a killed build left beside the store (call it holding the store's lock)."""
    found = sorted(p for pattern in (f".{store_dir.name}.building-*", f".{store_dir.name}.old-*")
                   for p in store_dir.parent.glob(pattern))
    for path in found:
        log.warning("removing %s, left by a store build that was killed", path)
        shutil.rmtree(path, ignore_errors=True)
    return found


def _build_aside(raw_dir: Path, store_dir: Path, test_days: int, indexer: Indexer | None, features: Featurer | None,
                 partitions: int | None) -> dict:
    with _beside(store_dir):
        building = Path(tempfile.mkdtemp(prefix=f".{store_dir.name}.building-", dir=store_dir.parent))
    try:
        with _disk_full(store_dir):
            manifest = _build_into(raw_dir, building, test_days, indexer or index_whole, features or local_features,
                                   partitions)
            _swap_in(building, store_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone already after a successful swap
    log.info("built %s in %.1f s", store_dir, manifest["build_seconds"])
    return manifest


@contextmanager
def _disk_full(store_dir: Path) -> Iterator[None]:
    """A write that found the disk full (or a file size or quota limit) -> StorePathError of one line."""
    try:
        yield
    except (OSError, pl.exceptions.PolarsError) as error:
        reason = disk_full_reason(error, store_dir)
        if reason is None:
            raise
        raise StorePathError(f"--store {store_dir}: the disk filled up while the store was written ({reason}); "
                             f"free space beside {store_dir} and run again (nothing was replaced)") from None


def _refuse_foreign_folder(store_dir: Path) -> None:
    """Never replace a non-empty folder that is not a store (a mistyped --store must not delete data)."""
    if store_dir.exists() and not store_dir.is_dir():
        raise StorePathError(f"--store {store_dir} is a file, not a folder; choose an empty or new folder")
    if store_dir.exists() and any(store_dir.iterdir()) and not (store_dir / tables.MANIFEST).is_file():
        raise StorePathError(
            f"--store {store_dir} exists and is not a feature store (no {tables.MANIFEST}); "
            f"choose an empty or new folder"
        )


def _swap_in(building: Path, store_dir: Path) -> None:
    old = store_dir.parent / f".{store_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if store_dir.exists():
        store_dir.rename(old)
    building.rename(store_dir)
    shutil.rmtree(old, ignore_errors=True)


def _build_into(raw_dir: Path, out: Path, test_days: int, indexer: Indexer, features: Featurer,
                partitions: int | None) -> dict:
    start = time.perf_counter()
    tx_name = schema.TRANSACTIONS_FILE
    with ThreadPoolExecutor(max_workers=2) as pool:
        # the byte check (which also hashes the bytes it reads, for the manifest) releases the GIL and Polars does
        # too, so the big file's check runs beside the parsing of the two small files
        tx_bytes = pool.submit(checked_bytes, raw_dir / tx_name, tx_name)
        scratch = out / ".repaired"  # copies of files whose broken-quote rows were rewritten; gone before writing
        scratch.mkdir()
        raws = {spec.name: open_raw(raw_dir, spec, scratch) for spec in (schema.CUSTOMERS, schema.ARTICLES)}
        with parse_errors(raws[schema.CUSTOMERS_FILE]):
            customers = clean_customers(raws[schema.CUSTOMERS_FILE])
        with parse_errors(raws[schema.ARTICLES_FILE]):
            articles = clean_articles(raws[schema.ARTICLES_FILE])
        article_table = _article_table(articles.frame)
        raws[tx_name] = open_raw(raw_dir, schema.TRANSACTIONS, scratch, tx_bytes.result())
        log.info("indexing %s", schema.TRANSACTIONS_FILE)
        with parse_errors(raws[schema.TRANSACTIONS_FILE]):
            tx = indexer(raws[schema.TRANSACTIONS_FILE], customers.frame["customer_id"], article_table)
        customer_table = _customer_table(customers.frame, tx.new_customer_ids)
        source_info = {name: raws[name].source for name in schema.RAW_FILES}  # exactly the bytes read
    shutil.rmtree(scratch)
    split = time_split(tx.frame, test_days)
    train = tx.frame.filter(pl.col("t_dat") < split.cutoff)
    assert_no_leakage(train, split.cutoff)
    if train.is_empty():
        log.warning("no transactions before the cutoff %s: features are empty", split.cutoff)
    log.info("computing features as of %s", split.cutoff)
    users, items = features(train, article_table, split.cutoff)
    written = {
        tables.CUSTOMERS: customer_table,
        tables.ARTICLES: article_table,
        tables.TRANSACTIONS: tx.frame,
        tables.USER_FEATURES: users,
        tables.ITEM_FEATURES: items,
    }
    for name, frame in written.items():
        if name == tables.TRANSACTIONS and partitions:
            tables.write_partitioned(frame, out / name, partitions)
        else:
            frame.write_parquet(out / f"{name}.parquet", statistics=True)
    quarantines = {schema.CUSTOMERS_FILE: customers.quarantine, schema.ARTICLES_FILE: articles.quarantine,
                   schema.TRANSACTIONS_FILE: tx.quarantine}
    _write_quarantine(out, quarantines)
    manifest = build_manifest(
        tables=written, sources=source_info, split=split, test_days=test_days,
        quality={**customers.quality, **articles.quality, **tx.quality},
        normalisations=[*customers.notes, *articles.notes, *tx.notes],
        build_seconds=time.perf_counter() - start,
        partitions={tables.TRANSACTIONS: partitions} if partitions else {},
    )
    write_manifest(manifest, out / tables.MANIFEST)
    return manifest


def local_features(train: pl.DataFrame, articles: pl.DataFrame, cutoff: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """User and item features as of the cutoff, in this process."""
    return user_features(train, articles, cutoff), item_features(train, articles, cutoff)


Featurer = Callable[[pl.DataFrame, pl.DataFrame, date], tuple[pl.DataFrame, pl.DataFrame]]


def _write_quarantine(out: Path, quarantines: dict[str, pl.DataFrame]) -> None:
    folder = out / tables.QUARANTINE
    folder.mkdir()
    for file_name, frame in quarantines.items():
        frame.write_parquet(folder / f"{Path(file_name).stem}.parquet")


def _article_table(articles: pl.DataFrame) -> pl.DataFrame:
    """Articles sorted by article_id; row i has article_idx i."""
    table = articles.sort("article_id").with_row_index("article_idx")
    return table.select(list(tables.ARTICLES_SCHEMA)).cast(tables.ARTICLES_SCHEMA)


def _customer_table(known: pl.DataFrame, new_ids: pl.Series) -> pl.DataFrame:
    """customers.csv's customers in file order, then those seen only in transactions (sorted, null profile)."""
    unknown = pl.DataFrame({"customer_id": new_ids}).with_columns(pl.lit(False).alias("known"))
    table = pl.concat([known.with_columns(pl.lit(True).alias("known")), unknown], how="diagonal")
    table = table.with_row_index("customer_idx").with_columns(pl.col("customer_idx").cast(pl.Int32))
    return table.select(list(tables.CUSTOMERS_SCHEMA)).cast(tables.CUSTOMERS_SCHEMA)
