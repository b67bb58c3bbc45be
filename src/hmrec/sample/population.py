"""The synthetic sample's customers: profile columns with the real proportions, plus hidden taste and activity."""

from __future__ import annotations

import numpy as np
import polars as pl

from hmrec.raw.schema import CUSTOMER_COLUMNS
from hmrec.sample.world import AGE_BAND_EDGES, N_STYLES, N_TWISTS, STYLE_BY_AGE, Population, hex_ids

# Share of customers who are active from the first day; the rest join during the span.
PRESENT_AT_START = 0.65
LEAVER_SHARE = 0.15
RATE_SD = 0.6  # log-scale spread of shopping rates


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two peaks (early twenties, around fifty) and a broad middle, 16-99."""
    peak = rng.choice(3, size=n, p=[0.42, 0.33, 0.25])
    young = rng.normal(23.0, 3.0, n)
    older = rng.normal(50.0, 7.0, n)
    broad = rng.uniform(25.0, 80.0, n)
    age = np.select([peak == 0, peak == 1], [young, older], broad)
    return np.clip(np.round(age), 16, 99).astype(np.int64)


def _profile_frame(rng: np.random.Generator, ids: pl.Series, age: np.ndarray) -> pl.DataFrame:
    """customers.csv columns: FN/Active as 1.0 or empty, club and news statuses, age, postal code."""
    n = ids.len()
    fn = rng.random(n) < 0.35
    active = np.where(fn, rng.random(n) < 0.95, rng.random(n) < 0.015)
    club = np.array(["ACTIVE", "PRE-CREATE", "LEFT CLUB", ""])[rng.choice(4, n, p=[0.9285, 0.0668, 0.0003, 0.0044])]
    regular = np.where(fn, rng.random(n) < 0.95, rng.random(n) < 0.03)
    news = np.where(regular, "Regularly", "NONE")
    news = np.where(rng.random(n) < 0.0007, "Monthly", news)
    news = np.where(rng.random(n) < 0.0117, "", news)
    # The real file has a couple of rows spelling the frequency `None`.
    news[rng.choice(n, size=min(n, max(2, n // 500_000)), replace=False)] = "None"
    missing_age = rng.random(n) < 0.011
    n_codes = max(2, round(0.257 * n))
    codes = pl.Series(hex_ids(rng, n_codes)).cast(pl.String)
    common = rng.integers(n_codes)
    code = np.where(rng.random(n) < 0.087, common, rng.integers(n_codes, size=n))
    frame = pl.DataFrame({
        "customer_id": ids,
        "FN": np.where(fn, 1.0, np.nan),
        "Active": np.where(active, 1.0, np.nan),
        "club_member_status": club,
        "fashion_news_frequency": news,
        "age": np.where(missing_age, -1, age),
        "postal_code": codes.gather(code),
    })
    return frame.with_columns(
        pl.col("FN", "Active").fill_nan(None),
        pl.col("club_member_status", "fashion_news_frequency").replace("", None),
        pl.col("age").replace(-1, None),
    ).select(CUSTOMER_COLUMNS)


def build_population(rng: np.random.Generator, n: int, days: int) -> Population:
    """n customers; their shopping rates have mean 1 (the simulator scales them to the wanted volume)."""
    ids = pl.Series("customer_id", hex_ids(rng, n)).cast(pl.String)
    age = _ages(rng, n)
    band = np.searchsorted(np.array(AGE_BAND_EDGES), age, side="right")
    cum = np.cumsum(STYLE_BY_AGE, axis=1)[band]
    style = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), N_STYLES - 1)
    join = np.where(rng.random(n) < PRESENT_AT_START, 0, rng.integers(0, days, size=n))
    leave = np.where(rng.random(n) < LEAVER_SHARE, join + rng.integers(0, days, size=n), days)
    # Heavy-tailed rates: a few loyal shoppers, many who come back after months.
    rate = rng.lognormal(0.0, RATE_SD, n)
    twist = rng.integers(N_TWISTS, size=n)
    return Population(
        frame=_profile_frame(rng, ids, age), ids=ids, segment=(style * len(STYLE_BY_AGE) + band) * N_TWISTS + twist,
        rate=rate / rate.mean(), join=join, leave=np.minimum(leave, days),
        online=rng.beta(2.1, 0.9, n),
    )
