"""`hmrec experiment start / stop / show / report`: the live experiment between registry aliases that the service
splits customers over (registry/experiment.py), and how each variant's answers did with shoppers (feedback/)."""

from __future__ import annotations

from datetime import date, timedelta
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


@experiment_app.command("report")
def report(
    workdir: Annotated[Path, typer.Option(help="The service's working folder (its events; HMREC_EVENTS_URL if set).")]
    = Path("work"),
    since: Annotated[str | None, typer.Option(help="First service day counted, YYYY-MM-DD (default: all).")] = None,
    window: Annotated[int, typer.Option(min=1, help="Attribution window in service days.")] = 7,
    control: Annotated[str | None, typer.Option(help="The variant the others are compared with (default: "
                                                "champion, else the one with the most impressions).")] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples (over customers).")] = 1000,
    mlflow: Annotated[bool, typer.Option(help="Also log the figures and files to MLflow.")] = True,
) -> None:
    """Per variant: customers, impressions, attributed purchases, followed share, purchases and revenue per 1,000
    impressions with bootstrap intervals, and a verdict; Markdown printed, written with JSON to
    WORKDIR/reports/experiment/."""
    from hmrec.feedback.online import online_report
    from hmrec.feedback.report import log_report, to_markdown, write_report
    from hmrec.serving.events import EventStoreUnavailable, open_event_store, sqlite_path
    from hmrec.serving.settings import Settings

    first = _day(since)
    target = Settings(workdir=workdir).events_target
    path = sqlite_path(target)
    if path is not None and not path.is_file():
        fail(f"{path} does not exist: the service records impressions there once it answers "
             f"(`hmrec serve --workdir {workdir}`)")
    store = open_event_store(target)
    try:  # a purchase names its impression's request id even when dated before it (the service's clock)
        shown, sales = store.impressions(first), store.sales(first - timedelta(days=window) if first else None)
    except EventStoreUnavailable as error:
        fail(str(error))
    finally:
        store.close()
    figures = online_report(shown, sales, window_days=window, since=first, control=control, resamples=resamples)
    folder = write_report(figures, workdir / "reports" / "experiment")
    if mlflow:
        log_report(workdir, figures, folder)
    typer.echo(to_markdown(figures))
    typer.echo(f"written to {folder}")


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"--since {text!r} is not a day: write it as YYYY-MM-DD, e.g. 2020-09-16")
