"""Ranker features for (customer row, candidate article) pairs: source ranks and scores, user x article
interactions from the query's history, article statistics and customer statistics, all as of `as_of`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.candidates.generate import Candidates
from hmrec.data import HistoryArrays, Query, TrainData
from hmrec.store.arrays import (
    distinct,
    find_sorted,
    group_max,
    group_sum,
    lines_on_newer_days,
    pair_key,
    split_key,
    window_share,
)
from hmrec.store.features import USER_FEATURE_COLUMNS, index_groups

GROUP_COLUMNS = ("product_group_name", "index_group_name")
COUNTED_COLUMNS = ("product_type_no", "department_no")  # the customer's purchases in the article's type, department
# The customer's share of purchases in the article's section, garment group, colour and pattern: taste that the type
# and department do not say (a customer of black basics, of one section).
SHARED_COLUMNS = ("section_no", "garment_group_no", "colour_group_code", "perceived_colour_master_id",
                  "graphical_appearance_no")
# Pairs whose values together say more than each alone (ladies' trousers: neither every ladies' garment nor every
# pair of trousers): the customer's share of purchases in the pair's value, as for SHARED_COLUMNS.
PAIRED_COLUMNS = (("section_no", "product_type_no"),)
KEY_COLUMNS = ("row", "article_idx")  # which candidate line: in every feature table, never a model input
# How far back the customer's own purchase order is remembered (`order_features`): a few baskets, and a few dozen.
LINE_HALF_LIVES = (8, 32)


def article_table(data: TrainData) -> pl.DataFrame:
    """One row per article of `data.articles`: the attributes that interactions use, and `item_features` as of
    the cutoff (from the rows strictly before it: the store's table when `data` carries it), prefixed `item_`,
    with the sales of the last day and the trend ratios (last day against the week's daily mean, the week against
    the 4 weeks' weekly mean), the mean age of the article's buyers, and `item_variants`, the articles of its
    product in the catalogue."""
    transactions, articles, as_of, customers = data.transactions, data.articles, data.cutoff, data.customers
    stats = data.item_features(as_of)
    stats = stats.rename({c: f"item_{c}" for c in stats.columns if c != "article_idx"})
    attrs = articles.select(
        pl.col("article_idx").cast(pl.Int32),
        pl.col("product_code").cast(pl.Int64),
        pl.col("index_group_no").cast(pl.Int32),
        *[pl.col(c).cast(pl.String).fill_null("") for c in GROUP_COLUMNS],
        *[pl.col(c).cast(pl.Int64).fill_null(-1) for c in (*COUNTED_COLUMNS, *SHARED_COLUMNS) if c in articles.columns],
    )
    paired = [(a, b) for a, b in PAIRED_COLUMNS if a in attrs.columns and b in attrs.columns]
    attrs = attrs.with_columns(
        *[pl.concat_str(a, b, separator="/").alias(paired_name(a, b)) for a, b in paired],
        pl.len().over("product_code").cast(pl.Float32).alias("item_variants"),  # its product's colours and sizes
    )
    table = attrs.join(stats, on="article_idx", how="left").join(
        _recent_sales(transactions, as_of, customers), on="article_idx", how="left").join(
        repeat_stats(transactions, as_of), on="article_idx", how="left")
    return table.with_columns(pl.col("item_sales_1d").fill_null(0)).with_columns(
        (pl.col("item_sales_1d") * 7 / pl.col("item_sales_1w")).cast(pl.Float32).alias("item_trend_1d_1w"),
        (pl.col("item_sales_1w") * 4 / pl.col("item_sales_4w")).cast(pl.Float32).alias("item_trend_1w_4w"),
    ).sort("article_idx")


def paired_name(a: str, b: str) -> str:
    """The article table's column holding the values of the pair (a, b) of PAIRED_COLUMNS."""
    return f"{a}_{b}"


def _recent_sales(transactions: pl.DataFrame, as_of: date, customers: pl.DataFrame) -> pl.DataFrame:
    """`article_idx, item_sales_1d` (the day before as_of) and `item_buyer_age` (mean age of the buyers of the
    last 28 days, each purchase counted)."""
    recent = transactions.lazy().filter((pl.col("t_dat") < as_of) & (pl.col("t_dat") >= as_of - timedelta(days=28)))
    ages = customers.lazy().select(pl.col("customer_idx").cast(pl.Int32), pl.col("age").cast(pl.Float32))
    return recent.join(ages, on="customer_idx", how="left").group_by("article_idx").agg(
        (pl.col("t_dat") >= as_of - timedelta(days=1)).sum().cast(pl.Int32).alias("item_sales_1d"),
        pl.col("age").mean().cast(pl.Float32).alias("item_buyer_age"),
    ).with_columns(pl.col("article_idx").cast(pl.Int32)).collect()


def repeat_stats(transactions: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """How all the article's buyers re-buy it, from the rows before as_of: `item_repeat_share`, the share of its
    buyers who bought it on two days or more; `item_days_per_buyer`, its buying days per buyer; `item_rebuy_interval`,
    the mean days between two days one buyer bought it (over the buyers who bought it again; null where none did)."""
    pairs = transactions.lazy().filter(pl.col("t_dat") < as_of).group_by("customer_idx", "article_idx").agg(
        pl.col("t_dat").n_unique().alias("days"),
        (pl.col("t_dat").max() - pl.col("t_dat").min()).dt.total_days().alias("span"))
    again = pl.col("days") >= 2
    return pairs.group_by("article_idx").agg(
        again.mean().cast(pl.Float32).alias("item_repeat_share"),
        pl.col("days").mean().cast(pl.Float32).alias("item_days_per_buyer"),
        (pl.col("span") / (pl.col("days") - 1)).filter(again).mean().cast(pl.Float32).alias("item_rebuy_interval"),
    ).with_columns(pl.col("article_idx").cast(pl.Int32)).collect()


@dataclass
class ArticleLookup:
    """`article_table()` as arrays, built once per table: the model inputs by article_idx, and the columns the
    interaction features group by as dense integer codes, so a live query groups a few dozen numbers instead of
    joining string columns."""

    table: pl.DataFrame
    features: dict[str, np.ndarray]  # the table's model inputs (attributes and item_ statistics), nan where null
    product: np.ndarray  # (n_articles,) dense code of product_code
    group_names: tuple[str, ...]  # the GROUP_COLUMNS, COUNTED_COLUMNS and SHARED_COLUMNS the table has ...
    group_codes: np.ndarray  # ... (n_articles, len(group_names)): dense codes, distinct across the columns
    index_group: np.ndarray  # (n_articles,) index_group_no, -1 where missing (store.features.index_groups)

    @classmethod
    def of(cls, table: pl.DataFrame) -> ArticleLookup:
        if not np.array_equal(table["article_idx"].to_numpy(), np.arange(table.height)):
            raise ValueError(f"the articles table ({table.height} rows) does not hold article_idx i in row i; "
                             "build it with article_table()")

        def codes(column: str) -> np.ndarray:
            return np.unique(table[column].to_numpy(), return_inverse=True)[1].astype(np.int64)

        counted = [c for c in (*COUNTED_COLUMNS, *SHARED_COLUMNS, *(paired_name(a, b) for a, b in PAIRED_COLUMNS))
                   if c in table.columns]
        inputs = table.drop("article_idx", "product_code", *GROUP_COLUMNS, *counted)
        features = {name: _floats(inputs[name]) for name in inputs.columns}
        names = (*GROUP_COLUMNS, *counted)
        group_codes = np.zeros((table.height, len(names)), dtype=np.int64)
        offset = 0
        for j, column in enumerate(names):  # column j's codes start above column j - 1's
            dense = codes(column)
            group_codes[:, j] = dense + offset
            offset += int(dense.max(initial=-1)) + 1
        return cls(table, features, codes("product_code"), names, group_codes, index_groups(table))


def _floats(column: pl.Series) -> np.ndarray:
    """A numeric column as a float array, nan where null (float32 stays float32)."""
    dtype = np.float32 if column.dtype == pl.Float32 else np.float64
    return column.cast(pl.Float32 if dtype is np.float32 else pl.Float64).to_numpy().astype(dtype, copy=False)


USER_COUNTS = tuple(c for c in USER_FEATURE_COLUMNS if c.startswith("purchases_") or c == "distinct_articles")


def user_columns(query: Query, articles: ArticleLookup) -> dict[str, np.ndarray]:
    """Per query row, in order: `user_age` and the user features (activity, recency, spend) prefixed `user_`; nan
    where unknown, but counts are 0 for a customer with no history."""
    stats = query.user_features(articles.index_group)
    columns = {"user_age": _floats(query.customers["age"].cast(pl.Float32))}
    for name, values in stats.items():
        columns[f"user_{name}"] = np.nan_to_num(values, nan=0.0) if name in USER_COUNTS else values
    return columns


def interaction_features(candidates: Candidates, query: Query, articles: ArticleLookup,
                         line_windows: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """User x article, one value per candidate line in order: times bought and days since (nan if never), the
    same for its product_code, the share of the customer's purchases in the article's group (0 without
    history), the re-buy features and where the article and its product sit in the customer's purchase order
    (with its count among the customer's newest lines for each of `line_windows`: `order_features`)."""
    h = query.arrays()
    rows = candidates.row.astype(np.int64)
    items = candidates.article_idx.astype(np.int64)
    product = articles.product
    columns, lookups = {}, {}  # lookups: each line's pair among the history's, which later features reuse
    for counted, since, bought, asked in (
        ("times_bought", "days_since_bought", pair_key(h.row, h.article_idx), pair_key(rows, items)),
        ("product_times_bought", "days_since_product", pair_key(h.row, product[h.article_idx]),
         pair_key(rows, product[items])),
    ):
        seen, count = group_sum(bought, np.ones(bought.size))
        _, newest = group_max(bought, -h.days)  # minus the fewest days since
        found, at = lookups[counted] = find_sorted(seen, asked)
        columns[counted] = _take(count, found, at)
        columns[since] = np.where(found, -_take(newest, found, at), np.nan)
    totals = np.maximum(np.bincount(h.row, minlength=len(query)).astype(np.float64), 1.0)
    counts = group_counts(h, rows, items, articles.group_codes)
    for j, column in enumerate(articles.group_names):
        if column in COUNTED_COLUMNS:
            columns[f"count_{column}"] = counts[j]
        columns[f"share_{column}"] = counts[j] / totals[rows]
    columns.update(repeat_features(h, rows, items, columns["days_since_bought"], lookup=lookups["times_bought"]))
    ordered = purchase_order(h)  # the article's and the product's place in it: one sort of the history for both
    columns.update(order_features(h, rows, items, lookup=lookups["times_bought"], ordered=ordered,
                                  windows=line_windows))
    columns.update(product_order_features(h, rows, items, product, lookup=lookups["product_times_bought"],
                                          ordered=ordered))
    return columns


GROUP_LINES = 1 << 16  # candidate lines counted at a time in `group_counts` (0.5 MB of keys a column) ...
GROUP_KEYS = 1 << 22  # ... and history keys sorted at a time (32 MB): a training window's millions of lines


def group_counts(h, rows: np.ndarray, items: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(columns, lines): how many of the customer's purchases share each candidate's value in each column of `codes`
    ((n_articles, columns), values distinct across the columns). A live query's columns go in one sort of the
    history's keys and two binary searches, since it pays per numpy call more than per value; a long history's
    in as many columns at a time as GROUP_KEYS holds (one at a time for a training window's)."""
    width = codes.shape[1]
    step = max(1, GROUP_KEYS // max(h.row.size, 1))
    out = np.empty((width, rows.size), dtype=np.float64)
    for first in range(0, width, step):
        part = codes[:, first : first + step]
        ordered = np.sort(pair_key(np.repeat(h.row, part.shape[1]), part[h.article_idx].ravel()))
        for start in range(0, rows.size, GROUP_LINES):
            lines = slice(start, start + GROUP_LINES)
            asked = pair_key(np.repeat(rows[lines], part.shape[1]), part[items[lines]].ravel())
            found = np.searchsorted(ordered, asked, "right") - np.searchsorted(ordered, asked, "left")
            out[first : first + part.shape[1], lines] = found.reshape(-1, part.shape[1]).T
    return out


def purchase_order(h) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The history's lines by customer, newest day first (positions in `h`), and each one's position in its
    customer's purchase order: the number of the customer's lines on newer days (float), and on its own day. It
    depends on the rows and days alone, so a history with other article codes (products, say) has the same."""
    order, newer, same_day = lines_on_newer_days(h.row, h.days)
    return order, newer.astype(np.float64), same_day


def order_features(h, rows: np.ndarray, items: np.ndarray, half_lives: tuple[int, ...] = LINE_HALF_LIVES,
                   lookup: tuple[np.ndarray, np.ndarray] | None = None,
                   ordered: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                   windows: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Where the article sits in the customer's purchase order, in lines rather than days (a customer who shops
    weekly and one who shops yearly both re-buy from their last few baskets). A line's position is the number of
    the customer's lines on newer days. `lines_since_bought`: the position of its newest line (nan if never
    bought); `line_weight_<h>`: its lines weighted 0.5 ** (position / h) (0 if never bought); `line_count_<n>` for
    each of `windows`: its lines among the customer's n newest, alike however old, a share of each line of the day
    the n-th newest falls on (`store.arrays.newest_lines`; a decay cannot say "the last few baskets" as sharply).
    `lookup`: where each line's pair is among the history's sorted distinct (customer, article) pairs
    (`find_sorted`), if known; `ordered`: `purchase_order(h)`, if known."""
    order, position, same_day = ordered or purchase_order(h)
    row, article = h.row[order], h.article_idx[order]
    # one sort of the (customer, article) pairs: a pair's first line in this order is its newest
    seen, first, inverse = np.unique(pair_key(row, article), return_index=True, return_inverse=True)
    found, at = lookup or find_sorted(seen, pair_key(rows, items))
    out = {"lines_since_bought": np.where(found, _take(position[first], found, at), np.nan)}
    for half_life in half_lives:
        weight = np.bincount(inverse, weights=0.5 ** (position / half_life), minlength=seen.size)
        out[f"line_weight_{half_life}"] = _take(weight, found, at)
    for n in windows:
        count = np.bincount(inverse, weights=window_share(position, same_day, n), minlength=seen.size)
        out[f"line_count_{n}"] = _take(count, found, at)
    return out


def product_order_features(h, rows: np.ndarray, items: np.ndarray, product: np.ndarray,
                           lookup: tuple[np.ndarray, np.ndarray] | None = None,
                           ordered: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """`order_features` of the candidate's product (its other colours and sizes count as it): `lines_since_product`,
    the position of the product's newest line in the customer's purchase order (nan if never bought), and
    `product_line_weight_8`. product: each article_idx's product code; `lookup`: as in `order_features`, among the
    (customer, product) pairs; `ordered`: `purchase_order(h)`, if known."""
    out = order_features(HistoryArrays(h.row, product[h.article_idx], h.days), rows, product[items], half_lives=(8,),
                         lookup=lookup, ordered=ordered)
    return {"lines_since_product": out["lines_since_bought"], "product_line_weight_8": out["line_weight_8"]}


def repeat_features(h, rows: np.ndarray, items: np.ndarray, days_since: np.ndarray,
                    lookup: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """How the customer re-buys, one value per candidate line: `day_share`, the share of the customer's shopping
    days that held the article (0 if never bought); `rebuy_interval`, the mean days between the days it was
    bought (nan below two days); `rebuy_due`, days since it was last bought over the customer's usual interval
    between buying one article again (nan if never bought or the customer never re-bought anything);
    `user_shopping_days`, the customer's days with a purchase, and `user_repeat_share`, the share of the articles
    they bought that they bought on two days or more (0 without history). `lookup` as in `order_features`."""
    pairs = pair_key(h.row, h.article_idx)
    order = np.lexsort((h.days, pairs))
    pairs, days = pairs[order], h.days[order]
    first = np.ones(pairs.size, dtype=bool)
    first[1:] = (pairs[1:] != pairs[:-1]) | (days[1:] != days[:-1])  # one line per (customer, article, day)
    pairs, days = pairs[first], days[first]  # still by pair, newest day (fewest days since) first
    starts = np.flatnonzero(np.append(pairs.size > 0, pairs[1:] != pairs[:-1]))
    seen, n_days = pairs[starts], np.diff(np.append(starts, pairs.size)).astype(np.float64)
    last = np.append(starts[1:], pairs.size)[: starts.size] - 1  # each pair's oldest day (most days since)
    span = days[last] - days[starts]  # days between the first and the last day it was bought
    with np.errstate(divide="ignore", invalid="ignore"):
        interval = np.where(n_days >= 2, span / (n_days - 1), np.nan)
    again = ~np.isnan(interval)
    # per customer: the history's distinct rows, in order (seen is sorted by customer, then article)
    customers, begins = np.unique(split_key(seen)[0], return_index=True)
    shop_days = np.unique(split_key(distinct(pair_key(h.row, h.days)))[0], return_counts=True)[1]  # same rows
    articles = np.diff(np.append(begins, seen.size))  # distinct articles bought
    owner = np.repeat(np.arange(customers.size), articles)  # each pair's customer
    repeated = np.bincount(owner, weights=again, minlength=customers.size)  # articles bought on two days or more
    # the mean of their intervals; bincount adds in order (reduceat adds pairwise: other last bits, other trees)
    spans = np.bincount(owner, weights=np.where(again, interval, 0.0), minlength=customers.size)
    usual = np.where(repeated > 0, spans / np.maximum(repeated, 1), np.nan)
    mine, at_customer = find_sorted(customers, rows)
    found, at = lookup or find_sorted(seen, pair_key(rows, items))
    shopping = _take(shop_days, mine, at_customer).astype(np.float64)
    out = {"day_share": _take(n_days, found, at) / np.maximum(shopping, 1),
           "rebuy_interval": np.where(found, _take(interval, found, at), np.nan),
           "user_shopping_days": shopping, "user_repeat_share": _take(repeated / articles, mine, at_customer)}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rebuy_due"] = days_since / np.where(mine, _take(usual, mine, at_customer), np.nan)
    return out


def _take(values: np.ndarray, found: np.ndarray, at: np.ndarray) -> np.ndarray:
    """values[at] where found, 0 elsewhere."""
    out = np.zeros(found.size, dtype=values.dtype)
    out[found] = values[at[found]]
    return out


def feature_arrays(candidates: Candidates, query: Query, articles: ArticleLookup,
                   line_windows: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Every ranker input for every candidate line, in the candidates' order: the sources' ranks and scores, the
    article's attributes and statistics, the user x article interactions, the customer's features, and the
    article's price against the customer's average. Floats, nan where missing (a source that did not propose
    the line, an article never sold, a customer with no history): the numbers LightGBM reads, with no table
    built on the way, since a live query pays a fixed cost for every Polars call. `line_windows`: the ranker's
    windows in lines (`FinalConfig.line_windows`, `interaction_features`)."""
    rows, items = candidates.row, candidates.article_idx
    columns: dict[str, np.ndarray] = {"row": rows, "article_idx": items}
    for name, ranks in candidates.ranks.items():
        columns[f"{name}_rank"] = np.where(ranks >= 0, ranks, np.nan).astype(np.float32)
        columns[f"{name}_score"] = candidates.scores[name]
    columns.update({name: values[items] for name, values in articles.features.items()})
    columns.update(interaction_features(candidates, query, articles, line_windows))
    columns.update({name: values[rows] for name, values in user_columns(query, articles).items()})
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["price_ratio"] = columns["item_mean_sale_price"] / columns["user_avg_price"]
        # the customer's wait since buying it against all buyers' usual gap (rebuy_due: against the customer's own)
        columns["rebuy_gap_due"] = columns["days_since_bought"] / columns["item_rebuy_interval"]
    columns["age_gap"] = columns["user_age"] - columns["item_buyer_age"]
    return columns


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model inputs: every numeric column except the keys and the label."""
    skip = {*KEY_COLUMNS, "label", "customer_idx"}
    return [c for c, t in frame.schema.items() if c not in skip and t.is_numeric()]
