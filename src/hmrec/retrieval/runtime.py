"""What training and answering share: torch's thread and determinism settings, and a batch's past purchases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.data import PurchaseHistory
from hmrec.retrieval.model import PastItems


@contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, pin its thread count and demand deterministic kernels; restore the global flags after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


@contextmanager
def inference(threads: int) -> Iterator[None]:
    """torch.no_grad with `threads` intra-op threads, restored after. No seeding (inference draws nothing at
    random), and no thread change when the count is already right: both cost a live query a millisecond."""
    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            yield
    finally:
        if previous != threads:
            torch.set_num_threads(previous)


def past_items(
    history: PurchaseHistory,
    item_codes: torch.Tensor,
    item_numeric: torch.Tensor,
    keys: np.ndarray,
    days: np.ndarray,
    snapshots: np.ndarray,
    config: TwoTowerConfig,
    item_vectors: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PastItems:
    """Each key's last `config.n_last` purchases before its day, with item features of its snapshot.

    item_codes (n_articles + 1, n_fields) and item_numeric (n_snapshots, n_articles + 1, n_numeric) end with
    an all-OOV row, used for padding and for articles the model has no row for. item_vectors: the item tower's
    output for the one snapshot, (n_articles, out_dim) and the OOV row's (1, out_dim), when already known
    (answering: the model's table, so a query gathers its past articles' vectors instead of running the item
    tower on them again).
    """
    items, weights = history.last(keys, days, config.n_last, config.half_life_days)
    oov_row = item_codes.shape[0] - 1
    items = np.where((items >= 0) & (items < oov_row), items, oov_row)
    # Encode each distinct (snapshot, article) once: a batch's customers share many past articles.
    slots = np.asarray(snapshots, dtype=np.int64)[:, None] * (oov_row + 1) + items
    distinct, index = np.unique(slots, return_inverse=True)
    articles, snapshot_of = torch.from_numpy(distinct % (oov_row + 1)), torch.from_numpy(distinct // (oov_row + 1))
    vectors = None
    if item_vectors is not None:
        table, oov = item_vectors
        vectors = torch.where((articles < oov_row)[:, None], table[articles.clamp(max=oov_row - 1)], oov)
    return PastItems(
        codes=item_codes[articles],
        numeric=item_numeric[snapshot_of, articles],
        index=torch.from_numpy(index.reshape(items.shape)),
        weights=torch.from_numpy(weights),
        vectors=vectors,
    )
