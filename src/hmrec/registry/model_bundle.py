"""The served model as one folder: its layout, `write_bundle` and `load_bundle`, and the lookups serving makes.

    manifest.json        files -> sha256, store fingerprint, data end date, metrics (registry/checksums.py)
    articles.parquet     the store's articles table (row i has article_idx i)
    customers.parquet    the store's customers table (row i has customer_idx i)
    history.parquet      each customer's last HISTORY_PER_CUSTOMER purchases
    purchase_counts.parquet  each customer's purchases in the data and what they paid in all (customer_idx,
                         purchases, spent)
    repeats.parquet      every (customer, article) bought more than once in the data (customer_idx, article_idx,
                         purchases, last_day), so the shop's "bought N times" counts the whole history
    final/               the final recommender (`save_recommender`)
    cold_start/          the recommender for customers without purchases, the one evaluated under its own name

Nothing else writes or reads this layout: the pipeline and the tests call `write_bundle`, serving `load_bundle`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.recommenders.base import Recommender, load_recommender, save_recommender
from hmrec.registry.checksums import MANIFEST, write_manifest
from hmrec.store.idmap import IdMap
from hmrec.store.tables import UNKNOWN_AGE_BUCKET, age_bucket

log = logging.getLogger(__name__)

ARTICLES = "articles.parquet"
CUSTOMERS = "customers.parquet"
HISTORY = "history.parquet"
FINAL = "final"
COLD_START = "cold_start"
HISTORY_PER_CUSTOMER = 100  # purchases kept per customer in a served bundle
PURCHASE_COUNTS = "purchase_counts.parquet"  # customer_idx, purchases: totals, as history.parquet keeps the latest
# Only pairs bought twice or more: a pair bought once counts 1 wherever the history shows it. Cost: four 4-byte
# columns, 16 bytes a repeated pair in memory. The tiny sample has 9,533 repeated pairs for 53,693 purchases (18%);
# at that ratio the full-size data (31.8M purchases) would hold ~5.7M, ~90 MB; the bound, every purchase a repeat
# of one other, is 15.9M pairs, 254 MB. Not measured at full size.
REPEATS = "repeats.parquet"
ARTICLE_TEXT_COLUMNS = ("prod_name", "product_type_name", "product_group_name", "colour_group_name",
                        "perceived_colour_master_name", "index_group_name", "department_name", "detail_desc")


class BundleError(Exception):
    """A bundle folder that cannot be served; the message names the file and what is wrong."""


def write_bundle(directory: Path, *, articles: pl.DataFrame, customers: pl.DataFrame,
                 transactions: pl.DataFrame | pl.LazyFrame,
                 final: Recommender, cold_start: Recommender, data_end: date, store_fingerprint: str,
                 extra: dict | None = None, history_per_customer: int | None = HISTORY_PER_CUSTOMER) -> Path:
    """Everything serving needs, in one new folder, the manifest written last (see the module docstring)."""
    directory = Path(directory)
    directory.mkdir(parents=True)
    articles.write_parquet(directory / ARTICLES)
    customers.write_parquet(directory / CUSTOMERS)
    history = transactions.lazy().sort(["customer_idx", "t_dat"])
    if history_per_customer is not None:
        history = history.group_by("customer_idx", maintain_order=True).tail(history_per_customer)
    history = history.collect()
    history.write_parquet(directory / HISTORY)
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
    write_manifest(directory, store_fingerprint=store_fingerprint,
                   extra={**(extra or {}), "data_end": data_end.isoformat(), "final": final.name,
                          "cold_start": cold_start.name})
    return directory


@dataclass
class Catalogue:
    """The articles table as column lists, the article id map, each article's typical recent price and sales."""

    ids: IdMap
    article_ids: np.ndarray  # (n_articles,) int64, row i is article_idx i
    product_codes: np.ndarray  # (n_articles,) int64
    product_types: np.ndarray  # (n_articles,) int64, -1 where missing
    text: dict[str, list[str | None]]
    prices: np.ndarray  # (n_articles,) float64, nan for articles never sold in the history
    sales: np.ndarray  # (n_articles,) purchases in the bundle history, for tie-free orderings

    @cached_property  # the catalogue never changes once loaded
    def median_price(self) -> float:
        """Price given to a live purchase of an article never sold in the data (0 if nothing ever sold)."""
        known = self.prices[~np.isnan(self.prices)]
        return round(float(np.median(known)), 6) if known.size else 0.0

    def __len__(self) -> int:
        return len(self.article_ids)

    def find(self, article_id: int) -> int | None:
        return self.ids.get(int(article_id))


