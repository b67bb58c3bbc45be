"""Answer concurrent personalised requests with one model call: a batch of n customers costs far less than n calls."""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from hmrec.recommenders.base import Query

log = logging.getLogger(__name__)


@dataclass
class _Ask:
    model: object  # the LoadedModel the request holds; only asks for the same model share a call
    profile: pl.DataFrame  # one row
    history: pl.DataFrame  # row == 0
    as_of: date
    k: int
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread takes every waiting ask (up to `max_batch`), groups them by model and clock, and answers
    each group with one `recommend_explained` call. Nothing waits for a batch to fill: under light load a
    batch is one ask; under load, asks gather while the previous batch runs."""

    def __init__(self, max_batch: int):
        self.max_batch = max_batch
        self._queue: queue.Queue[_Ask | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hmrec-batcher", daemon=True)
        self._thread.start()

    def answer(self, model, profile: pl.DataFrame, history: pl.DataFrame, as_of: date, k: int) -> pl.DataFrame:
        """The model's `row, rank, article_idx, score, sources` for this one customer (row 0), best first."""
        ask = _Ask(model, profile, history, as_of, k)
        self._queue.put(ask)
        return ask.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            asks = [first]
            while len(asks) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                asks.append(more)
            groups: dict[tuple[int, date], list[_Ask]] = {}
            for ask in asks:
                groups.setdefault((id(ask.model), ask.as_of), []).append(ask)
            for group in groups.values():
                self._answer(group)

    def _answer(self, asks: list[_Ask]) -> None:
        first = asks[0]
        profiles = pl.concat([a.profile for a in asks], how="vertical_relaxed")
        histories = pl.concat([a.history.with_columns(pl.lit(i, dtype=pl.UInt32).alias("row"))
                               for i, a in enumerate(asks)], how="vertical_relaxed")
        try:
            frame = first.model.recommender.recommend_explained(
                Query(customers=profiles, history=histories, as_of=first.as_of), max(a.k for a in asks))
        except BaseException as error:  # noqa: BLE001 - handed to every waiting request, as an executor does
            log.error("a batch of %d recommendations failed: %s", len(asks), error)
            for ask in asks:
                ask.future.set_exception(error)
            return
        log.debug("answered a batch of %d", len(asks))
        parts = frame.sort("row", "rank").partition_by("row", as_dict=True)
        empty = frame.clear()
        for i, ask in enumerate(asks):
            part = parts.get((i,), empty)
            ask.future.set_result(part.filter(pl.col("rank") < ask.k).with_columns(pl.lit(0, dtype=pl.UInt32).alias("row")))
