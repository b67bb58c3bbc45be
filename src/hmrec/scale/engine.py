"""Which engine runs the offline stages (local or Ray), and a quiet Ray session for the Ray engine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
ENGINE_ENV = "HMREC_ENGINE"
ADDRESS_ENV = "HMREC_RAY_ADDRESS"


@dataclass(frozen=True)
class EngineConfig:
    """The engine and, for Ray, where the cluster is and how the data is cut into partitions."""

    name: str = "local"
    address: str | None = None  # None: start a local Ray on this machine; "auto" or "host:port": join a cluster
    block_bytes: int = 128 << 20  # bytes of raw CSV per ETL block
    partition_bytes: int = 512 << 20  # bytes of raw transactions CSV per customer partition of the store
    num_cpus: int | None = None  # CPUs of a local Ray (None: all); ignored when joining a cluster
    scoring_rows: int = 20_000  # customers per batch-scoring batch
    train_workers: int = 2  # Ray Train workers (1 CPU each) for the two-tower model

    @classmethod
    def from_options(cls, name: str | None = None, address: str | None = None) -> EngineConfig:
        """--engine / --ray-address, falling back to HMREC_ENGINE / HMREC_RAY_ADDRESS, then local."""
        name = name or os.environ.get(ENGINE_ENV) or "local"
        if name not in ENGINES:
            raise ValueError(f"engine {name!r} is not one of {', '.join(ENGINES)}; pass --engine or set {ENGINE_ENV}")
        return cls(name=name, address=address or os.environ.get(ADDRESS_ENV) or None)

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"


@contextmanager
def ray_session(config: EngineConfig) -> Iterator[None]:
    """Connect to Ray for the duration (joining a session already open in this process, e.g. the tests')."""
    import ray

    if ray.is_initialized():
        quiet_data()
        yield
        return
    _start(config)
    try:
        yield
    finally:
        ray.shutdown()


def _start(config: EngineConfig) -> None:
    """ray.init with Ray's own log lines kept out of the user's way (they stay in Ray's session logs)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if config.address is None:
        ray.init(num_cpus=config.num_cpus, **quiet)
    else:
        ray.init(address=config.address, **quiet)
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


def engine_session(config: EngineConfig):
    """One Ray session around several stages (a pipeline), so Ray starts once; nothing for the local engine."""
    return ray_session(config) if config.is_ray else nullcontext()
