"""The sustainable rate of live purchase events, and the service at four times that rate (bench/serve.py --only
event-rate).

Open loop: requests leave on a fixed schedule (rate r: one every 1/r s) whatever the pace of the answers, each on
an idle kept-alive connection or a new one; latency runs from the scheduled time, so a slow answer (or a client
fallen behind) counts against the service instead of quietly delaying the next request. The sustainable rate is
the highest stepped rate (start, then x factor, then bisected between the last pass and the first failure) whose
every event was accepted (201) with p99 under 100 ms, in one of two tries. At four times it, the targets: accepted
events per second at least 90% of the sustainable rate with p99 under 100 ms, and refusals (503 or 429) answered in
under 50 ms (p99).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import uvloop
from http1 import EVENTS_PATH, request

LATENCY_TARGET_MS = 100.0
REFUSAL_TARGET_MS = 50.0
ACCEPTED_SHARE_TARGET = 0.9
OVERLOAD = 4
REFUSED = (429, 503)
KEEP_ALIVE_SECONDS = 4.0  # under uvicorn's timeout_keep_alive (5 s)
TICK_SECONDS = 0.001  # events due meanwhile leave together, up to 1 ms late (counted in their latency)


def purchases(customers: list[str], articles: list[int], seed: int) -> Callable[[int], dict]:
    """The i-th event's body: a random known customer buying a random article."""
    rng = random.Random(seed)
    return lambda i: {"customer_id": rng.choice(customers), "article_id": rng.choice(articles)}


