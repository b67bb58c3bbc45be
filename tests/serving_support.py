"""Helpers for the serving tests: a hand-made registered bundle with known answers, a pipeline-built one, and a
real `hmrec serve` subprocess."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path

import httpx
import polars as pl

from hmrec.data import TrainData
from hmrec.recommenders.base import Recommender
from hmrec.registry.model_bundle import write_bundle
from hmrec.registry.versions import Registry
from hmrec.serving.events import open_event_store
from hmrec.store.tables import CUSTOMERS_SCHEMA, TRANSACTIONS_SCHEMA
from hmrec.support import launcher
from hmrec.support.launcher import HMREC, free_port  # noqa: F401  (the tests use them through this module)

DATA_END = date(2021, 3, 10)  # deliberately not the public sample's dates
ADMIN_TOKEN = "test-admin-token"
EVENTS_TOKEN = "test-events-token-0123456789"  # HMREC_EVENTS_TOKEN of the tests' services
EVENTS_AUTH = {"Authorization": f"Bearer {EVENTS_TOKEN}"}  # what a client posting live events sends

# Customers of the hand-made data, by role.
FREQUENT = "a" * 64  # age 23 (bucket 0): bought articles 0 (twice), 1, 2, 3
OCCASIONAL = "b" * 64  # age 52: bought article 4 once
COLD_AGED = "c" * 64  # age 30 (bucket 1), no purchase: gets bucket 1's bestsellers [7, 8] then the global list
COLD_NO_AGE = "d" * 64  # age unknown, no purchase: gets the global bestsellers
BUYER_31 = "e" * 64
BUYER_33 = "f" * 64
# The cold start's (age_popularity's) global list, by article_idx: sales in the last 14 days (7 sold 3 times,
# 0 twice in all, then ties broken by index), then 9, sold only before the window.
GLOBAL_BESTSELLERS = [7, 0, 1, 2, 3, 4, 8, 9]
BUCKET1_BESTSELLERS = [7, 8]

ARTICLE_IDS = [108775015, 108775044, 110065001, 110065002, 111565001, 111586001, 111593001, 111609001,
               112679048, 114428026]


def handmade_articles() -> pl.DataFrame:
    n = len(ARTICLE_IDS)
    groups = ["Garment Upper body", "Garment Upper body", "Garment Lower body", "Garment Lower body", "Shoes",
              "Accessories", "Underwear", "Garment Upper body", "Garment Lower body", "Swimwear"]
    types = [253, 253, 272, 272, 88, 67, 286, 253, 272, 59]
    return pl.DataFrame({
        "article_idx": pl.Series(range(n), dtype=pl.Int32),
        "article_id": pl.Series(ARTICLE_IDS, dtype=pl.Int64),
        "product_code": pl.Series([a // 1000 for a in ARTICLE_IDS], dtype=pl.Int64),
        "prod_name": ["Strap top", "Strap top", "Skinny jeans", "Skinny jeans", "Runner", "Scarf <b>bold</b>",
                      "Brief", "Tee", "Shorts", "Bikini"],
        "product_type_no": pl.Series(types, dtype=pl.Int32),
        "product_type_name": ["Vest top", "Vest top", "Trousers", "Trousers", "Sneakers", "Scarf", "Underwear bottom",
                              "T-shirt", "Trousers", "Bikini top"],
        "product_group_name": groups,
        "colour_group_name": ["Black", "White", "Blue", "Light Blue", "White", "Red", "Black", "Yellow", "Beige",
                              "Pink"],
        "perceived_colour_master_name": ["Black", "White", "Blue", "Blue", "White", "Red", "Black", "Yellow",
                                         "Beige", "Pink"],
        "index_group_name": ["Ladieswear", "Ladieswear", "Divided", "Divided", "Sport", "Ladieswear", "Ladieswear",
                             "Menswear", "Menswear", "Ladieswear"],
        "department_name": ["Jersey Basic"] * n,
        "detail_desc": [f"Description of article {i}" for i in range(n)],
    })


def handmade_customers() -> pl.DataFrame:
    ids = [FREQUENT, OCCASIONAL, COLD_AGED, COLD_NO_AGE, BUYER_31, BUYER_33]
    ages = [23, 52, 30, None, 31, 33]
    n = len(ids)
    frame = pl.DataFrame({
        "customer_idx": list(range(n)), "customer_id": ids, "FN": [1, None, None, None, 1, None],
        "Active": [1, None, None, None, 1, None], "club_member_status": ["ACTIVE"] * n,
        "fashion_news_frequency": ["Regularly", "NONE", "NONE", None, "NONE", "NONE"], "age": ages,
        "postal_code": ["0" * 64] * n, "known": [True] * n,
    })
    return frame.cast(CUSTOMERS_SCHEMA)


def handmade_transactions() -> pl.DataFrame:
    d = lambda days: DATA_END - timedelta(days=days)  # noqa: E731
    rows = [  # (days before the data end, customer_idx, article_idx, price)
        (20, 0, 0, 0.030), (3, 0, 0, 0.030), (2, 0, 1, 0.025), (1, 0, 2, 0.040), (0, 0, 3, 0.045),
        (1, 1, 4, 0.050),
        (1, 4, 7, 0.010), (1, 4, 7, 0.010), (2, 4, 8, 0.020),
        (4, 5, 7, 0.012), (30, 5, 9, 0.033),
    ]
    frame = pl.DataFrame({
        "t_dat": [d(r[0]) for r in rows], "customer_idx": [r[1] for r in rows], "article_idx": [r[2] for r in rows],
        "price": [r[3] for r in rows], "sales_channel_id": [2] * len(rows),
    })
    return frame.cast(TRANSACTIONS_SCHEMA).sort("t_dat")


def write_handmade_bundle(directory: Path, recommender: Recommender | None = None,
                          history_tail: int | None = None, data_end: date = DATA_END) -> Path:
    """A complete bundle of the hand-made tables, a real fitted recommender (default: repurchase) and the
    cold start (age popularity); `history_tail` keeps only each customer's latest purchases in history.parquet;
    `data_end`: the manifest's (a later one: days without sales at the end of the data)."""
    from hmrec.recommenders.popularity import AgePopularityRecommender
    from hmrec.recommenders.repurchase import RepurchaseRecommender

    articles, customers, transactions = handmade_articles(), handmade_customers(), handmade_transactions()
    data = TrainData(transactions, customers, articles, cutoff=DATA_END + timedelta(days=1))
    recommender = (recommender or RepurchaseRecommender()).fit(data)
    return write_bundle(directory, articles=articles, customers=customers, transactions=transactions,
                        final=recommender, cold_start=AgePopularityRecommender().fit(data), data_end=data_end,
                        store_fingerprint="handmade", history_per_customer=history_tail)


