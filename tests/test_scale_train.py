"""Two-tower training on Ray Train: two worker processes train the model to the one-process model's recall."""

from __future__ import annotations

import os

import polars as pl

from hmrec.data import Query
from hmrec.evaluation.metrics import recall_at_k
from hmrec.pipeline import load_train_data
from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender
from hmrec.scale.engine import RayEngine

# 5 epochs: at 3 the gap on the tiny sample was 2.5-4.5% over seeds 0-2, too close to the 5% bar to say much.
CONFIG = TwoTowerConfig(epochs=5, threads=1, index_kind="flat", seed=0)


def held_out_recall(model: TwoTowerRecommender, store) -> float:
    """Recall@100 over the customers who bought in the store's test week."""
    data = load_train_data(store)
    truth = (store.test_transactions().collect().group_by("customer_idx")
             .agg(pl.col("article_idx").unique()).sort("customer_idx"))
    query = Query.for_customers(truth["customer_idx"].to_numpy(), data.customers, data.transactions, store.cutoff)
    return recall_at_k(model.recommend(query, 100).items, [set(a) for a in truth["article_idx"].to_list()], 100)


def test_two_ray_workers_train_to_the_one_process_recall(ray_cluster, tiny_store):  # noqa: F811
    data = load_train_data(tiny_store)
    local = TwoTowerRecommender(CONFIG).fit(data)
    trainer = RayEngine(train_workers=2).trainer()  # joins the tests' Ray session
    on_ray = TwoTowerRecommender(CONFIG, train_fn=trainer).fit(data)
    assert len(set(trainer.worker_pids)) == 2 and os.getpid() not in trainer.worker_pids, trainer.worker_pids
    assert len(set(trainer.worker_weights)) == 1  # averaged gradients keep the workers' weights identical
    expected, got = held_out_recall(local, tiny_store), held_out_recall(on_ray, tiny_store)
    assert expected > 0.3  # the local model learned something, so "within 5%" says something
    assert abs(got - expected) / expected <= 0.05, (got, expected)
    assert on_ray.losses and on_ray.n_examples == local.n_examples
