"""What a sample world allows: MAP@12 of orders that know how the generator draws a buyer's repeat purchases.

    .venv/bin/python bench/ceiling.py STORE        # a store built by `hmrec etl` from `hmrec data generate`

In the grocery world (sample/worlds.py: `p_history=0.85`, `history_len=48`, `p_same_article=0.95`) about 85% of
a buyer's items are drawn uniformly from the buyer's last 48 purchase lines, so ordering their articles by how often
each appears among those lines is the best order there is for those items; the rest come from the market by taste.
MAP@12 of that order (filled with the last week's bestsellers) is close to a ceiling for any method on the world,
and beside the decayed counts of the repurchase source it says how much a ranker can add over that source at most.
Lines of one day are taken in file order: the generator writes a basket's lines in the order it remembers them,
which the format does not carry (a line has a day, not a time; the real H&M file sorts a day's lines by customer).
"a day's lines alike" is the same count with each of those lines counted for its share of the window
(`store.arrays.newest_lines`), as a method that reads only the day can: the ceiling for such methods.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import numpy as np
import polars as pl

from hmrec.evaluation.metrics import ap_per_customer, recall_at_k
from hmrec.evaluation.runner import ground_truth
from hmrec.store.arrays import newest_lines
from hmrec.store.tables import Store

DEPTH = 100


def ranked(scores: pl.DataFrame, customers: np.ndarray, fill: list[int]) -> np.ndarray:
    """(n, DEPTH) articles per customer by score (then the latest bought, then the smaller article_idx first),
    filled with `fill`."""
    top = scores.sort(["customer_idx", "score", "last", "article_idx"], descending=[False, True, True, False]).group_by(
        "customer_idx", maintain_order=True).agg(pl.col("article_idx").head(DEPTH))
    own = dict(zip(top["customer_idx"].to_list(), top["article_idx"].to_list(), strict=True))
    out = np.full((len(customers), DEPTH), -1, dtype=np.int64)
    for row, customer in enumerate(customers.tolist()):
        mine = own.get(customer, [])
        seen = set(mine)
        answer = (mine + [a for a in fill if a not in seen])[:DEPTH]
        out[row, :len(answer)] = answer
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    args = parser.parse_args()
    store = Store(args.store)
    train, cutoff = store.train_transactions().collect(), store.cutoff
    customers, relevant = ground_truth(store.test_transactions().collect())
    week = train.filter(pl.col("t_dat") >= cutoff - timedelta(days=7))
    fill = week.group_by("article_idx").len().sort(["len", "article_idx"], descending=[True, False])["article_idx"]
    history = train.with_row_index("line").join(pl.DataFrame({"customer_idx": customers}), on="customer_idx")
    back = pl.int_range(pl.len()).reverse().over("customer_idx")
    lines = history.sort(["customer_idx", "t_dat", "line"]).with_columns(back.alias("back"))
    age = (pl.lit(cutoff) - pl.col("t_dat")).dt.total_days()
    orders = {f"count among the last {n} lines": lines.filter(pl.col("back") < n).group_by(
        "customer_idx", "article_idx").agg(pl.len().cast(pl.Float64).alias("score"), pl.col("t_dat").max().alias(
            "last")) for n in (24, 48, 96)}
    share = newest_lines(lines["customer_idx"].to_numpy(), lines.select(age)[:, 0].to_numpy(), 48)
    orders["last 48 lines, a day's lines alike"] = lines.with_columns(pl.Series("share", share)).filter(
        pl.col("share") > 0).group_by("customer_idx", "article_idx").agg(pl.col("share").sum().alias("score"),
                                                                      pl.col("t_dat").max().alias("last"))
    orders |= {f"decayed counts, half-life {h} days": history.group_by("customer_idx", "article_idx").agg(
        (0.5 ** (age / h)).sum().alias("score"), pl.col("t_dat").max().alias("last")) for h in (30, 90, 365)}
    print(f"{len(customers):,} buyers in the held-out window from {cutoff}")
    for name, scores in orders.items():
        items = ranked(scores, customers, fill.head(DEPTH).to_list())
        ap = ap_per_customer(items, relevant, 12)
        print(f"{name:36s} MAP@12 {ap.mean():.4f} (standard error {ap.std(ddof=1) / np.sqrt(ap.size):.4f})  "
              f"Recall@{DEPTH} {recall_at_k(items, relevant, DEPTH):.4f}")


if __name__ == "__main__":
    main()
