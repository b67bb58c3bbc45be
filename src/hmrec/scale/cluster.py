"""The Ray session the Ray engine's stages run in, kept quiet, and the one count of the cluster's CPUs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to Ray for the duration (joining a session already open in this process, e.g. the tests').

    `address` None starts a local Ray of `num_cpus` CPUs (None: all) on this machine; "auto" or "host:port"
    joins a cluster.
    """
    import ray

    if ray.is_initialized():
        quiet_data()
        yield
        return
    _start(address, num_cpus)
    try:
        yield
    finally:
        ray.shutdown()


def _start(address: str | None, num_cpus: int | None) -> None:
    """ray.init with Ray's own log lines kept out of the user's way (they stay in Ray's session logs)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        ray.init(num_cpus=num_cpus, **quiet)
    else:
        ray.init(address=address, **quiet)
    quiet_data()
    log.info("Ray: %s CPUs in the cluster", ray.cluster_resources().get("CPU", 0))


def quiet_data() -> None:
    """No progress bars from Ray Data: the CLI shows its own, and logs stay one line per stage."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "execution finished in ...", deprecation notes
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def cluster_cpus() -> int:
    """The CPUs of the Ray cluster this process is connected to (at least 1)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))
