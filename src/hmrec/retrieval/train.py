"""The two-tower training loop: shuffled batches, in-batch + uniform negatives with log-Q, Adam, seeded."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hmrec import logs
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.data import Examples, PurchaseHistory
from hmrec.retrieval.model import TwoTower, sampled_softmax_loss
from hmrec.retrieval.runtime import past_items

logger = logging.getLogger(__name__)


@dataclass
class TrainInputs:
    """Everything a batch is cut from; tensors are indexed by article_idx / customer_idx."""

    examples: Examples
    history: PurchaseHistory
    item_codes: torch.Tensor  # (n_articles + 1, n_item_fields); the last row is all-OOV for unknown articles
    item_numeric: torch.Tensor  # (n_snapshots, n_articles + 1, n_item_numeric)
    user_codes: torch.Tensor  # (n_customers, n_user_fields)
    negative_pool: np.ndarray  # article_idx that extra negatives are drawn from
    negative_p: np.ndarray | None = None  # each pool article's draw probability (None: uniform)


@dataclass
class TrainResult:
    losses: list[float]  # mean loss over each `loss_every_steps` steps, in order
    examples_per_second: float
    seconds: float


def _log_q(article_ids: np.ndarray, p_freq: np.ndarray, batch: int, n_negatives: int) -> torch.Tensor:
    # Expected times each candidate turns up in one batch: as someone's positive, or as an extra negative.
    expected = batch * p_freq[article_ids, 0] + n_negatives * p_freq[article_ids, 1]
    return torch.from_numpy(np.log(np.maximum(expected, 1e-12)).astype(np.float32))


def sampling_frequencies(inputs: TrainInputs) -> np.ndarray:
    """(n_articles, 2): column 0, the share of examples buying the article; 1, its chance per extra-negative draw."""
    examples = inputs.examples
    p_freq = np.zeros((inputs.item_codes.shape[0], 2))
    np.add.at(p_freq[:, 0], examples.article_idx, 1.0 / len(examples))
    pool = inputs.negative_pool
    p_freq[pool, 1] = 1.0 / max(len(pool), 1) if inputs.negative_p is None else inputs.negative_p
    return p_freq


def make_optimizers(model: TwoTower, config: TwoTowerConfig) -> list[torch.optim.Optimizer]:
    """Adam for the dense weights, SparseAdam for the sparse embeddings (if any)."""
    dense, sparse = model.parameter_groups()
    optimizers = [torch.optim.Adam(dense, lr=config.learning_rate, weight_decay=config.weight_decay)]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=config.learning_rate))
    return optimizers


class LossLog:
    """The mean loss over each `every` steps, in order; a last, shorter window counts too. `end_epoch` closes the
    window, so each epoch's windows are its own and the loss logged at an epoch's end is the plotted one."""

    def __init__(self, every: int):
        self.every, self._means, self._window = every, [], []

    def add(self, loss: float) -> None:
        self._window.append(loss)
        if len(self._window) == self.every:
            self._means.append(float(np.mean(self._window)))
            self._window = []

    def end_epoch(self) -> None:
        if self._window:
            self._means.append(float(np.mean(self._window)))
            self._window = []

    @property
    def last(self) -> float:
        return self._means[-1] if self._means else self._window[-1]

    def means(self) -> list[float]:
        return self._means + ([float(np.mean(self._window))] if self._window else [])


def update(optimizers: list[torch.optim.Optimizer], loss: torch.Tensor,
           sync: Callable[[], None] | None = None) -> float:
    """One optimiser step on `loss`: clear the gradients, back-propagate, `sync` them (with other workers), step;
    the loss's value."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync()
    for optimizer in optimizers:
        optimizer.step()
    return loss.item()


TrainFn = Callable[[TwoTower, TrainInputs, TwoTowerConfig], TrainResult]  # `train`, or an engine's (scale.train)


