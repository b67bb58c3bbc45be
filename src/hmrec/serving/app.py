"""The FastAPI application: lifespan loading of the champion, error mapping at the edge, routers and the demo page."""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException

from hmrec.serving.cards import NotFoundError
from hmrec.serving.deps import Answering
from hmrec.serving.docs import add_offline_docs
from hmrec.serving.edges import EdgeMiddleware, content_security_policy, script_hashes, without_paths
from hmrec.serving.events import EventStoreUnavailable, open_event_store
from hmrec.serving.limits import BodyLimitMiddleware, InFlightLimitMiddleware, WriteRateLimitMiddleware
from hmrec.serving.live import InvalidEventError
from hmrec.serving.metrics import MetricsMiddleware, ServiceMetrics
from hmrec.serving.model_holder import Loader, ModelHolder, NotReadyError, ReloadError, champion_loader
from hmrec.serving.routes import admin, articles, customers, demo, events, experiment, health, popular, recommendations
from hmrec.serving.services import build_services
from hmrec.serving.settings import Settings

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def create_app(settings: Settings, loader: Loader | None = None, load_in_background: bool = False) -> FastAPI:
    """The service for `settings`; `loader` (default: the registry's champion) is what /admin/reload calls.

    load_in_background: the lifespan's start-up returns (so the port opens) before the model has loaded, and the
    load goes on in a thread: /health answers at once, /ready and the model's routes 503 with Retry-After until it
    is done. Without it, the lifespan loads first (in-process test clients, and workers replacing one that died:
    see workers.py)."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        event_store = open_event_store(settings.events_target, settings.events_timeout_seconds,
                                       settings.events_retry_seconds)
        services = build_services(settings, event_store, loader or champion_loader(settings), metrics)
        services.holder.on_swap = lambda version: metrics.model_version.set(version or 0)
        # one resource per dependency (serving/deps.py)
        app.state.holder, app.state.live = services.holder, services.live
        app.state.views, app.state.impressions = services.views, services.impressions
        app.state.answering = Answering(services.recommendations, services.impressions, metrics)
        closing = threading.Event()
        if load_in_background:
            _load_in_background(services.holder, app.state.loading, closing, settings.test_load_gate)
        else:
            _load(services.holder)
        services.holder.follow_reloads(settings.reload_poll_seconds)
        yield
        closing.set()
        services.close()
        event_store.close()
        metrics.process_exited()

    # the service's metrics are Prometheus' (/metrics): FastAPI's own OpenTelemetry hooks, off, no longer look up
    # the global providers on every request and every dependency (3% of a looked-up answer's CPU)
    app = FastAPI(title="hmrec", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Personalised fashion recommendations on H&M-format data, with live purchase events.",
                  telemetry=NO_TELEMETRY)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.loading = threading.Event()  # set while the first load runs in the background
    _add_error_handlers(app)
    # a request is matched against the routers in this order: the busiest route first (matched behind /health's
    # three routes, a looked-up answer spent 7% of its profiled time finding its own)
    for module in (recommendations, health, customers, articles, popular, events, admin, experiment, demo):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    docs_pages = add_offline_docs(app)
    if settings.images_dir is not None and settings.images_dir.is_dir():
        app.mount("/images", StaticFiles(directory=settings.images_dir), name="images")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    def refused(reason: str) -> None:
        metrics.shed.labels(reason).inc()

    app.add_middleware(WriteRateLimitMiddleware, per_second=settings.events_per_client_per_second,
                       burst=settings.events_burst, refused=refused)
    app.add_middleware(InFlightLimitMiddleware, max_in_flight=settings.max_in_flight, refused=refused,
                       max_wait=settings.max_wait_ms / 1000, max_event_wait=settings.max_event_wait_ms / 1000)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(EdgeMiddleware, policy=content_security_policy(script_hashes(docs_pages)))
    return app


def app_from_environment() -> FastAPI:
    """The app of `hmrec serve`, built in each uvicorn worker process from the HMREC_* variables it set: it listens
    at once and loads the model in the background (/ready answers 503 until then)."""
    settings = Settings()
    limit_threads(settings.threads)
    return create_app(settings, load_in_background=True)


def app_loaded_before_listening() -> FastAPI:
    """The app of a worker started in place of one that died or froze while others serve: it listens only once
    its model is loaded, so the kernel keeps handing new connections to the workers that can answer them."""
    settings = Settings()
    limit_threads(settings.threads)
    return create_app(settings)


def _load(holder: ModelHolder) -> None:
    try:
        holder.reload(announce=False)  # a worker starting is not news to the others
    except ReloadError as error:
        # Still start: /health answers and /ready explains, so an operator can promote and reload.
        log.error("serving without a model: %s", error)


def _load_in_background(holder: ModelHolder, loading: threading.Event, closing: threading.Event,
                        gate: Path | None) -> None:
    """Load the champion in a daemon thread (a stop during the load does not wait for it: `closing`); `loading` is
    set until the load has succeeded or failed."""
    holder.load_error = "the champion is still loading"
    loading.set()

    def run() -> None:
        try:
            while gate is not None and not gate.exists() and not closing.is_set():
                time.sleep(0.05)  # tests only (HMREC_TEST_LOAD_GATE): hold the load until the test says
            _load(holder)
        except Exception as error:  # noqa: BLE001 - a thread's error would otherwise be printed and forgotten
            if closing.is_set():
                return  # stopped during the load: the event store it reports to is closed
            holder.load_error = f"the load failed unexpectedly: {type(error).__name__}: {error}"
            log.exception("serving without a model")
        finally:
            loading.clear()

    threading.Thread(target=run, name="hmrec-first-load", daemon=True).start()


def limit_threads(threads: int) -> None:
    """Cap the libraries' thread pools in a serving process. Polars reads POLARS_MAX_THREADS when first imported,
    so `hmrec serve` sets it before any import; torch and FAISS (OpenMP) read OMP_NUM_THREADS when first imported,
    which is while the model loads, if ever: a bundle without the two-tower never imports them, and a worker that
    does not import them at start-up listens about two seconds sooner. Already imported, they are told directly."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)


