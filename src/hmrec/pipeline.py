"""Runs every stage in order: raw files -> store -> fitted methods -> evaluation report -> registered bundle."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hmrec.evaluation.selection import Chosen
from hmrec.recommenders.base import Query, Recommender, TrainData, save_recommender
from hmrec.store.tables import ARTICLES, CUSTOMERS, Store

log = logging.getLogger(__name__)

HISTORY_PER_CUSTOMER = 100  # purchases kept per customer in a served bundle


@dataclass
class PipelineConfig:
    """Where the pipeline reads and writes, and the knobs that change its results."""

    workdir: Path
    raw: Path | None = None
    test_days: int = 7
    promote: bool = False
    seed: int = 7
    reports: Path | None = None  # where reports go (None: WORKDIR/reports)
    label_weeks: int = 2  # the ranker's label weeks; the week before them chooses the settings
    candidate_budget: int = 160  # candidates per customer summed over the sources, shared out on validation

    @property
    def store_dir(self) -> Path:
        return self.workdir / "store"

    @property
    def reports_dir(self) -> Path:
        return self.reports if self.reports is not None else self.workdir / "reports"


def load_train_data(store: Store) -> TrainData:
    """Everything before the store's cutoff, in memory (int32 indices keep the real data under ~1 GB)."""
    return TrainData(
        transactions=store.train_transactions().collect(),
        customers=store.read(CUSTOMERS),
        articles=store.read(ARTICLES),
        cutoff=store.cutoff,
    )


def fit_methods(data: TrainData, config: PipelineConfig) -> tuple[dict[str, Recommender], Chosen]:
    """Choose the settings on the validation week, then fit the popularity baseline, the final ranker and its
    sources (the ALS peer and the two-tower among them) with those settings on the same data."""
    from hmrec.evaluation.selection import SelectionConfig, choose_settings
    from hmrec.ranking.ranker import FinalConfig, FinalRecommender, default_sources
    from hmrec.recommenders.popularity import PopularityRecommender

    final_config = FinalConfig(label_weeks=config.label_weeks, seed=config.seed)
    chosen = choose_settings(data, final_config.label_starts(data.cutoff)[0],
                             lambda settings: default_sources(config.seed, settings),
                             SelectionConfig(budget=config.candidate_budget, seed=config.seed))
    popularity = PopularityRecommender(chosen.settings["popularity.window_days"])
    started = time.perf_counter()
    popularity.fit(data)
    log.info("fitted popularity in %.1f s", time.perf_counter() - started)
    sources = default_sources(config.seed, chosen.settings)
    sources["two_tower"] = chosen.fitted["two_tower"]  # fitted once, before the validation week: refreshed only
    final_config.n_per_source = dict(chosen.n_per_source)
    final = FinalRecommender(sources, final_config, warm=("two_tower",))
    started = time.perf_counter()
    final.fit(data)
    log.info("fitted final (sources + ranker) in %.1f s", time.perf_counter() - started)
    # Every candidate source is scored on its own too, so the report shows what the ranker adds over each.
    order = ("age_popularity", "repurchase", "als", "trending")
    methods: dict[str, Recommender] = {"popularity": popularity}
    methods.update({name: final.sources[name] for name in order if name in final.sources})
    methods.update({name: source for name, source in final.sources.items() if name not in methods})
    methods["final"] = final
    return methods, chosen


def write_bundle(store: Store, final: Recommender, directory: Path) -> Path:
    """Everything serving needs, in one folder: tables, recent histories and the final recommender."""
    directory.mkdir(parents=True)
    shutil.copy(store.path / f"{ARTICLES}.parquet", directory / "articles.parquet")
    shutil.copy(store.path / f"{CUSTOMERS}.parquet", directory / "customers.parquet")
    history = (
        store.scan("transactions")
        .sort(["customer_idx", "t_dat"])
        .group_by("customer_idx", maintain_order=True)
        .tail(HISTORY_PER_CUSTOMER)
        .collect()
    )
    history.write_parquet(directory / "history.parquet")
    save_recommender(final, directory / "final")
    return directory