@dataclass
class Histories:
    """Each known customer's purchases from the bundle, as flat arrays sliced by customer_idx."""

    starts: np.ndarray  # (n_customers + 1,) int64: customer i's rows are starts[i]:starts[i + 1]
    t_dat: np.ndarray  # days since 1970-01-01, int32
    article_idx: np.ndarray
    price: np.ndarray
    channel: np.ndarray

    def rows(self, customer_idx: int) -> slice:
        if customer_idx < 0 or customer_idx + 1 >= len(self.starts):
            return slice(0, 0)
        return slice(int(self.starts[customer_idx]), int(self.starts[customer_idx + 1]))


@dataclass
class LoadedModel:
    """One champion version, ready to answer; requests hold a reference, so a reload never disturbs them."""

    version: int | None
    path: Path
    manifest: dict
    recommender: Recommender
    cold_start: Recommender
    catalogue: Catalogue
    customers: pl.DataFrame  # the customers table with `age_bucket`
    customer_ids: IdMap
    histories: Histories
    data_end: date
    data_start: date | None = None  # the history's first day (None: empty history); live events may not precede it
    samples: dict[str, str] = field(default_factory=dict)
    cards: dict[int, dict] = field(default_factory=dict)  # article_idx -> the service's article card
    blank: pl.DataFrame | None = None  # see profile()
    purchase_totals: np.ndarray | None = None  # (n_customers,) all purchases in the data; None: the history's
    spent_totals: np.ndarray | None = None  # (n_customers,) what each paid in all in the data; None: unknown
    repeats: pl.DataFrame | None = None  # REPEATS, sorted by customer_idx; None: a bundle written before it

    def repeat_purchases(self, customer_idx: int | None) -> list[tuple[int, int, date]]:
        """(article_idx, times bought, last day) of every article the customer bought twice or more in the data."""
        if self.repeats is None or customer_idx is None:
            return []
        keys = self.repeats["customer_idx"].to_numpy()
        first, last = np.searchsorted(keys, customer_idx, "left"), np.searchsorted(keys, customer_idx, "right")
        rows = slice(int(first), int(last))
        return list(self.repeats[rows].select("article_idx", "purchases", "last_day").iter_rows())

    def spent_total(self, customer_idx: int) -> float | None:
        """What the customer paid in all in the model's data (None: a bundle without it)."""
        if self.spent_totals is not None and 0 <= customer_idx < len(self.spent_totals):
            return float(self.spent_totals[customer_idx])
        return None

    def purchase_total(self, customer_idx: int) -> int:
        """The customer's purchases in the model's data, though the bundle's history keeps only the latest."""
        if self.purchase_totals is not None and 0 <= customer_idx < len(self.purchase_totals):
            return int(self.purchase_totals[customer_idx])
        rows = self.histories.rows(customer_idx)
        return rows.stop - rows.start

    def find_customer(self, customer_id: str) -> int | None:
        return self.customer_ids.get(customer_id)

    @cached_property
    def reasons(self) -> dict:
        """Every answer source's reason, the recommender's over the cold start's (built once per loaded model)."""
        return {**self.cold_start.reasons(), **self.recommender.reasons()}

    def profile(self, customer_idx: int | None) -> pl.DataFrame:
        """One customer's profile row; for a customer the bundle does not know, a blank one (customer_idx -1,
        unknown age bucket), built once."""
        if customer_idx is not None:
            return self.customers.slice(customer_idx, 1)
        if self.blank is None:
            blank = pl.DataFrame({c: [None] for c in self.customers.columns}, schema=self.customers.schema)
            self.blank = blank.with_columns(pl.lit(-1, dtype=pl.Int32).alias("customer_idx"),
                                            pl.lit(UNKNOWN_AGE_BUCKET, dtype=pl.Int8).alias("age_bucket"))
        return self.blank


