"""Benchmark of the `final` method on a built store: fit, candidates + ranking for every held-out customer,
one customer's end-to-end latency, MAP@12 against the baselines and the sources, and candidate recall.

    .venv/bin/python bench/rank.py --store /tmp/e_store [--no-two-tower] [--json out.json]
    .venv/bin/python bench/rank.py --workdir W [--json out.json]   # the champion `hmrec pipeline` registered in W:
                                                                  # no fitting, timings only
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl

from hmrec import logs
from hmrec.candidates.generate import candidate_recall, generate_candidates, propose
from hmrec.candidates.sources import build_sources as default_sources
from hmrec.data import Query
from hmrec.evaluation.metrics import map_at_k, recall_at_k
from hmrec.pipeline import load_train_data
from hmrec.ranking.features import ArticleLookup, feature_arrays
from hmrec.ranking.ranker import FinalRecommender
from hmrec.ranking.scoring import feature_matrix, pair_score_name
from hmrec.recommenders.base import load_recommender, save_recommender
from hmrec.store.tables import Store

log = logging.getLogger("bench.rank")


def baselines(seed: int) -> dict:
    from hmrec.recommenders.als import ALSConfig, ALSRecommender
    from hmrec.recommenders.popularity import AgePopularityRecommender, PopularityRecommender
    from hmrec.recommenders.repurchase import RepurchaseRecommender

    return {"popularity": PopularityRecommender(), "age_popularity": AgePopularityRecommender(),
            "repurchase": RepurchaseRecommender(), "als": ALSRecommender(ALSConfig(seed=seed))}


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def one_customer_latency(final: FinalRecommender, data, customer_idx: np.ndarray, as_of, repeats: int) -> dict:
    """Median milliseconds of each step for one-row queries, as `FinalRecommender.scored` runs them: build the
    query from the customer's rows, the two-tower user vectors (once, for both retrieval and pair scores), the
    sources' candidates (the two-tower's index search included), the features, the pair scores, LightGBM
    predict, and the whole recommend."""
    names = ("query", "user_vectors", "candidates", "features", "pair_scores", "predict", "recommend")
    steps: dict[str, list[float]] = {name: [] for name in names}
    history = data.transactions.filter(pl.col("customer_idx").is_in(customer_idx[:repeats].tolist()))
    two_tower = final.sources.get("two_tower")
    for c in customer_idx[:repeats]:
        query, t = timed(Query.for_customers, np.array([c]), data.customers, history, as_of)
        steps["query"].append(t)
        answered, search_s = {}, 0.0
        if two_tower is not None:
            users, t = timed(two_tower.user_vectors, query)
            steps["user_vectors"].append(t)
            answered["two_tower"], search_s = timed(two_tower.search, users, final.n_per_source["two_tower"])
        candidates, t = timed(propose, final.sources, query, final.n_per_source, answered)
        steps["candidates"].append(search_s + t)
        features, t = timed(feature_arrays, candidates, query, ArticleLookup.of(final.articles_))
        steps["features"].append(t)
        if two_tower is not None:
            features[pair_score_name("two_tower")], t = timed(two_tower.pair_scores, users, candidates.row,
                                                              candidates.article_idx)
            steps["pair_scores"].append(t)
        _, t = timed(lambda x: final.booster_.predict(x, num_threads=1), feature_matrix(final.state_.feature_names,
                                                                                        features))
        steps["predict"].append(t)
        fresh = Query(query.customers, query.history, query.as_of)  # no user features cached by the steps above
        _, t = timed(final.recommend, fresh, 12)
        steps["recommend"].append(t)
    return {name: statistics.median(values) * 1000 for name, values in steps.items() if values}


def registered(workdir: Path, repeats: int) -> dict:
    """Timings of the champion registered in `workdir` on its own store's held-out customers."""
    from hmrec.registry.model_bundle import load_final
    from hmrec.registry.versions import Registry

    version, path = Registry.for_workdir(workdir).load_version("champion")
    (final, load_s), store = timed(load_final, Path(path)), Store(workdir / "store")
    data = load_train_data(store)
    buyers = store.test_transactions().select("customer_idx").unique().collect()
    customer_idx = np.sort(buyers["customer_idx"].to_numpy())
    query, query_s = timed(Query.for_customers, customer_idx, data.customers, data.transactions, store.cutoff)
    _, candidates_s = timed(generate_candidates, final.sources, query, final.n_per_source)
    _, batch_s = timed(final.recommend, query, 12)
    return {"workdir": str(workdir), "version": version, "load_s": load_s, "customers": len(query),
            "query_s": query_s, "candidates_s": candidates_s, "batch_recommend_s": batch_s,
            "one_customer_ms": one_customer_latency(final, data, customer_idx, store.cutoff, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--workdir", type=Path, help="time the champion registered here instead of fitting")
    parser.add_argument("--no-two-tower", action="store_true", help="leave the two-tower source out")
    parser.add_argument("--two-tower", type=Path, default=None,
                        help="a saved two-tower fitted before the ranker's label week: used as is, not refitted")
    parser.add_argument("--save-two-tower", type=Path, default=None, help="save the fitted two-tower here")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logs.configure()
    if args.workdir is not None:
        result = registered(args.workdir, args.repeats)
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    if args.store is None:
        parser.error("give --store (fit and time) or --workdir (time the registered champion)")
    store = Store(args.store)
    data = load_train_data(store)
    test = store.test_transactions().collect()
    truth = test.group_by("customer_idx").agg(pl.col("article_idx").unique()).sort("customer_idx")
    customer_idx = truth["customer_idx"].to_numpy()
    relevant = [list(v) for v in truth["article_idx"].to_list()]
    query = Query.for_customers(customer_idx, data.customers, data.transactions, as_of=store.cutoff)

    sources = default_sources(seed=args.seed)
    prefitted = []
    if args.no_two_tower:
        sources.pop("two_tower")
    elif args.two_tower:
        sources["two_tower"], prefitted = load_recommender(args.two_tower), ["two_tower"]
    final, fit_s = timed(FinalRecommender(sources, prefitted=prefitted).fit, data)
    if args.save_two_tower and "two_tower" in sources:
        save_recommender(sources["two_tower"], args.save_two_tower)
    recs, batch_s = timed(final.recommend, query, 12)
    result = {"store": str(args.store), "customers": len(query), "fit_s": fit_s, "batch_recommend_s": batch_s,
              "map@12": {"final": map_at_k(recs.items, relevant)}, "recall@12": {}}
    for name, method in {**baselines(args.seed), **final.sources}.items():
        if name not in final.sources:
            method.fit(data)
        items = method.recommend(query, 12).items
        result["map@12"][name] = map_at_k(items, relevant)
        result["recall@12"][name] = recall_at_k(items, relevant, 12)
    result["recall@12"]["final"] = recall_at_k(recs.items, relevant, 12)
    candidates, result["candidates_s"] = timed(generate_candidates, final.sources, query, final.n_per_source)
    result["candidates_per_customer"] = candidates.height / len(query)
    result["candidate_recall"] = candidate_recall(candidates, relevant)
    result["one_customer_ms"] = one_customer_latency(final, data, customer_idx, store.cutoff, args.repeats)
    result["importance"] = final.feature_importance().head(15).to_dicts()
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
