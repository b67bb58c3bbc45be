"""ALS user factors for a live query (numpy solve) agree with implicit's own solver used for big batches."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.data import Query, TrainData
from hmrec.recommenders import als

CUTOFF = date(2030, 3, 1)


def test_the_live_solve_agrees_with_implicits(monkeypatch):
    rng = np.random.default_rng(0)
    n = 3000
    transactions = pl.DataFrame({
        "t_dat": [CUTOFF - timedelta(days=int(d)) for d in rng.integers(1, 40, n)],
        "customer_idx": rng.integers(0, 200, n).astype(np.int32), "article_idx": rng.integers(0, 80, n).astype(np.int32),
        "price": np.full(n, 0.02, np.float32), "sales_channel_id": np.full(n, 2, np.int8)})
    customers = pl.DataFrame({"customer_idx": np.arange(200, dtype=np.int32), "age": np.full(200, 30, np.int16)})
    articles = pl.DataFrame({"article_idx": np.arange(80, dtype=np.int32)})
    model = als.ALSRecommender(als.ALSConfig(factors=8, iterations=5, seed=3, window_days=60))
    model.fit(TrainData(transactions, customers, articles, CUTOFF))
    query = Query.for_customers(np.arange(40), customers, transactions, CUTOFF)
    live = model.user_factors(query)  # 40 rows: the numpy solve
    monkeypatch.setattr(als, "SMALL_BATCH", 0)
    batch = model.user_factors(query)  # implicit's recalculate_user
    assert np.abs(live).max() > 0.01
    np.testing.assert_allclose(live, batch, atol=1e-4)
