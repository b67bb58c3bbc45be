"""Logging set-up for the CLI and a progress bar that library code can use without printing."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def configure(verbose: bool = False) -> None:
    """Send library logs to stderr; called once by the CLI, never by library code."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap a long loop in a progress bar on stderr; silent when stderr is not a terminal."""
    yield from tqdm(items, desc=desc, total=total, unit=unit, disable=None, file=sys.stderr, leave=False)
