"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response

from hmrec.serving.deps import HolderDep, MetricsDep
from hmrec.serving.schemas import Health, Ready, error_responses

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="The process is alive")
def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", response_model=Ready, summary="A model is loaded (503 with the reason until then)",
            responses=error_responses(503))
def ready(holder: HolderDep) -> dict:
    model = holder.model
    return {"status": "ready", "model_version": model.version, "articles": len(model.catalogue),
            "customers": model.customers.height, "data_end": model.data_end, "process": os.getpid()}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
