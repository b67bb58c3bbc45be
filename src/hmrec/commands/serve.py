"""The live service's commands: `hmrec serve`, and `hmrec events export` and `compact` of the purchases it took."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hmrec import cpus
from hmrec.commands.shared import fail, readable_workdir

# What every worker imports before it can answer, whatever the bundle: the app and MLflow's registry client. The
# fork server imports them once for all the workers (serving/workers.py); the recommenders' libraries (torch, FAISS,
# LightGBM) are imported by the load of a bundle that needs them.
WORKER_PRELOAD = ("hmrec.serving.app", "hmrec.registry.versions")

events_app = typer.Typer(help="Live purchase events stored by the service.", no_args_is_help=True)


def serve(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder holding the registry.")] = Path("work"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: HMREC_WORKERS, else 1).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Take live events from anyone, without HMREC_EVENTS_TOKEN "
                                       "(a demo on a trusted machine; `make run` and `make serve` pass it).")] = False,
) -> None:
    """Serve the champion model and the demo page with uvicorn."""
    import shutil

    from pydantic import ValidationError

    from hmrec.serving.settings import Settings

    readable_workdir(workdir)
    os.environ["HMREC_WORKDIR"] = str(workdir)  # the workers build their settings from the environment
    if workers is not None:
        os.environ["HMREC_WORKERS"] = str(workers)
    if demo:
        os.environ["HMREC_DEMO"] = "1"
    try:
        settings = Settings()
    except ValidationError as error:
        fail(f"invalid HMREC_* setting: {error}")
    cpus.size_pools(settings.threads)  # before polars is first imported, here or in a worker
    import threading

    from hmrec.serving.launch import exit_now
    from hmrec.serving.workers import PortTakenError, refuse_if_served, serve_workers

    try:
        refuse_if_served(host, port)
    except PortTakenError as error:
        fail(str(error))
    from hmrec.serving.events.repair import repair_before_serving

    repair_before_serving(settings.events_target)  # before any worker opens the events file
    if settings.events_retention_days is not None:
        _compact_at_start(settings)
    # on stderr with the log: stdout's first line stays `serving on ...`, which scripts wait for
    typer.echo(_events_access(settings), err=True)
    factory = "hmrec.serving.app:app_from_environment"

    def announce() -> None:  # only once /ready answers 200 (the port opens before the model has loaded)
        typer.echo(f"serving on http://{host}:{port}/  (API docs at /docs; {settings.workers} worker process(es))")

    # One worker runs under the supervisor too: its watchdog replaces a frozen worker, which alone would hang the
    # whole service. A replacement loads before it listens when other workers serve, else it answers 503 meanwhile.
    replacement = "hmrec.serving.app:app_loaded_before_listening" if settings.workers > 1 else factory
    metrics_dir = metrics_folder()  # shared by the workers (see serving.metrics)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    done = threading.Event()
    threading.Thread(target=_announce_when_ready, args=(host, port, done.is_set, announce), daemon=True).start()
    try:
        code = serve_workers(factory, host, port, settings.workers, access_log=settings.access_log,
                             ping_timeout=settings.worker_timeout_seconds, replacement=replacement,
                             preload=WORKER_PRELOAD)
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error}")
    finally:
        done.set()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    exit_now(code)  # the workers have stopped: Ctrl-C ends the command within a second


def metrics_folder() -> str:
    """A fresh temporary folder for the workers' metrics files, named after this supervisor's PID; the folders of
    supervisors that are gone without removing theirs (killed with SIGKILL) are removed first."""
    import shutil
    import tempfile

    import psutil

    for old in Path(tempfile.gettempdir()).glob("hmrec-metrics-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"hmrec-metrics-{os.getpid()}-")


def _announce_when_ready(host: str, port: int, stopped, announce) -> None:
    """Log when the port opens (the model still loading), call `announce` once a worker has loaded it."""
    import logging

    from hmrec.serving.launch import wait_until_accepting, wait_until_ready

    if wait_until_accepting(host, port, stopped):
        logging.getLogger(__name__).info("listening on %s:%s; loading the model (/ready answers 503 until then)",
                                         host, port)
        if wait_until_ready(host, port, stopped):
            announce()


def _events_access(settings) -> str:
    """The one start-up line saying who may post live events."""
    if settings.demo:
        return ("live events: anonymous (--demo): anyone who can reach this port may add purchases to any customer; "
                "set HMREC_EVENTS_TOKEN and drop --demo to require a token")
    if settings.events_token is None:
        return ("live events: refused (403) until HMREC_EVENTS_TOKEN is set (clients then send it as a bearer "
                "token), or start with --demo for anonymous events")
    return "live events: need the bearer token HMREC_EVENTS_TOKEN"


def _compact_at_start(settings) -> None:
    """HMREC_EVENTS_RETENTION_DAYS: compact before any worker starts; a failure is logged and serving goes on."""
    from hmrec.registry.versions import Registry, RegistryError
    from hmrec.serving.events import EventStoreUnavailable, open_event_store
    from hmrec.serving.events.retention import compact_events

    store = open_event_store(settings.events_target, timeout=60)
    try:
        typer.echo(compact_events(store, Registry.for_workdir(settings.workdir),
                                  settings.events_retention_days).describe(), err=True)
    except (RegistryError, EventStoreUnavailable) as error:
        typer.echo(f"warning: HMREC_EVENTS_RETENTION_DAYS: no event compacted: {error}", err=True)
    finally:
        store.close()


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


@events_app.command("compact")
def events_compact(
    workdir: Annotated[Path, typer.Option(help="Pipeline working folder holding the registry and the events.")]
    = Path("work"),
    retention_days: Annotated[int | None, typer.Option(min=0, help="Keep events received in this many last days "
                                                       "(default: HMREC_EVENTS_RETENTION_DAYS).")] = None,
) -> None:
    """Delete the live events received over RETENTION_DAYS ago and dated before the data end of every version a
    registry alias serves (each was in every served model's training window). Export them first to keep them."""
    from hmrec.registry.versions import Registry, RegistryError
    from hmrec.serving.events import EventStoreUnavailable, open_event_store, sqlite_path
    from hmrec.serving.events.retention import compact_events
    from hmrec.serving.settings import Settings

    readable_workdir(workdir)
    settings = Settings(workdir=workdir)
    days = retention_days if retention_days is not None else settings.events_retention_days
    if days is None:
        fail("how long to keep events? pass --retention-days N or set HMREC_EVENTS_RETENTION_DAYS")
    path = sqlite_path(settings.events_target)
    if path is not None and not path.is_file():
        typer.echo(f"no live event stored yet ({path} does not exist): nothing to compact")
        return
    store = open_event_store(settings.events_target, timeout=60)
    try:
        typer.echo(compact_events(store, Registry.for_workdir(workdir), days).describe())
    except (RegistryError, EventStoreUnavailable) as error:
        fail(str(error))
    finally:
        store.close()