def evaluate_workdir(config: PipelineConfig) -> Path:
    """Fit every method on the store in the workdir and write the report; returns metrics.json's path."""
    store = Store(config.store_dir)
    return _fit_and_report(store, config, run_id=_new_run_id())[0]


def run_pipeline(config: PipelineConfig) -> Path:
    """ETL, training, evaluation, tracking and registration; returns the new run's metrics.json path."""
    from hmrec.registry.tracking import Tracker
    from hmrec.registry.versions import Registry, write_manifest
    from hmrec.store.build import build_store

    if config.raw is None:
        raise ValueError("the pipeline needs --raw: the folder holding the three raw CSV files")
    run_id = _new_run_id()
    with Tracker.start(config.workdir, run_name=run_id, params=_params(config)) as tracker:
        started = time.perf_counter()
        manifest = build_store(config.raw, config.store_dir, test_days=config.test_days)
        tracker.log_metrics({"etl_seconds": time.perf_counter() - started})
        tracker.log_params({f"rows_{table}": n for table, n in manifest["rows"].items()})
        store = Store(config.store_dir)
        metrics_path, methods, metrics, chosen = _fit_and_report(store, config, run_id)
        tracker.log_params(chosen.params())
        tracker.log_metrics(_flatten(metrics))
        tracker.log_artifacts(metrics_path.parent, "report")

        bundle = write_bundle(store, methods["final"], config.workdir / "bundles" / run_id)
        write_manifest(
            bundle,
            store_fingerprint=store.fingerprint,
            extra={"run_id": run_id, "data_end": store.test_end.isoformat(), "metrics": metrics["methods"]},
        )
        registry = Registry.for_workdir(config.workdir)
        version = registry.register(bundle, run_id=tracker.run_id)
        if config.promote:
            registry.promote(version)
        log.info("registered version %s%s", version, " (champion)" if config.promote else "")
    return metrics_path


def _fit_and_report(store: Store, config: PipelineConfig, run_id: str):
    from hmrec.candidates.generate import candidate_recall_section
    from hmrec.evaluation.report import write_report
    from hmrec.evaluation.runner import evaluate_methods, ground_truth
    from hmrec.evaluation.selection import settings_section

    data = load_train_data(store)
    methods, chosen = fit_methods(data, config)
    customer_idx, relevant = ground_truth(store.test_transactions().collect())
    query = Query.for_customers(customer_idx, data.customers, data.transactions, as_of=store.cutoff)
    result = evaluate_methods(methods, query, relevant)
    final = methods["final"]
    out_dir = config.reports_dir / run_id
    metrics_path = write_report(
        result,
        out_dir,
        test_window=(store.cutoff, store.test_end),
        articles=data.articles,
        query=query,
        training_losses={"two_tower": methods["two_tower"].losses},
        extra_sections=[settings_section(chosen), candidate_recall_section(final, query, relevant),
                        final.importance_section()],
        run_info={"run_id": run_id, "store_fingerprint": store.fingerprint, "config": _params(config)},
    )
    _publish_latest(out_dir, config.reports_dir / "latest")
    return metrics_path, methods, json.loads(metrics_path.read_text()), chosen


def _publish_latest(run_dir: Path, latest: Path) -> None:
    """Replace reports/latest with a copy of the run's report, never leaving it half-written."""
    staging = latest.with_name(".latest-staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(run_dir, staging)
    old = latest.with_name(".latest-old")
    shutil.rmtree(old, ignore_errors=True)
    if latest.exists():
        latest.rename(old)
    staging.rename(latest)
    shutil.rmtree(old, ignore_errors=True)


def _new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _params(config: PipelineConfig) -> dict:
    return {k: str(v) for k, v in asdict(config).items()}


def _flatten(metrics: dict) -> dict[str, float]:
    return {
        f"{method}.{name.replace('@', '_at_')}": value
        for method, values in metrics["methods"].items()
        for name, value in values.items()
        if isinstance(value, (int, float))
    }
