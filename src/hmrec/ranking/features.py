"""Ranker features for (customer row, candidate article) pairs: source ranks and scores, user x article
interactions from the query's history, article statistics and customer statistics, all as of `as_of`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from hmrec.candidates.generate import Candidates
from hmrec.recommenders.base import Query
from hmrec.store.arrays import group_max, group_sum, pair_key
from hmrec.store.features import USER_FEATURE_COLUMNS, index_groups, item_features

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


@dataclass
class ArticleLookup:
    """`article_table()` as arrays, built once per table: the model inputs by article_idx, and the columns the
    interaction features group by as dense integer codes, so a live query groups a few dozen numbers instead of
    joining string columns."""

    table: pl.DataFrame
    features: dict[str, np.ndarray]  # the table's model inputs (attributes and item_ statistics), nan where null
    product: np.ndarray  # (n_articles,) dense code of product_code
    groups: dict[str, np.ndarray]  # GROUP_COLUMNS -> (n_articles,) dense code
    index_group: np.ndarray  # (n_articles,) index_group_no, -1 where missing (store.features.index_groups)

    @classmethod
    def of(cls, table: pl.DataFrame) -> ArticleLookup:
        if not np.array_equal(table["article_idx"].to_numpy(), np.arange(table.height)):
            raise ValueError(f"the articles table ({table.height} rows) does not hold article_idx i in row i; "
                             "build it with article_table()")

        def codes(column: str) -> np.ndarray:
            return np.unique(table[column].to_numpy(), return_inverse=True)[1].astype(np.int64)

        inputs = table.drop("article_idx", "product_code", *GROUP_COLUMNS)
        features = {name: _floats(inputs[name]) for name in inputs.columns}
        return cls(table, features, codes("product_code"), {column: codes(column) for column in GROUP_COLUMNS},
                   index_groups(table))


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


def interaction_features(candidates: Candidates, query: Query, articles: ArticleLookup) -> dict[str, np.ndarray]:
    """User x article, one value per candidate line in order: times bought and days since (nan if never), the
    same for its product_code, and the share of the customer's purchases in the article's group (0 without
    history)."""
    h = query.arrays()
    rows = candidates.row.astype(np.int64)
    items = candidates.article_idx.astype(np.int64)
    product = articles.product
    columns = {}
    for counted, since, bought, asked in (
        ("times_bought", "days_since_bought", pair_key(h.row, h.article_idx), pair_key(rows, items)),
        ("product_times_bought", "days_since_product", pair_key(h.row, product[h.article_idx]),
         pair_key(rows, product[items])),
    ):
        distinct, count = group_sum(bought, np.ones(bought.size))
        _, newest = group_max(bought, -h.days)  # minus the fewest days since
        found, at = _find(distinct, asked)
        columns[counted] = _take(count, found, at)
        columns[since] = np.where(found, -_take(newest, found, at), np.nan)
    totals = np.bincount(h.row, minlength=len(query)).astype(np.float64)
    for column in GROUP_COLUMNS:
        codes = articles.groups[column]
        distinct, count = group_sum(pair_key(h.row, codes[h.article_idx]), np.ones(h.row.size))
        found, at = _find(distinct, pair_key(rows, codes[items]))
        columns[f"share_{column}"] = _take(count, found, at) / np.maximum(totals[rows], 1.0)
    return columns


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


def feature_arrays(candidates: Candidates, query: Query, articles: ArticleLookup) -> dict[str, np.ndarray]:
    """Every ranker input for every candidate line, in the candidates' order: the sources' ranks and scores, the
    article's attributes and statistics, the user x article interactions, the customer's features, and the
    article's price against the customer's average. Floats, nan where missing (a source that did not propose
    the line, an article never sold, a customer with no history): the numbers LightGBM reads, with no table
    built on the way, since a live query pays a fixed cost for every Polars call."""
    rows, items = candidates.row, candidates.article_idx
    columns: dict[str, np.ndarray] = {"row": rows, "article_idx": items}
    for name, ranks in candidates.ranks.items():
        columns[f"{name}_rank"] = np.where(ranks >= 0, ranks, np.nan).astype(np.float32)
        columns[f"{name}_score"] = candidates.scores[name]
    columns.update({name: values[items] for name, values in articles.features.items()})
    columns.update(interaction_features(candidates, query, articles))
    columns.update({name: values[rows] for name, values in user_columns(query, articles).items()})
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["price_ratio"] = columns["item_mean_sale_price"] / columns["user_avg_price"]
    return columns


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The model inputs: every numeric column except the keys and the label."""
    skip = {"row", "article_idx", "label", "customer_idx"}
    return [c for c, t in frame.schema.items() if c not in skip and t.is_numeric()]
