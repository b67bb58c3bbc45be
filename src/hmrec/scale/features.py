"""Features as of the cutoff on Ray: user features per customer partition, per-article partial sums reduced once.

The training rows are split by customer (customer_idx modulo the partition count, as the store's partitions),
so every customer's whole history is in one partition: `user_features` of each partition are final rows, and
`item_partials` (counts, price sums, distinct buyers) add up across partitions in `combine_item_partials`,
the reduce the local engine also runs over its one partition.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from hmrec.scale.cluster import cluster_cpus
from hmrec.store.build import local_features
from hmrec.store.features import combine_item_partials, item_partials, user_features
from hmrec.store.tables import customer_partition

PART = "_partition"


@dataclass
class RayFeatures:
    """build.Featurer on Ray: one task per customer partition (default: one per CPU); `pids` records the workers."""

    partitions: int | None = None
    pids: set[int] = field(default_factory=set)

    def __call__(self, train: pl.DataFrame, articles: pl.DataFrame, cutoff: date) -> tuple[pl.DataFrame, pl.DataFrame]:
        import ray

        if train.is_empty():
            return local_features(train, articles, cutoff)
        n = self.partitions or cluster_cpus()
        parts = train.with_columns(customer_partition(n).alias(PART)).partition_by(PART, include_key=False)
        task = ray.remote(num_cpus=1)(_partition_features)
        shared = ray.put(articles)
        results = ray.get([task.remote(ray.put(part), shared, cutoff) for part in parts])
        self.pids.update(pid for *_, pid in results)
        users = pl.concat([u for u, _, _ in results]).sort("customer_idx")
        return users, combine_item_partials([i for _, i, _ in results], articles, cutoff)


def _partition_features(rows: pl.DataFrame, articles: pl.DataFrame, cutoff: date):
    """Run in a Ray worker: one partition's user features (final) and item partial sums, and this process's id."""
    return user_features(rows, articles, cutoff), item_partials(rows, cutoff), os.getpid()
