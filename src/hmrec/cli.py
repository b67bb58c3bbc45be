"""The `hmrec` command: a thin shell over the library, one sub-command per stage. Only this module prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hmrec import logs

app = typer.Typer(help="hmrec: raw H&M-format retail data -> feature store -> models -> live service.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Generate or describe raw datasets.", no_args_is_help=True)
registry_app = typer.Typer(help="Model versions in the registry.", no_args_is_help=True)
events_app = typer.Typer(help="Live purchase events stored by the service.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(registry_app, name="registry")
app.add_typer(events_app, name="events")

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]
TestDays = Annotated[int, typer.Option("--test-days", min=1, help="Days held out at the end of the data.")]
Engine = Annotated[str | None, typer.Option(
    "--engine", help="local (this process) or ray (ETL and batch scoring on Ray); default HMREC_ENGINE, else local.")]
RayAddress = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster to join: auto or host:port (default: start a local Ray on this machine).")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _engine(name: str | None, address: str | None):
    """The --engine / --ray-address choice (hmrec.scale.engine imports Ray only when the engine is ray)."""
    from hmrec.scale.engine import EngineConfig

    try:
        return EngineConfig.from_options(name, address)
    except ValueError as error:
        _fail(str(error))


@app.callback()
def main(verbose: Verbose = False) -> None:
    logs.configure(verbose)


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="Folder to write the three CSV files into.")],
    scale: Annotated[str, typer.Option(help="tiny (tests), small (make run), full (real sizes) or 3x (three "
                                            "times H&M, for scale benchmarks).")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same bytes.")] = 7,
    world: Annotated[str, typer.Option(help="fashion (the H&M-like sample), grocery or media.")] = "fashion",
) -> None:
    """Write a synthetic dataset in exactly the real H&M files' format."""
    from hmrec.sample.generate import SCALES, generate
    from hmrec.sample.worlds import WORLDS

    if scale not in SCALES:
        _fail(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    if world not in WORLDS:
        _fail(f"--world must be one of {', '.join(WORLDS)}, not {world!r}")
    counts = generate(scale=scale, seed=seed, out=out, world=world)
    typer.echo(f"wrote {out}: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))


@data_app.command("profile")
def data_profile(
    raw: Annotated[Path, typer.Argument(help="Folder holding the three raw CSV files.")],
    test_days: TestDays = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    world: Annotated[str | None, typer.Option(help="Show this sample world's bands beside the figures.")] = None,
) -> None:
    """Print the behaviour table of docs/hm-data.md for any dataset in the raw format, beside the real values."""
    from hmrec.evaluation.profile import format_profile, out_of_band, profile
    from hmrec.sample.worlds import WORLDS

    if world is not None and world not in WORLDS:
        _fail(f"--world must be one of {', '.join(WORLDS)}, not {world!r}")
    bands = WORLDS[world].bands if world else ()

    try:
        result = profile(raw, test_days=test_days)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    if world:
        result["world"], result["out_of_band"] = world, out_of_band(result, bands)
    typer.echo(json.dumps(result, indent=2) if as_json else format_profile(result, bands, world or ""))


@app.command("etl")
def etl(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files.")],
    store: Annotated[Path, typer.Option(help="Feature store folder to build (replaced atomically).")],
    test_days: TestDays = 7,
    engine: Engine = None,
    ray_address: RayAddress = None,
) -> None:
    """Validate and clean the raw files and build the Parquet feature store."""
    from hmrec.raw.read import RawDataError
    from hmrec.scale.etl import build_store

    try:
        manifest = build_store(raw, store, test_days=test_days, engine=_engine(engine, ray_address))
    except RawDataError as error:
        _fail(str(error))
    typer.echo(f"built {store}: " + ", ".join(f"{t} {n:,}" for t, n in manifest["rows"].items()))
    quality = {k: v for k, v in manifest["quality"].items() if v}
    if quality:
        typer.echo("set aside or normalised: " + ", ".join(f"{k} {v:,}" for k, v in quality.items()))


def _readable_workdir(workdir: Path) -> None:
    """Fail with the command that fixes it when WORKDIR holds no registry; never create it by reading it."""
    from hmrec.registry.versions import missing_registry

    missing = missing_registry(workdir)
    if missing:
        _fail(missing)


@app.command("evaluate")
def evaluate(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder (holds store/ and the registry).")],
    reports: Annotated[Path, typer.Option(help="Reports folder: <run-id>/ and latest/ are written here.")] = Path(
        "ml/reports"
    ),
    engine: Engine = None,
    ray_address: RayAddress = None,
    refit: Annotated[bool, typer.Option("--refit", help="Refit every method on the store (minutes) instead of "
                                        "scoring the champion.")] = False,
) -> None:
    """Score the champion (and its sources) on the held-out window of WORKDIR's store without refitting; write
    REPORTS/<run-id>/report.md. With --refit, fit every method again and score them all."""
    from hmrec.pipeline import ChampionMismatchError, PipelineConfig, evaluate_workdir, score_champion
    from hmrec.registry.model_bundle import BundleError
    from hmrec.registry.versions import RegistryError

    config = PipelineConfig(workdir=workdir, reports=reports, engine=_engine(engine, ray_address))
    if not (config.store_dir / "manifest.json").is_file():
        _fail(f"{config.store_dir} holds no feature store: run `hmrec pipeline --raw DIR --workdir {workdir}`")
    if refit:
        typer.echo(str(evaluate_workdir(config)))
        return
    _readable_workdir(workdir)
    try:
        metrics_path = score_champion(config)
    except (RegistryError, ChampionMismatchError, BundleError) as error:  # an old bundle: one line, the fix
        _fail(str(error))
    typer.echo(str(metrics_path))


@app.command("pipeline")
def pipeline(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files.")],
    workdir: Annotated[Path, typer.Option(help="Working folder for the store, models, reports, tracking.")],
    test_days: TestDays = 7,
    promote: Annotated[bool, typer.Option(help="Promote the registered version to champion.")] = False,
    engine: Engine = None,
    ray_address: RayAddress = None,
) -> None:
    """Run every stage in order: ETL, training, evaluation, registration; print metrics.json's path."""
    from hmrec.pipeline import PipelineConfig, run_pipeline
    from hmrec.raw.read import RawDataError
    from hmrec.scale.engine import engine_session

    config = PipelineConfig(raw=raw, workdir=workdir, test_days=test_days, promote=promote,
                            engine=_engine(engine, ray_address))
    try:
        with engine_session(config.engine):  # Ray, when chosen, starts once for every stage
            metrics_path = run_pipeline(config)
    except RawDataError as error:
        _fail(str(error))
    typer.echo(str(metrics_path))


@registry_app.command("list")
def registry_list(workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work")) -> None:
    """List registered model versions; the champion is marked."""
    from hmrec.registry.versions import Registry

    _readable_workdir(workdir)
    for line in Registry.for_workdir(workdir).describe_all():
        typer.echo(line)


@registry_app.command("show")
def registry_show(
    version: int, workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work")
) -> None:
    """Show one version's manifest."""
    from hmrec.registry.versions import Registry, RegistryError

    _readable_workdir(workdir)
    try:
        typer.echo(json.dumps(Registry.for_workdir(workdir).manifest(version), indent=2))
    except RegistryError as error:
        _fail(str(error))


@registry_app.command("promote")
def registry_promote(
    version: int, workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work")
) -> None:
    """Make VERSION the champion that the service loads."""
    from hmrec.registry.versions import Registry, RegistryError

    _readable_workdir(workdir)
    try:
        Registry.for_workdir(workdir).promote(version)
    except RegistryError as error:
        _fail(str(error))
    typer.echo(f"version {version} is now champion")


@app.command("serve")
def serve(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder holding the registry.")] = Path("work"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: HMREC_WORKERS, else 1).")] = None,
) -> None:
    """Serve the champion model and the demo page with uvicorn."""
    import os
    import shutil
    import tempfile

    from pydantic import ValidationError

    from hmrec.serving.settings import Settings

    _readable_workdir(workdir)
    os.environ["HMREC_WORKDIR"] = str(workdir)  # the workers build their settings from the environment
    if workers is not None:
        os.environ["HMREC_WORKERS"] = str(workers)
    try:
        settings = Settings()
    except ValidationError as error:
        _fail(f"invalid HMREC_* setting: {error}")
    # before polars is first imported, here or in a worker (see serving.app.limit_threads)
    os.environ.setdefault("POLARS_MAX_THREADS", str(settings.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    import threading

    import uvicorn

    from hmrec.serving.launch import run_server, wait_until_accepting
    from hmrec.serving.workers import PortTakenError, refuse_if_served, serve_workers

    try:
        refuse_if_served(host, port)
    except PortTakenError as error:
        _fail(str(error))
    from hmrec.serving.events.repair import repair_before_serving

    repair_before_serving(settings.events_target)  # before any worker opens the events file
    factory = "hmrec.serving.app:app_from_environment"

    def announce() -> None:  # only once the server accepts connections (after the model has loaded)
        typer.echo(f"serving on http://{host}:{port}/  (API docs at /docs; {settings.workers} worker process(es))")

    if settings.workers == 1:
        config = uvicorn.Config(factory, factory=True, host=host, port=port, log_level="info",
                                access_log=settings.access_log)
        run_server(config, on_listening=announce)
        return
    metrics_dir = tempfile.mkdtemp(prefix="hmrec-metrics-")  # shared by the workers (see serving.metrics)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    done = threading.Event()
    threading.Thread(target=lambda: wait_until_accepting(host, port, done.is_set) and announce(), daemon=True).start()
    try:
        code = serve_workers(factory, host, port, settings.workers, access_log=settings.access_log,
                             ping_timeout=settings.worker_timeout_seconds)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port}: {error}")
    finally:
        done.set()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if code:
        raise typer.Exit(code)


@events_app.command("export")
def events_export(
    out: Annotated[Path, typer.Option(help="CSV file to write in the transactions_train.csv format.")],
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder holding events.sqlite.")] = Path("work"),
) -> None:
    """Write the stored live purchase events as transactions, so the next training run includes them."""
    from hmrec.serving.events import export_csv
    from hmrec.serving.settings import Settings

    n = export_csv(Settings(workdir=workdir).events_target, out)
    typer.echo(f"wrote {n:,} events to {out}")


if __name__ == "__main__":
    app()
