"""A model bundle loaded for serving: the recommender plus the lookups a request needs in microseconds."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.recommenders.base import Recommender, load_recommender
from hmrec.store.tables import AGE_BUCKET_LABELS, age_bucket

log = logging.getLogger(__name__)

POPULAR_KEEP = 100  # the API's largest k
PURCHASE_COUNTS = "purchase_counts.parquet"  # customer_idx, purchases: totals, as history.parquet keeps the latest
ARTICLE_TEXT_COLUMNS = ("prod_name", "product_type_name", "product_group_name", "colour_group_name",
                        "perceived_colour_master_name", "index_group_name", "department_name", "detail_desc")


class BundleError(Exception):
    """A bundle folder that cannot be served; the message names the file and what is wrong."""


@dataclass
class Catalogue:
    """The articles table as column lists, raw id -> article_idx, and each article's typical recent price."""

    article_ids: np.ndarray  # (n_articles,) int64, row i is article_idx i
    product_codes: np.ndarray  # (n_articles,) int64
    product_types: np.ndarray  # (n_articles,) int64, -1 where missing
    text: dict[str, list[str | None]]
    prices: np.ndarray  # (n_articles,) float64, nan for articles never sold in the history
    index: dict[int, int]

    @property
    def median_price(self) -> float:
        """Price given to a live purchase of an article never sold in the data (0 if nothing ever sold)."""
        known = self.prices[~np.isnan(self.prices)]
        return round(float(np.median(known)), 6) if known.size else 0.0

    def __len__(self) -> int:
        return len(self.article_ids)

    def find(self, article_id: int) -> int | None:
        return self.index.get(int(article_id))


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
class Popular:
    """Bestsellers of the last days of data, overall and per age bucket, and all-time counts per article."""

    overall: np.ndarray  # article_idx, best first (at most POPULAR_KEEP)
    overall_counts: np.ndarray
    by_bucket: dict[int, tuple[np.ndarray, np.ndarray]]
    counts: np.ndarray  # (n_articles,) purchases in the whole bundle history, for tie-free fallbacks


@dataclass
class LoadedModel:
    """One champion version, ready to answer; requests hold a reference, so a reload never disturbs them."""

    version: int | None
    path: Path
    manifest: dict
    recommender: Recommender
    catalogue: Catalogue
    customers: pl.DataFrame
    customer_ids: np.ndarray  # sorted customer ids as UTF-8 bytes (numpy "S"), for binary search
    customer_rows: np.ndarray  # customer_idx of each sorted id
    histories: Histories
    popular: Popular
    data_end: date
    samples: dict[str, str] = field(default_factory=dict)
    pairs: tuple[np.ndarray, np.ndarray] | None = None  # (partner_idx sorted, article_idx): see partners()
    cards: dict[int, dict] = field(default_factory=dict)  # article_idx -> the service's article card
    purchase_totals: np.ndarray | None = None  # (n_customers,) all purchases in the data; None: the history's

    def purchase_total(self, customer_idx: int) -> int:
        """The customer's purchases in the model's data, though the bundle's history keeps only the latest."""
        if self.purchase_totals is not None and 0 <= customer_idx < len(self.purchase_totals):
            return int(self.purchase_totals[customer_idx])
        rows = self.histories.rows(customer_idx)
        return rows.stop - rows.start

    def partners(self, article_idx: int) -> np.ndarray:
        """Articles whose bought-together partners include `article_idx` (empty if the model has no pairs)."""
        if self.pairs is None:
            return np.empty(0, dtype=np.int64)
        keys, values = self.pairs
        return values[np.searchsorted(keys, article_idx, "left"):np.searchsorted(keys, article_idx, "right")]

    def find_customer(self, customer_id: str) -> int | None:
        key = customer_id.encode()
        position = int(np.searchsorted(self.customer_ids, key))
        if position < len(self.customer_ids) and self.customer_ids[position] == key:
            return int(self.customer_rows[position])
        return None

    @property
    def similar_source(self):
        """The two-tower source if the final recommender has one (it answers `similar(article_idx, k)`)."""
        sources = getattr(self.recommender, "sources", None) or {}
        source = sources.get("two_tower")
        return source if source is not None and hasattr(source, "similar") else None


