"""Limits at the edge: request bodies over the configured size (413), requests in flight per worker (503) and live
events per client (429), each refused before any handler runs."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Checks Content-Length, and counts the bytes of bodies sent without one (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, int(length))
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._refuse(send, None)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, send: Send, size: int | None) -> None:
        """413; `size` is None for a streamed body, refused as soon as it passes the limit."""
        told = f"{size} bytes; the limit is" if size is not None else "over the limit of"
        detail = f"body: request body is {told} {self.max_bytes} bytes (setting HMREC_MAX_BODY_BYTES)"
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


EVENTS_PATH = "/events/purchases"  # the live events' route: their own wait limit, and a rate per client


def _live_event(scope: Scope) -> bool:
    """A POST of a live purchase event (`scope`: an HTTP request's)."""
    return scope["method"] == "POST" and scope["path"] == EVENTS_PATH


# /health, /ready and /metrics always answer: a load balancer or a scraper must see a busy worker as alive
_NEVER_SHED = ("/health", "/ready", "/metrics")


class InFlightLimitMiddleware:
    """Back-pressure: a fast 503 with Retry-After rather than a queue whose wait grows without bound. A request is
    refused when the worker answers `max_in_flight` already, or, with `WAIT_FLOOR` or more in flight, when the wait
    it would face is over its limit: the requests in flight times the worker's recent time per answer while busy
    (the gaps between completions, smoothed), so a worker that falls behind refuses within milliseconds instead
    of answering seconds late. Live events have their own, smaller limit (`max_event_wait`): they are shed first,
    since a purchase can be sent again (with its event_id, safely) while a page waits for its recommendations, and
    under a flood of them the slowest accepted answers take about three times the expected wait. `refused` is told
    each refusal."""

    WAIT_FLOOR = 8  # fewer in flight are always let in: a few slow requests (a reload, a big page) shed nothing
    SMOOTHING = 0.05  # weight of the latest gap in the running time per answer

    def __init__(self, app: ASGIApp, max_in_flight: int, refused: Callable[[str], None], max_wait: float = 0.0,
                 max_event_wait: float = 0.0):
        self.app = app
        self.max_in_flight, self.max_wait, self.max_event_wait = max_in_flight, max_wait, max_event_wait
        self.in_flight = 0  # one event loop per worker: no lock needed
        self.per_answer = 0.0  # seconds between completions while busy, smoothed
        self._mark = 0.0  # the latest completion, or when the worker last became busy
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.refused("busy")
            await _answer(send, 503, f"this worker is answering {self.max_in_flight} requests already "
                          "(HMREC_MAX_IN_FLIGHT); retry after 1 s", retry_after=1)
            return
        if self.in_flight >= self.WAIT_FLOOR:
            event = _live_event(scope)
            limit = self.max_event_wait if event else self.max_wait
            wait = self.in_flight * self.per_answer
            if limit and wait > limit:
                self.refused("busy")
                setting = "HMREC_MAX_EVENT_WAIT_MS" if event else "HMREC_MAX_WAIT_MS"
                await _answer(send, 503, f"this worker's queue would take about {1000 * wait:.0f} ms (over "
                              f"{setting}, {1000 * limit:g}); retry after 1 s", retry_after=1)
                return
        if self.in_flight == 0:
            self._mark = time.monotonic()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            done = time.monotonic()
            self.per_answer += self.SMOOTHING * (done - self._mark - self.per_answer)
            self._mark = done


class WriteRateLimitMiddleware:
    """A token bucket per client address for POST /events/purchases: `per_second` on average, bursts up to
    `burst`; beyond, 429 with Retry-After. Per worker: with N workers a client may reach N times the rate."""

    def __init__(self, app: ASGIApp, per_second: float, burst: int, refused: Callable[[str], None]):
        self.app = app
        self.per_second, self.burst = per_second, burst
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _live_event(scope):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        now = time.monotonic()
        tokens, then = self.buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            self.refused("rate")
            wait = math.ceil((1 - tokens) / self.per_second)
            await _answer(send, 429, f"more than {self.per_second:g} events per second from this client "
                          f"(HMREC_EVENTS_PER_CLIENT_PER_SECOND); retry after {wait} s", retry_after=wait)
            return
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > 100_000:  # forget idle clients (their buckets are full again anyway)
            self.buckets = {c: b for c, b in self.buckets.items() if now - b[1] < self.burst / self.per_second}
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, detail: str, retry_after: int) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": payload})
