"""Benchmark the Ray engine against the local one: ETL and batch scoring, wall time and peak memory per process.

    .venv/bin/python bench/scale.py --data data/sample-small --store /tmp/scale-store \\
        --bundle work/bundles/<run-id> --out /tmp/scale.json

Every run is a child process. A thread samples the USS and PSS (not RSS, which counts the pages of Ray's
shared object store in every process that maps them) of the child and of every process under it (Ray's
GCS, raylet and workers) every 0.25 s, and keeps each one's peak. Ray's wall time includes starting the
local Ray (reported apart as `ray_start_s` from a run that starts Ray and does nothing). Threads: the local
engine's Polars uses every core; each Ray worker's Polars does too (POLARS_MAX_THREADS unset for both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil
from child import csv_size_gb, machine

GIB = 1024**3


def sample_tree(pid: int, peaks: dict[int, dict], stop: threading.Event, every: float = 0.25) -> None:
    """Peak USS and PSS of `pid` and its descendants, by process id, until `stop` is set."""
    root = psutil.Process(pid)
    while not stop.is_set():
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:  # the child ended, or one under it ended while being listed
            if not root.is_running():
                return
            continue
        for process in processes:
            try:
                info, name = process.memory_full_info(), " ".join(process.cmdline()[:3])[:80]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            peak = peaks.setdefault(process.pid, {"name": name, "uss": 0, "pss": 0})
            peak["name"] = name if name.startswith("ray::") else peak["name"]  # a Ray worker renames itself
            peak["uss"], peak["pss"] = max(peak["uss"], info.uss), max(peak["pss"], info.pss)
        stop.wait(every)


def measure(command: list[str]) -> dict:
    """Run `command`; its wall time, its JSON answer (last stdout line, if any) and per-process peak memory."""
    peaks: dict[int, dict] = {}
    stop = threading.Event()
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=sample_tree, args=(child.pid, peaks, stop))
    sampler.start()
    out, _ = child.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}")
    lines = out.strip().splitlines()
    answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    driver = peaks.get(child.pid, {"uss": 0, "pss": 0})
    workers = [p for p in peaks.values() if p["name"].startswith("ray::") and "Agent" not in p["name"]]
    return {
        "wall_s": round(seconds, 2), **answer,
        "driver_peak_uss_gib": round(driver["uss"] / GIB, 3), "driver_peak_pss_gib": round(driver["pss"] / GIB, 3),
        "worker_peak_uss_gib": round(max((p["uss"] for p in workers), default=0) / GIB, 3),
        "worker_peak_pss_gib": round(max((p["pss"] for p in workers), default=0) / GIB, 3),
        "ray_workers_seen": len(workers),
    }


def child_scoring(engine: str, bundle: Path, rows: int, sample: int | None) -> None:
    """Child mode: score every customer of the bundle (or a seeded sample of `sample` of them) and print the seconds
    that took, as JSON."""
    import numpy as np
    import polars as pl

    from hmrec.registry.model_bundle import bundle_paths
    from hmrec.scale.engine import LocalEngine, RayEngine
    from hmrec.scale.scoring import ScoringInputs

    parts = bundle_paths(bundle)
    inputs = ScoringInputs(parts.final, parts.customers, parts.history, parts.data_end + timedelta(days=1), k=12)
    customers = np.arange(pl.scan_parquet(inputs.customers).select(pl.len()).collect().item(), dtype=np.int32)
    if sample is not None and sample < customers.size:  # the same customers for both engines
        customers = np.sort(np.random.default_rng(0).choice(customers, sample, replace=False)).astype(np.int32)
    config = {"local": LocalEngine(), "ray": RayEngine(scoring_rows=rows)}[engine]
    with config.session():
        started = time.perf_counter()
        scored = config.score(inputs, customers)
        seconds = time.perf_counter() - started
    print(json.dumps({"stage_s": round(seconds, 2), "customers": len(customers), "processes": len(scored.pids)}))


def child_ray_start() -> None:
    """Child mode: start a local Ray and stop it, the fixed cost inside every Ray run's wall time."""
    from hmrec.scale.engine import RayEngine

    with RayEngine().session():
        pass
    print("{}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="raw sample folder (generate one with `hmrec data generate`)")
    parser.add_argument("--store", type=Path, default=Path("/tmp/scale-store"), help="store folder to build")
    parser.add_argument("--bundle", type=Path, help="a pipeline bundle (WORKDIR/bundles/<run-id>) to score")
    parser.add_argument("--scoring-rows", type=int, default=20_000, help="customers per Ray scoring block")
    parser.add_argument("--customers", type=int, help="score a seeded sample of this many customers (default: all)")
    parser.add_argument("--out", type=Path, help="write the results here as JSON too")
    parser.add_argument("--child", choices=["scoring-local", "scoring-ray", "ray-start"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "ray-start":
        return child_ray_start()
    if args.child:
        return child_scoring(args.child.split("-")[1], args.bundle, args.scoring_rows, args.customers)
    if args.data is None:
        parser.error("--data is required")
    me = [sys.executable, __file__]
    results = {"machine": machine(), "csv_gb": round(csv_size_gb(args.data), 3),
               "ray_start": measure([*me, "--child", "ray-start"])}
    for engine in ("local", "ray"):
        etl = [sys.executable, "-m", "hmrec.cli", "etl", "--raw", str(args.data), "--store", str(args.store),
               "--engine", engine]
        results[f"etl_{engine}"] = measure(etl)
        manifest = json.loads((args.store / "manifest.json").read_text())
        results[f"etl_{engine}"].update(stage_s=manifest["build_seconds"], rows=manifest["rows"]["transactions"])
        if args.bundle:
            scoring = [*me, "--child", f"scoring-{engine}", "--bundle", str(args.bundle),
                       "--scoring-rows", str(args.scoring_rows),
                       *(["--customers", str(args.customers)] if args.customers else [])]
            results[f"scoring_{engine}"] = measure(scoring)
    for stage in ("etl", "scoring"):
        if f"{stage}_ray" in results:
            local, ray = results[f"{stage}_local"], results[f"{stage}_ray"]
            results[f"{stage}_ratio"] = {"wall": round(ray["wall_s"] / local["wall_s"], 2),
                                         "stage": round(ray["stage_s"] / local["stage_s"], 2)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
