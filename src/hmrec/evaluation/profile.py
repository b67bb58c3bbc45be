"""The behaviour profile of any dataset in the H&M format: the facts of docs/hm-data.md on its last days."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.evaluation.metrics import map_at_k
from hmrec.raw.read import LINE, RawDataError, open_raw, parse_errors
from hmrec.raw.schema import TRANSACTIONS
from hmrec.recommenders.popularity import bestsellers

log = logging.getLogger(__name__)

K = 12
PRIOR_DAYS = (7, 60, 90)
NEW_DAYS = 28  # an article first sold this close to the window (or in it) counts as new
# The repurchase heuristic: each past purchase weighs exp(-days ago / DECAY_DAYS); older than HISTORY_DAYS is ignored.
DECAY_DAYS = 30.0
HISTORY_DAYS = 365

# (key, label, real H&M value, how to print it); the real values are those of docs/hm-data.md.
FACTS = (
    ("week_transactions", "validation week: transactions", 240_311, "int"),
    ("week_buyers", "validation week: buyers", 68_984, "int"),
    ("week_articles", "validation week: distinct articles", 17_986, "int"),
    ("purchases_per_buyer_mean", "purchases per buyer: mean", 3.48, "float"),
    ("purchases_per_buyer_median", "purchases per buyer: median", 2, "float"),
    ("buyers_with_prior_60d", "buyers who also bought in the prior 60 days", 0.63, "pct"),
    ("buyers_without_prior_90d", "buyers with no purchase in the prior 3 months (90 days)", "~50%", "pct"),
    ("articles_sold_prior_7d", "week's articles also sold in the prior 7 days", 0.78, "pct"),
    ("articles_sold_prior_60d", "week's articles also sold in the prior 60 days", 0.94, "pct"),
    ("top12_prior_week_coverage", "week's purchases covered by the prior week's 12 bestsellers", 0.0235, "pct"),
    ("map12_popularity", "MAP@12: prior week's top 12", "0.005-0.008", "map"),
    ("map12_repurchase", "MAP@12: own time-decayed purchases, filled with popularity", "0.020-0.023", "map"),
    ("repurchase_over_popularity", "MAP@12: own purchases over prior week's top 12", "~3x", "ratio"),
    ("repeat_share", "week's purchases of an article the buyer had bought before", "-", "pct"),
    ("new_article_share", f"week's purchases of articles first sold in the prior {NEW_DAYS} days or in it", "-", "pct"),
    ("online_share", "online share of all transactions", "~70%", "pct"),
    ("mean_price", "mean price of all transactions", "~0.028", "price"),
)


def read_transactions(raw_dir: Path) -> pl.DataFrame:
    """t_dat (Date), customer (UInt64 hash of customer_id), article (Int64), price, online (bool).

    Opens the file through `raw`'s reader, so the real exports' quirks (an unnamed index column, extra columns,
    article ids with or without the leading zero) read as they do in `hmrec etl`. Raises RawDataError naming
    the file, the column and two bad values.
    """
    raw = open_raw(Path(raw_dir), TRANSACTIONS)
    strings = raw.frame if raw.truncated_line is None else raw.frame.filter(pl.col(LINE) != raw.truncated_line)
    parsed_day = pl.col("t_dat").str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    parsed_article = pl.col("article_id").str.strip_chars().cast(pl.Int64, strict=False)
    with parse_errors(raw):
        parsed = strings.select(
            parsed_day,
            pl.col("customer_id").hash().alias("customer"),
            parsed_article.alias("article"),
            pl.col("price").cast(pl.Float64, strict=False),
            (pl.col("sales_channel_id").str.strip_chars() == "2").alias("online"),
        ).collect(engine="streaming")  # bounded memory on the full-size file
    for column, raw_name, parse in (("t_dat", "t_dat", parsed_day), ("article", "article_id", parsed_article)):
        bad = parsed[column].null_count()
        if bad:
            examples = strings.filter(parse.is_null()).select(raw_name).head(2).collect()[raw_name].to_list()
            raise RawDataError(f"{raw.name}: column {raw_name} has {bad:,} unparseable row(s), e.g. {examples}")
    return parsed


def profile(raw_dir: Path, test_days: int = 7) -> dict:
    """The behaviour facts of the last `test_days` days (the validation week) of the dataset in `raw_dir`.

    Shares are fractions in [0, 1]. Figures that need days before the window are None when the data
    has none, and `notes` says why.
    """
    if test_days < 1:
        raise ValueError(f"test_days must be at least 1, got {test_days}")
    frame = read_transactions(Path(raw_dir))
    last, first = frame["t_dat"].max(), frame["t_dat"].min()
    start = last - timedelta(days=test_days - 1)
    log.info("profiling %s: %d transactions, %s .. %s, window from %s", raw_dir, frame.height, first, last, start)
    week = frame.filter(pl.col("t_dat") >= start)
    before = frame.filter(pl.col("t_dat") < start)
    result = {
        "dataset": str(raw_dir), "test_days": test_days, "first_day": first.isoformat(),
        "last_day": last.isoformat(), "validation_start": start.isoformat(), "transactions": frame.height,
        "online_share": float(frame["online"].mean()), "mean_price": float(frame["price"].mean()),
        **_week_figures(week), "notes": [],
    }
    if before.height == 0:
        result["notes"].append(
            f"the data has no day before the validation window ({first} .. {last}, {test_days} test days): "
            "figures that compare with earlier days are n/a"
        )
        result.update({key: None for key, *_ in FACTS if key not in result})
        return result
    top = _bestsellers(before, start)  # the prior week's top 12, shared by the coverage and MAP figures
    result.update(_history_figures(week, before, start, top))
    result.update(_heuristic_maps(week, before, start, top))
    result.update(_novelty_figures(week, before, start))
    popular = result["map12_popularity"]
    result["repurchase_over_popularity"] = result["map12_repurchase"] / popular if popular > 0 else None
    return result


def _week_figures(week: pl.DataFrame) -> dict:
    per_buyer = week.group_by("customer").len()["len"]
    return {
        "week_transactions": week.height,
        "week_buyers": per_buyer.len(),
        "week_articles": week["article"].n_unique(),
        "purchases_per_buyer_mean": float(per_buyer.mean()),
        "purchases_per_buyer_median": float(per_buyer.median()),
    }


def _within(before: pl.DataFrame, start, days: int) -> pl.DataFrame:
    return before.filter(pl.col("t_dat") >= start - timedelta(days=days))


def _history_figures(week: pl.DataFrame, before: pl.DataFrame, start, top: list[int]) -> dict:
    """How much of the week the days before it already saw: buyers, articles, bestsellers."""
    buyers = week["customer"].unique()
    articles = week["article"].unique()
    figures = {}
    for days in PRIOR_DAYS:
        window = _within(before, start, days)
        buyer_share = float(buyers.is_in(window["customer"].unique().implode()).mean())
        article_share = float(articles.is_in(window["article"].unique().implode()).mean())
        if days == 60:
            figures["buyers_with_prior_60d"] = buyer_share
        if days == 90:
            figures["buyers_without_prior_90d"] = 1.0 - buyer_share
        if days in (7, 60):
            figures[f"articles_sold_prior_{days}d"] = article_share
    figures["top12_prior_week_coverage"] = float(week["article"].is_in(top).mean())
    return figures


def _novelty_figures(week: pl.DataFrame, before: pl.DataFrame, start) -> dict:
    """How much of the week buyers had bought before, and how much of it is new articles."""
    pairs = before.select("customer", "article").unique()
    repeat = week.join(pairs, on=["customer", "article"], how="semi").height
    old = before.filter(pl.col("t_dat") < start - timedelta(days=NEW_DAYS)).select("article").unique()
    new = week.join(old, on="article", how="anti").height
    return {"repeat_share": repeat / week.height, "new_article_share": new / week.height}


def _bestsellers(before: pl.DataFrame, start) -> list[int]:
    """The prior 7 days' K most sold articles, most first: the popularity recommender's own ranking (ties by
    all-time sales, then the smaller id)."""
    ranked = bestsellers(before.rename({"article": "article_idx"}), start - timedelta(days=7), K, recent_only=True)
    return ranked["article_idx"].to_list()


def _heuristic_maps(week: pl.DataFrame, before: pl.DataFrame, start, top: list[int]) -> dict:
    """MAP@12 over the week's buyers of the prior week's top 12, and of each buyer's own decayed purchases."""
    truth = week.group_by("customer").agg(pl.col("article").unique()).sort("customer")
    relevant = truth["article"].to_list()
    popular = np.full((truth.height, K), -1, dtype=np.int64)
    popular[:, : len(top)] = top
    own = _repurchase_lists(truth.select("customer"), before, start, top)
    return {"map12_popularity": map_at_k(popular, relevant, K), "map12_repurchase": map_at_k(own, relevant, K)}


