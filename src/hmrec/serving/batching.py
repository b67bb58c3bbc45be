"""Answer concurrent personalised requests with one model call: a batch of n customers costs far less than n calls."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Deliver = Callable[[object, BaseException | None], None]  # (answer, error): exactly one of them is set
Answerer = Callable[[object, list[tuple[str, int]]], list[dict]]  # (model, [(customer_id, k)]) -> answers in order


@dataclass
class _Ask:
    model: object  # the LoadedModel the request holds; only asks for the same model share a call
    customer_id: str
    k: int
    deliver: Deliver


class Batcher:
    """One worker thread takes every waiting ask (up to `max_batch`), groups them by model, and answers each group
    with one `answerer` call. Nothing waits for a batch to fill: under light load a batch is one ask; under load,
    asks gather while the previous batch runs. `deliver` is called on the batcher thread: an asyncio caller passes
    one that hands the answer to its event loop (see `RecommendService.recommend_async`, serving/recommend.py)."""

    def __init__(self, answerer: Answerer, max_batch: int):
        self.answerer = answerer
        self.max_batch = max_batch
        self._queue: queue.Queue[_Ask | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hmrec-batcher", daemon=True)
        self._thread.start()

    def submit(self, model: object, customer_id: str, k: int, deliver: Deliver) -> None:
        self._queue.put(_Ask(model, customer_id, k, deliver))

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
            groups: dict[int, list[_Ask]] = {}
            for ask in asks:
                groups.setdefault(id(ask.model), []).append(ask)
            for group in groups.values():
                self._answer(group)

    def _answer(self, asks: list[_Ask]) -> None:
        try:
            answers = self.answerer(asks[0].model, [(a.customer_id, a.k) for a in asks])
        except BaseException as error:  # noqa: BLE001 - handed to every waiting request, as an executor does
            log.error("a batch of %d recommendations failed: %s", len(asks), error)
            for ask in asks:
                ask.deliver(None, error)
            return
        log.debug("answered a batch of %d", len(asks))
        for ask, answer in zip(asks, answers, strict=True):
            ask.deliver(answer, None)
