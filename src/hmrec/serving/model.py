"""Serving's read model: one champion version as the arrays answers read, built from what `model_bundle` reads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.raw.schema import format_article_id
from hmrec.recommenders.base import Recommender
from hmrec.registry.model_bundle import Bundle, read_bundle
from hmrec.serving.precomputed import PrecomputedAnswers
from hmrec.store.arrays import equal_range
from hmrec.store.idmap import IdMap
from hmrec.store.tables import UNKNOWN_AGE_BUCKET, age_bucket

log = logging.getLogger(__name__)

CARD_CACHE = 20_000  # article cards kept per model: the articles answers show most
ARTICLE_TEXT_COLUMNS = ("prod_name", "product_type_name", "product_group_name", "colour_group_name",
                        "perceived_colour_master_name", "index_group_name", "department_name", "detail_desc")


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

    @cached_property
    def shown_ids(self) -> list[str]:
        """Each article's id as answers show it (format_article_id), built once: a card built per answer formatted
        it again (a third of a looked-up answer's card cost)."""
        return [format_article_id(a) for a in self.article_ids.tolist()]

    @cached_property
    def shown_prices(self) -> list[float | None]:
        """Each article's card price: its typical price rounded to 6 decimals, None where it never sold."""
        return [None if p != p else round(p, 6) for p in self.prices.tolist()]

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
    """One champion version, ready to answer; requests hold a reference, so a reload never disturbs them.

    Everything is read-only once loaded, but for the article cards it keeps (`card`/`keep_card`)."""

    version: int | None
    path: Path
    recommender: Recommender
    cold_start: Recommender
    catalogue: Catalogue
    customers: pl.DataFrame  # the customers table with `age_bucket`
    customer_ids: IdMap
    histories: Histories
    data_end: date
    data_start: date | None = None  # the history's first day (None: empty history); live events may not precede it
    samples: dict[str, str] = field(default_factory=dict)
    purchase_totals: np.ndarray | None = None  # (n_customers,) all purchases in the data; None: the history's
    spent_totals: np.ndarray | None = None  # (n_customers,) what each paid in all in the data; None: unknown
    repeats: pl.DataFrame | None = None  # the bundle's repeats, sorted by customer_idx; None: a bundle without them
    answers: PrecomputedAnswers | None = None  # the bundle's precomputed answers (memory-mapped); None: none
    variant: str = "champion"  # the registry alias it was loaded as: the experiment's variant it answers for
    clock: date | None = None  # HMREC_TODAY: the service's date, where later than the day after the data's end
    _cards: dict[int, dict] = field(default_factory=dict)  # article_idx -> the service's article card

    @property
    def today(self) -> date:
        """The service's date: the day after the data's end (which may be long ago), or HMREC_TODAY when later."""
        after_data = self.data_end + timedelta(days=1)
        return after_data if self.clock is None else max(after_data, self.clock)

    def purchase_total(self, customer_idx: int) -> int:
        """The customer's purchases in the model's data, though the bundle's history keeps only the latest."""
        if self.purchase_totals is not None and 0 <= customer_idx < len(self.purchase_totals):
            return int(self.purchase_totals[customer_idx])
        rows = self.histories.rows(customer_idx)
        return rows.stop - rows.start

    def spent_total(self, customer_idx: int) -> float | None:
        """What the customer paid in all in the model's data (None: a bundle without it)."""
        if self.spent_totals is not None and 0 <= customer_idx < len(self.spent_totals):
            return float(self.spent_totals[customer_idx])
        return None

    @cached_property
    def _repeat_keys(self) -> np.ndarray:
        """The repeats' customer_idx column, converted once per loaded model, not per Buy-again request."""
        return self.repeats["customer_idx"].to_numpy()

    def repeat_purchases(self, customer_idx: int | None) -> list[tuple[int, int, date]]:
        """(article_idx, times bought, last day) of every article the customer bought twice or more in the data."""
        if self.repeats is None or customer_idx is None:
            return []
        first, last = equal_range(self._repeat_keys, customer_idx)
        return list(self.repeats[first:last].select("article_idx", "purchases", "last_day").iter_rows())

    def find_customer(self, customer_id: str) -> int | None:
        return self.customer_ids.get(customer_id)

    def card(self, idx: int) -> dict | None:
        """The article card kept for `idx` (serving/cards.py builds them), or None."""
        return self._cards.get(idx)

    def keep_card(self, idx: int, card: dict) -> None:
        """Keep a built card, up to CARD_CACHE of them: the first ones asked are the ones answers show most."""
        if len(self._cards) < CARD_CACHE:
            self._cards[idx] = card

    @cached_property
    def reasons(self) -> dict:
        """Every answer source's reason, the recommender's over the cold start's (built once per loaded model)."""
        return {**self.cold_start.reasons(), **self.recommender.reasons()}

    @cached_property
    def _blank(self) -> pl.DataFrame:
        blank = pl.DataFrame({c: [None] for c in self.customers.columns}, schema=self.customers.schema)
        return blank.with_columns(pl.lit(-1, dtype=pl.Int32).alias("customer_idx"),
                                  pl.lit(UNKNOWN_AGE_BUCKET, dtype=pl.Int8).alias("age_bucket"))

    def profile(self, customer_idx: int | None) -> pl.DataFrame:
        """One customer's profile row; for a customer the bundle does not know, a blank one (customer_idx -1,
        unknown age bucket), built once."""
        return self._blank if customer_idx is None else self.customers.slice(customer_idx, 1)


def load_model(path: Path, version: int | None) -> LoadedModel:
    """Read a verified bundle folder through `model_bundle.read_bundle` and build the read model."""
    bundle = read_bundle(path)
    customers, history = bundle.customers, bundle.history
    model = LoadedModel(
        version=version if version is not None else bundle.manifest.get("version"),
        path=bundle.path,
        recommender=bundle.final,
        cold_start=bundle.cold_start,
        catalogue=_catalogue(bundle.articles, history),
        customers=customers.with_columns(age_bucket(pl.col("age")).alias("age_bucket")),
        customer_ids=IdMap.customers(customers),
        histories=_histories(history, customers.height),
        data_end=bundle.data_end,
        data_start=history["t_dat"].min() if history.height else None,
        repeats=bundle.repeats,
        answers=PrecomputedAnswers(bundle.answers) if bundle.answers is not None else None,
    )
    model.purchase_totals, model.spent_totals = _purchase_totals(bundle, customers.height)
    model.samples = _samples(model)
    log.info("loaded bundle %s (version %s): %d articles, %d customers, %d history rows, data end %s, %d precomputed "
             "answers", bundle.path, model.version, bundle.articles.height, customers.height, history.height,
             bundle.data_end, len(model.answers) if model.answers is not None else 0)
    return model


def _purchase_totals(bundle: Bundle, n_customers: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each customer's purchase count and spending (None where the bundle lacks them)."""
    counts = bundle.purchase_counts
    if counts is None:
        return None, None
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