def _repurchase_lists(buyers: pl.DataFrame, before: pl.DataFrame, start, top: list[int]) -> np.ndarray:
    """(n buyers, K): each buyer's past articles by summed exp(-days ago / DECAY_DAYS), then popularity."""
    history = _within(before, start, HISTORY_DAYS).join(buyers, on="customer", how="semi")
    days_ago = (pl.lit(start) - pl.col("t_dat")).dt.total_days()
    scored = (
        history.group_by("customer", "article")
        .agg((-days_ago / DECAY_DAYS).exp().sum().alias("score"))
        .sort(["customer", "score", "article"], descending=[False, True, False])
        .group_by("customer", maintain_order=True)
        .agg(pl.col("article").head(K).alias("own"))
    )
    pad = [-1] * K
    lists = (
        buyers.join(scored, on="customer", how="left", maintain_order="left")
        .select(
            pl.col("own").fill_null(pl.lit([], dtype=pl.List(pl.Int64)))
            .list.concat(pl.lit(top + pad, dtype=pl.List(pl.Int64)))
            .list.unique(maintain_order=True)
            .list.filter(pl.element() >= 0)
            .list.concat(pl.lit(pad, dtype=pl.List(pl.Int64)))
            .list.head(K)
            .list.to_array(K)
        )
        .to_series()
    )
    return lists.to_numpy()


