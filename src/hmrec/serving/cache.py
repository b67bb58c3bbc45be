"""Answers kept per customer, so a repeated request costs a dictionary lookup instead of a model call."""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict


class AnswerCache:
    """LRU of answers per customer; a customer's event or a reload drops them, a stale answer is never stored."""

    def __init__(self, size: int):
        self.size = size
        self._answers: OrderedDict[str, dict[int, dict]] = OrderedDict()
        self._generation: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def generation(self, customer_id: str) -> int:
        with self._lock:
            return self._generation[customer_id]

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
            if self._generation[customer_id] != generation:
                return
            self._answers.setdefault(customer_id, {})[k] = answer
            self._answers.move_to_end(customer_id)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)

    def invalidate(self, customer_id: str) -> None:
        with self._lock:
            self._generation[customer_id] += 1
            self._answers.pop(customer_id, None)

    def clear(self) -> None:
        with self._lock:
            for customer_id in self._answers:
                self._generation[customer_id] += 1
            self._answers.clear()
