"""Runs every stage in order: raw files -> store -> fitted methods -> evaluation report -> registered bundle."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from hmrec import cpus
from hmrec.data import Query, TrainData
from hmrec.data.files import publish_copy
from hmrec.evaluation.selection import Chosen
from hmrec.ranking.windows import WindowPlanConfig, plan_windows
from hmrec.recommenders.base import Recommender
from hmrec.registry.writer import writes_workdir
from hmrec.scale.engine import Engine, LocalEngine
from hmrec.store.tables import ARTICLES, CUSTOMERS, ITEM_FEATURES, TRANSACTIONS, USER_FEATURES, Store

log = logging.getLogger(__name__)

AP_FILE = "ap12_per_buyer.parquet"


@dataclass
class PipelineConfig:
    """Where the pipeline reads and writes, and the knobs that change its results."""

    workdir: Path
    raw: Path | None = None
    test_days: int = 7
    promote: bool = False
    seed: int = 7
    reports: Path | None = None  # where reports go (None: WORKDIR/reports)
    engine: Engine = field(default_factory=LocalEngine)  # local, or Ray for ETL, training and batch scoring
    horizon_days: int | None = None  # the prediction horizon: label and validation windows' days (None: test_days)
    label_windows: int | None = None  # the ranker's label windows (None: planned, `window_plan`); the window
    # before the nearest `window_plan.near_windows` of them chooses the settings, the others lie behind it
    window_plan: WindowPlanConfig = field(default_factory=WindowPlanConfig)
    search_fits: int = 15  # LightGBM fits the ranker's settings search may spend (ranking/search.py; 1: defaults)
    candidate_budget: int = 160  # candidates per customer summed over the sources, shared out on validation
    precompute: str = "active"  # whose answers the bundle holds precomputed: scale/precompute.py's PRECOMPUTE

    @property
    def horizon(self) -> int:
        return self.horizon_days or self.test_days

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
        item_table=store.read(ITEM_FEATURES),  # as of the cutoff: the ranker's and the two-tower's item features
    )


def fit_methods(data: TrainData, config: PipelineConfig) -> tuple[dict[str, Recommender], Chosen]:
    """Choose the settings on the validation week (before the ranker's near label windows, after those behind it:
    `FinalConfig.label_starts`), then fit the catalogue's methods with those settings on the same data: those
    evaluated on their own only (the popularity baseline), and the final ranker with its candidate sources (each
    also scored on its own, so the report shows what the ranker adds over each)."""
    from hmrec.candidates.sources import build_sources, entries, report_order
    from hmrec.evaluation.selection import SelectionConfig, choose_settings
    from hmrec.ranking.ranker import FinalRecommender

    final_config = ranker_config(data, config)
    trainer = _trainer(config)
    chosen = choose_settings(data, final_config.settings_end(data.cutoff), entries(),
                             SelectionConfig(valid_days=config.horizon, budget=config.candidate_budget,
                                             seed=config.seed), trainer=trainer)
    methods: dict[str, Recommender] = {}
    for source in (source for source in entries() if source.candidates is None):
        started = time.perf_counter()
        methods[source.name] = source.build(chosen.settings[source.name]).fit(data)
        log.info("fitted %s in %.1f s", source.name, time.perf_counter() - started)
    sources = build_sources(config.seed, chosen.settings, trainer=trainer)
    # a source fitted once (the two-tower) keeps its fit from before the validation week: it is refreshed only
    warm = tuple(name for name, source in sources.items() if source.fit_once)
    behind = {name: sources[name] for name in warm}  # unfitted: for the label windows behind the settings' window
    sources.update({name: chosen.fitted[name] for name in warm})
    final_config.n_per_source = dict(chosen.n_per_source)
    final_config.line_windows = () if chosen.line_window is None else (chosen.line_window,)
    final = FinalRecommender(sources, final_config, warm=warm, behind=behind)
    started = time.perf_counter()
    final.fit(data)
    log.info("fitted final (sources + ranker) in %.1f s", time.perf_counter() - started)
    methods.update(final.sources)
    ordered = {name: methods[name] for name in report_order() if name in methods}
    return {**ordered, **methods, "final": final}, chosen


def ranker_config(data: TrainData, config: PipelineConfig):
    """The ranker's settings: label windows of the horizon (their count planned from the training signal unless
    given), the training buyers its memory allows at the candidate budget, the search's budget of fits."""
    from hmrec.ranking.ranker import FinalConfig

    windows, plan = config.label_windows, "given"
    if windows is None:
        planned = plan_windows(data.transactions, data.cutoff, config.horizon, config.candidate_budget,
                               config.window_plan)
        windows, wanted = planned.windows, config.window_plan
        plan = (f"planned: {planned.label_lines:,} bought pairs and {planned.label_buyers:,} buyers (wanted at least "
                f"{wanted.min_label_lines:,} and {wanted.min_label_buyers:,}; stopped by {planned.stopped}, at most "
                f"{wanted.max_windows} windows and {wanted.max_training_lines:,} training lines)")
    return FinalConfig(label_days=config.horizon, label_windows=windows, near_windows=config.window_plan.near_windows,
                       label_plan=plan, seed=config.seed,
                       search_fits=config.search_fits,
                       max_train_customers=config.window_plan.max_training_lines // max(config.candidate_budget, 1))


def ranker_params(final) -> dict[str, str]:
    """The ranker's horizon, label windows and searched settings as MLflow params (`ranker.<name>`)."""
    config, state = final.config, final.state_
    params = {"label_days": config.label_days, "label_windows": config.label_windows, "near_windows": config.near(),
              "search_fits": len(state.search), **state.params}
    return {f"ranker.{name}": str(value) for name, value in params.items()}


def _trainer(config: PipelineConfig):
    """The engine's trainer for the sources that can hand their training over (None: train in this process)."""
    return config.engine.trainer()


def write_store_bundle(store: Store, methods: dict[str, Recommender], directory: Path, extra: dict,
                       config: PipelineConfig) -> Path:
    """The served model of a run (registry/model_bundle.py): the store's tables, `final`, the cold start and the
    precomputed answers of `config.precompute`'s customers, scored on the engine from the bundle's own parts
    before its manifest is written (so they are checksummed with the rest, and registered with it)."""
    from hmrec.candidates.sources import cold_start
    from hmrec.registry.model_bundle import write_bundle
    from hmrec.scale.precompute import precompute_answers

    return write_bundle(
        directory, articles=store.read(ARTICLES), customers=store.read(CUSTOMERS),
        transactions=store.scan(TRANSACTIONS), final=methods["final"], cold_start=methods[cold_start()],
        data_end=store.test_end, store_fingerprint=store.fingerprint, extra=extra,
        answers=lambda paths: precompute_answers(config.engine, paths, config.precompute),
    )


def precompute_version(workdir: Path, version_or_alias: int | str, engine: Engine, which: str = "active",
                       promote: bool = False) -> int:
    """Register a copy of a registered version holding the precomputed answers of `which` customers (registry
    versions never change); `promote` makes it the champion if the champion has not moved meanwhile. Returns the
    new version."""
    from hmrec.registry.model_bundle import copy_with_answers
    from hmrec.registry.versions import Registry
    from hmrec.registry.writer import workdir_writer
    from hmrec.scale.precompute import precompute_answers

    with workdir_writer(workdir):  # kept if the caller holds it already (--wait)
        registry = Registry.for_workdir(workdir)
        champion_at_start = registry.champion_version()
        version, source = registry.load_version(version_or_alias)
        bundle = copy_with_answers(source, workdir / "bundles" / f"{new_run_id()}-v{version}-precomputed",
                                   lambda paths: precompute_answers(engine, paths, which),
                                   extra={"precomputed_from": version})
        new = registry.register(bundle)
        if promote:
            registry.promote(new, expected=champion_at_start)
    log.info("registered version %d: version %d with the answers of %s customers precomputed", new, version, which)
    return new


def held_out_query(store: Store, data: TrainData) -> tuple[Query, list]:
    """The held-out window's buyers as of the cutoff, and what each bought; the store computed their features as
    of the cutoff (user_features.parquet), so they are read, not computed again."""
    from hmrec.evaluation.runner import ground_truth

    customer_idx, relevant = ground_truth(store.test_transactions().collect())
    query = Query.for_customers(customer_idx, data.customers, data.transactions, as_of=store.cutoff)
    return query.use_user_features(store.read(USER_FEATURES)), relevant


@writes_workdir
def evaluate_workdir(config: PipelineConfig) -> Path:
    """Fit every method on the store in the workdir and write the report; returns metrics.json's path."""
    store = Store(config.store_dir)
    return _fit_and_report(store, config, run_id=new_run_id())[0]


def check_raw_inputs(raw: Path) -> None:
    """Raise RawDataError naming what is missing when `raw` is not a folder holding the three raw CSV files."""
    from hmrec.raw.read import RawDataError
    from hmrec.raw.schema import RAW_FILES

    fix = "check --raw, or write a sample there with `hmrec data generate --out DIR`"
    if not Path(raw).is_dir():
        raise RawDataError(f"{raw} is not a folder: {fix}")
    missing = [name for name in RAW_FILES if not (Path(raw) / name).is_file()]
    if missing:
        raise RawDataError(f"{raw} lacks {', '.join(missing)} (it needs {', '.join(RAW_FILES)}): {fix}")


@writes_workdir
def run_pipeline(config: PipelineConfig) -> Path:
    """ETL, training, evaluation, tracking and registration; returns the new run's metrics.json path."""
    from hmrec.registry.tracking import Tracker
    from hmrec.registry.versions import Registry

    if config.raw is None:
        raise ValueError("the pipeline needs --raw: the folder holding the three raw CSV files")
    check_raw_inputs(config.raw)  # before a tracking run is opened: a mistyped --raw leaves no FAILED run
    run_id = new_run_id()
    champion_at_start = Registry.for_workdir(config.workdir).champion_version()  # promote's compare-and-set
    with Tracker.start(config.workdir, run_name=run_id, params=_params(config)) as tracker:
        if cpus.waits_chosen:  # chosen by the command's size_pools; after the input checks: a refusal stays one line
            log.info(cpus.waits_chosen)
        started = time.perf_counter()
        manifest = config.engine.build_store(config.raw, config.store_dir, test_days=config.test_days)
        tracker.log_metrics({"etl_seconds": time.perf_counter() - started})
        tracker.log_params({f"rows_{table}": n for table, n in manifest["rows"].items()})
        store = Store(config.store_dir)
        metrics_path, methods, metrics, chosen = _fit_and_report(store, config, run_id)
        tracker.log_params(chosen.params() | ranker_params(methods["final"]))
        tracker.log_metrics(_flatten(metrics))
        tracker.log_artifacts(metrics_path.parent, "report")

        bundle = write_store_bundle(store, methods, config.workdir / "bundles" / run_id,
                                    extra={"run_id": run_id, "metrics": metrics["methods"]}, config=config)
        registry = Registry.for_workdir(config.workdir)
        version = registry.register(bundle, run_id=tracker.run_id)
        if config.promote:
            registry.promote(version, expected=champion_at_start)
        log.info("registered version %s%s", version, " (champion)" if config.promote else "")
    return metrics_path


def check_long_enough(store: Store, config: PipelineConfig) -> None:
    """Raise RawDataError, in one line naming the days the settings need, when the store's data is too short."""
    from hmrec.raw.read import RawDataError

    horizon, windows = config.horizon, config.label_windows or 1
    before = windows * horizon + horizon + 1  # label windows, a validation window, a day before it
    first, last = (date.fromisoformat(day) for day in store.manifest["data_range"])
    test_days = store.manifest["test_days"]
    if (store.cutoff - first).days < before:
        raise RawDataError(
            f"the data covers {(last - first).days + 1} day(s) ({first} .. {last}), but the pipeline's settings need "
            f"at least {test_days + before}: {test_days} held-out (--test-days), {windows} label window(s) of "
            f"{horizon} days for the ranker (--horizon-days), a validation window of {horizon} days and 1 day of "
            "history before it; give it longer data, fewer --test-days or a shorter --horizon-days")


def _fit_and_report(store: Store, config: PipelineConfig, run_id: str):
    from hmrec.evaluation.report import ranker_sections, write_report
    from hmrec.evaluation.runner import evaluate_methods
    from hmrec.evaluation.selection import settings_section

    check_long_enough(store, config)
    data = load_train_data(store)
    methods, chosen = fit_methods(data, config)
    query, relevant = held_out_query(store, data)
    with tempfile.TemporaryDirectory(prefix=".scoring-", dir=config.workdir) as folder:
        result = evaluate_methods(_on_engine(methods, store, config, Path(folder)), query, relevant)
    final = methods["final"]
    out_dir = config.reports_dir / run_id
    metrics_path = write_report(
        result,
        out_dir,
        test_window=(store.cutoff, store.test_end),
        articles=data.articles,
        query=query,
        training_losses={name: method.training_losses() for name, method in methods.items()},
        training_epochs={name: method.training_epochs() for name, method in methods.items()},
        extra_sections=[settings_section(chosen), *ranker_sections(final, query, relevant)],
        run_info={"run_id": run_id, "store_fingerprint": store.fingerprint, "config": _params(config)},
    )
    write_ap_per_buyer(result, metrics_path.parent / AP_FILE)
    publish_copy(out_dir, config.reports_dir / "latest")
    return metrics_path, methods, json.loads(metrics_path.read_text()), chosen


def write_ap_per_buyer(result, path: Path) -> None:
    """Each method's AP@12 per held-out buyer (one column per method, the buyers in the query's order): what
    bench/quality.py's paired bootstrap resamples."""
    import polars as pl

    from hmrec.evaluation.metrics import ap_per_customer

    pl.DataFrame({name: ap_per_customer(scored.top, result.relevant, 12) for name, scored in
                  result.methods.items()}).write_parquet(path)


def _on_engine(methods: dict[str, Recommender], store: Store, config: PipelineConfig, folder: Path) -> dict:
    """The final recommender, the one that costs, scores the evaluation's customers through the engine (Ray: actors)."""
    return {**methods, "final": config.engine.scorer(methods["final"], store, folder)}


def new_run_id() -> str:
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
