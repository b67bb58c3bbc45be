"""Benchmark of quality on a sample world: generate, run the whole pipeline, print the evaluation table and check
the targets (final MAP@12 against the best other row; final Recall@100 against each source's).

    .venv/bin/python bench/quality.py --world fashion --scale small [--seeds 7,8,9] [--test-days 1]
        [--horizon-days N] [--search-fits N] [--workdir /tmp/q] [--json out.json]

Each seed is a sample generated with that seed (`hmrec data generate --seed S --world W`) and its own pipeline run;
the table is the mean over the seeds. The ratio of `final` to the best other row (best by its mean) comes with a
95% paired bootstrap interval: the held-out buyers resampled within each seed (the same buyers for both rows), from
each run's per-buyer AP@12 (`ap12_per_buyer.parquet` beside its report). Exits 1 when a target is missed, after
printing every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

# final MAP@12 over the best other method's, per world; final Recall@100 over each source's
MAP_TARGET = {"fashion": 1.35, "grocery": 1.0, "media": 1.45}
RECALL_KEEPS = 0.98
SOURCES = ("two_tower", "repurchase", "other_colours", "bought_together", "age_popularity", "trending", "als",
           "tifu_knn", "ease")
RESAMPLES = 2000


def run(command: list[str]) -> str:
    """Run an hmrec command; its last stdout line."""
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    print(f"# {' '.join(command)}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return done.stdout.strip().splitlines()[-1]


def one_seed(args: argparse.Namespace, seed: int) -> tuple[dict, pl.DataFrame, float]:
    """Generate (once) and run the pipeline for one seed: its metrics, per-buyer AP@12 and pipeline seconds."""
    hmrec = str(Path(sys.executable).parent / "hmrec")
    raw = args.workdir / f"raw-{args.world}-{args.scale}-s{seed}"
    work = args.workdir / f"work-{args.world}-{args.scale}-s{seed}-t{args.test_days}-h{args.horizon_days or 0}"
    if not raw.exists():
        run([hmrec, "data", "generate", "--scale", args.scale, "--seed", str(seed), "--world", args.world,
             "--out", str(raw)])
    command = [hmrec, "pipeline", "--raw", str(raw), "--workdir", str(work), "--test-days", str(args.test_days)]
    if args.horizon_days:
        command += ["--horizon-days", str(args.horizon_days)]
    if args.search_fits:
        command += ["--search-fits", str(args.search_fits)]
    started = time.perf_counter()
    metrics_path = Path(run(command))
    seconds = time.perf_counter() - started
    return json.loads(metrics_path.read_text()), pl.read_parquet(metrics_path.parent / "ap12_per_buyer.parquet"), \
        seconds


def paired_interval(per_seed: list[pl.DataFrame], a: str, b: str, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of the seeds' mean MAP@12 of `a` to `b`, and its 95% paired bootstrap interval (buyers resampled
    within each seed, the same draw for both)."""
    rng = np.random.default_rng(seed)
    pairs = [(f[a].fill_nan(0).to_numpy(), f[b].fill_nan(0).to_numpy()) for f in per_seed]
    ratio = np.mean([x.mean() for x, _ in pairs]) / max(np.mean([y.mean() for _, y in pairs]), 1e-12)
    draws = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        picks = [rng.integers(0, x.size, x.size) for x, _ in pairs]
        top = np.mean([x[p].mean() for (x, _), p in zip(pairs, picks, strict=True)])
        bottom = np.mean([y[p].mean() for (_, y), p in zip(pairs, picks, strict=True)])
        draws[i] = top / max(bottom, 1e-12)
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(ratio), float(low), float(high)


def mean_methods(runs: list[dict]) -> dict[str, dict[str, float]]:
    names = [name for name in runs[0]["methods"] if all(name in r["methods"] for r in runs)]
    keys = ("map@12", "recall@12", "recall@100")
    return {name: {k: float(np.mean([r["methods"][name][k] for r in runs])) for k in keys} for name in names}


def checks(methods: dict, per_seed: list[pl.DataFrame], world: str) -> list[tuple[str, float, float, bool]]:
    """(target, measured, required, met) for the MAP ratio (with its interval in the name) and each source's
    recall."""
    final = methods["final"]
    best = max((m["map@12"], name) for name, m in methods.items() if name != "final")[1]
    ratio, low, high = paired_interval(per_seed, "final", best)
    target = MAP_TARGET.get(world, 1.10)
    rows = [(f"final MAP@12 / best other ({best}), 95% interval {low:.3f} .. {high:.3f}", ratio, target,
             ratio >= target)]
    for source in SOURCES:
        if source in methods and methods[source]["recall@100"] > 0:
            share = final["recall@100"] / methods[source]["recall@100"]
            rows.append((f"final Recall@100 / {source}'s", share, RECALL_KEEPS, share >= RECALL_KEEPS))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="fashion")
    parser.add_argument("--scale", default="small", choices=["tiny", "small", "full"])
    parser.add_argument("--seeds", default="7", help="comma-separated sample seeds, e.g. 7,8,9")
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--horizon-days", type=int, help="the pipeline's --horizon-days (default: --test-days)")
    parser.add_argument("--search-fits", type=int, help="the pipeline's --search-fits (default: its own)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hmrec-quality"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = [one_seed(args, seed) for seed in seeds]
    runs, per_seed = [r[0] for r in results], [r[1] for r in results]
    methods = mean_methods(runs)
    seconds = ", ".join(f"{r[2]:.0f}" for r in results)
    print(f"## {args.world} {args.scale}, seeds {args.seeds}, --test-days {args.test_days}, pipeline {seconds} s\n")
    print("| method | MAP@12 | Recall@12 | Recall@100 |\n|---|---:|---:|---:|")
    for name, m in methods.items():
        print(f"| {name} | {m['map@12']:.4f} | {m['recall@12']:.4f} | {m['recall@100']:.4f} |")
    print("\n| target | measured | required | met |\n|---|---:|---:|---|")
    rows = checks(methods, per_seed, args.world)
    for target, measured, required, met in rows:
        print(f"| {target} | {measured:.3f} | {required:.2f} | {'yes' if met else '**no**'} |")
    if args.json:
        args.json.write_text(json.dumps({"world": args.world, "scale": args.scale, "seeds": seeds,
                                         "test_days": args.test_days, "methods": methods, "checks": rows,
                                         "seconds": [r[2] for r in results]}, indent=2))
    sys.exit(0 if all(met for *_, met in rows) else 1)


if __name__ == "__main__":
    main()
