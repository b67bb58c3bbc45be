"""Batch scoring of many customers (the evaluation, a bulk export): one recommender, many Ray Data actors.

Both engines answer through `Scorer.score`: the local engine calls it once for every customer (`score_here`), the
Ray engine in actors that each load the recommender and the tables once and score blocks of customers
(`score_on_ray`); scale.engine chooses between them.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from hmrec import cpus, logs
from hmrec.data import Query, Recs, ranks_in_row
from hmrec.recommenders.base import Recommender, load_recommender, save_recommender
from hmrec.scale.cluster import cluster_cpus
from hmrec.store.tables import CUSTOMERS, TRANSACTIONS, Store, partition_files, scan_partitions, scan_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringInputs:
    """Where a scorer loads its recommender and the customers' profiles and histories from."""

    recommender: Path  # a folder written by save_recommender (a bundle's final/)
    customers: Path  # the store's or bundle's customers.parquet
    history: Path  # purchases (customer_idx, t_dat, article_idx, price, sales_channel_id), a .parquet file or a
    # partitioned table's folder (store.tables.scan_table): rows before as_of count
    as_of: date
    k: int = 12
    sources: bool = False  # also say which sources proposed each answer (`Scored.sources`), as serving's explain

    @property
    def partitions(self) -> int:
        """How many customer partitions `history` is written in (0: one file)."""
        return len(partition_files(self.history)) if self.history.is_dir() else 0


class Scorer:
    """Loads the recommender and the customers once; answers any number of blocks of customers. The history is
    loaded once too, or, from a store written in customer partitions, only the partitions a block's customers
    are in (the last one kept: the Ray engine hands each actor blocks of one partition)."""

    def __init__(self, inputs: ScoringInputs):
        self.inputs = inputs
        self.recommender = load_recommender(inputs.recommender)
        self.customers = pl.read_parquet(inputs.customers)
        self.partitions = inputs.partitions
        self._history: tuple[tuple[int, ...], pl.DataFrame] | None = None

    def history(self, customer_idx: np.ndarray) -> pl.DataFrame:
        """Purchases before as_of of at least `customer_idx` (of everyone when the table is one file)."""
        keys = tuple(np.unique(customer_idx % self.partitions).tolist()) if self.partitions else ()
        if self._history is None or self._history[0] != keys:
            rows = scan_partitions(self.inputs.history, list(keys)) if keys else scan_table(self.inputs.history)
            self._history = keys, rows.filter(pl.col("t_dat") < self.inputs.as_of).collect()
        return self._history[1]

    def score(self, customer_idx: np.ndarray) -> Recs:
        customer_idx = np.asarray(customer_idx, dtype=np.int32)
        if customer_idx.size == 0:  # nothing to read
            k = self.inputs.k
            return Recs(np.empty((0, k), dtype=np.int32), np.empty((0, k), dtype=np.float32))
        return self.recommender.recommend(self._query(customer_idx), self.inputs.k)

    @property
    def source_names(self) -> tuple[str, ...]:
        """The names `explain` may list, in the order of the bits of its bitmask: the recommender's source order,
        the order `explain` lists a line's sources in."""
        return tuple(self.recommender.reasons())

    def explain(self, customer_idx: np.ndarray) -> tuple[Recs, np.ndarray]:
        """Top-k as the recommender's `explain` gives it (what serving calls), and a (n, k) uint32 bitmask of the
        sources that proposed each answer (bit j: `source_names[j]`)."""
        customer_idx = np.asarray(customer_idx, dtype=np.int32)
        k = self.inputs.k
        out, bits = Recs.empty(len(customer_idx), k), np.zeros((len(customer_idx), k), dtype=np.uint32)
        if customer_idx.size == 0:
            return out, bits
        row, items, scores, sources = self.recommender.explain_lines(self._query(customer_idx), k)
        position = ranks_in_row(row)  # each row's lines come together, best first
        out.items[row, position], out.scores[row, position], bits[row, position] = items, scores, sources
        return out, bits

    def _query(self, customer_idx: np.ndarray) -> Query:
        return Query.for_customers(customer_idx, self.customers, self.history(customer_idx), self.inputs.as_of)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data's batch function: positions and customers in, their top-k (and sources when asked) and this
        process's id out."""
        if self.inputs.sources:
            recs, bits = self.explain(batch["customer_idx"])
        else:
            recs, bits = self.score(batch["customer_idx"]), None
        out = {"position": batch["position"], "items": recs.items, "scores": recs.scores,
               "pid": np.full(len(recs.items), os.getpid(), dtype=np.int64)}
        return out if bits is None else {**out, "sources": bits}


