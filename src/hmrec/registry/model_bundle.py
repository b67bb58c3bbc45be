"""The served model's format, one folder: its layout, `write_bundle`, and the readers every caller goes through.

    manifest.json        format, files -> sha256, store fingerprint, data end date, metrics (registry/checksums.py)
    articles.parquet     the store's articles table (row i has article_idx i)
    customers.parquet    the store's customers table (row i has customer_idx i)
    history.parquet      each customer's last HISTORY_PER_CUSTOMER purchases
    purchase_counts.parquet  each customer's purchases in the data and what they paid in all (customer_idx,
                         purchases, spent)
    repeats.parquet      every (customer, article) bought more than once in the data (customer_idx, article_idx,
                         purchases, last_day), so the shop's "bought N times" counts the whole history
    final/               the final recommender (`save_recommender`)
    cold_start/          the recommender for customers without purchases, the one evaluated under its own name
    answers/             optional: the precomputed answers of the active customers (`Answers`, numpy .npy files
                         read memory-mapped, so worker processes share the pages) and answers.json

Nothing else writes or reads this layout: the pipeline and the tests call `write_bundle` (and `hmrec precompute`
`copy_with_answers`); serving `read_bundle`; the pipeline's evaluation of the champion and the benchmarks
`read_manifest`, `load_final`, `bundle_paths` and `read_answers`.
A bundle of another `format` than FORMAT is refused with the command that rebuilds it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.recommenders.base import Recommender, load_recommender, save_recommender
from hmrec.registry.checksums import MANIFEST, MANIFEST_FORMAT, RESERVED_KEYS, write_manifest

log = logging.getLogger(__name__)

FORMAT = MANIFEST_FORMAT  # the manifest's `format`: 2 since the served model's readers went through this module
REBUILD = "hmrec pipeline --raw DIR --workdir WORKDIR --promote"
ARTICLES = "articles.parquet"
CUSTOMERS = "customers.parquet"
HISTORY = "history.parquet"
FINAL = "final"
COLD_START = "cold_start"
HISTORY_PER_CUSTOMER = 100  # purchases kept per customer in a served bundle
PURCHASE_COUNTS = "purchase_counts.parquet"  # customer_idx, purchases, spent: totals, as history keeps the latest
# Only pairs bought twice or more: a pair bought once counts 1 wherever the history shows it. Cost: four 4-byte
# columns, 16 bytes a repeated pair in memory. The tiny sample has 9,533 repeated pairs for 53,693 purchases (18%);
# at that ratio the full-size data (31.8M purchases) would hold ~5.7M, ~90 MB; the bound, every purchase a repeat
# of one other, is 15.9M pairs, 254 MB. Not measured at full size.
REPEATS = "repeats.parquet"
ANSWERS = "answers"  # the precomputed answers' folder: ANSWER_ARRAYS as .npy files and answers.json
ANSWER_ARRAYS = ("customer_idx", "items", "scores", "sources")
ANSWERS_META = "answers.json"


@dataclass(frozen=True)
class Answers:
    """Precomputed top-k answers of some customers, one row each, as the final recommender's `explain` gave them.

    `sources` is a bitmask per answer: bit j set when `source_names[j]` proposed it (reasons are worded from the
    sources at answer time). Rows are sorted by `customer_idx`; a row shorter than k is padded with PAD_ITEM (-1).
    """

    customer_idx: np.ndarray  # (n,) int32, sorted
    items: np.ndarray  # (n, k) int32
    scores: np.ndarray  # (n, k) float32
    sources: np.ndarray  # (n, k) uint32 bitmask over source_names
    source_names: tuple[str, ...]
    as_of: date  # the day the answers were computed for (the service's clock for customers without live events)
    selection: str  # which customers: "all", or "active: purchase in the last N days"

    @property
    def k(self) -> int:
        return int(self.items.shape[1])


class BundleError(Exception):
    """A bundle folder that cannot be served; the message names the file and what is wrong."""


def write_bundle(directory: Path, *, articles: pl.DataFrame, customers: pl.DataFrame,
                 transactions: pl.DataFrame | pl.LazyFrame,
                 final: Recommender, cold_start: Recommender, data_end: date, store_fingerprint: str,
                 extra: dict | None = None, history_per_customer: int | None = HISTORY_PER_CUSTOMER,
                 answers: Callable[[BundlePaths], Answers | None] | None = None) -> Path:
    """Everything serving needs, in one new folder, the manifest written last (see the module docstring).

    `answers`, when given, is called with the parts written so far (final/, the tables, the data's last day) and
    its precomputed answers are written before the manifest, so they are checksummed with the rest."""
    directory = Path(directory)
    directory.mkdir(parents=True)
    articles.write_parquet(directory / ARTICLES)
    customers.write_parquet(directory / CUSTOMERS)
    latest_purchases(transactions, history_per_customer).write_parquet(directory / HISTORY)
    # true totals for the shop's customer summary, since the history above keeps only the latest purchases
    (transactions.lazy().group_by("customer_idx").agg(pl.len().cast(pl.Int64).alias("purchases"),
                                                      pl.col("price").cast(pl.Float64).sum().alias("spent"))
     .sort("customer_idx").collect().write_parquet(directory / PURCHASE_COUNTS))
    (transactions.lazy().group_by("customer_idx", "article_idx")
     .agg(pl.len().cast(pl.Int32).alias("purchases"), pl.col("t_dat").max().alias("last_day"))
     .filter(pl.col("purchases") >= 2).sort("customer_idx", "article_idx").collect()
     .write_parquet(directory / REPEATS))
    save_recommender(final, directory / FINAL)
    save_recommender(cold_start, directory / COLD_START)
    computed = answers(BundlePaths(directory, {"data_end": data_end.isoformat()})) if answers else None
    if computed is not None:
        write_answers(directory, computed)
    write_manifest(directory, store_fingerprint=store_fingerprint,
                   extra={**(extra or {}), "data_end": data_end.isoformat(), "final": final.name,
                          "cold_start": cold_start.name})
    return directory


def latest_purchases(transactions: pl.DataFrame | pl.LazyFrame, per_customer: int | None) -> pl.DataFrame:
    """Each customer's last `per_customer` purchases (None: all), by customer and day, a day's purchases in the
    given order. The sort is stable: an unstable one kept other purchases of a day that the tail cuts, so two
    bundles of one store held other histories and served other answers (111,586 of 722,289 at full size)."""
    history = transactions.lazy().sort(["customer_idx", "t_dat"], maintain_order=True)
    if per_customer is not None:
        history = history.group_by("customer_idx", maintain_order=True).tail(per_customer)
    return history.collect()


@dataclass(frozen=True)
class BundlePaths:
    """Where each part of a bundle lies, for readers that stream a part themselves (the batch scorer)."""

    root: Path
    manifest: dict

    @property
    def final(self) -> Path:
        return self.root / FINAL

    @property
    def customers(self) -> Path:
        return self.root / CUSTOMERS

    @property
    def history(self) -> Path:
        return self.root / HISTORY

    @property
    def articles(self) -> Path:
        return self.root / ARTICLES

    @property
    def data_end(self) -> date:
        return date.fromisoformat(self.manifest["data_end"])


@dataclass
class Bundle:
    """A bundle's contents, read and checked: the tables, both recommenders and the data's last day."""

    path: Path
    manifest: dict
    articles: pl.DataFrame
    customers: pl.DataFrame
    history: pl.DataFrame
    purchase_counts: pl.DataFrame | None  # customer_idx, purchases, spent (None: a bundle without it)
    repeats: pl.DataFrame | None  # REPEATS, sorted by customer_idx (None: a bundle without it)
    final: Recommender
    cold_start: Recommender
    data_end: date
    answers: Answers | None = None  # the precomputed answers, memory-mapped (None: a bundle without them)


def copy_with_answers(source: Path, directory: Path, answers: Callable[[BundlePaths], Answers | None],
                      extra: dict | None = None) -> Path:
    """A new bundle in `directory`: `source`'s parts (its answers left out) and the answers computed from them, its
    manifest's keys and `extra` in a new manifest, written last (registry versions never change: `hmrec precompute`
    registers the copy as a new version)."""
    old = read_manifest(source)
    shutil.copytree(source, directory, ignore=lambda folder, names: [n for n in names if Path(folder) == Path(source)
                                                                   and n in (MANIFEST, ANSWERS)])
    paths = BundlePaths(Path(directory), old)
    computed = answers(paths)
    if computed is not None:
        write_answers(directory, computed)
    kept = {key: value for key, value in old.items() if key not in RESERVED_KEYS}
    write_manifest(directory, store_fingerprint=old["store_fingerprint"], extra={**kept, **(extra or {})})
    return Path(directory)


def write_answers(directory: Path, answers: Answers) -> None:
    """The answers/ folder of a bundle being written (before its manifest: the files are checksummed)."""
    folder = Path(directory) / ANSWERS
    folder.mkdir()
    order = np.argsort(answers.customer_idx, kind="stable")
    arrays = {"customer_idx": answers.customer_idx.astype(np.int32), "items": answers.items.astype(np.int32),
              "scores": answers.scores.astype(np.float32), "sources": answers.sources.astype(np.uint32)}
    for name in ANSWER_ARRAYS:
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arrays[name][order]))
    (folder / ANSWERS_META).write_text(json.dumps({"source_names": list(answers.source_names),
                                                   "as_of": answers.as_of.isoformat(), "k": answers.k,
                                                   "customers": len(order), "selection": answers.selection}))


def read_answers(directory: Path) -> Answers | None:
    """The bundle's precomputed answers, memory-mapped read-only (the OS shares the pages between the worker
    processes); None when the bundle has none."""
    folder = Path(directory) / ANSWERS
    if not folder.is_dir():
        return None
    missing = [f"{name}.npy" for name in ANSWER_ARRAYS if not (folder / f"{name}.npy").is_file()]
    if missing or not (folder / ANSWERS_META).is_file():
        raise BundleError(f"{folder} lacks {', '.join(missing or [ANSWERS_META])}: re-run `hmrec precompute` or "
                          "`hmrec pipeline` to write a complete one")
    meta = json.loads((folder / ANSWERS_META).read_text())
    # plain ndarray views of the maps (the pages stay mapped and shared): indexing a np.memmap builds a memmap
    # object per row, a cost paid in every answer looked up
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r").view(np.ndarray) for name in ANSWER_ARRAYS}
    n, k = len(arrays["customer_idx"]), int(meta["k"])
    odd = [name for name in ANSWER_ARRAYS[1:] if arrays[name].shape != (n, k)]
    if odd:
        raise BundleError(f"{folder}/{odd[0]}.npy has shape {arrays[odd[0]].shape}, expected {(n, k)}")
    return Answers(arrays["customer_idx"], arrays["items"], arrays["scores"], arrays["sources"],
                   tuple(meta["source_names"]), date.fromisoformat(meta["as_of"]), meta.get("selection", ""))


def read_manifest(directory: Path) -> dict:
    """The bundle's manifest; BundleError when it is missing or of another format than FORMAT."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} is missing: {directory} is not a model bundle")
    manifest = json.loads(path.read_text())
    found = manifest.get("format")
    if found != FORMAT:
        raise BundleError(f"{path} is a bundle of format {found}, this release reads format {FORMAT}: rebuild it "
                          f"with `{REBUILD}`")
    return manifest


