"""The benchmarks' HTTP/1.1 client: one request on a kept-alive asyncio connection, and the live events' token."""

from __future__ import annotations

import asyncio
import json

# The one place the benchmarks' live events get their bearer token: bench/serve.py starts the service with it
# (HMREC_EVENTS_TOKEN) and every POST /events/purchases sends it; a service that takes anonymous events ignores it.
EVENTS_TOKEN = "bench-events-token"
EVENTS_PATH = "/events/purchases"


def request(method: str, path: str, body: dict | None) -> bytes:
    """The bytes of one HTTP/1.1 request with a JSON body (live events carry the token)."""
    payload = json.dumps(body).encode() if body is not None else b""
    auth = f"Authorization: Bearer {EVENTS_TOKEN}\r\n" if path == EVENTS_PATH else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str,
                   body: dict | None) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection; the (status, body) of its answer (Content-Length framed).

    A hand-rolled client because a full one (httpx) costs more CPU per request than the server's trivial
    endpoint, and this machine's two cores are shared by both ends."""
    writer.write(request(method, path, body))
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:"))
    return status, await reader.readexactly(length)
