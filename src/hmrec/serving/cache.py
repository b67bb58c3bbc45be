"""Answers kept per customer, so a repeated request costs a dictionary lookup instead of a model call."""

from __future__ import annotations

import threading
from collections import OrderedDict

MIN_REMEMBERED = 1024  # invalidations remembered per customer, at the least


class AnswerCache:
    """LRU of answers per customer; a customer's event or a reload drops them, a stale answer is never stored.

    A request takes a stamp (`generation`) before it computes; `put` stores its answer only if nothing invalidated
    the customer since. Invalidation stamps are kept for a bounded number of customers: when the oldest is
    forgotten, the floor rises to its stamp, so a put for a forgotten customer is refused if it began before
    that (a refused put only costs a model call later; a stale answer is never kept)."""

    def __init__(self, size: int, remembered: int | None = None):
        self.size = size
        self.remembered = remembered if remembered is not None else max(MIN_REMEMBERED, 4 * size)
        self._answers: OrderedDict[str, dict[int, dict]] = OrderedDict()
        self._invalidated: OrderedDict[str, int] = OrderedDict()  # customer -> stamp of the last invalidation
        self._clock = 0  # stamps only grow
        self._floor = 0  # stamp of the newest invalidation forgotten (or of the last clear)
        self._lock = threading.Lock()

    def generation(self, customer_id: str) -> int:  # one clock serves every customer
        """The stamp a request takes before computing its answer; pass it to `put`."""
        with self._lock:
            return self._clock

    def remembered_customers(self) -> int:
        with self._lock:
            return len(self._invalidated)

    def get(self, customer_id: str, k: int) -> dict | None:
        with self._lock:
            answers = self._answers.get(customer_id)
            if answers is None or k not in answers:
                return None
            self._answers.move_to_end(customer_id)
            return answers[k]

    def put(self, customer_id: str, k: int, answer: dict, generation: int) -> None:
        if self.size <= 0:
            return
        with self._lock:
            if self._invalidated.get(customer_id, self._floor) > generation:
                return
            self._answers.setdefault(customer_id, {})[k] = answer
            self._answers.move_to_end(customer_id)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    def invalidate(self, customer_id: str) -> None:
        with self._lock:
            self._clock += 1
            self._invalidated[customer_id] = self._clock
            self._invalidated.move_to_end(customer_id)
            while len(self._invalidated) > self.remembered:
                _, stamp = self._invalidated.popitem(last=False)
                self._floor = max(self._floor, stamp)
            self._answers.pop(customer_id, None)

    def clear(self) -> None:
        with self._lock:
            self._clock += 1
            self._floor = self._clock
            self._invalidated.clear()
            self._answers.clear()
