"""A registered version scored on a store's held-out window without refitting: the champion's report (`hmrec
evaluate`), and a version trained on another store asked through its own id maps (the retrain's gate)."""

from __future__ import annotations

from pathlib import Path

from hmrec.data.files import publish_copy
from hmrec.pipeline import PipelineConfig, held_out_query, load_train_data, new_run_id
from hmrec.recommenders.base import Recommender
from hmrec.store.tables import ARTICLES, CUSTOMERS, Store


def final_on_store(store: Store, bundle: Path) -> Recommender:
    """A bundle's final recommender asked in `store`'s ids through its own id maps (evaluation/idmapped.py): a
    customer the bundle does not know answered as a new one, as the service would; the way a version trained on an
    older store (the champion after a retrain that did not promote it away) is scored on the new one."""
    import polars as pl

    from hmrec.evaluation.idmapped import IdMapped, IdMaps
    from hmrec.registry.model_bundle import bundle_paths, load_final

    paths = bundle_paths(bundle)
    maps = IdMaps(store.read(CUSTOMERS).select("customer_idx", "customer_id"),
                  store.read(ARTICLES).select("article_idx", "article_id"),
                  pl.read_parquet(paths.customers),
                  pl.read_parquet(paths.articles, columns=["article_idx", "article_id"]))
    return IdMapped(load_final(bundle), maps)


def score_champion(config: PipelineConfig) -> Path:
    """Score the registry's champion (its final recommender and each of its sources) on the held-out window of
    the workdir's store, refitting nothing; writes the report and returns metrics.json's path. A champion trained
    on another store (a retrain registered a newer version without promoting it) is asked through its own id maps."""
    from hmrec.evaluation.report import ranker_sections, write_report
    from hmrec.evaluation.runner import evaluate_methods
    from hmrec.registry.model_bundle import load_final, read_manifest
    from hmrec.registry.versions import Registry

    store = Store(config.store_dir)
    version, bundle = Registry.for_workdir(config.workdir).load_version("champion")
    trained_on = read_manifest(Path(bundle)).get("store_fingerprint")
    same_store = trained_on == store.fingerprint
    final = load_final(Path(bundle)) if same_store else final_on_store(store, Path(bundle))
    methods = {**final.parts(), "final": final}
    data = load_train_data(store)
    query, relevant = held_out_query(store, data)
    result = evaluate_methods(methods, query, relevant)
    run_id = new_run_id()
    sections = ranker_sections(final, query, relevant) if same_store else []  # they read the ranker's own ids
    metrics_path = write_report(
        result, config.reports_dir / run_id, test_window=(store.cutoff, store.test_end), articles=data.articles,
        query=query, extra_sections=sections,
        run_info={"run_id": run_id, "store_fingerprint": store.fingerprint, "model_version": version,
                  "model_store_fingerprint": trained_on},
    )
    publish_copy(metrics_path.parent, config.reports_dir / "latest")
    return metrics_path
