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
from collections.abc import Callable

import numpy as np
import uvloop
from http1 import EVENTS_PATH, exchange

LATENCY_TARGET_MS = 100.0
REFUSAL_TARGET_MS = 50.0
ACCEPTED_SHARE_TARGET = 0.9
OVERLOAD = 4
REFUSED = (429, 503)
KEEP_ALIVE_SECONDS = 4.0  # under uvicorn's timeout_keep_alive (5 s)


def purchases(customers: list[str], articles: list[int], seed: int) -> Callable[[int], dict]:
    """The i-th event's body: a random known customer buying a random article."""
    rng = random.Random(seed)
    return lambda i: {"customer_id": rng.choice(customers), "article_id": rng.choice(articles)}


async def open_loop(host: str, port: int, rate: float, seconds: float, body: Callable[[int], dict],
                    max_connections: int) -> dict:
    """Send `rate` events per second for `seconds` on schedule; the latencies of accepted and refused ones."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []  # (reader, writer, idle since)
    slots = asyncio.Semaphore(max_connections)  # waiting for one counts in the latency, as any client queue would
    accepted: list[float] = []
    refused: list[float] = []
    other: dict[str, int] = {}
    reasons: dict[str, int] = {}  # status and the detail's first words: which limit refused

    async def one(due: float, i: int) -> None:
        async with slots:
            connection = _reusable(idle)
            try:
                if connection is None:
                    connection = await asyncio.open_connection(host, port)
                status, payload = await exchange(*connection[:2], "POST", EVENTS_PATH, body(i))
            except (OSError, asyncio.IncompleteReadError) as error:
                other[type(error).__name__] = other.get(type(error).__name__, 0) + 1
                if connection is not None:
                    connection[1].close()
                return
            ms = (time.perf_counter() - due) * 1000
            if status == 201:
                accepted.append(ms)
            else:
                if status in REFUSED:
                    refused.append(ms)
                other[str(status)] = other.get(str(status), 0) + 1
                reason = f"{status} {' '.join(json.loads(payload).get('detail', '').split()[:5])}"
                reasons[reason] = reasons.get(reason, 0) + 1
            idle.append((*connection[:2], time.perf_counter()))

    total, start = int(rate * seconds), time.perf_counter() + 0.05
    tasks, i = [], 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:
            tasks.append(asyncio.ensure_future(one(start + i / rate, i)))
            i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, writer, _ in idle:
        writer.close()
    return {**summary(rate, total, elapsed, accepted, refused, other), "reasons": reasons}


def _reusable(idle: list) -> tuple | None:
    """The most recently used idle connection, closing those the server may have closed meanwhile (uvicorn closes
    a connection idle for 5 s): reused, they would fail as if the service had dropped the request."""
    while idle:
        reader, writer, since = idle.pop()
        if time.perf_counter() - since < KEEP_ALIVE_SECONDS:
            return reader, writer, since
        writer.close()
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
            overload_seconds: float, max_rate: float, max_connections: int, known: float | None = None) -> dict:
    """Warm up, step the rate up to the first failure, bisect `refine` times, then run at OVERLOAD x the result
    (or at OVERLOAD x `known`, a sustainable rate found before, without stepping)."""
    host, port = url.removeprefix("http://").split(":")

    def run(rate: float, seconds: float) -> dict:
        return uvloop.run(open_loop(host, int(port), rate, seconds, body, max_connections))

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
             "| load |", "|---|---|---|---|---|---|---|"]
    rows = [*result["steps"], *([result["overload"]] if "overload" in result else [])]
    for step in rows:
        lines.append(f"| {step['rate']} | {step['sent']} | {step['accepted_per_s']} | {step['not_accepted'] or 0} | "
                     f"{step.get('accepted_p50_ms', '-')} / {step.get('accepted_p99_ms', '-')} / "
                     f"{step.get('accepted_max_ms', '-')} | {step.get('refused_p50_ms', '-')} / "
                     f"{step.get('refused_p99_ms', '-')} | {step['load_average']} |")
    if "targets" in result:
        lines += ["", f"at {OVERLOAD}x (last row): {result['targets']}"]
    return "\n".join(lines)