@dataclass
class Scored:
    """Every asked customer's top-k in the asked order, and the processes that computed them."""

    recs: Recs
    pids: set[int]
    sources: np.ndarray | None = None  # (n, k) uint32 bitmask over source_names, when inputs.sources
    source_names: tuple[str, ...] = ()


LOCAL_ROWS = 5_000  # customers per `Scorer` call on this machine: at full size a block's candidates and features
# take ~0.4 GB beside the ~1.5 GB loaded, and 5,000 scored 40,000 customers fastest of 1,000 .. 20,000 (20.7 s
# against 24.5 s at 20,000, whose blocks peaked at 3.3 GB: docs/benchmarks.md)
LOADED_FACTOR = 6  # a scoring process's peak memory over the bytes on disk of what it loads (1.9 GiB for 0.35 GB
# at full size): what `processes_for` keeps available per process


def processes_for(inputs: ScoringInputs, blocks: int) -> int:
    """How many one-thread processes score `blocks` blocks on this machine: one per CPU and block, as many as the
    available memory holds at LOADED_FACTOR times the loaded files each; 1: this process, with all its threads.

    Why processes: much of a block's time is single-threaded (Polars' per-customer windows, LightGBM's tree walk
    over small matrices, Python between them), so two one-thread processes score ~1.6x what one two-thread one does.
    """
    cpus_here = cpus.available()
    if cpus_here < 2 or blocks < 2:
        return 1
    free = cpus.memory_available()
    loaded = LOADED_FACTOR * sum(f.stat().st_size for path in (inputs.recommender, inputs.customers, inputs.history)
                                 for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file())
    fits = cpus_here if free is None else int(free // max(loaded, 1))
    return max(1, min(cpus_here, blocks, fits))


def score_here(inputs: ScoringInputs, customer_idx: np.ndarray, rows: int = LOCAL_ROWS,
               processes: int | None = None) -> Scored:
    """Top-k for each of `customer_idx` on this machine: `Scorer.score` (or `explain`) over blocks of at most `rows`
    customers (a customer's answer does not depend on who else is in the block), in this process or in
    `processes` one-thread processes of this machine (default: `processes_for`), with a progress bar."""
    customer_idx = np.asarray(customer_idx, dtype=np.int32)
    blocks = [customer_idx[i:i + rows] for i in range(0, len(customer_idx), rows)] or [customer_idx]
    processes = processes_for(inputs, len(blocks)) if processes is None else max(1, min(processes, len(blocks)))
    with logs.bar(f"scoring {len(customer_idx):,} customers in {processes} process(es)", len(customer_idx),
                  "customers") as shown:
        if processes == 1:
            scorer, parts = Scorer(inputs), []
            for block in blocks:
                parts.append(_answers(scorer, block))
                shown.advance(len(block))
            names = scorer.source_names
        else:
            parts, names = _in_processes(inputs, blocks, processes, shown)
    recs = Recs.stacked([Recs(p["items"], p["scores"]) for p in parts], inputs.k)
    sources = np.concatenate([p["sources"] for p in parts]) if inputs.sources else None
    names = names if inputs.sources else ()
    return Scored(recs, {int(p["pid"][0]) for p in parts if len(p["pid"])} or {os.getpid()}, sources, names)


def _answers(scorer: Scorer, customer_idx: np.ndarray) -> dict[str, np.ndarray]:
    """One block's answers as `Scorer.__call__` gives them."""
    return scorer({"position": np.arange(len(customer_idx), dtype=np.int64), "customer_idx": customer_idx})


_process_scorer: Scorer | None = None  # a scoring process's `Scorer`, loaded once by `_load`


def _load(inputs: ScoringInputs, parent: int) -> None:
    global _process_scorer
    die_with_parent(parent)
    _process_scorer = Scorer(inputs)


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel kill this process when `parent` (the process that started it) exits, and exit now if
    it already has. A scoring process otherwise outlives a killed pipeline, blocked for ever on sending its answers
    back and holding its copy of the model (about 2 GB each at full size). Elsewhere: nothing."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _score_block(customer_idx: np.ndarray) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    assert _process_scorer is not None, "_load runs first in every scoring process"
    return _answers(_process_scorer, customer_idx), _process_scorer.source_names


def _in_processes(inputs: ScoringInputs, blocks: list[np.ndarray], processes: int,
                  shown: logs.Bar) -> tuple[list[dict], tuple[str, ...]]:
    """`blocks`' answers, in order, and the source names, from `processes` fresh processes (spawned: no thread
    pool is forked) of `available() // processes` threads that each load the recommender and the tables once; a
    process that fails fails the run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, cpus.available() // processes)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_load,
                             initargs=(inputs, os.getpid())) as pool:
        with cpus.children_threads(threads):  # read by each process as it starts (all start at the first submit)
            futures = {pool.submit(_score_block, block): i for i, block in enumerate(blocks)}
        parts: list[dict | None] = [None] * len(blocks)
        names: tuple[str, ...] = ()
        for future in as_completed(futures):
            parts[futures[future]], names = future.result()
            shown.advance(len(blocks[futures[future]]))
    return parts, names  # type: ignore[return-value]


def score_on_ray(inputs: ScoringInputs, customer_idx: np.ndarray, rows: int) -> Scored:
    """Top-k for each of `customer_idx` in an open Ray session: blocks of at most `rows` customers of one store
    partition each, mapped by one actor per CPU of the cluster; the same answers as `score_here`."""
    import pyarrow as pa
    import ray

    customer_idx = np.asarray(customer_idx, dtype=np.int32)
    positions = np.arange(len(customer_idx), dtype=np.int64)
    n = max(1, inputs.partitions)
    groups = [positions[customer_idx % n == k] for k in range(n)]  # each block within one store partition
    blocks = [pa.table({"position": group[i:i + rows], "customer_idx": customer_idx[group[i:i + rows]]})
              for group in groups for i in range(0, len(group), rows)]
    actors = max(1, min(len(blocks), cluster_cpus()))
    log.info("scoring %d customers in %d blocks with %d actors", len(customer_idx), len(blocks), actors)
    with warnings.catch_warnings():  # max_restarts goes through ray_remote_args, deprecated from Ray 2.60
        warnings.simplefilter("ignore", DeprecationWarning)
        scored = ray.data.from_arrow(blocks).map_batches(
            Scorer, fn_constructor_args=(inputs,), batch_size=None, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=actors), max_restarts=0,  # a failed actor fails the run
        )
    out = Recs(np.full((len(customer_idx), inputs.k), -1, dtype=np.int32),
               np.full((len(customer_idx), inputs.k), np.nan, dtype=np.float32))
    bits = np.zeros((len(customer_idx), inputs.k), dtype=np.uint32) if inputs.sources else None
    pids: set[int] = set()
    for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
        out.items[batch["position"]] = batch["items"]
        out.scores[batch["position"]] = batch["scores"]
        if bits is not None:
            bits[batch["position"]] = batch["sources"]
        pids.update(batch["pid"].tolist())
    names = tuple(load_recommender(inputs.recommender).reasons()) if inputs.sources else ()  # Scorer.source_names
    return Scored(out, pids, bits, names)


Score = Callable[[ScoringInputs, np.ndarray], Scored]  # an engine's `score`


class EngineScored:
    """A fitted recommender whose `recommend` for a store's customers runs through an engine's `score`: the
    evaluation on Ray. It answers `recommend` only, the one method the evaluation calls.

    It answers from the store's transactions before the query's as_of, as Query.for_customers does, so it
    gives what the recommender itself gives for a query built from the store.
    """

    def __init__(self, recommender: Recommender, store: Store, folder: Path, score: Score):
        save_recommender(recommender, folder)
        self.folder, self.store, self.score = folder, store, score

    def recommend(self, query: Query, k: int) -> Recs:
        inputs = ScoringInputs(self.folder, self.store.table_path(CUSTOMERS), self.store.table_path(TRANSACTIONS),
                               query.as_of, k)
        return self.score(inputs, query.customers["customer_idx"].to_numpy()).recs
