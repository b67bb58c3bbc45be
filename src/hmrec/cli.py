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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@app.callback()
def main(verbose: Verbose = False) -> None:
    logs.configure(verbose)


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Option(help="Folder to write the three CSV files into.")],
    scale: Annotated[str, typer.Option(help="tiny (tests), small (make run) or full (real sizes).")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same bytes.")] = 7,
) -> None:
    """Write a synthetic dataset in exactly the real H&M files' format."""
    from hmrec.raw.generate import SCALES, generate

    if scale not in SCALES:
        _fail(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    counts = generate(scale=scale, seed=seed, out=out)
    typer.echo(f"wrote {out}: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))


@data_app.command("profile")
def data_profile(
    raw: Annotated[Path, typer.Argument(help="Folder holding the three raw CSV files.")],
    test_days: TestDays = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the behaviour table of HM_DATA.md for any dataset in the raw format, beside the real values."""
    from hmrec.raw.profile import format_profile, profile

    try:
        result = profile(raw, test_days=test_days)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error))
    typer.echo(json.dumps(result, indent=2) if as_json else format_profile(result))


@app.command("etl")
def etl(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files.")],
    store: Annotated[Path, typer.Option(help="Feature store folder to build (replaced atomically).")],
    test_days: TestDays = 7,
) -> None:
    """Validate and clean the raw files and build the Parquet feature store."""
    from hmrec.raw.read import RawDataError
    from hmrec.store.build import build_store

    try:
        manifest = build_store(raw, store, test_days=test_days)
    except RawDataError as error:
        _fail(str(error))
    typer.echo(f"built {store}: " + ", ".join(f"{t} {n:,}" for t, n in manifest["rows"].items()))
    quality = {k: v for k, v in manifest["quality"].items() if v}
    if quality:
        typer.echo("set aside or normalised: " + ", ".join(f"{k} {v:,}" for k, v in quality.items()))


@app.command("evaluate")
def evaluate(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder (holds store/).")],
    reports: Annotated[Path, typer.Option(help="Reports folder: <run-id>/ and latest/ are written here.")] = Path(
        "ml/reports"
    ),
) -> None:
    """Score every method on the held-out window of WORKDIR's store and write REPORTS/<run-id>/report.md."""
    from hmrec.pipeline import PipelineConfig, evaluate_workdir

    metrics_path = evaluate_workdir(PipelineConfig(workdir=workdir, reports=reports))
    typer.echo(str(metrics_path))


@app.command("pipeline")
def pipeline(
    raw: Annotated[Path, typer.Option(help="Folder holding the three raw CSV files.")],
    workdir: Annotated[Path, typer.Option(help="Working folder for the store, models, reports, tracking.")],
    test_days: TestDays = 7,
    promote: Annotated[bool, typer.Option(help="Promote the registered version to champion.")] = False,
) -> None:
    """Run every stage in order: ETL, training, evaluation, registration; print metrics.json's path."""
    from hmrec.pipeline import PipelineConfig, run_pipeline
    from hmrec.raw.read import RawDataError

    try:
        metrics_path = run_pipeline(PipelineConfig(raw=raw, workdir=workdir, test_days=test_days, promote=promote))
    except RawDataError as error:
        _fail(str(error))
    typer.echo(str(metrics_path))


@registry_app.command("list")
def registry_list(workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work")) -> None:
    """List registered model versions; the champion is marked."""
    from hmrec.registry.versions import Registry

    for line in Registry.for_workdir(workdir).describe_all():
        typer.echo(line)


@registry_app.command("show")
def registry_show(
    version: int, workdir: Annotated[Path, typer.Option(help="Pipeline working folder.")] = Path("work")
) -> None:
    """Show one version's manifest."""
    from hmrec.registry.versions import Registry, RegistryError

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
    import uvicorn

    from hmrec.serving.workers import serve_workers

    factory = "hmrec.serving.app:app_from_environment"
    typer.echo(f"serving on http://{host}:{port}/  (API docs at /docs; {settings.workers} worker process(es))")
    if settings.workers == 1:
        uvicorn.run(factory, factory=True, host=host, port=port, log_level="info", access_log=settings.access_log)
        return
    metrics_dir = tempfile.mkdtemp(prefix="hmrec-metrics-")  # shared by the workers (see serving.metrics)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        code = serve_workers(factory, host, port, settings.workers, access_log=settings.access_log)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port}: {error}")
    finally:
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
