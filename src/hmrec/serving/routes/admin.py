"""POST /admin/reload: load the current champion beside the serving model and swap atomically."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from hmrec.serving.deps import AdminDep, HolderDep, MetricsDep, SettingsDep
from hmrec.serving.model_holder import ReloadError
from hmrec.serving.schemas import ReloadResponse, error_responses

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse, summary="Serve the registry's current champion",
             responses=error_responses(401, 403, 409, 413, 503))
async def reload(_: AdminDep, holder: HolderDep, settings: SettingsDep, metrics: MetricsDep) -> dict:
    try:
        previous, current = await run_in_threadpool(holder.reload)
    except ReloadError:
        metrics.reloads.labels("failed").inc()
        raise
    metrics.reloads.labels("ok").inc()
    serving, live = await run_in_threadpool(holder.wait_for_workers, settings.reload_wait_seconds)
    return {"previous_version": previous, "model_version": current, "workers_serving": serving, "workers": live}
