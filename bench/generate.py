"""Benchmark the sample generator: run `hmrec data generate` in a child process, print a docs/benchmarks.md row.

    .venv/bin/python bench/generate.py --out data/sample-full                  # the real sizes (the target)
    .venv/bin/python bench/generate.py --scale small --out /tmp/bench-small    # a quick check

Peak RSS is the child's maximum resident set (ru_maxrss of waited-for children). Targets on 2 cores for the
full size (31.8M transactions): at most 5 minutes and 8 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil

from hmrec.raw.schema import RAW_FILES, TRANSACTIONS_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full", help="tiny, small or full (default: full)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("data/sample-full"), help="folder to write (replaced)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "hmrec.cli", "data", "generate", "--scale", args.scale,
               "--seed", str(args.seed), "--out", str(args.out)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # KiB on Linux
    with open(args.out / TRANSACTIONS_FILE, "rb") as handle:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b"")) - 1
    size_gb = sum((args.out / name).stat().st_size for name in RAW_FILES) / 1e9
    machine = f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, {platform.machine()}"
    print("| stage | output | wall time | peak RSS | machine |")
    print("|---|---|---|---|---|")
    print(f"| generate ({args.scale}, seed {args.seed}) | {rows:,} transactions ({size_gb:.2f} GB CSV) | "
          f"{seconds:.1f} s | {peak_gib:.2f} GiB | {machine} |")


if __name__ == "__main__":
    main()
