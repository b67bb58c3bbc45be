"""The offline stages as commands: `hmrec etl`, `hmrec evaluate` and `hmrec pipeline`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hmrec.commands.shared import (
    Engine,
    HorizonDays,
    LabelWindows,
    RayAddress,
    SearchFits,
    TestDays,
    Wait,
    chosen_engine,
    fail,
    offline_process,
    readable_workdir,
)


def etl(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files.")],
    store: Annotated[Path, typer.Option(help="Feature store folder to build (replaced atomically).")],
    test_days: TestDays = 7,
    engine: Engine = None,
    ray_address: RayAddress = None,
    wait: Wait = False,
) -> None:
    """Validate and clean the raw files and build the Parquet feature store."""
    offline_process()
    from hmrec.raw.read import RawDataError
    from hmrec.store.build import store_writer
    from hmrec.workdir import LockedError

    try:
        with store_writer(store, wait=wait):
            manifest = chosen_engine(engine, ray_address).build_store(raw, store, test_days=test_days)
    except (RawDataError, LockedError) as error:
        fail(str(error))
    typer.echo(f"built {store}: " + ", ".join(f"{t} {n:,}" for t, n in manifest["rows"].items()))
    quality = {k: v for k, v in manifest["quality"].items() if v}
    if quality:
        typer.echo("set aside or normalised: " + ", ".join(f"{k} {v:,}" for k, v in quality.items()))


def evaluate(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder (holds store/ and the registry).")],
    reports: Annotated[Path, typer.Option(help="Reports folder: <run-id>/ and latest/ are written here.")] = Path(
        "ml/reports"
    ),
    engine: Engine = None,
    ray_address: RayAddress = None,
    refit: Annotated[bool, typer.Option("--refit", help="Refit every method on the store (minutes) instead of "
                                        "scoring the champion.")] = False,
    horizon_days: HorizonDays = None,
    label_windows: LabelWindows = None,
    search_fits: SearchFits = 15,
    wait: Wait = False,
) -> None:
    """Score the champion (and its sources) on the held-out window of WORKDIR's store without refitting; write
    REPORTS/<run-id>/report.md. With --refit, fit every method again and score them all (--horizon-days,
    --label-windows and --search-fits as the pipeline's: the same settings give the pipeline's figures)."""
    offline_process()
    from hmrec.pipeline import PipelineConfig, evaluate_workdir
    from hmrec.raw.read import RawDataError
    from hmrec.registry.model_bundle import BundleError
    from hmrec.registry.versions import RegistryError
    from hmrec.registry.writer import workdir_writer
    from hmrec.scoring import score_champion
    from hmrec.workdir import LockedError

    config = PipelineConfig(workdir=workdir, reports=reports, engine=chosen_engine(engine, ray_address),
                            horizon_days=horizon_days, label_windows=label_windows, search_fits=search_fits)
    if not (config.store_dir / "manifest.json").is_file():
        fail(f"{config.store_dir} holds no feature store: run `hmrec pipeline --raw DIR --workdir {workdir}`")
    if refit:
        try:
            with workdir_writer(workdir, wait=wait):
                typer.echo(str(evaluate_workdir(config)))
        except (LockedError, RawDataError) as error:
            fail(str(error))
        return
    readable_workdir(workdir)
    try:
        metrics_path = score_champion(config)
    except (RegistryError, BundleError) as error:  # an old bundle: one line, the fix
        fail(str(error))
    typer.echo(str(metrics_path))


def pipeline(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files.")],
    workdir: Annotated[Path, typer.Option(help="Working folder for the store, models, reports, tracking.")],
    test_days: TestDays = 7,
    horizon_days: HorizonDays = None,
    label_windows: LabelWindows = None,
    search_fits: SearchFits = 15,
    promote: Annotated[bool, typer.Option(help="Promote the registered version to champion.")] = False,
    engine: Engine = None,
    ray_address: RayAddress = None,
    wait: Wait = False,
    precompute: Annotated[str, typer.Option(
        help="Whose answers the bundle holds precomputed, served by lookup: active (a purchase in the last 90 days "
             "of the data), all (every customer with a purchase) or none.")] = "active",
) -> None:
    """Run every stage in order: ETL, training, evaluation, registration; print metrics.json's path."""
    offline_process()
    from hmrec.pipeline import PipelineConfig, check_raw_inputs, run_pipeline
    from hmrec.raw.read import RawDataError
    from hmrec.registry.versions import RegistryError
    from hmrec.registry.writer import workdir_writer
    from hmrec.scale.precompute import PRECOMPUTE
    from hmrec.workdir import LockedError

    if precompute not in PRECOMPUTE:
        fail(f"--precompute {precompute!r} is not one of {', '.join(PRECOMPUTE)}")
    config = PipelineConfig(raw=raw, workdir=workdir, test_days=test_days, horizon_days=horizon_days,
                            label_windows=label_windows, search_fits=search_fits, promote=promote,
                            engine=chosen_engine(engine, ray_address), precompute=precompute)
    try:
        check_raw_inputs(raw)  # before the lock: a mistyped --raw creates no workdir
        with workdir_writer(workdir, wait=wait), config.engine.session():  # Ray starts once for every stage
            metrics_path = run_pipeline(config)
    except (RawDataError, RegistryError, LockedError) as error:
        fail(str(error))
    typer.echo(str(metrics_path))


def precompute(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder (holds the registry).")],
    version: Annotated[str, typer.Option("--version", "--alias", help="The registered version (a number) or alias "
                                         "whose answers to precompute.")] = "champion",
    customers: Annotated[str, typer.Option("--precompute", help="Whose answers: active (a purchase in the last 90 "
                                           "days of the data), all (every customer with a purchase) or none.")]
    = "active",
    promote: Annotated[bool, typer.Option(help="Make the new version the champion.")] = False,
    engine: Engine = None,
    ray_address: RayAddress = None,
    wait: Wait = False,
) -> None:
    """Register a copy of a version with its answers precomputed (registry versions never change); print its number.

    The pipeline already does this before it registers; this is for a version registered without them."""
    offline_process()
    from hmrec.pipeline import precompute_version
    from hmrec.registry.versions import RegistryError
    from hmrec.registry.writer import workdir_writer
    from hmrec.scale.precompute import PRECOMPUTE
    from hmrec.workdir import LockedError

    if customers not in PRECOMPUTE:
        fail(f"--precompute {customers!r} is not one of {', '.join(PRECOMPUTE)}")
    readable_workdir(workdir)
    chosen = chosen_engine(engine, ray_address)
    try:
        with workdir_writer(workdir, wait=wait), chosen.session():
            new = precompute_version(workdir, int(version) if version.isdigit() else version, chosen, customers,
                                     promote)
    except (RegistryError, LockedError) as error:
        fail(str(error))
    typer.echo(str(new))
