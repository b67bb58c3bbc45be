"""The door (serving/door.py): a real uvicorn server whose HTTP protocol refuses a new connection's request while the
in-flight limit is full, before uvicorn parses it, and lets everything else through to uvicorn."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hmrec.serving import door
from hmrec.serving.door import Door, DoorProtocol
from hmrec.serving.edges import EdgeMiddleware, security_headers
from hmrec.serving.limits import InFlightLimitMiddleware

POLICY = "default-src 'self'"
BUSY = "this worker is answering 2 requests already (HMREC_MAX_IN_FLIGHT); retry after 1 s"


class _Full:
    """An in-flight limit that refuses everything."""

    def __init__(self) -> None:
        self.told: list[str] = []

    def refusal(self) -> str:
        return "full"

    def refused(self, why: str) -> None:
        self.told.append(why)


@pytest.mark.parametrize(("data", "refused"), [
    (b"POST /events/purchases HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", True),
    (b"GET /popular HTTP/1.1\r\nhost: x\r\n\r\n", True),
    (b"POST /events/purchases HTTP/1.1\r\ncontent-length:2\r\n\r\n{}", True),  # no space, lower case
    (b"POST /events/purchases HTTP/1.1\r\nContent-Length: 2\r\n\r\n{", False),  # the body still coming
    (b"POST /events/purchases HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n\r\n", False),  # pipelined
    (b"POST /events/purchases HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", False),
    (b"POST /events/purchases HTTP/1.1\r\nContent-Length: x\r\n\r\n{}", False),  # uvicorn's 400
    (b"POST /events/purch", False),  # the headers still coming
    (b"BREW /pot HTTP/1.1\r\n\r\n", False),  # not a method: uvicorn answers
    (b"GET /health HTTP/1.1\r\n\r\n", False), (b"HEAD /ready HTTP/1.1\r\n\r\n", False),
    (b"GET /metrics HTTP/1.1\r\n\r\n", False),
])
def test_the_door_refuses_only_one_whole_request_on_a_route_that_may_be_shed(data, refused):
    gate, counted = Door(), []
    gate.limit, gate.headers, gate.count = _Full(), security_headers(POLICY), counted.append
    answer = gate.refusal(data)
    assert (answer is not None) == refused
    assert gate.limit.told == (["busy"] if refused else []) and counted == ([data.split()[0].decode()] if refused else [])
    if refused:
        head, body = answer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert lines[0] == "HTTP/1.1 503 Service Unavailable" and json.loads(body) == {"detail": "full"}
        assert int(headers["content-length"]) == len(body)
        assert (headers["retry-after"], headers["connection"], headers["content-security-policy"]) == ("1", "close",
                                                                                                      POLICY)


def test_no_limit_known_no_refusal():
    assert Door().refusal(b"GET /popular HTTP/1.1\r\n\r\n") is None


@pytest.fixture
def served(monkeypatch):
    """A uvicorn server on a free port, behind the door, with a limit of 2 in flight: /slow waits for `release`."""
    release, refused = threading.Event(), []
    monkeypatch.setattr(door, "DOOR", Door())  # the protocol reads the module's door

    async def slow(request):
        while not release.is_set():
            await asyncio.sleep(0.005)
        return PlainTextResponse("done")

    async def health(request):
        return PlainTextResponse("ok")

    limit = InFlightLimitMiddleware(Starlette(routes=[Route("/slow", slow, methods=["GET", "POST"]),
                                                      Route("/health", health)]), 2, refused.append, door=door.DOOR)
    door.DOOR.headers = security_headers(POLICY)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(EdgeMiddleware(limit, POLICY), http=DoorProtocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield sock.getsockname()[1], limit, release, refused
    release.set()
    server.should_exit = True
    thread.join(30)


def asked(line: str, body: bytes | None = None) -> bytes:
    """A request's line and headers (asking the server to close after answering), with its body if given."""
    head = f"{line} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


def raw_exchange(port: int, *parts: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `parts` on a new connection (a pause between them), read to the close (the requests ask for one);
    status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        for n, part in enumerate(parts):
            if n:
                time.sleep(0.2)
            conn.sendall(part)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}, body


def test_a_full_worker_refuses_new_connections_at_the_door_and_the_rest_through_uvicorn(served):
    port, limit, release, refused = served
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # kept alive from before the limit fills
    kept.request("GET", "/health")
    assert kept.getresponse().read() == b"ok"
    held = [threading.Thread(target=lambda: raw_exchange(port, asked("GET /slow")))
            for _ in range(2)]
    for thread in held:
        thread.start()
    deadline = time.monotonic() + 30
    while limit.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limit.in_flight == 2

    # a new connection's whole request: refused at the door (uvicorn adds `server` and `date` to its own answers)
    status, headers, body = raw_exchange(port, asked("POST /slow", b"{}"))
    assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
    assert "server" not in headers and headers["content-security-policy"] == POLICY
    assert json.loads(body) == {"detail": BUSY}
    # never shed, on a new connection
    assert raw_exchange(port, asked("GET /health"))[0] == 200
    # a kept-alive connection and a body sent after its headers pass the door: the limit refuses them in uvicorn
    kept.request("POST", "/slow", body=b"{}")
    answer = kept.getresponse()
    assert (answer.status, json.loads(answer.read()), answer.getheader("server")) == (503, {"detail": BUSY}, "uvicorn")
    status, headers, body = raw_exchange(port, asked("POST /slow", b"{}")[:-2], b"{}")
    assert (status, json.loads(body), headers["server"]) == (503, {"detail": BUSY}, "uvicorn")
    assert refused == ["busy"] * 3

    release.set()
    for thread in held:
        thread.join(30)
    assert raw_exchange(port, asked("GET /slow"))[0] == 200
    kept.request("GET", "/slow")
    assert kept.getresponse().status == 200
    kept.close()
