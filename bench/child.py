"""What the data benchmarks share: run a stage in a child process and describe the machine and the CSV size."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import psutil

from hmrec.raw.schema import RAW_FILES


def run_timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in GiB of the child (ru_maxrss of waited-for children, KiB on Linux)."""
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2


def csv_size_gb(folder: Path) -> float:
    return sum((folder / name).stat().st_size for name in RAW_FILES) / 1e9


def machine() -> str:
    return f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, {platform.machine()}"