def _add_error_handlers(app: FastAPI) -> None:
    """Library errors become HTTP answers here, at the edge, and nowhere else."""

    retry = {"Retry-After": str(math.ceil(app.state.settings.events_retry_seconds))}

    def public(error: Exception) -> str:
        return without_paths(str(error), app.state.settings.workdir)

    @app.exception_handler(NotReadyError)
    async def not_ready(request: Request, error: NotReadyError) -> JSONResponse:
        loading = "loading" if request.app.state.loading.is_set() else "unavailable"
        return JSONResponse({"detail": f"no model is loaded: {public(error)}", "status": loading},
                            status.HTTP_503_SERVICE_UNAVAILABLE, headers=retry)

    @app.exception_handler(EventStoreUnavailable)
    async def store_unavailable(request: Request, error: EventStoreUnavailable) -> JSONResponse:
        # the cause (a file path, a server) is in the log, not in the answer
        request.app.state.metrics.store_refusals.inc()
        return JSONResponse({"detail": "the event store cannot take the event now; nothing was stored: retry after "
                             f"{retry['Retry-After']} s"}, status.HTTP_503_SERVICE_UNAVAILABLE, headers=retry)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status.HTTP_404_NOT_FOUND)

    @app.exception_handler(ReloadError)
    async def reload_failed(request: Request, error: ReloadError) -> JSONResponse:
        serving = request.app.state.holder.serving
        still = f"; still serving version {serving.version}" if serving is not None else "; no model is serving"
        return JSONResponse({"detail": f"reload failed: {public(error)}{still}"}, status.HTTP_409_CONFLICT)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _unprocessable([_describe(e) for e in error.errors()])

    @app.exception_handler(InvalidEventError)
    async def invalid_event(request: Request, error: InvalidEventError) -> JSONResponse:
        return _unprocessable([{"field": error.field, "location": "body", "message": str(error),
                                "type": "value_error"}])

    @app.exception_handler(HTTPException)
    async def unparsable(request: Request, error: HTTPException) -> JSONResponse:
        # FastAPI raises starlette's 400 when json.loads fails other than by a JSONDecodeError: bytes that are not UTF-8
        # (UnicodeDecodeError) or nesting deeper than the parser's recursion limit (RecursionError).
        cause = error.__cause__
        if error.status_code == status.HTTP_400_BAD_REQUEST and isinstance(cause, (ValueError, RecursionError)):
            why = "nested too deeply" if isinstance(cause, RecursionError) else f"cannot be decoded: {cause}"
            return _unprocessable([{"field": "body", "location": "body", "message": f"invalid JSON: {why}",
                                    "type": "json_invalid"}])
        return await http_exception_handler(request, error)


def _unprocessable(errors: list[dict]) -> JSONResponse:
    """422 with the body the OpenAPI document declares (schemas.ValidationErrorBody)."""
    return JSONResponse({"detail": "; ".join(f"{e['field']}: {e['message']}" for e in errors), "errors": errors},
                        status.HTTP_422_UNPROCESSABLE_CONTENT)


def _describe(error: dict) -> dict:
    """One validation error as `field` (dotted, without 'body'/'query'/'path') and a message."""
    location = [str(part) for part in error.get("loc", ())]
    where = location[0] if location else "request"
    field = ".".join(location[1:]) or where
    message = error.get("msg", "invalid")
    if error.get("type") == "json_invalid":
        field, message = "body", f"invalid JSON: {error.get('ctx', {}).get('error', 'cannot be decoded')}"
    return {"field": field, "location": where, "message": message, "type": error.get("type", "")}
