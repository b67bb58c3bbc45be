"""Benchmark of quality on a sample world: generate, run the whole pipeline, print the evaluation table and check
the targets of issue 11 (final MAP@12 against the best other method; final Recall@100 against each source's).

    .venv/bin/python bench/quality.py --world fashion --scale small [--seed 7] [--workdir /tmp/q] [--json out.json]

`--world` goes to `hmrec data generate --world W` (any world but fashion needs the worlds branch). Exits 1 when a
target is missed, after printing every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# final MAP@12 over the best other method's, per world; final Recall@100 over each source's
MAP_TARGET = {"fashion": 1.25, "grocery": 1.10, "media": 1.10}
RECALL_KEEPS = 0.98
SOURCES = ("two_tower", "repurchase", "other_colours", "bought_together", "age_popularity", "trending", "als")


def run(command: list[str]) -> str:
    """Run an hmrec command; its last stdout line."""
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    print(f"# {' '.join(command)}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return done.stdout.strip().splitlines()[-1]


def checks(methods: dict, world: str) -> list[tuple[str, float, float, bool]]:
    """(target, measured, required, met) for the MAP ratio and every source's recall."""
    final = methods["final"]
    best_other = max((m["map@12"], name) for name, m in methods.items() if name != "final")
    ratio = final["map@12"] / best_other[0] if best_other[0] else float("inf")
    target = MAP_TARGET.get(world, 1.10)
    rows = [(f"final MAP@12 / best other ({best_other[1]})", ratio, target, ratio >= target)]
    for source in SOURCES:
        if source in methods and methods[source]["recall@100"] > 0:
            share = final["recall@100"] / methods[source]["recall@100"]
            rows.append((f"final Recall@100 / {source}'s", share, RECALL_KEEPS, share >= RECALL_KEEPS))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="fashion")
    parser.add_argument("--scale", default="small", choices=["tiny", "small", "full"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hmrec-quality"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    hmrec = str(Path(sys.executable).parent / "hmrec")
    raw, work = args.workdir / f"raw-{args.world}-{args.scale}", args.workdir / f"work-{args.world}-{args.scale}"
    generate = [hmrec, "data", "generate", "--scale", args.scale, "--seed", str(args.seed), "--out", str(raw)]
    if args.world != "fashion":
        generate += ["--world", args.world]
    if not raw.exists():
        run(generate)
    started = time.perf_counter()
    metrics = json.loads(Path(run([hmrec, "pipeline", "--raw", str(raw), "--workdir", str(work)])).read_text())
    seconds = time.perf_counter() - started
    print(f"## {args.world} {args.scale} (seed {args.seed}), pipeline {seconds:.0f} s\n")
    print("| method | MAP@12 | Recall@12 | Recall@100 |\n|---|---:|---:|---:|")
    for name, m in metrics["methods"].items():
        print(f"| {name} | {m['map@12']:.4f} | {m['recall@12']:.4f} | {m['recall@100']:.4f} |")
    print("\n| target | measured | required | met |\n|---|---:|---:|---|")
    rows = checks(metrics["methods"], args.world)
    for target, measured, required, met in rows:
        print(f"| {target} | {measured:.3f} | {required:.2f} | {'yes' if met else '**no**'} |")
    if args.json:
        args.json.write_text(json.dumps({"world": args.world, "scale": args.scale, "seconds": seconds,
                                         "methods": metrics["methods"], "checks": rows}, indent=2))
    sys.exit(0 if all(met for *_, met in rows) else 1)


if __name__ == "__main__":
    main()
