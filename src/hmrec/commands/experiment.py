"""`hmrec experiment start / stop / show`: the live experiment between registry aliases that the service splits
customers over (registry/experiment.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hmrec.commands.shared import fail, readable_workdir

experiment_app = typer.Typer(help="A live experiment between registered versions (registry aliases).",
                             no_args_is_help=True)
Workdir = Annotated[Path, typer.Option(help="Pipeline working folder holding the registry.")]
RELOAD = "then `POST /admin/reload` (or restart `hmrec serve`) so the service follows"


@experiment_app.command("start")
def start(
    workdir: Workdir = Path("work"),
    variant: Annotated[list[str], typer.Option(help="ALIAS=SHARE, once per variant, e.g. --variant champion=0.9 "
                                               "--variant challenger=0.1; the shares sum to 1.")] = None,
    name: Annotated[str | None, typer.Option(help="Its name, which seeds the customers' split (default: exp- "
                                             "and the start time).")] = None,
) -> None:
    """Write WORKDIR/experiment.json: each customer is served by the variant their id hashes to."""
    from hmrec.registry.experiment import (
        ExperimentError,
        experiment_path,
        new_experiment,
        parse_variant,
        write_experiment,
    )
    from hmrec.registry.versions import Registry

    readable_workdir(workdir)
    try:
        experiment = new_experiment([parse_variant(text) for text in variant or []], name)
    except ExperimentError as error:
        fail(str(error))
    registry = Registry.for_workdir(workdir)
    versions = {alias: registry.alias_version(alias) for alias in experiment.aliases}
    unset = [alias for alias, version in versions.items() if version is None]
    if unset:
        fail(f"alias {unset[0]!r} is not set on any version ({len(unset)} of {len(versions)} variants): point it at "
             f"one with `hmrec registry alias {unset[0]} VERSION`, or let `hmrec retrain` set `challenger`")
    write_experiment(experiment_path(workdir), experiment)
    split = ", ".join(f"{alias} (version {versions[alias]}) {share:.1%}" for alias, share in experiment.variants)
    typer.echo(f"experiment {experiment.name}: {split}; {RELOAD}")


@experiment_app.command("stop")
def stop(workdir: Workdir = Path("work")) -> None:
    """Remove WORKDIR/experiment.json: the champion answers every customer again."""
    from hmrec.registry.experiment import experiment_path, remove_experiment

    ended = remove_experiment(experiment_path(workdir))
    typer.echo(f"stopped experiment {ended.name}; {RELOAD}" if ended else "no experiment was running")


@experiment_app.command("show")
def show(workdir: Workdir = Path("work")) -> None:
    """Print the experiment: its variants, their shares and the version each alias points at now."""
    from hmrec.registry.experiment import ExperimentError, experiment_path, read_experiment
    from hmrec.registry.versions import Registry

    try:
        experiment = read_experiment(experiment_path(workdir))
    except ExperimentError as error:
        fail(str(error))
    if experiment is None:
        typer.echo("no experiment: the champion answers every customer")
        return
    readable_workdir(workdir)
    registry = Registry.for_workdir(workdir)
    typer.echo(f"experiment {experiment.name}, started {experiment.started or '?'}")
    for alias, share in experiment.variants:
        typer.echo(f"  {alias:<16} {share:7.1%}  version {registry.alias_version(alias)}")
