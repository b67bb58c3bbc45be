"""`hmrec experiment report`: how each variant's answers did with shoppers, from the service's impressions and the
purchases that followed them."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from hmrec.commands.shared import fail

experiment_app = typer.Typer(help="Online experiments between model versions.", no_args_is_help=True)


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
