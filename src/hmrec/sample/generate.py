"""Write a synthetic dataset in exactly the real H&M files' format, with the real data's behaviour."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from hmrec.logs import progress
from hmrec.raw.schema import ARTICLES_FILE, CUSTOMERS_FILE, TRANSACTION_COLUMNS, TRANSACTIONS_FILE
from hmrec.sample.population import build_population
from hmrec.sample.simulate import Behaviour, Simulator
from hmrec.sample.world import build_catalogue
from hmrec.sample.worlds import WORLDS, World, relabel

log = logging.getLogger(__name__)

REAL_END = date(2020, 9, 22)


@dataclass(frozen=True)
class Scale:
    """Sizes of a generated dataset; `transactions` is a target that the sample meets approximately."""

    customers: int
    articles: int
    transactions: int
    days: int
    end: date = REAL_END
    behaviour: Behaviour | None = None  # None: the world's own

    @property
    def first_day(self) -> date:
        return self.end - timedelta(days=self.days - 1)


SCALES: dict[str, Scale] = {
    "tiny": Scale(customers=2_000, articles=1_000, transactions=50_000, days=182),
    "small": Scale(customers=50_000, articles=10_000, transactions=1_500_000, days=728),
    # The real files: 2018-09-20 .. 2020-09-22.
    "full": Scale(customers=1_371_980, articles=105_542, transactions=31_788_324, days=734),
    # A retailer three times H&M's size (customers and sales; the same catalogue and dates): bench/scale.py's
    # test of the Ray ETL's bounded memory per worker (~95M transactions, ~10.5 GB of CSV).
    "3x": Scale(customers=3 * 1_371_980, articles=105_542, transactions=3 * 31_788_324, days=734),
}


def world_scale(scale: str | Scale, world: World) -> Scale:
    """The scale's sizes for this world (grocery: fewer households, a smaller catalogue), with its behaviour."""
    sizes = SCALES[scale] if isinstance(scale, str) else scale
    return replace(
        sizes, customers=max(100, round(sizes.customers * world.customers_factor)),
        articles=max(100, round(sizes.articles * world.articles_factor)),
        behaviour=sizes.behaviour or world.behaviour,
    )


def generate(scale: str | Scale, seed: int, out: Path, world: str = "fashion") -> dict[str, int]:
    """Write customers.csv, articles.csv, transactions_train.csv of `world` into `out`; return each one's rows.

    The same scale, world and seed write the same bytes. Files are written into a temporary folder beside `out`
    and renamed at the end, so `out` never holds a half-written dataset.
    """
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    sizes = world_scale(scale, WORLDS[world])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        counts = _write_all(sizes, WORLDS[world], seed, tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("generated %s %s (seed %d) into %s: %s", world, scale, seed, out, counts)
    return counts


def _write_all(sizes: Scale, world: World, seed: int, folder: Path) -> dict[str, int]:
    world_rng = np.random.default_rng([seed, 0])
    articles = build_catalogue(world_rng, sizes.articles, sizes.days, world.shape)
    people = build_population(world_rng, sizes.customers, sizes.days)
    people.frame.write_csv(folder / CUSTOMERS_FILE)
    relabel(articles.frame, world).write_csv(folder / ARTICLES_FILE)
    simulator = Simulator(articles, people, sizes.first_day, sizes.days, sizes.transactions,
                          np.random.default_rng([seed, 1]), sizes.behaviour)
    n_rows = 0
    with open(folder / TRANSACTIONS_FILE, "wb") as handle:
        handle.write((",".join(TRANSACTION_COLUMNS) + "\n").encode())
        for first, n_days in progress(simulator.chunks(), desc="generating weeks", unit="weeks"):
            week = simulator.week(first, n_days)
            week.write_csv(handle, include_header=False)
            n_rows += week.height
    return {"customers": people.frame.height, "articles": articles.frame.height, "transactions": n_rows}
