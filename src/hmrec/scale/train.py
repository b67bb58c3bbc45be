"""Two-tower training on Ray Train: the local loop's step on N CPU workers, gradients averaged over gloo.

Why not `prepare_model` / DDP: the loop calls `model.users` and `model.items`, not `forward`, so DDP's reducer
would never see a forward pass; and the wide embedding tables take sparse gradients for SparseAdam. So each
worker all-reduces its gradients itself after `backward` (gloo all-reduces sparse tensors as they are), which is
what DDP does for dense ones. The global batch is `config.batch_size`, cut into one slice per worker, so a step
sees the same examples as one local step and the number of steps per epoch is the same.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.model import TwoTower
from hmrec.retrieval.runtime import deterministic
from hmrec.retrieval.train import TrainInputs, TrainResult, run_epochs
from hmrec.scale.cluster import ray_session

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"


@dataclass
class RayTrainer:
    """A drop-in for `retrieval.train.train` that trains on `workers` Ray Train workers of one CPU each
    (scale.engine.RayEngine.trainer gives the engine's)."""

    workers: int = 2
    session: Callable[[], AbstractContextManager[None]] = ray_session  # default: join Ray, or start a local one
    worker_pids: list[int] = field(default_factory=list)  # filled by the last call: one pid per worker
    worker_weights: list[str] = field(default_factory=list)  # and each worker's final weights' sha256

    def __call__(self, model: TwoTower, inputs: TrainInputs, config: TwoTowerConfig) -> TrainResult:
        """Train `model` in place: the weights come back from rank 0 and are loaded into it."""
        with self.session(), tempfile.TemporaryDirectory(prefix="hmrec-ray-train-") as storage:
            result = self._fit(model, inputs, config, storage, self.workers)
            with result.checkpoint.as_directory() as folder:
                model.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
        metrics = result.metrics
        self.worker_pids, self.worker_weights = list(metrics["pids"]), list(metrics["weights"])
        model.eval()
        log.info("trained on %d Ray workers (pids %s) in %.1f s (%.0f examples/s)", len(self.worker_pids),
                 self.worker_pids, metrics["seconds"], metrics["examples_per_second"])
        return TrainResult(list(metrics["losses"]), metrics["examples_per_second"], metrics["seconds"])

    def _fit(self, model: TwoTower, inputs: TrainInputs, config: TwoTowerConfig, storage: str, workers: int):
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        # Ray Train 2.x's controller is an actor of 0 CPUs (trainer_resources is refused), so N 1-CPU workers
        # fit N CPUs.
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"model": ray.put(model), "inputs": ray.put(inputs), "config": config},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=storage, name="two-tower"),
        )
        return trainer.fit()


def _worker_loop(loop_config: dict) -> None:
    """One worker: the same seed and permutation everywhere, its own slice of each batch, averaged gradients."""
    import ray
    from ray import train

    model, inputs = ray.get(loop_config["model"]), ray.get(loop_config["inputs"])
    config: TwoTowerConfig = loop_config["config"]
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    with deterministic(config.seed, threads=1):
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)  # every worker starts from rank 0's weights
        # one shuffle for all (the same global batches), negatives and cold draws differing per worker
        order_rng, step_rng = np.random.default_rng(config.seed), np.random.default_rng([config.seed, rank])
        losses, seconds = run_epochs(model, inputs, config, order_rng, step_rng, rank, world,
                                     sync=lambda: _average_gradients(model, world))
    pids, weights = [None] * world, [None] * world
    dist.all_gather_object(pids, os.getpid())
    dist.all_gather_object(weights, _fingerprint(model))
    metrics = {"losses": losses, "seconds": seconds, "pids": pids, "weights": weights,
               "examples_per_second": config.epochs * len(inputs.examples) / max(seconds, 1e-9)}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(Path(folder) / WEIGHTS_FILE))
            checkpoint = train.Checkpoint.from_directory(folder)
        train.report(metrics, checkpoint=checkpoint)


def _fingerprint(model: TwoTower) -> str:
    """sha256 of every weight's bytes: equal on all workers when their updates were kept in step."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _average_gradients(model: TwoTower, world: int) -> None:
    """Mean of every worker's gradient; sparse ones stay sparse (gloo sums them as index/value pairs)."""
    for parameter in model.parameters():
        grad = parameter.grad
        if grad is None:  # skipping it here would leave the other workers waiting in their all-reduce
            raise RuntimeError(f"a parameter of shape {tuple(parameter.shape)} got no gradient on this worker; "
                               "every worker must all-reduce the same tensors, so the model must use all of them")
        if grad.is_sparse:
            grad = grad.coalesce()
            dist.all_reduce(grad)
            parameter.grad = grad / world
        else:
            dist.all_reduce(grad)
            grad.div_(world)