async def open_loop(host: str, port: int, rate: float, seconds: float, body: Callable[[int], dict],
                    max_connections: int) -> dict:
    """Send `rate` events per second for `seconds` on schedule; the latencies of accepted and refused ones.

    Lean on purpose, since on a small machine the client's CPU is the service's: requests are encoded before the
    clock starts, and each connection is an asyncio Protocol that parses only the status line and Content-Length
    (no task, stream or JSON per request). An event due while every one of `max_connections` connections is busy
    waits for the first to come free, and that wait counts in its latency."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    requests = [request("POST", EVENTS_PATH, body(i)) for i in range(total)]
    idle: list[_Connection] = []
    waiting: deque[tuple[float, int]] = deque()  # (due, index) of events with no connection free yet
    accepted: list[float] = []
    refused: list[float] = []
    other: dict[str, int] = {}
    reasons: dict[str, int] = {}  # status and the detail's first words: which limit refused
    opened = 0  # connections open or opening
    left = total
    finished = loop.create_future()

    def count(key: str, into: dict[str, int]) -> None:
        into[key] = into.get(key, 0) + 1

    def one_done() -> None:
        nonlocal left
        left -= 1
        if left == 0 and not finished.done():
            finished.set_result(None)

    def send(due: float, i: int) -> None:
        connection = _reusable(idle)
        if connection is not None:
            connection.send(requests[i], due)
        elif opened < max_connections:
            connect(due, i)
        else:
            waiting.append((due, i))

    def connect(due: float, i: int) -> None:
        """Open a connection for the i-th event (its opening counts in the event's latency)."""
        nonlocal opened
        opened += 1
        loop.create_task(connected(due, i))

    async def connected(due: float, i: int) -> None:
        nonlocal opened
        try:
            _, connection = await loop.create_connection(lambda: _Connection(answered, lost), host, port)
        except OSError as error:
            opened -= 1
            count(type(error).__name__, other)
            one_done()
            return
        connection.send(requests[i], due)

    def answered(connection: _Connection, status: int, payload: bytes, due: float) -> None:
        ms = (time.perf_counter() - due) * 1000
        if status == 201:
            accepted.append(ms)
        else:
            if status in REFUSED:
                refused.append(ms)
            count(str(status), other)
            count(f"{status} {' '.join(json.loads(payload).get('detail', '').split()[:5])}", reasons)
        if connection.closing:  # the server closes it after this answer: never reused
            connection.close()
        elif waiting:
            due, i = waiting.popleft()
            connection.send(requests[i], due)
        else:
            connection.idle_since = time.perf_counter()
            idle.append(connection)
        one_done()

    def lost(connection: _Connection, in_flight: bool) -> None:
        nonlocal opened
        opened -= 1
        if in_flight:  # dropped with a request unanswered: the service's failure
            count("ConnectionLost", other)
            one_done()
        if waiting and opened < max_connections:
            connect(*waiting.popleft())

    start, i = time.perf_counter() + 0.05, 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:
            send(start + i / rate, i)
            i += 1
        # at least TICK between wake-ups: a sleep per event cost this client more CPU than the requests themselves
        await asyncio.sleep(max(TICK_SECONDS, start + i / rate - time.perf_counter()))
    if total:
        await finished
    elapsed = time.perf_counter() - start
    for connection in idle:
        connection.close()
    return {**summary(rate, total, elapsed, accepted, refused, other), "reasons": reasons}


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time; `answered(self, status, body, due)` when the
    answer is complete, `lost(self, in_flight)` when the connection closes."""

    def __init__(self, answered: Callable, lost: Callable):
        self.answered, self.lost = answered, lost
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.due: float | None = None  # the request in flight's scheduled time
        self.idle_since = 0.0
        self.closing = False  # the last answer said `connection: close`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due: float) -> None:
        self.due = due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.index(b"content-length:") + len(b"content-length:")
        length = int(head[at:].split(b"\r\n", 1)[0])
        if len(self.buffer) < end + 4 + length:
            return
        payload, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
        due, self.due = self.due, None
        self.closing = b"\r\nconnection: close" in head
        self.answered(self, int(head[9:12]), payload, due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost(self, self.due is not None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _reusable(idle: list[_Connection]) -> _Connection | None:
    """The most recently used idle connection, closing those the server may have closed meanwhile (uvicorn closes
    a connection idle for 5 s): reused, they would fail as if the service had dropped the request."""
    while idle:
        connection = idle.pop()
        if connection.transport is not None and time.perf_counter() - connection.idle_since < KEEP_ALIVE_SECONDS:
            return connection
        connection.close()
    return None


def summary(rate: float, sent: int, elapsed: float, accepted: list[float], refused: list[float],
            other: dict[str, int]) -> dict:
    """`elapsed` runs until the last answer: accepted/s counts the drain after the last send against the service."""
    result = {"rate": round(rate, 1), "sent": sent, "seconds": round(elapsed, 2),
              "accepted_per_s": round(len(accepted) / elapsed, 1), "accepted": len(accepted),
              "not_accepted": dict(sorted(other.items())), "load_average": round(os.getloadavg()[0], 1)}
    for name, ms in (("accepted", accepted), ("refused", refused)):
        if ms:
            result[f"{name}_p50_ms"] = round(float(np.percentile(ms, 50)), 1)
            result[f"{name}_p99_ms"] = round(float(np.percentile(ms, 99)), 1)
            result[f"{name}_max_ms"] = round(float(np.max(ms)), 1)
    return result


def sustained(step: dict) -> bool:
    """Every event accepted, p99 under the target."""
    return step["accepted"] == step["sent"] and step.get("accepted_p99_ms", float("inf")) < LATENCY_TARGET_MS


def measure(url: str, body: Callable[[int], dict], start: float, factor: float, refine: int, step_seconds: float,
            overload_seconds: float, max_rate: float, max_connections: int, known: float | None = None,
            server_cpu: Callable[[], float] = lambda: 0.0) -> dict:
    """Warm up, step the rate up to the first failure, bisect `refine` times, then run at OVERLOAD x the result
    (or at OVERLOAD x `known`, a sustainable rate found before, without stepping). Each step also says how many CPUs
    the service (`server_cpu()`: its CPU seconds so far) and this client used."""
    host, port = url.removeprefix("http://").split(":")

    def run(rate: float, seconds: float) -> dict:
        server, client = server_cpu(), time.process_time()
        step = uvloop.run(open_loop(host, int(port), rate, seconds, body, max_connections))
        return {**step, "server_cpus": round((server_cpu() - server) / step["seconds"], 2),
                "client_cpus": round((time.process_time() - client) / step["seconds"], 2)}

    run(start, 2.0)  # connections opened, code paths warm: not counted
    steps: list[dict] = []

    def passes(rate: float) -> bool:
        """Two tries: on a shared machine one p99 can be another process's doing."""
        for _ in range(2):
            steps.append(run(rate, step_seconds))
            if sustained(steps[-1]):
                return True
        return False

    best, failed, rate = known, None, start if known is None else float("inf")
    while rate <= max_rate:
        if not passes(rate):
            failed = rate
            break
        best, rate = rate, rate * factor
    for _ in range(refine if best is not None and failed is not None else 0):
        middle = (best + failed) / 2
        best, failed = (middle, failed) if passes(middle) else (best, middle)
    result = {"steps": steps, "sustainable_per_s": round(best, 1) if best is not None else None}
    if best is not None:
        over = run(OVERLOAD * best, overload_seconds)
        result["overload"] = over
        result["targets"] = {
            "accepted_share": round(over["accepted_per_s"] / best, 3),
            "accepted_share_met": over["accepted_per_s"] >= ACCEPTED_SHARE_TARGET * best,
            "accepted_p99_met": over.get("accepted_p99_ms", float("inf")) < LATENCY_TARGET_MS,
            "refusals_fast_met": over.get("refused_p99_ms", 0.0) < REFUSAL_TARGET_MS,
        }
    return result


def markdown(result: dict) -> str:
    lines = [f"sustainable event rate: {result['sustainable_per_s']}/s (every event accepted, p99 < "
             f"{LATENCY_TARGET_MS:.0f} ms)", "",
             "| offered /s | sent | accepted /s | not accepted | accepted p50 / p99 / max ms | refused p50 / p99 ms "
             "| CPUs: service / client | load |", "|---|---|---|---|---|---|---|---|"]
    rows = [*result["steps"], *([result["overload"]] if "overload" in result else [])]
    for step in rows:
        lines.append(f"| {step['rate']} | {step['sent']} | {step['accepted_per_s']} | {step['not_accepted'] or 0} | "
                     f"{step.get('accepted_p50_ms', '-')} / {step.get('accepted_p99_ms', '-')} / "
                     f"{step.get('accepted_max_ms', '-')} | {step.get('refused_p50_ms', '-')} / "
                     f"{step.get('refused_p99_ms', '-')} | {step.get('server_cpus', '-')} / "
                     f"{step.get('client_cpus', '-')} | {step['load_average']} |")
    if "targets" in result:
        lines += ["", f"at {OVERLOAD}x (last row): {result['targets']}"]
    return "\n".join(lines)