def _show(value, kind: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return {
        "int": lambda v: f"{int(v):,}",
        "float": lambda v: f"{v:.2f}",
        "pct": lambda v: f"{100 * v:.1f}%" if v >= 0.1 else f"{100 * v:.2f}%",
        "map": lambda v: f"{v:.4f}",
        "price": lambda v: f"{v:.4f}",
        "ratio": lambda v: f"{v:.1f}x",
    }[kind](value)


def format_profile(result: dict, bands: Sequence = (), world: str = "") -> str:
    """A markdown table: fact | this dataset | real H&M, then each of the world's bands and whether it holds.

    `bands` are objects with `key`, `low`, `high` and `holds(value)` (sample.worlds.Band)."""
    by_key = {band.key: band for band in bands}
    head = "| fact | this dataset | real H&M |" + (f" {world} band | |" if bands else "")
    lines = [
        f"dataset {result['dataset']}: {result['transactions']:,} transactions, {result['first_day']} .. "
        f"{result['last_day']}; validation window from {result['validation_start']} ({result['test_days']} days)",
        "",
        head,
        "|---|---|---|" + ("---|---|" if bands else ""),
    ]
    for key, label, real, kind in FACTS:
        row = f"| {label} | {_show(result.get(key), kind)} | {_show(real, kind)} |"
        if bands:
            band = by_key.get(key)
            verdict = "" if band is None else ("in band" if band.holds(result.get(key)) else "**OUT of band**")
            row += f" {_band_text(band, kind) if band else ''} | {verdict} |"
        lines.append(row)
    lines += [f"\nnote: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)


def _band_text(band, kind: str) -> str:
    low, high = (None if end is None else _show(end, kind) for end in (band.low, band.high))
    if low == high:
        return low
    return f"{low} .. {high}" if low and high else (f">= {low}" if low else f"<= {high}")


def out_of_band(result: dict, bands: Sequence) -> list[str]:
    """The keys of the bands that the profile's figures miss (a missing figure misses its band)."""
    return [band.key for band in bands if not band.holds(result.get(band.key))]
