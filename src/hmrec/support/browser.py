"""Debian's Chromium driven by Playwright, for the browser tests and `make docs`: the launch flags and a wait that
the service's Content-Security-Policy allows."""

from __future__ import annotations

import time

CHROMIUM = "/usr/bin/chromium"
# no sandbox (root), no GPU, and none of the background connections a closed network refuses many at a time
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def wait_until(page, predicate: str, arg: object = None, timeout: float = 30) -> None:
    """Poll `predicate` (an expression, or a function of `arg`) in the page until it is true. Not
    page.wait_for_function, which evaluates its string with eval(): the Content-Security-Policy forbids that."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate} ({arg})")
        page.wait_for_timeout(100)