def load_bundle(path: Path, version: int | None) -> LoadedModel:
    """Read a verified bundle folder (see the module docstring) into memory."""
    path = Path(path)
    manifest = _read_manifest(path)
    articles = _read_table(path, ARTICLES, ("article_idx", "article_id"))
    customers = _read_table(path, CUSTOMERS, ("customer_idx", "customer_id"))
    history = _read_table(path, HISTORY, ("customer_idx", "t_dat", "article_idx", "price"))
    data_end = _data_end(manifest, history, path)
    _require(path, FINAL, COLD_START)
    model = LoadedModel(
        version=version if version is not None else manifest.get("version"),
        path=path,
        manifest=manifest,
        recommender=load_recommender(path / FINAL),
        cold_start=load_recommender(path / COLD_START),
        catalogue=_catalogue(articles, history),
        customers=customers.with_columns(age_bucket(pl.col("age")).alias("age_bucket")),
        customer_ids=IdMap.customers(customers),
        histories=_histories(history, customers.height),
        data_end=data_end,
        data_start=history["t_dat"].min() if history.height else None,
    )
    model.samples = _samples(model)
    model.purchase_totals, model.spent_totals = _purchase_totals(path, customers.height)
    if (path / REPEATS).is_file():
        model.repeats = pl.read_parquet(path / REPEATS)
    log.info("loaded bundle %s (version %s): %d articles, %d customers, %d history rows, data end %s",
             path, model.version, articles.height, customers.height, history.height, data_end)
    return model


def _read_manifest(path: Path) -> dict:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} is missing: {path} is not a model bundle")
    return json.loads(manifest_path.read_text())


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


def _purchase_totals(path: Path, n_customers: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each customer's purchase count and spending from PURCHASE_COUNTS (bundles written before it, or before its
    `spent` column, existed: None)."""
    table_path = path / PURCHASE_COUNTS
    if not table_path.is_file():
        return None, None
    counts = pl.read_parquet(table_path)
    totals = np.zeros(n_customers, dtype=np.int64)
    totals[counts["customer_idx"].to_numpy()] = counts["purchases"].to_numpy()
    if "spent" not in counts.columns:
        return totals, None
    spent = np.zeros(n_customers, dtype=np.float64)
    spent[counts["customer_idx"].to_numpy()] = counts["spent"].to_numpy()
    return totals, spent


def _catalogue(articles: pl.DataFrame, history: pl.DataFrame) -> Catalogue:
    n = articles.height
    recent = history.group_by("article_idx").agg(pl.col("price").median())
    prices = np.full(n, np.nan)
    prices[recent["article_idx"].to_numpy()] = recent["price"].to_numpy()
    ids = articles["article_id"].cast(pl.Int64).to_numpy()
    text = {c: articles[c].cast(pl.String).to_list() if c in articles.columns else [None] * n
            for c in ARTICLE_TEXT_COLUMNS}
    codes = articles["product_code"].cast(pl.Int64).fill_null(-1).to_numpy() if "product_code" in articles.columns \
        else ids // 1000
    types = articles["product_type_no"].cast(pl.Int64).fill_null(-1).to_numpy() \
        if "product_type_no" in articles.columns else np.full(n, -1)
    sales = np.bincount(history["article_idx"].to_numpy(), minlength=n)[:n]
    return Catalogue(IdMap.articles(articles), ids, codes, types, text, prices, sales)


def _histories(history: pl.DataFrame, n_customers: int) -> Histories:
    ordered = history.sort(["customer_idx", "t_dat"])
    customer = ordered["customer_idx"].to_numpy()
    starts = np.searchsorted(customer, np.arange(n_customers + 1), side="left").astype(np.int64)
    channel = ordered["sales_channel_id"] if "sales_channel_id" in ordered.columns else pl.Series([2] * ordered.height)
    return Histories(
        starts=starts,
        t_dat=ordered["t_dat"].cast(pl.Int32).to_numpy(),
        article_idx=ordered["article_idx"].cast(pl.Int32).to_numpy(),
        price=ordered["price"].cast(pl.Float32).to_numpy(),
        channel=channel.cast(pl.Int8).to_numpy(),
    )


def _samples(model: LoadedModel) -> dict[str, str]:
    """Demo customers chosen by rule: the most frequent buyer, a median one, and one with no purchase."""
    sizes = np.diff(model.histories.starts)
    samples: dict[str, str] = {}
    ids = model.customers["customer_id"]
    if sizes.size and sizes.max() > 0:
        samples["frequent"] = ids[int(np.argmax(sizes))]
        buyers = np.flatnonzero(sizes > 0)
        median = np.median(sizes[buyers])
        samples["occasional"] = ids[int(buyers[np.argmin(np.abs(sizes[buyers] - median))])]
    never = np.flatnonzero(sizes == 0)
    samples["new"] = ids[int(never[0])] if never.size else "new-customer-0001"
    return samples
