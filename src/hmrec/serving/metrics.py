"""Prometheus metrics of the service: requests, latency, cold-start share and the served model version.

With several worker processes (`hmrec serve --workers N`), the command points PROMETHEUS_MULTIPROC_DIR at a
fresh folder before the workers start: each writes its values there and /metrics, whichever worker answers,
adds them all up (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """A registry per app, so two apps in one process (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hmrec_requests_total", "HTTP requests by route template and status code",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("hmrec_request_latency_seconds", "Request latency by route template",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.recommendations = Counter("hmrec_recommendations_total", "Recommendation answers by strategy",
                                       ["strategy", "cached"], registry=self.registry)
        self.paths = Counter("hmrec_recommendation_paths_total", "Recommendation answers by the path that computed "
                             "them (precomputed lookup or online)", ["path"], registry=self.registry)
        # one sample per live worker in multiprocess mode: during a reload they may briefly differ
        self.model_version = Gauge("hmrec_model_version", "Registry version being served (0: none)",
                                   registry=self.registry, multiprocess_mode="liveall")
        self.events = Counter("hmrec_purchase_events_total", "Purchase events stored", registry=self.registry)
        self.degraded = Counter("hmrec_degraded_answers_total", "Answers given without the event store (it could "
                                "not be read), by route", ["route"], registry=self.registry)
        self.store_refusals = Counter("hmrec_event_store_refusals_total", "Requests answered 503 because the event "
                                      "store could not take a write", registry=self.registry)
        self.shed = Counter("hmrec_requests_refused_total", "Requests refused before any handler: busy (503, too "
                            "many in flight) or rate (429, too many events from one client)", ["reason"],
                            registry=self.registry)
        self.impressions_written = Counter("hmrec_impressions_written_total", "Impressions (what an answer showed) "
                                           "written to the event store", registry=self.registry)
        self.impressions_dropped = Counter("hmrec_impressions_dropped_total", "Impressions dropped: queue_full (the "
                                           "writer's queue, HMREC_IMPRESSIONS_QUEUE), store (the event store failed) "
                                           "or shutdown (not written within the shutdown's bound)", ["reason"],
                                           registry=self.registry)
        self.variants = Counter("hmrec_variant_answers_total", "Answers that used a model, by the live experiment's "
                                "variant (registry alias; champion without one), the version it served and the route",
                                ["variant", "version", "route"], registry=self.registry)
        self.reloads = Counter("hmrec_reloads_total", "Model reload attempts by outcome", ["outcome"],
                               registry=self.registry)
        self._children: dict[tuple, Counter | Histogram] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Counter | Histogram:
        """`metric.labels(*labels)`, kept: `labels` checks the labels and looks the child up under a lock on every
        call, five times per answer (an answer's three counts went from 5-7 to 2.5 us)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def recommendation(self, strategy: str, cached: bool, path: str = "online") -> None:
        self.child(self.recommendations, strategy, "true" if cached else "false").inc()
        self.child(self.paths, path).inc()

    def variant_answer(self, answer: dict, route: str) -> None:
        self.child(self.variants, answer.get("variant", "champion"), str(answer.get("model_version")), route).inc()

    def variant_counts(self) -> dict[tuple[str, str], float]:
        """Answers so far by (variant, version), every route and (in multiprocess mode) every worker summed."""
        counts: dict[tuple[str, str], float] = {}
        for family in self._source().collect():
            for sample in family.samples:
                if sample.name == "hmrec_variant_answers_total":
                    key = (sample.labels["variant"], sample.labels["version"])
                    counts[key] = counts.get(key, 0.0) + sample.value
        return counts

    def _source(self) -> CollectorRegistry:
        """This app's registry, or every worker's values in multiprocess mode."""
        if not multiprocess_mode():
            return self.registry
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)
        return source

    def exposition(self) -> bytes:
        source = self._source()
        share = CollectorRegistry()
        share.register(_ColdStartShare(source))
        return generate_latest(source) + generate_latest(share)

    @staticmethod
    def process_exited() -> None:
        """Drop this worker's live gauges from the shared folder (called at its shutdown)."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _ColdStartShare(Collector):
    """hmrec_cold_start_share, computed from the recommendations counter when scraped (summed over workers)."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self) -> Iterator[Metric]:
        answers = {"cold_start": 0.0, "personalized": 0.0}
        for family in self.source.collect():
            for sample in family.samples:
                if sample.name == "hmrec_recommendations_total":
                    strategy = sample.labels.get("strategy", "")
                    answers[strategy] = answers.get(strategy, 0.0) + sample.value
        total = sum(answers.values())
        yield GaugeMetricFamily("hmrec_cold_start_share", "Share of recommendation answers that were cold start",
                                value=answers["cold_start"] / total if total else 0.0)


class MetricsMiddleware:
    """Counts every request and times it, labelled by the route template (never the raw path: ids would explode)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            metrics = self.metrics
            metrics.child(metrics.requests, scope["method"], template, str(status["code"])).inc()
            metrics.child(metrics.latency, template).observe(time.perf_counter() - started)
