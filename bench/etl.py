"""Benchmark the ETL: generate a sample if needed, run `hmrec etl` in a child process, print a docs/benchmarks.md row.

    .venv/bin/python bench/etl.py --data data/sample-full --store /tmp/bench-store          # the real sizes
    .venv/bin/python bench/etl.py --scale small --data data/sample-small --store /tmp/s    # a quick check

Peak RSS is the child's maximum resident set (ru_maxrss of waited-for children), so the generator, which runs
in this process, is not counted. Targets on 2 cores: at most 120 s and 8 GB for the full-size sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from child import csv_size_gb, machine, run_timed

from hmrec.raw.schema import RAW_FILES
from hmrec.sample.generate import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full", help="tiny, small or full (default: full)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=Path("data/sample-full"), help="raw folder (generated if empty)")
    parser.add_argument("--store", type=Path, default=Path("data/bench-store"), help="store folder to build")
    args = parser.parse_args()
    if not all((args.data / name).is_file() for name in RAW_FILES):
        started = time.perf_counter()
        generate(args.scale, args.seed, args.data)
        print(f"generated {args.scale} sample in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    command = [sys.executable, "-m", "hmrec.cli", "etl", "--raw", str(args.data), "--store", str(args.store)]
    seconds, peak_gb = run_timed(command)
    rows = json.loads((args.store / "manifest.json").read_text())["rows"]
    size_gb, machine_ = csv_size_gb(args.data), machine()
    print("| stage | input | wall time | peak RSS | machine |")
    print("|---|---|---|---|---|")
    print(f"| ETL ({args.scale}) | {rows['transactions']:,} transactions, {rows['customers']:,} customers, "
          f"{rows['articles']:,} articles ({size_gb:.2f} GB CSV) | {seconds:.1f} s | {peak_gb:.2f} GiB | {machine_} |")


if __name__ == "__main__":
    main()
