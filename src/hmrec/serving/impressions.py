"""Impressions off the request path: an answer puts what it showed into a bounded queue (nothing else, never a
wait); a thread writes the queue to the event store's impressions table at least every second, prunes past the
retention, and at shutdown gets one bounded last flush. A full queue or a failing store drops impressions and counts
them (`hmrec_impressions_dropped_total{reason}`)."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime

from hmrec.feedback.records import Impression
from hmrec.serving.events import EventStoreUnavailable
from hmrec.serving.events.base import FeedbackLog
from hmrec.serving.metrics import ServiceMetrics

log = logging.getLogger(__name__)
DEFAULT_VARIANT = "champion"  # the answer's variant when no experiment names one
PRUNE_EVERY_SECONDS = 3600.0


class ImpressionWriter:
    """One per worker process. `shown` is the request path's whole cost: a request id, a tuple and a queue put; the
    Impression is built on the writer's thread."""

    def __init__(self, store: FeedbackLog, metrics: ServiceMetrics, max_queue: int = 10_000,
                 flush_seconds: float = 1.0, retention_days: float = 0.0):
        self.store, self.metrics = store, metrics
        self.flush_seconds, self.retention_days = flush_seconds, retention_days
        self._queue: queue.Queue[tuple] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._writing = 0  # impressions of the batch being written now
        # request ids as 32 hex digits, as uuid4's: 16 random ones drawn once, then a count (uuid4 read the OS's
        # random source for every answer); `next` on a count is atomic, and sync routes call `shown` from threads
        self._id_prefix, self._id_count = os.urandom(8).hex(), itertools.count()
        self._given_up = False
        self._lock = threading.Lock()  # for `dropped`: the request path and the writer both count
        self.dropped: Counter[str] = Counter()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="hmrec-impressions", daemon=True)
        self._thread.start()

    def shown(self, answer: dict, surface: str, received_at: float) -> str:
        """Queue the impression of `answer` (shown on `surface`, the request received at `received_at`, Unix
        seconds) and return its fresh request id; a full queue drops it (counted), the answer never waits."""
        request_id = self.request_id()
        row = (request_id, answer["customer_id"], answer.get("model_version"),
               answer.get("variant") or DEFAULT_VARIANT, surface, answer["as_of"], received_at,
               [item["article_id"] for item in answer["items"]])
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self._drop("queue_full", 1)
        return request_id

    def request_id(self) -> str:
        """A fresh request id (an answer's, recorded as an impression or not)."""
        return f"{self._id_prefix}{next(self._id_count):016x}"

    def close(self, timeout: float = 0.5) -> int:
        """Stop, giving the last flush at most `timeout` seconds; log and return how many impressions it dropped."""
        self._stop.set()
        self._thread.join(timeout)
        lost = self._queue.qsize() + self._writing if self._thread.is_alive() else 0
        if lost:
            self._given_up = True  # whatever the last flush does now, the process is leaving without it
            self._drop("shutdown", lost)
        log.log(logging.WARNING if sum(self.dropped.values()) else logging.INFO,
                "impressions: %d written, dropped %s", self.written,
                ", ".join(f"{reason} {n}" for reason, n in self.dropped.items()) or "none")
        return lost

    def _run(self) -> None:
        due, next_prune = time.monotonic() + self.flush_seconds, time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = time.monotonic() + self.flush_seconds  # the next flush is due a second after this one began
            self.flush()
            if self.retention_days > 0 and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                self._prune()
        self.flush()

    def flush(self) -> int:
        """Write what the queue holds now in one transaction; how many were written (0 if the store failed)."""
        rows = []
        while True:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not rows:
            return 0
        self._writing = len(rows)
        try:
            self.store.add_impressions([_impression(row) for row in rows])
        except EventStoreUnavailable:  # the store logged why
            if not self._given_up:
                self._drop("store", len(rows))
            return 0
        finally:
            self._writing = 0
        self.written += len(rows)
        self.metrics.impressions_written.inc(len(rows))
        return len(rows)

    def _prune(self) -> None:
        try:
            pruned = self.store.prune_impressions(self.retention_days * 86400)
        except EventStoreUnavailable:
            return
        if pruned:
            log.info("dropped %d impressions older than %g days (HMREC_IMPRESSIONS_RETENTION_DAYS)", pruned,
                     self.retention_days)

    def _drop(self, reason: str, count: int) -> None:
        with self._lock:
            self.dropped[reason] += count
        self.metrics.impressions_dropped.labels(reason).inc(count)


def _impression(row: tuple) -> Impression:
    request_id, customer_id, version, variant, surface, as_of, received_at, articles = row
    return Impression(request_id, customer_id, version, variant, surface, date.fromisoformat(as_of),
                      datetime.fromtimestamp(received_at, UTC), tuple(int(a) for a in articles))
