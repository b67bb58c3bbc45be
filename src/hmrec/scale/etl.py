"""`hmrec etl --engine ray`: the transactions file checked and indexed in parallel blocks by the local ETL's code.

Each Ray task copies its byte range (see blocks.py) to a CSV file of its own and runs `index_block`, the
local engine's fast and slow passes, on it. The driver then runs `combine_blocks`, the same second pass the
local engine runs over its one block: file-wide line numbers, the new customers' indices, the file-level
fatal checks. customers.csv and articles.csv (a few hundred MB at the H&M size) are cleaned whole on the
driver by the local functions: their rules (duplicate ids) need the whole file anyway. The features as of the
cutoff are computed per customer partition (scale/features.py), and the transactions are written partitioned the
same way (customer_idx modulo N: every customer's whole history in one file), as the workers of later stages
read them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hmrec.raw.read import RawFile, parse_errors
from hmrec.raw.schema import TRANSACTIONS_FILE, FileSpec
from hmrec.scale.blocks import copy_range, line_blocks
from hmrec.scale.cluster import cluster_cpus
from hmrec.scale.features import RayFeatures
from hmrec.store import build, indexing

log = logging.getLogger(__name__)


def build_on_ray(raw_dir: str | Path, store_dir: str | Path, test_days: int, block_bytes: int,
                 partition_bytes: int) -> dict:
    """store.build.build_store with Ray's indexer and features, in an open Ray session: the same store as the
    local engine's, its transactions written in customer partitions; the manifest."""
    partitions = store_partitions(Path(raw_dir) / TRANSACTIONS_FILE, partition_bytes)
    return build.build_store(raw_dir, store_dir, test_days, indexer=RayIndexer(block_bytes),
                             features=RayFeatures(partitions), partitions=partitions)


def store_partitions(transactions: Path, partition_bytes: int) -> int:
    """How many customer partitions the store and the feature tasks get: one per `partition_bytes` of raw CSV,
    and at least one per CPU of the cluster."""
    cpus = cluster_cpus()
    size = transactions.stat().st_size if transactions.is_file() else 0
    return max(cpus, -(-size // partition_bytes))


@dataclass(frozen=True)
class _BlockTask:
    """What a worker needs to open its block as the driver opened the whole file."""

    spec: FileSpec
    path: Path
    header: bytes
    start: int
    end: int
    file_columns: list[str]
    truncated: bool  # the block holds the file's cut-off last row


@dataclass
class RayIndexer:
    """indexing.Indexer on Ray: one task per block, then the local combine; `pids` records who did the work."""

    block_bytes: int
    pids: set[int] = field(default_factory=set)

    def __call__(self, raw: RawFile, known_ids: pl.Series, articles: pl.DataFrame) -> indexing.Indexed:
        import ray

        if raw.broken_lines:
            # rows with unbalanced quotes are numbered in the whole (repaired) file; a block cannot place them
            log.info("%s: %d rows with unbalanced quotes: indexed in one process", raw.name, len(raw.broken_lines))
            return indexing.index_whole(raw, known_ids, articles)
        # at most block_bytes, and small enough that every CPU of the cluster gets a block
        cpus = cluster_cpus()
        block_bytes = max(1, min(self.block_bytes, -(-raw.path.stat().st_size // cpus)))
        header, ranges = line_blocks(raw.path, block_bytes, quotes_balanced=True)  # the byte check found no broken line
        log.info("%s: %d blocks of about %.1f MB on Ray", raw.name, len(ranges), block_bytes / 2**20)
        maps = ray.put(tuple(m.collect() for m in indexing.id_maps(known_ids, articles)))
        task = ray.remote(num_cpus=1)(_index_range)
        futures = [
            task.remote(_BlockTask(raw.spec, raw.path, header, start, end, raw.file_columns,
                                   raw.truncated_line is not None and number == len(ranges) - 1), maps)
            for number, (start, end) in enumerate(ranges)
        ]
        results = ray.get(futures)
        self.pids.update(pid for _, pid, _ in results)
        for number, (block, _, seconds) in enumerate(results):
            rows = f"{block.rows:,} rows" if block is not None else "unparseable"
            log.debug("%s block %d/%d: %s in %.2f s", raw.name, number + 1, len(results), rows, seconds)
        log.info("%s: %d blocks checked by %d worker processes, the slowest in %.2f s", raw.name, len(results),
                 len({pid for _, pid, _ in results}), max(seconds for *_, seconds in results))
        if any(block is None for block, _, _ in results):
            with parse_errors(raw):  # the same one-line error as the local engine, from the whole file
                raise pl.exceptions.ComputeError(f"{raw.name}: a block could not be parsed")
        return indexing.combine_blocks(raw, [block for block, _, _ in results], known_ids)


def _index_range(task: _BlockTask, maps: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[indexing.Block | None, int, float]:
    """Run in a Ray worker: the block as a CSV file of its own through indexing.index_block (None if unparseable),
    this process's id and the seconds it took."""
    started = time.perf_counter()
    block, pid = _index_copy(task, maps), os.getpid()
    return block, pid, time.perf_counter() - started


def _index_copy(task: _BlockTask, maps: tuple[pl.DataFrame, pl.DataFrame]) -> indexing.Block | None:
    customer_map, article_map = (m.lazy() for m in maps)
    with tempfile.TemporaryDirectory(prefix="hmrec-block-") as folder:
        path = Path(folder) / task.path.name
        copy_range(task.path, task.header, task.start, task.end, path)
        raw = RawFile(task.spec, path, pl.LazyFrame(), file_columns=task.file_columns)
        raw.frame = raw.scan()
        try:
            if task.truncated:
                raw.truncated_line = raw.frame.select(pl.len()).collect().item() - 1
            return indexing.index_block(raw, customer_map, article_map)
        except pl.exceptions.ComputeError:
            return None
