"""The one count of CPUs this process may use, and thread pools sized to it that sleep, not spin, while they wait.

Every local thread pool (torch, LightGBM, implicit's ALS, FAISS, BLAS, Polars) is sized by `available()`; the Ray
engine sizes its actors by the cluster's CPUs instead (`scale.engine.cluster_cpus`).

Why "sleep": OpenMP's default wait policy keeps an idle worker spinning for a while before it sleeps. On a quiet
machine that saves a few microseconds per parallel region; on a busy one each spinning thread takes a time slice
that the thread doing the work needed, and a 2-core fit ran 20 times slower beside two other busy processes
instead of the fair 2 to 4 (issue 23). PASSIVE makes idle OpenMP workers sleep at once.

Results and the thread count: LightGBM (`deterministic`, `force_row_wise`), implicit's ALS (one customer's solve
per thread) and FAISS give the same answers for any count. Torch's sums do not: the two-tower's weights depend on
its `threads` setting, which is saved in its config.json, so a model is reproduced by the same setting, not by
the same machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
# Variables read once, when a library's thread pool starts: they must be set before torch, LightGBM, FAISS,
# numpy's BLAS or Polars is first imported.
QUIET_WAITS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
POOL_SIZES = ("HMREC_THREADS", "OMP_NUM_THREADS", "POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MEMINFO = Path("/proc/meminfo")


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup's CPU quota (v2 or v1), None when unlimited or unreadable."""
    try:
        if CGROUP_V2_MAX.is_file():
            quota, period = CGROUP_V2_MAX.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if CGROUP_V1_QUOTA.is_file():
            quota = int(CGROUP_V1_QUOTA.read_text())
            return None if quota <= 0 else quota / int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return None


def available() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (rounded up), >= 1.

    `HMREC_THREADS` overrides it (a benchmark, or a user sharing the machine on purpose)."""
    if os.environ.get("HMREC_THREADS", "").isdigit() and int(os.environ["HMREC_THREADS"]) > 0:
        return int(os.environ["HMREC_THREADS"])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def quiet_waits() -> None:
    """Before numpy, torch, LightGBM or FAISS is first imported: their OpenMP pools sleep while idle, and BLAS
    (read when numpy loads) has `available()` threads. Variables the user set are kept."""
    for name, value in QUIET_WAITS.items():
        os.environ.setdefault(name, value)
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(available()))


def size_pools(threads: int | None = None) -> None:
    """Before Polars or an OpenMP library is first imported: their pools get `threads` (default `available()`).
    Variables the user set are kept."""
    for name in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ.setdefault(name, str(threads or available()))


def at_most(threads: int) -> int:
    """`threads`, or fewer where this process may use fewer CPUs (a setting saved with a model, on another machine
    or in a one-thread scoring process)."""
    return min(threads, available())


@contextmanager
def children_threads(threads: int) -> Iterator[None]:
    """Processes started (spawned) inside see `threads` CPUs: `available()` and every pool read at import. The
    variables are this process's again afterwards; its own pools, already sized, do not change."""
    saved = {name: os.environ.get(name) for name in POOL_SIZES}
    os.environ.update({name: str(threads) for name in POOL_SIZES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def memory_available() -> int | None:
    """Bytes the kernel could give new processes without swapping (MemAvailable), None where it does not say."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
