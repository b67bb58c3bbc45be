"""What the `hmrec` sub-commands share: the one way to fail, the engine options, the registry check before a read,
the offline commands' process set-up."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from hmrec import allocator, cpus
from hmrec.workdir import disk_full_reason

TestDays = Annotated[int, typer.Option("--test-days", min=1, help="Days held out at the end of the data.")]
Engine = Annotated[str | None, typer.Option(
    "--engine", help="local (this machine: the batch in one process per core) or ray (ETL and batch scoring on Ray); "
    "default HMREC_ENGINE, else local.")]
Wait = Annotated[bool, typer.Option("--wait", help="When another writer holds the lock, wait for it instead of "
                                    "refusing.")]
RayAddress = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster to join: auto or host:port (default: start a local Ray on this machine).")]
HorizonDays = Annotated[int | None, typer.Option(
    "--horizon-days", min=1, help="The prediction horizon: the days of each of the ranker's label windows and of "
    "the validation window (default: --test-days).")]
LabelWindows = Annotated[int | None, typer.Option(
    "--label-windows", min=1, help="How many label windows the ranker learns from (default: as many as hold "
    "20,000 bought pairs and 5,000 buyers, within memory and history: ranking/windows.py).")]
SearchFits = Annotated[int, typer.Option(
    "--search-fits", min=1, help="LightGBM fits the search for the ranker's settings may spend, by successive "
    "halving on the validation customers (1: the default settings only).")]


def offline_process() -> None:
    """The offline commands' first step (etl, evaluate, pipeline, precompute, retrain), before Polars or a numeric
    library loads: thread pools sized to this machine's CPUs, and freed memory kept for the next large array."""
    cpus.size_pools()
    allocator.keep_freed_memory()


def fail(message: str) -> None:
    """`error: MESSAGE` on stderr, exit code 1: every refusal of the CLI is this one line."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def writes_workdir(command: Callable[..., None]) -> Callable[..., None]:
    """A command that writes its --workdir: a write that found the disk full ends in one line naming the workdir
    instead of a traceback (the command's own refusals are one line already). Its writers write aside and rename,
    and the champion moves last, so the version that served before still does."""

    @functools.wraps(command)
    def run(**options) -> None:
        try:
            command(**options)
        except typer.Exit:
            raise
        except Exception as error:
            reason = disk_full_reason(error, options["workdir"])
            if reason is None:
                raise
            fail(f"the disk filled up while {options['workdir']} was written ({reason}); free space beside it and "
                 f"run again (the champion is unchanged)")
    return run


def chosen_engine(name: str | None, address: str | None):
    """The --engine / --ray-address choice (hmrec.scale.engine imports Ray only when the engine is ray)."""
    from hmrec.scale.engine import engine_from_options

    try:
        return engine_from_options(name, address)
    except ValueError as error:
        fail(str(error))


def readable_workdir(workdir: Path) -> None:
    """Fail with the command that fixes it when WORKDIR holds no registry; never create it by reading it."""
    from hmrec.registry.location import missing_registry

    missing = missing_registry(workdir)
    if missing:
        fail(missing)