def bundle_paths(directory: Path) -> BundlePaths:
    """The parts' paths of a bundle of this release's format (see read_manifest)."""
    return BundlePaths(Path(directory), read_manifest(directory))


def load_final(directory: Path) -> Recommender:
    """The bundle's final recommender (the format checked first)."""
    read_manifest(directory)
    _require(Path(directory), FINAL)
    return load_recommender(Path(directory) / FINAL)


def read_bundle(directory: Path) -> Bundle:
    """Read a verified bundle folder (see the module docstring) into memory, every part checked."""
    path = Path(directory)
    manifest = read_manifest(path)
    articles = _read_table(path, ARTICLES, ("article_idx", "article_id"))
    customers = _read_table(path, CUSTOMERS, ("customer_idx", "customer_id"))
    history = _read_table(path, HISTORY, ("customer_idx", "t_dat", "article_idx", "price"))
    data_end = _data_end(manifest, history, path)
    _require(path, FINAL, COLD_START)
    counts = pl.read_parquet(path / PURCHASE_COUNTS) if (path / PURCHASE_COUNTS).is_file() else None
    repeats = pl.read_parquet(path / REPEATS) if (path / REPEATS).is_file() else None
    return Bundle(path, manifest, articles, customers, history, counts, repeats, load_recommender(path / FINAL),
                  load_recommender(path / COLD_START), data_end, read_answers(path))


def _require(path: Path, *folders: str) -> None:
    for folder in folders:
        if not (path / folder).is_dir():
            raise BundleError(f"{path / folder} is missing from the bundle: re-run `hmrec pipeline` to write a "
                              "complete one")


def _read_table(path: Path, name: str, needed: tuple[str, ...]) -> pl.DataFrame:
    table_path = path / name
    if not table_path.is_file():
        raise BundleError(f"{table_path} is missing from the bundle")
    table = pl.read_parquet(table_path)
    missing = [column for column in needed if column not in table.columns]
    if missing:
        raise BundleError(f"{table_path} lacks column(s) {', '.join(missing)}; it has {', '.join(table.columns)}")
    return table


def _data_end(manifest: dict, history: pl.DataFrame, path: Path) -> date:
    if manifest.get("data_end"):
        return date.fromisoformat(manifest["data_end"])
    if history.height:
        log.warning("%s/%s has no data_end; using the history's last day", path, MANIFEST)
        return history["t_dat"].max()
    raise BundleError(f"{path}/{MANIFEST} has no data_end and {HISTORY} is empty")