def train(model: TwoTower, inputs: TrainInputs, config: TwoTowerConfig) -> TrainResult:
    """Train `model` in place for `config.epochs` epochs; deterministic for a given seed and thread count."""
    rng = np.random.default_rng(config.seed)  # one generator draws the order and every step's samples
    losses, seconds = run_epochs(model, inputs, config, rng, rng)
    rate = config.epochs * len(inputs.examples) / max(seconds, 1e-9)
    logger.info("trained on %d examples x %d epochs in %.1f s (%.0f examples/s)",
                len(inputs.examples), config.epochs, seconds, rate)
    return TrainResult(losses, rate, seconds)


def run_epochs(model: TwoTower, inputs: TrainInputs, config: TwoTowerConfig, order_rng: np.random.Generator,
               step_rng: np.random.Generator, rank: int = 0, world: int = 1,
               sync: Callable[[], None] | None = None) -> tuple[list[float], float]:
    """The one epoch loop, run by `train` in this process and by every Ray Train worker (scale.train).

    Each epoch shuffles the examples with `order_rng` (seeded alike in every process, so all cut the same global
    batches of `config.batch_size`); this process steps on its `rank`-th of every `world` examples of a batch,
    drawing negatives and cold examples from `step_rng`, and `sync`s its gradients with the others before each
    optimiser step. Returns the mean loss of each `loss_every_steps` window and the seconds taken.
    """
    examples = inputs.examples
    p_freq = sampling_frequencies(inputs)
    optimizers = make_optimizers(model, config)
    losses, started = LossLog(config.loss_every_steps), time.perf_counter()
    model.train()
    unit = f"examples = {config.epochs} epochs x {len(examples):,}"
    with logs.bar("two-tower", total=config.epochs * len(examples), unit=unit) as stage:
        for epoch in range(config.epochs):
            stage.describe(f"two-tower epoch {epoch + 1}/{config.epochs}")
            order = order_rng.permutation(len(examples))
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = step(model, inputs, config, batch[rank::world], p_freq, step_rng)
                losses.add(update(optimizers, loss, sync))
                stage.advance(len(batch))
            losses.end_epoch()
            logger.info("epoch %d/%d: loss %.4f", epoch + 1, config.epochs, losses.last)
    model.eval()
    return losses.means(), time.perf_counter() - started


def step(
    model: TwoTower,
    inputs: TrainInputs,
    config: TwoTowerConfig,
    batch: np.ndarray,
    p_freq: np.ndarray,
    rng: np.random.Generator,
) -> torch.Tensor:
    ex = inputs.examples
    customers, days, articles = ex.customer_idx[batch], ex.day[batch], ex.article_idx[batch]
    snapshots = torch.from_numpy(ex.snapshot[batch])
    past = past_items(inputs.history, inputs.item_codes, inputs.item_numeric, customers, days, ex.snapshot[batch],
                      config)
    numeric = torch.from_numpy(ex.user_numeric[batch])
    # Some examples lose their history, as a cold customer has none, so that the profile alone learns to answer.
    cold = torch.from_numpy(rng.random(len(batch)) < config.cold_share)
    past = past._replace(weights=past.weights.masked_fill(cold.unsqueeze(1), 0.0))
    numeric = numeric.masked_fill(cold.unsqueeze(1), 0.0)
    users = model.users(inputs.user_codes[torch.from_numpy(customers)], past, numeric)
    negatives = rng.choice(inputs.negative_pool, size=config.extra_negatives, p=inputs.negative_p)
    # Each extra negative borrows the feature snapshot of a random example of the batch.
    negative_snapshots = snapshots[torch.from_numpy(rng.integers(0, len(batch), size=config.extra_negatives))]
    candidate_ids = np.concatenate([articles, negatives])
    ids = torch.from_numpy(candidate_ids)
    candidate_snapshots = torch.cat([snapshots, negative_snapshots])
    candidate_numeric = inputs.item_numeric[candidate_snapshots, ids]
    candidates = model.items(inputs.item_codes[ids], candidate_numeric)
    log_q = _log_q(candidate_ids, p_freq, len(batch), config.extra_negatives)
    if not config.log_q_correction:
        log_q = torch.zeros_like(log_q)
    bias = model.bias(candidate_numeric) if model.bias_mlp is not None else None
    return sampled_softmax_loss(users, candidates, ids, log_q, config.temperature, bias)