def register(workdir: Path, bundle: Path, promote: bool = True) -> int:
    registry = Registry.for_workdir(workdir)
    version = registry.register(bundle)
    if promote:
        registry.promote(version)
    return version


def handmade_workdir(root: Path) -> Path:
    """A workdir whose registry holds one promoted version of the hand-made bundle."""
    workdir = root / "work"
    register(workdir, write_handmade_bundle(root / "bundles" / "v1"))
    return workdir


def two_versions(root: Path) -> tuple[Path, int, int]:
    """A workdir with version 1 (repurchase) promoted and version 2 (global popularity) registered."""
    from hmrec.recommenders.popularity import PopularityRecommender

    workdir = handmade_workdir(root)
    v2 = register(workdir, write_handmade_bundle(root / "bundles" / "v2", PopularityRecommender()), promote=False)
    return workdir, 1, v2


class Server(launcher.Server):
    """`hmrec serve` as the serving tests run it: with the tests' admin and events tokens (none with `demo`)."""

    def __init__(self, workdir: Path, events_db: Path | str, log_path: Path, demo: bool = False, preexec_fn=None,
                 **env: str):
        super().__init__(workdir, events_db, log_path, events_token=None if demo else EVENTS_TOKEN, demo=demo,
                         preexec_fn=preexec_fn, **{"HMREC_ADMIN_TOKEN": ADMIN_TOKEN, **env})


def post_until_stopped(url: str, prefix: str, acknowledged: list, stop: threading.Event) -> None:
    """Post purchases until `stop` or until the server is gone; record each (customer, article) that got a 201."""
    with httpx.Client(base_url=url, timeout=5, headers=EVENTS_AUTH) as client:
        n = 0
        while not stop.is_set():
            customer, article = f"{prefix}-{n}", ARTICLE_IDS[n % 10]
            try:
                response = client.post("/events/purchases", json={"customer_id": customer, "article_id": article})
            except httpx.TransportError:
                return  # the server is gone: this event was never acknowledged
            if response.status_code == 201:
                acknowledged.append((customer, article))
            n += 1


def stored_purchases(events_target: str) -> set[tuple[str, int]]:
    """(customer_id, article_id) of every purchase in an event store."""
    store = open_event_store(events_target)
    try:
        return {(p.customer_id, p.article_id) for p in store.all()}
    finally:
        store.close()
