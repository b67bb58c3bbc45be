"""Logging set-up for the CLI, and progress bars that library code can use without printing.

A bar is drawn (Rich, with ETA) only when stderr is a terminal and the CLI turned bars on; otherwise, in tests,
CI and log files, a stage writes one plain log line when it starts and one when it ends, never a bar's redraws."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

T = TypeVar("T")
log = logging.getLogger(__name__)

# Third-party loggers whose INFO lines are not our news: implicit's per-iteration "loss", faiss's "could not load
# library with AVX2 support" (it then loads the generic build, as intended). `-v` shows them again.
CHATTY = ("implicit", "faiss", "faiss.loader")
_bars = {"enabled": False}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so a live progress bar can print log lines above itself."""

    @property
    def stream(self):  # noqa: D102 - logging.StreamHandler's attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _PlainNumbers(logging.Filter):
    """A log call's arguments read as a person would write them: numpy scalars as numbers (not `np.float64(0.1)`),
    a dict as `key value, key value` with its floats to 4 significant digits (not a repr with 17 digits)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":  # uvicorn's general logger, which says "error" on every INFO line
            record.name = "uvicorn"
        if isinstance(record.args, dict) and "%(" not in str(record.msg):  # one dict argument, not named fields
            record.args = (record.args,)
        if isinstance(record.args, tuple):
            record.args = tuple(_plain(arg) for arg in record.args)
        return True


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _short(value: object) -> str:
    value = _plain(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def configure(verbose: bool = False, bars: bool = True) -> None:
    """Send library logs to stderr and allow progress bars; called once by the CLI, never by library code."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(_PlainNumbers())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    _bars["enabled"] = bars


def bars_shown() -> bool:
    return _bars["enabled"] and sys.stderr.isatty()


class Bar:
    """One stage's progress: `advance(n)` as work is done, `describe(text)` to say where it is (e.g. the epoch)."""

    def __init__(self, progress, task) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def bar(desc: str, total: float | None, unit: str = "it") -> Iterator[Bar]:
    """A Rich progress bar with ETA on stderr (a spinner with elapsed time when `total` is None), removed when
    the stage ends; without a terminal, a log line at the start and one with the time taken at the end."""
    started = time.perf_counter()
    if not bars_shown():
        log.info("%s: started%s", desc, f" ({total:,.0f} {unit})" if total is not None else "")
        yield Bar(None, None)
        log.info("%s: done in %.1f s", desc, time.perf_counter() - started)
        return
    import rich.progress as rp
    from rich.console import Console

    columns = [rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
               rp.TextColumn(unit), rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn()]
    with rp.Progress(*columns, console=Console(file=sys.stderr), transient=True) as shown:
        yield Bar(shown, shown.add_task(desc, total=total))
    log.info("%s: done in %.1f s", desc, time.perf_counter() - started)


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap a long loop in a progress bar (see `bar`); `total` defaults to len(items) when it has one."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(desc, total, unit) as stage:
        for item in items:
            yield item
            stage.advance()
