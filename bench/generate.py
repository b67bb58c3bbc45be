"""Benchmark the sample generator: run `hmrec data generate` in a child process, print a docs/benchmarks.md row.

    .venv/bin/python bench/generate.py --out data/sample-full                  # the real sizes (the target)
    .venv/bin/python bench/generate.py --scale small --out /tmp/bench-small    # a quick check
    .venv/bin/python bench/generate.py --scale small --world media --out /tmp/bench-media

Peak RSS is the child's maximum resident set (ru_maxrss of waited-for children). Targets on 2 cores for the
full size (31.8M transactions): at most 5 minutes and 8 GB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from child import csv_size_gb, machine, run_timed

from hmrec.raw.schema import TRANSACTIONS_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full", help="tiny, small or full (default: full)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", default="fashion", help="fashion, grocery or media (default: fashion)")
    parser.add_argument("--out", type=Path, default=Path("data/sample-full"), help="folder to write (replaced)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "hmrec.cli", "data", "generate", "--scale", args.scale,
               "--seed", str(args.seed), "--world", args.world, "--out", str(args.out)]
    seconds, peak_gib = run_timed(command)
    with open(args.out / TRANSACTIONS_FILE, "rb") as handle:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b"")) - 1
    size_gb, machine_ = csv_size_gb(args.out), machine()
    print("| stage | output | wall time | peak RSS | machine |")
    print("|---|---|---|---|---|")
    print(f"| generate ({args.world} {args.scale}, seed {args.seed}) | {rows:,} transactions ({size_gb:.2f} GB CSV) | "
          f"{seconds:.1f} s | {peak_gib:.2f} GiB | {machine_} |")


if __name__ == "__main__":
    main()
