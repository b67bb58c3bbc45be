"""The one count of CPUs this process may use, and thread pools sized to it that sleep, not spin, while they wait
on a busy machine.

Every local thread pool (torch, LightGBM, implicit's ALS, FAISS, BLAS, Polars) is sized by `available()`; the Ray
engine sizes its actors by the cluster's CPUs instead (`scale.engine.cluster_cpus`).

Why "sleep": OpenMP's default wait policy keeps an idle worker spinning for a while (libgomp: about 3 ms) before it
sleeps. On a quiet machine that saves a wake-up per parallel region; on a busy one each spinning thread takes a
time slice that the thread doing the work needed, and a 2-core fit ran 20 times slower beside two other busy
processes instead of the fair 2 to 4 (issue 23). PASSIVE makes idle OpenMP workers sleep at once. Neither is best
on both: on the small pipeline sleeping cost 20% alone and spinning 2.4x beside two busy processes
(docs/benchmarks.md). So a command looks once, as it starts, whether any other task wants a CPU: where none does,
the pools keep OpenMP's default; otherwise, or where it cannot tell, they sleep. A load that arrives later finds
them spinning (their cost then is the default's).

Results and the thread count: LightGBM (`deterministic`, `force_row_wise`), implicit's ALS (one customer's solve
per thread) and FAISS give the same answers for any count. Torch's sums do not: the two-tower's weights depend on
its `threads` setting, which is saved in its config.json, so a model is reproduced by the same setting, not by
the same machine.
"""

from __future__ import annotations

import math
import os
import statistics
import time
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
LOADAVG = Path("/proc/loadavg")
USER_WAITS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # any of them set: the user decides
waits_chosen = ""  # what quiet_waits decided in this process ("": not yet), for the pipeline's log


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


def blas_pools() -> None:
    """Before numpy is first imported (the CLI's first step): BLAS, read when numpy loads, has `available()` threads.
    Variables the user set are kept."""
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(available()))


def quiet_waits(loadavg: Path = LOADAVG) -> str:
    """Before numpy, torch, LightGBM or FAISS is first imported: their OpenMP pools sleep while idle unless the
    machine is quiet now (no task of another process wants a CPU: `others_running(loadavg=loadavg)`), and BLAS
    (read when numpy loads) has `available()` threads. Variables the user set are kept: setting any of USER_WAITS
    decides the waits. Spawned processes inherit the choice; it is returned and kept in `waits_chosen`."""
    global waits_chosen
    blas_pools()
    if any(name in os.environ for name in USER_WAITS):
        waits_chosen = "OpenMP's idle threads wait as the environment says (" + ", ".join(
            f"{name}={os.environ[name]}" for name in USER_WAITS if name in os.environ) + ")"
        return waits_chosen
    others = others_running(loadavg=loadavg)
    if others is not None and others + available() <= (os.cpu_count() or 1):
        waits_chosen = "OpenMP's idle threads spin before they sleep: no other task wanted a CPU at the start"
        return waits_chosen
    os.environ.update(QUIET_WAITS)
    told = "the machine's load could not be read" if others is None else f"{others} other task(s) wanted a CPU"
    waits_chosen = f"OpenMP's idle threads sleep at once: {told} at the start"
    return waits_chosen


def others_running(samples: int = 5, every: float = 0.01, loadavg: Path = LOADAVG) -> int | None:
    """Tasks of other processes running or waiting for a CPU now: the median of `samples` reads of the kernel's
    count (the 4th field of /proc/loadavg, `running/total`, which counts this reader too), so that a blip of
    another process is not taken for a load; None where it cannot be read."""
    counts = []
    for i in range(samples):
        if i:
            time.sleep(every)
        try:
            counts.append(int(loadavg.read_text().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
    return max(0, int(statistics.median_low(counts)))


def size_pools(threads: int | None = None) -> None:
    """Before Polars or an OpenMP library is first imported (the offline commands' and `hmrec serve`'s first step):
    their pools get `threads` (default `available()`) and their idle wait is chosen (`quiet_waits`, once a process:
    it looks at the machine for 40 ms, which commands without such pools do not pay). Variables the user set are
    kept."""
    for name in ("OMP_NUM_THREADS", "POLARS_MAX_THREADS"):
        os.environ.setdefault(name, str(threads or available()))
    if not waits_chosen:
        quiet_waits()


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
