"""Prometheus metrics of one app instance: requests, latency, cold-start share and the served model version."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
        self.cold_start_share = Gauge("hmrec_cold_start_share", "Share of recommendation answers that were cold start",
                                      registry=self.registry)
        self.model_version = Gauge("hmrec_model_version", "Registry version being served (0: none)",
                                   registry=self.registry)
        self.events = Counter("hmrec_purchase_events_total", "Purchase events stored", registry=self.registry)
        self.reloads = Counter("hmrec_reloads_total", "Model reload attempts by outcome", ["outcome"],
                               registry=self.registry)
        self._answers = {"cold_start": 0, "personalized": 0}

    def recommendation(self, strategy: str, cached: bool) -> None:
        self.recommendations.labels(strategy, str(cached).lower()).inc()
        self._answers[strategy] = self._answers.get(strategy, 0) + 1
        total = sum(self._answers.values())
        self.cold_start_share.set(self._answers.get("cold_start", 0) / total)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
            self.metrics.requests.labels(scope["method"], template, str(status["code"])).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)