def load_bundle(path: Path, version: int | None, popular_days: int = 7) -> LoadedModel:
    """Read a verified bundle folder (see docs/architecture.md) into memory."""
    path = Path(path)
    manifest = _read_manifest(path)
    articles = _read_table(path, "articles.parquet", ("article_idx", "article_id"))
    customers = _read_table(path, "customers.parquet", ("customer_idx", "customer_id"))
    history = _read_table(path, "history.parquet", ("customer_idx", "t_dat", "article_idx", "price"))
    data_end = _data_end(manifest, history, path)
    recommender = load_recommender(path / "final")
    catalogue = _catalogue(articles, history)
    # bytewise order, as numpy compares "S" values (polars' string order is the same, but say so explicitly)
    sorted_ids = (customers.select(pl.col("customer_id").cast(pl.Binary), "customer_idx").drop_nulls()
                  .sort("customer_id"))
    model = LoadedModel(
        version=version if version is not None else manifest.get("version"),
        path=path,
        manifest=manifest,
        recommender=recommender,
        catalogue=catalogue,
        customers=customers.with_columns(age_bucket(pl.col("age")).alias("age_bucket")),
        customer_ids=np.array(sorted_ids["customer_id"].to_list(), dtype=np.bytes_),
        customer_rows=sorted_ids["customer_idx"].to_numpy(),
        histories=_histories(history, customers.height),
        popular=_popular(history, customers, len(catalogue), data_end, popular_days),
        data_end=data_end,
    )
    model.samples = _samples(model)
    model.purchase_totals = _purchase_totals(path, customers.height)
    model.pairs = _pairs(recommender)
    log.info("loaded bundle %s (version %s): %d articles, %d customers, %d history rows, data end %s",
             path, model.version, len(catalogue), customers.height, history.height, data_end)
    return model


def _read_manifest(path: Path) -> dict:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} is missing: {path} is not a model bundle")
    return json.loads(manifest_path.read_text())


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
        log.warning("%s/manifest.json has no data_end; using the history's last day", path)
        return history["t_dat"].max()
    raise BundleError(f"{path}/manifest.json has no data_end and history.parquet is empty")


def _purchase_totals(path: Path, n_customers: int) -> np.ndarray | None:
    """Each customer's purchase count from PURCHASE_COUNTS (bundles written before it existed: None)."""
    table_path = path / PURCHASE_COUNTS
    if not table_path.is_file():
        return None
    counts = pl.read_parquet(table_path, columns=["customer_idx", "purchases"])
    totals = np.zeros(n_customers, dtype=np.int64)
    totals[counts["customer_idx"].to_numpy()] = counts["purchases"].to_numpy()
    return totals


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
    return Catalogue(ids, codes, types, text, prices, {int(a): i for i, a in enumerate(ids)})


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


def _popular(history: pl.DataFrame, customers: pl.DataFrame, n_articles: int, data_end: date,
             days: int) -> Popular:
    counts = np.bincount(history["article_idx"].to_numpy(), minlength=n_articles)[:n_articles]
    recent = history.filter(pl.col("t_dat") > data_end - timedelta(days=days)).join(
        customers.select("customer_idx", age_bucket(pl.col("age")).alias("bucket")), on="customer_idx", how="left"
    )
    overall = _top(recent)
    by_bucket = {}
    for bucket in range(len(AGE_BUCKET_LABELS)):
        by_bucket[bucket] = _top(recent.filter(pl.col("bucket") == bucket))
    return Popular(overall[0], overall[1], by_bucket, counts)


def _top(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    top = (rows.group_by("article_idx").len().sort(["len", "article_idx"], descending=[True, False])
           .head(POPULAR_KEEP))
    return top["article_idx"].to_numpy().astype(np.int64), top["len"].to_numpy().astype(np.float64)


def _pairs(recommender: Recommender) -> tuple[np.ndarray, np.ndarray] | None:
    """The bought-together source's pair table, keyed by partner, to name the purchase behind a suggestion."""
    source = (getattr(recommender, "sources", None) or {}).get("bought_together")
    pairs = getattr(source, "pairs", None)
    if not isinstance(pairs, pl.DataFrame) or not {"article_idx", "partner_idx"} <= set(pairs.columns):
        return None
    ordered = pairs.select("partner_idx", "article_idx").sort("partner_idx", "article_idx")
    return ordered["partner_idx"].to_numpy(), ordered["article_idx"].to_numpy()


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
