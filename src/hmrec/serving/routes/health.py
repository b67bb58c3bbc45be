"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from hmrec.serving.deps import HolderDep, LiveDep, MetricsDep
from hmrec.serving.schemas import Health, NotReadyBody, Ready, error_responses

router = APIRouter(tags=["health"])
NOT_READY = {503: {**error_responses(503)[503], "model": NotReadyBody,
                   "description": "No model is loaded: `status` says whether it is loading or its load failed"}}


@router.get("/health", response_model=Health, summary="The process is alive")
def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", response_model=Ready, responses=NOT_READY,
            summary="A model is loaded (503 while it loads or if it failed to), and whether the event store answers")
def ready(holder: HolderDep, live: LiveDep) -> dict:
    model = holder.model
    # 200 during an event store outage too: the answers degrade, and a load balancer should keep this instance
    events = "ok" if live.sync_events() else "degraded"
    return {"status": "ready", "model_version": model.version, "articles": len(model.catalogue),
            "customers": model.customers.height, "data_end": model.data_end, "events": events,
            "worker": holder.token}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
