"""Benchmark the service: the workdir's champion served by `hmrec serve` in a child process, load from this one.

    .venv/bin/python bench/serve.py --workdir work                      # after `make pipeline` (or the full sample)
    .venv/bin/python bench/serve.py --workdir work --duration 5 --json /tmp/serve.json

Scenarios, each bounded in time, over loopback, `--concurrency` requests in flight (asyncio + uvloop, one kept-alive
connection each):
  health        GET /health: the same app's trivial endpoint, the ceiling of server + client on this machine
  warm-miss     POST /recommendations, each request a different customer with purchases (cache misses) whose
                answer is not precomputed: the online path (all customers when the bundle precomputed everyone's)
  precomputed   POST /recommendations, each request a different random active customer: answers looked up in the
                version's precomputed table (cache misses)
  warm-hit      POST /recommendations over 100 customers asked before (answers from the per-customer cache)
  cold          POST /recommendations for ids the data has never seen (cold start, each id new)
  mix           90% warm recommendations (random customers) + 10% purchase events for them; `paths` gives the
                share of the answers each path served (a customer who bought goes online)
  event-rate    only when named in --only: POST /events/purchases at stepped open-loop rates, the sustainable
                rate (no refusal, p99 < 100 ms) and the service at 4x it (bench/event_rate.py)
Latency is measured by the client (request sent -> response read); the server's own time per answer
(`took_ms`) is reported beside it. Targets on 2 cores: >= 500 recommendation requests/s, p99 <= 50 ms.
Events go to a temporary SQLite file, never the workdir's; `--events postgresql` puts them in a throw-away
PostgreSQL cluster started for the run (fsync on, as in production; Debian's server binaries), `--events-url` in
an existing (empty) PostgreSQL database.

    .venv/bin/python bench/serve.py --workdir work --only mix --workers 2 --concurrency 16 --events postgresql
    .venv/bin/python bench/serve.py --workdir work --only event-rate --workers 2
    .venv/bin/python bench/serve.py --workdir work --only event-rate --workers 1 --client-cpu 0

`--client-cpu N` pins this client to CPU N and the service to the other CPUs, as if the load came from another
machine: on two shared cores, the client's CPU is otherwise taken from the service it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import event_rate
import numpy as np
import polars as pl
import psutil
import uvloop
from http1 import EVENTS_TOKEN, exchange

from hmrec.registry.model_bundle import bundle_paths, read_answers
from hmrec.registry.versions import Registry
from hmrec.support.launcher import Server  # the same subprocess helper the reliability tests use


def split_cpus(client_cpu: int | None) -> tuple[set[int], set[int]] | None:
    """({client's CPU}, {the service's CPUs}) for --client-cpu, or None."""
    if client_cpu is None:
        return None
    cpus = os.sched_getaffinity(0)
    if client_cpu not in cpus or len(cpus) < 2:
        raise SystemExit(f"--client-cpu {client_cpu}: this process may run on CPUs {sorted(cpus)}; the client needs "
                         "one of them and the service at least one other")
    return {client_cpu}, cpus - {client_cpu}


def warm_customers(workdir: Path, limit: int, seed: int) -> tuple[list[str], list[str], list[str], list[int]]:
    """Customer ids with purchases in the champion's bundle, shuffled: all of them, those whose answers the bundle
    precomputed, those whose answers it did not (each list cut to `limit` after it is drawn from the whole bundle),
    and some article ids to buy."""
    bundle = bundle_paths(Registry.for_workdir(workdir).load("champion"))
    buyers = pl.read_parquet(bundle.history, columns=["customer_idx"]).unique().sort("customer_idx")
    answers = read_answers(bundle.root)
    precomputed = answers.customer_idx if answers is not None else np.empty(0, dtype=np.int32)
    known = pl.Series(np.asarray(precomputed)).implode()
    buyers = buyers.with_columns(pl.col("customer_idx").is_in(known).alias("active"))
    found = pl.read_parquet(bundle.customers, columns=["customer_idx", "customer_id"]).join(buyers, on="customer_idx")
    ids, active = found["customer_id"].to_list(), found.filter(pl.col("active"))["customer_id"].to_list()
    online = found.filter(~pl.col("active"))["customer_id"].to_list()
    for customers in (ids, active, online):
        random.Random(seed).shuffle(customers)
    articles = pl.read_parquet(bundle.articles, columns=["article_id"])["article_id"]
    return ids[:limit], active[:limit], online[:limit], articles.head(5000).to_list()


async def run_scenario(url: str, make_request, duration: float, concurrency: int, server_pids: list[int]) -> dict:
    """Keep `concurrency` requests in flight for `duration` seconds, one keep-alive connection each; collect client
    latency, the server's took_ms, and the CPU seconds the server and this client spent."""
    latencies: list[float] = []
    server_ms: list[float] = []
    cached: list[bool] = []
    paths: list[str] = []
    failures: dict[str, int] = {}
    host, port = url.removeprefix("http://").split(":")
    deadline = time.perf_counter() + duration

    async def worker(worker_id: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        n = 0
        try:
            while time.perf_counter() < deadline:
                method, path, body = make_request(worker_id, n)
                n += 1
                started = time.perf_counter()
                try:
                    status, payload = await exchange(reader, writer, method, path, body)
                except (ConnectionError, asyncio.IncompleteReadError) as error:
                    failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    failures[str(status)] = failures.get(str(status), 0) + 1
                elif path == "/recommendations":
                    answer = json.loads(payload)
                    server_ms.append(answer["took_ms"])
                    cached.append(answer["cached"])
                    paths.append(answer.get("path", "online"))
        finally:
            writer.close()

    cpu_before, client_before = _cpu_seconds(server_pids), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = {"server": _cpu_seconds(server_pids) - cpu_before, "client": time.process_time() - client_before}
    return summarise(latencies, server_ms, cached, failures, elapsed, cpu, paths)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their live children (uvicorn's workers)."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in [process, *process.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def summarise(latencies: list[float], server_ms: list[float], cached: list[bool], failures: dict, elapsed: float,
              cpu: dict[str, float], paths: list[str] = ()) -> dict:
    ms = np.asarray(latencies) * 1000
    result = {"requests": len(ms), "seconds": round(elapsed, 2), "rps": round(len(ms) / elapsed, 1),
              "failures": failures}
    if len(ms):  # CPU milliseconds per request: where the two cores went
        result["server_cpu_ms"] = round(cpu["server"] * 1000 / len(ms), 3)
        result["client_cpu_ms"] = round(cpu["client"] * 1000 / len(ms), 3)
    for q in (50, 95, 99):
        result[f"p{q}_ms"] = round(float(np.percentile(ms, q)), 2) if len(ms) else None
    if server_ms:
        result["server_p50_ms"] = round(float(np.percentile(server_ms, 50)), 2)
        result["server_p99_ms"] = round(float(np.percentile(server_ms, 99)), 2)
        result["cache_hit_share"] = round(float(np.mean(cached)), 3)
    if paths:  # the share of the answers each path computed (a cached answer counts for the path that computed it)
        result["paths"] = {path: round(paths.count(path) / len(paths), 3) for path in ("precomputed", "online")}
    return result


def scenarios(warm: list[str], active: list[str], online: list[str], articles: list[int], seed: int) -> dict:
    rng = random.Random(seed)
    not_precomputed = online or warm  # every buyer's answer precomputed: warm-miss measures the lookup
    miss_iter = iter(not_precomputed)
    active_iter = iter(active)
    hot = warm[:100]
    counter = iter(range(10**9))

    def health(w, n):
        return "GET", "/health", None

    def warm_miss(w, n):
        return "POST", "/recommendations", {"customer_id": next(miss_iter, rng.choice(not_precomputed)), "k": 12}

    def precomputed(w, n):
        return "POST", "/recommendations", {"customer_id": next(active_iter, rng.choice(active or warm)), "k": 12}

    def warm_hit(w, n):
        return "POST", "/recommendations", {"customer_id": rng.choice(hot), "k": 12}

    def cold(w, n):
        return "POST", "/recommendations", {"customer_id": f"bench-cold-{next(counter)}", "k": 12}

    def mix(w, n):
        customer = rng.choice(warm)
        if rng.random() < 0.1:
            return "POST", "/events/purchases", {"customer_id": customer, "article_id": rng.choice(articles)}
        return "POST", "/recommendations", {"customer_id": customer, "k": 12}

    return {"health": health, "warm-miss": warm_miss, "precomputed": precomputed, "warm-hit": warm_hit, "cold": cold,
            "mix": mix}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="pipeline workdir with a promoted champion")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--batch-max", type=int, default=64, help="server's HMREC_BATCH_MAX (1: no batching)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server's HMREC_WORKERS")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--events", choices=["sqlite", "postgresql"], default="sqlite",
                        help="event store backend: a temporary SQLite file, or a throw-away PostgreSQL cluster")
    parser.add_argument("--events-url", help="postgresql://... of an existing empty database (instead of --events)")
    parser.add_argument("--max-in-flight", type=int, help="server's HMREC_MAX_IN_FLIGHT (default: the service's)")
    parser.add_argument("--max-wait-ms", type=float, help="server's HMREC_MAX_WAIT_MS (default: the service's)")
    parser.add_argument("--max-event-wait-ms", type=float,
                        help="server's HMREC_MAX_EVENT_WAIT_MS (default: the service's)")
    parser.add_argument("--cache-size", type=int, default=200_000, help="server's HMREC_CACHE_SIZE (0: every answer "
                        "computed, e.g. when warm-miss outlasts the sample's customers and would start to hit)")
    rates = parser.add_argument_group("event-rate (bench/event_rate.py)")
    rates.add_argument("--rate-start", type=float, default=20.0, help="first offered events per second")
    rates.add_argument("--rate-factor", type=float, default=1.25, help="each step offers this times the last")
    rates.add_argument("--rate-refine", type=int, default=2, help="bisections between the last pass and first fail")
    rates.add_argument("--step-seconds", type=float, default=5.0, help="seconds per offered rate")
    rates.add_argument("--overload-seconds", type=float, default=10.0, help="seconds at 4x the sustainable rate")
    rates.add_argument("--max-rate", type=float, default=20_000.0, help="stop stepping here")
    rates.add_argument("--max-connections", type=int, default=1024, help="the client's connections at most")
    rates.add_argument("--sustainable", type=float, help="a sustainable rate found before: only run at 4x it")
    parser.add_argument("--client-cpu", type=int, help="pin this client to that CPU and the service to the others: "
                        "the load no longer takes CPU from the service, as from another machine (the service then "
                        "has one CPU fewer)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # the machine's business matters as much as the figures
    warm, active, online, articles = warm_customers(args.workdir, limit=200_000, seed=args.seed)
    plan = scenarios(warm, active, online, articles, args.seed)
    results = {}
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        events = args.events_url or Path(scratch) / "events.sqlite"
        if args.events == "postgresql" and not args.events_url:
            from hmrec.support.local_postgres import TemporaryPostgres

            events = stack.enter_context(TemporaryPostgres(fsync=True)).create_database("bench")
        limit = {"HMREC_MAX_IN_FLIGHT": str(args.max_in_flight)} if args.max_in_flight else {}
        if args.max_wait_ms is not None:
            limit["HMREC_MAX_WAIT_MS"] = str(args.max_wait_ms)
        if args.max_event_wait_ms is not None:
            limit["HMREC_MAX_EVENT_WAIT_MS"] = str(args.max_event_wait_ms)
        pinned = split_cpus(args.client_cpu)
        server = Server(args.workdir, events, Path(scratch) / "server.log", events_token=EVENTS_TOKEN,
                        preexec_fn=pinned and (lambda: os.sched_setaffinity(0, pinned[1])),
                        HMREC_CACHE_SIZE=str(args.cache_size), HMREC_BATCH_MAX=str(args.batch_max),
                        HMREC_WORKERS=str(args.workers),
                        # one client address sends every event here: measure the service, not the per-client limit
                        HMREC_EVENTS_PER_CLIENT_PER_SECOND="1000000", HMREC_EVENTS_BURST="1000000", **limit)
        stack.callback(server.stop)
        server.start(timeout=600)  # a loaded machine can take minutes to start two workers
        if pinned:
            os.sched_setaffinity(0, pinned[0])
        # warm-hit needs its 100 customers asked once; warm-miss must come first so it never hits
        for name in [n for n in plan if not args.only or n in args.only]:
            if name == "warm-hit":
                uvloop.run(run_scenario(server.url, plan["warm-hit"], 1.0, args.concurrency, [server.process.pid]))
            results[name] = uvloop.run(run_scenario(server.url, plan[name], args.duration, args.concurrency,
                                                     [server.process.pid]))
            print(f"{name:10s} {json.dumps(results[name])}", file=sys.stderr)
        if args.only and "event-rate" in args.only:
            rate = event_rate.measure(server.url, event_rate.purchases(warm, articles, args.seed),
                                      args.rate_start, args.rate_factor, args.rate_refine, args.step_seconds,
                                      args.overload_seconds, args.max_rate, args.max_connections,
                                      args.sustainable, lambda: _cpu_seconds([server.process.pid]))
        # resident memory of each serving process once every scenario ran (the supervisor's included)
        family = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
        rss_mib = sorted(round(p.memory_info().rss / 2**20) for p in family)
    backend = "postgresql" if args.events_url else args.events
    report = {"workdir": str(args.workdir), "events": backend, "cpus": os.cpu_count(), "concurrency": args.concurrency,
              "client_cpu": args.client_cpu,
              "batch_max": args.batch_max, "workers": args.workers, "load_average_before": load_before,
              "load_average_after": os.getloadavg()[0],
              "duration_s": args.duration, "warm_customers": len(warm), "precomputed_customers": len(active),
              "rss_mib": rss_mib, "max_in_flight": args.max_in_flight, "max_wait_ms": args.max_wait_ms,
              "max_event_wait_ms": args.max_event_wait_ms,
              "scenarios": results}
    if args.only and "event-rate" in args.only:
        report["event_rate"] = rate
    print(markdown(report))
    if "event_rate" in report:
        print("\n" + event_rate.markdown(report["event_rate"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def markdown(report: dict) -> str:
    lines = [f"events in {report.get('events', 'sqlite')}, {report['workers']} worker(s), "
             f"concurrency {report['concurrency']}, {report['duration_s']:.0f} s per "
             f"scenario, {report['cpus']} CPUs, batch_max {report['batch_max']}, load average after "
             f"{report['load_average_after']:.1f}, server processes' RSS {report['rss_mib']} MiB",
             "", "| scenario | req/s | p50 ms | p95 ms | p99 ms | server p50 ms | cache hits | failures "
             "| server CPU ms/req | client CPU ms/req | precomputed / online |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["scenarios"].items():
        lines.append(f"| {name} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                     f"{r.get('server_p50_ms', '-')} | {r.get('cache_hit_share', '-')} | "
                     f"{sum(r['failures'].values())} | "
                     f"{r.get('server_cpu_ms', '-')} | {r.get('client_cpu_ms', '-')} | {_paths(r)} |")
    return "\n".join(lines)


def _paths(result: dict) -> str:
    paths = result.get("paths")
    return f"{paths['precomputed']:.0%} / {paths['online']:.0%}" if paths else "-"


if __name__ == "__main__":
    main()
