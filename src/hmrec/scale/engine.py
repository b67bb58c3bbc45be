"""Where the offline stages run, as a strategy object: `Engine`, and its two kinds, this process or a Ray cluster.

The pipeline and the CLI hold an `Engine` and call its methods; nothing outside hmrec.scale asks which kind it
is. The code each stage runs is the same on both (store.indexing's passes, the two-tower's epoch loop, `Scorer`);
the Ray engine maps it over blocks, partitions, workers and actors. Ray is imported only inside its methods.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hmrec.scale.cluster import ray_session

if TYPE_CHECKING:
    import numpy as np

    from hmrec.recommenders.base import Recommender
    from hmrec.retrieval.train import TrainFn
    from hmrec.scale.scoring import Scored, ScoringInputs
    from hmrec.store.tables import Store

ENGINES = ("local", "ray")
ENGINE_ENV = "HMREC_ENGINE"
ADDRESS_ENV = "HMREC_RAY_ADDRESS"


class Engine(Protocol):
    """What the pipeline asks of where it runs; each method gives the same answers on every engine."""

    name: str  # "local" or "ray": for logs and tracking, never for a caller to branch on

    def session(self) -> AbstractContextManager[None]:
        """One session around several stages (a pipeline), so a cluster starts once; each method also opens one."""
        ...

    def build_store(self, raw_dir: str | Path, store_dir: str | Path, test_days: int = 7) -> dict:
        """store.build.build_store on this engine (the same store either way); its manifest."""
        ...

    def trainer(self) -> TrainFn | None:
        """The two-tower's training function (retrieval.train.train's signature); None: the one-process loop."""
        ...

    def score(self, inputs: ScoringInputs, customer_idx: np.ndarray) -> Scored:
        """Top-k for each of `customer_idx`, in that order, from the recommender saved at `inputs.recommender`."""
        ...

    def scorer(self, recommender: Recommender, store: Store, folder: Path) -> Recommender:
        """`recommender`, or one giving its answers for `store`'s customers through `score` (saved in `folder`)."""
        ...


@dataclass(frozen=True)
class LocalEngine:
    """This machine: every stage's library function called once over the whole data in this process; the batch
    scorer also in one-thread processes of this machine, one per core (scale/scoring.score_here)."""

    name: str = field(default="local", init=False)

    def session(self) -> AbstractContextManager[None]:
        return nullcontext()

    def build_store(self, raw_dir: str | Path, store_dir: str | Path, test_days: int = 7) -> dict:
        from hmrec.store.build import build_store

        return build_store(raw_dir, store_dir, test_days)

    def trainer(self) -> TrainFn | None:
        return None

    def score(self, inputs: ScoringInputs, customer_idx: np.ndarray) -> Scored:
        from hmrec.scale.scoring import score_here

        return score_here(inputs, customer_idx)

    def scorer(self, recommender: Recommender, store: Store, folder: Path) -> Recommender:
        return recommender


@dataclass(frozen=True)
class RayEngine:
    """A Ray cluster: where it is, and how the data is cut into blocks, partitions, batches and workers."""

    name: str = field(default="ray", init=False)
    address: str | None = None  # None: start a local Ray on this machine; "auto" or "host:port": join a cluster
    block_bytes: int = 128 << 20  # bytes of raw CSV per ETL block
    partition_bytes: int = 512 << 20  # bytes of raw transactions CSV per customer partition of the store
    num_cpus: int | None = None  # CPUs of a local Ray (None: all); ignored when joining a cluster
    scoring_rows: int = 20_000  # customers per batch-scoring batch
    train_workers: int = 2  # Ray Train workers (1 CPU each) for the two-tower model

    def session(self) -> AbstractContextManager[None]:
        return ray_session(self.address, self.num_cpus)

    def build_store(self, raw_dir: str | Path, store_dir: str | Path, test_days: int = 7) -> dict:
        from hmrec.scale.etl import build_on_ray

        with self.session():
            return build_on_ray(raw_dir, store_dir, test_days, self.block_bytes, self.partition_bytes)

    def trainer(self) -> TrainFn | None:
        from hmrec.scale.train import RayTrainer

        return RayTrainer(workers=self.train_workers, session=self.session)

    def score(self, inputs: ScoringInputs, customer_idx: np.ndarray) -> Scored:
        from hmrec.scale.scoring import score_on_ray

        with self.session():
            return score_on_ray(inputs, customer_idx, self.scoring_rows)

    def scorer(self, recommender: Recommender, store: Store, folder: Path) -> Recommender:
        from hmrec.scale.scoring import EngineScored

        return EngineScored(recommender, store, folder, self.score)


def engine_from_options(name: str | None = None, address: str | None = None) -> Engine:
    """--engine / --ray-address, falling back to HMREC_ENGINE / HMREC_RAY_ADDRESS, then local."""
    name = name or os.environ.get(ENGINE_ENV) or "local"
    if name not in ENGINES:
        raise ValueError(f"engine {name!r} is not one of {', '.join(ENGINES)}; pass --engine or set {ENGINE_ENV}")
    if name == "local":
        return LocalEngine()
    return RayEngine(address=address or os.environ.get(ADDRESS_ENV) or None)
