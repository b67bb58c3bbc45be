"""Ranker features for (customer row, candidate article) pairs: source ranks and scores, user x article
interactions from the query's history, article statistics and customer statistics, all as of `as_of`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from hmrec.recommenders.base import Query
from hmrec.store.arrays import group_max, group_sum, pair_key
from hmrec.store.features import item_features

GROUP_COLUMNS = ("product_group_name", "index_group_name")


def article_table(transactions: pl.DataFrame, articles: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """One row per article of `articles`: the attributes that interactions use, and `item_features` as of
    `as_of` (from the rows of `transactions` strictly before it), prefixed `item_`."""
    stats = item_features(transactions, articles, as_of)
    stats = stats.rename({c: f"item_{c}" for c in stats.columns if c != "article_idx"})
    attrs = articles.select(
        pl.col("article_idx").cast(pl.Int32),
        pl.col("product_code").cast(pl.Int64),
        pl.col("index_group_no").cast(pl.Int32),
        *[pl.col(c).cast(pl.String).fill_null("") for c in GROUP_COLUMNS],
    )
    return attrs.join(stats, on="article_idx", how="left").sort("article_idx")


def article_rows(articles: pl.DataFrame, article_idx: pl.Series) -> pl.DataFrame:
    """The rows of `articles` (row i holds article_idx i, as `article_table` makes it) for `article_idx`, in
    that order: a gather, where a join would hash the whole table on every query."""
    rows = articles[article_idx.to_numpy()]
    if not rows["article_idx"].cast(pl.Int64).equals(article_idx.cast(pl.Int64).rename("article_idx")):
        raise ValueError(f"the articles table ({articles.height} rows) does not hold article_idx i in row i; "
                         "build it with article_table()")
    return rows


@dataclass
class ArticleLookup:
    """`article_table()` with the columns the interaction features group by as dense integer codes, built once
    per table: a live query then groups a few dozen numbers instead of joining string columns."""

    table: pl.DataFrame
    features: pl.DataFrame  # the table's model inputs (attributes and item_ statistics), row i = article_idx i
    product: np.ndarray  # (n_articles,) dense code of product_code
    groups: dict[str, np.ndarray]  # GROUP_COLUMNS -> (n_articles,) dense code

    @classmethod
    def of(cls, table: pl.DataFrame) -> ArticleLookup:
        article_rows(table, table["article_idx"])  # raises unless row i holds article_idx i

        def codes(column: str) -> np.ndarray:
            return np.unique(table[column].to_numpy(), return_inverse=True)[1].astype(np.int64)

        features = table.drop("article_idx", "product_code", *GROUP_COLUMNS)
        return cls(table, features, codes("product_code"), {column: codes(column) for column in GROUP_COLUMNS})


def user_table(query: Query, articles: pl.DataFrame) -> pl.DataFrame:
    """Per query row, in order: age and `user_features` from the row's history (activity, recency, spend),
    prefixed `user_`; counts are 0 for a customer with no history. `articles`: at least article_idx and
    index_group_no."""
    stats = query.user_features(articles)
    stats = stats.rename({c: f"user_{c}" for c in stats.columns if c != "row"})
    counts = [c for c in stats.columns if c.startswith("user_purchases_") or c == "user_distinct_articles"]
    age = query.customers["age"].cast(pl.Float32).alias("user_age")
    return stats.insert_column(1, age).with_columns(pl.col(counts).fill_null(0))


def interaction_features(candidates: pl.DataFrame, query: Query, articles: ArticleLookup) -> pl.DataFrame:
    """User x article, one row per candidate line in order: times bought and days since, the same for its
    product_code, and the share of the customer's purchases in the article's group (0 without history)."""
    h = query.arrays()
    rows = candidates["row"].to_numpy().astype(np.int64)
    items = candidates["article_idx"].to_numpy().astype(np.int64)
    product = articles.product
    columns = []
    for counted, since, bought, asked in (
        ("times_bought", "days_since_bought", pair_key(h.row, h.article_idx), pair_key(rows, items)),
        ("product_times_bought", "days_since_product", pair_key(h.row, product[h.article_idx]),
         pair_key(rows, product[items])),
    ):
        distinct, count = group_sum(bought, np.ones(bought.size))
        _, newest = group_max(bought, -h.days)  # minus the fewest days since
        found, at = _find(distinct, asked)
        columns.append(pl.Series(counted, _take(count, found, at), dtype=pl.UInt32))
        columns.append(pl.Series(since, _take(-newest, found, at), dtype=pl.Int64).set(pl.Series(~found), None))
    totals = np.bincount(h.row, minlength=len(query)).astype(np.float64)
    for column in GROUP_COLUMNS:
        codes = articles.groups[column]
        distinct, count = group_sum(pair_key(h.row, codes[h.article_idx]), np.ones(h.row.size))
        found, at = _find(distinct, pair_key(rows, codes[items]))
        share = _take(count, found, at) / np.maximum(totals[rows], 1.0)
        columns.append(pl.Series(f"share_{column}", share, dtype=pl.Float64))
    return pl.DataFrame(columns)


def _find(distinct: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each of `keys` is in the sorted `distinct`, and where (meaningful only where found)."""
    at = np.searchsorted(distinct, keys)
    found = at < distinct.size
    found[found] = distinct[at[found]] == keys[found]
    return found, at


def _take(values: np.ndarray, found: np.ndarray, at: np.ndarray) -> np.ndarray:
    """values[at] where found, 0 elsewhere."""
    out = np.zeros(found.size, dtype=values.dtype)
    out[found] = values[at[found]]
    return out


def build_features(
    candidates: pl.DataFrame, query: Query, articles: pl.DataFrame | ArticleLookup
) -> pl.DataFrame:
    """Candidates (`row, article_idx, <source>_rank/_score`) joined with every feature; `articles` is
    `article_table()` as of the query's date (or the model's cutoff for a live query), or its ArticleLookup.
    Sorted by row, then article_idx."""
    lookup = articles if isinstance(articles, ArticleLookup) else ArticleLookup.of(articles)
    keys = pair_key(candidates["row"].to_numpy(), candidates["article_idx"].to_numpy())
    if np.any(keys[1:] < keys[:-1]):
        candidates = candidates.sort("row", "article_idx")
    items = lookup.features[candidates["article_idx"].to_numpy()]
    users = user_table(query, lookup.table)[candidates["row"].to_numpy()].drop("row")
    frame = pl.concat([candidates, items, interaction_features(candidates, query, lookup), users], how="horizontal")
    return frame.with_columns((pl.col("item_mean_sale_price") / pl.col("user_avg_price")).alias("price_ratio"))


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model inputs: every numeric column except the keys and the label."""
    skip = {"row", "article_idx", "label", "customer_idx"}
    return [c for c, t in frame.schema.items() if c not in skip and t.is_numeric()]
