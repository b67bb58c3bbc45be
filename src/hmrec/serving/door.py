"""Refusing at the door: while a worker sheds load, the first request of a new connection is refused by the HTTP
protocol itself, before uvicorn parses it, with the in-flight limit's own 503 (`serving.limits`) and
`connection: close`.

Why: at four times the sustainable event rate a worker spends most of its CPU on the requests it refuses. Through
uvicorn and the middleware a refusal cost 0.13-0.18 ms of the worker's CPU; the limit itself is 0.02 ms of it,
the rest is uvicorn's per-connection set-up, its parser, the request's task and the response's assembly. At the
door a refusal is a look at the request line, one write and a close (measured beside a bare uvicorn answer of
the same 503: 0.04-0.05 against 0.09-0.11 ms, `docs/benchmarks.md`). The door opens the connection to uvicorn's
own protocol for everything else: a request it lets in, /health, /ready and /metrics (never shed), anything
that is not one whole request (its body still coming, chunked, malformed), and every later request of a kept-alive
connection (the limit refuses those as before: bytes in mid-connection need not start a request).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS")
NEVER_SHED = tuple(f"{method} {path}".encode() for method in ("GET", "HEAD") for path in ("/health", "/ready",
                                                                                           "/metrics"))


class Door:
    """What the protocol asks before letting a new connection's first request in: the worker's in-flight limit
    (set by `InFlightLimitMiddleware` when the app's middleware is built), the headers every answer carries and a
    count of the requests refused here (by method)."""

    def __init__(self) -> None:
        self.limit = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.count: Callable[[str], None] = lambda method: None

    def refusal(self, data: bytes) -> bytes | None:
        """The whole answer to a connection whose first bytes are `data` when its request must be refused now,
        else None (a request the limit lets in, a route never shed, or bytes that are not a request line)."""
        limit = self.limit
        if limit is None or data.startswith(NEVER_SHED):
            return None
        method = data[: data.find(b" ")]
        if method not in METHODS or not _whole(data):
            return None
        detail = limit.refusal()
        if detail is None:
            return None
        limit.refused("busy")
        self.count(method.decode())
        body = json.dumps({"detail": detail}).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"), (b"connection", b"close"), *self.headers]
        return b"".join([b"HTTP/1.1 503 Service Unavailable\r\n", *(k + b": " + v + b"\r\n" for k, v in head),
                         b"\r\n", body])


def _whole(data: bytes) -> bool:
    """Whether `data` is exactly one request with its whole body (Content-Length, not chunked): only then is closing
    after the answer clean. With bytes still to come the kernel would answer them with a reset, which can reach
    the client before it reads the 503; a malformed request is uvicorn's to answer (400)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[:end].lower()
    if b"\ntransfer-encoding:" in head:
        return False
    at = head.find(b"\ncontent-length:")
    if at < 0:
        return len(data) == end + 4
    start = at + len(b"\ncontent-length:")
    stop = head.find(b"\r\n", start)
    value = head[start : stop if stop >= 0 else len(head)].strip()
    return value.isdigit() and len(data) == end + 4 + int(value)


DOOR = Door()  # one app per `hmrec serve` worker process: the app built last in this process sets it


class DoorProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol (`http=` of `uvicorn.Config`), behind `DOOR`: made with uvicorn's arguments for its
    own, which it creates once the first request is let in and hands every later event."""

    def __init__(self, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs
        self.inner: HttpToolsProtocol | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            refused = DOOR.refusal(data)
            if refused is not None:
                self.transport.write(refused)
                self.transport.close()
                return
            self.inner = HttpToolsProtocol(*self._args, **self._kwargs)
            self.inner.connection_made(self.transport)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
