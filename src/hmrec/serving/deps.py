"""Dependencies of the routers, one per resource (the model holder, catalogue views, live histories, impressions;
the recommendations with their impressions and metrics as one), the settings, the metrics, the admin and
events-writer checks, validated path ids and the mark of a degraded answer."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import cache
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from pydantic_core import to_json

from hmrec.raw.schema import CUSTOMER_ID_RULE
from hmrec.serving.catalogue_views import CatalogueViews
from hmrec.serving.impressions import ImpressionWriter
from hmrec.serving.live import LiveHistories
from hmrec.serving.metrics import ServiceMetrics
from hmrec.serving.model_holder import ModelHolder
from hmrec.serving.recommend import RecommendService
from hmrec.serving.schemas import ARTICLE_ID_PATTERN, CUSTOMER_ID_PATTERN
from hmrec.serving.settings import Settings


# async, though nothing here waits: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
# per dependency per request. Each resource is set on app.state by the lifespan (serving/app.py).
async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_views(request: Request) -> CatalogueViews:
    return request.app.state.views


async def get_live(request: Request) -> LiveHistories:
    return request.app.state.live


async def get_impressions(request: Request) -> ImpressionWriter:
    return request.app.state.impressions


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


@dataclass(frozen=True)
class Answering:
    """What a route that answers with recommendations uses: the service, the impressions and the metrics, reached
    through one dependency (FastAPI resolves each dependency of each request: three cost 5% of a looked-up answer's
    CPU where one costs a third of that)."""

    recommendations: RecommendService
    impressions: ImpressionWriter
    metrics: ServiceMetrics


async def get_answering(request: Request) -> Answering:
    return request.app.state.answering


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ViewsDep = Annotated[CatalogueViews, Depends(get_views)]
LiveDep = Annotated[LiveHistories, Depends(get_live)]
ImpressionsDep = Annotated[ImpressionWriter, Depends(get_impressions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
AnsweringDep = Annotated[Answering, Depends(get_answering)]

_bearer = HTTPBearer(auto_error=False)


def require_admin(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 without a bearer token, 403 with a wrong one or when no admin token is configured."""
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token in the Authorization header",
                            headers={"WWW-Authenticate": "Bearer"})
    if settings.admin_token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin endpoints are disabled: HMREC_ADMIN_TOKEN is not set")
    if not hmac.compare_digest(credentials.credentials.encode(), settings.admin_token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin token")


EVENTS_OFF = ("live events are turned off: this service has no HMREC_EVENTS_TOKEN; set one and send it as "
              "`Authorization: Bearer <token>`, or start `hmrec serve --demo` to take anonymous events")


def require_events_writer(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Live events need HMREC_EVENTS_TOKEN as a bearer token (401 without it or with a wrong one, compared in
    constant time), unless the service runs with --demo (anyone may post); 403 when no token is configured."""
    if settings.demo:
        return
    if settings.events_token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, EVENTS_OFF)
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "live events need the events token: send "
                            "`Authorization: Bearer <HMREC_EVENTS_TOKEN>`", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), settings.events_token.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong events token in the Authorization header",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


DEGRADED_HEADER = "X-Hmrec-Degraded"


def flag_degraded(answer: dict, response: Response, metrics: ServiceMetrics, route: str) -> dict:
    """An answer made without the event store carries `degraded: true` (set by the service), this header and a count
    in /metrics."""
    if answer.get("degraded"):
        response.headers[DEGRADED_HEADER] = "events"
        metrics.degraded.labels(route).inc()
    return answer


def answered(answer: dict, schema: type[BaseModel], metrics: ServiceMetrics, route: str) -> Response:
    """The answer as JSON, built as FastAPI would from `schema` without validating it again: the service builds
    every field of the schema and nothing else (the top level is cut to the schema's fields, defaults filled in), and
    re-validating a looked-up answer took a sixth of its CPU. The API tests and schemathesis hold it to the schema."""
    shown = {name: answer[name] if required or name in answer else default
             for name, required, default in _fields(schema)}
    response = Response(to_json(shown), media_type="application/json")
    flag_degraded(answer, response, metrics, route)
    return response


@cache
def _fields(schema: type[BaseModel]) -> tuple[tuple[str, bool, object], ...]:
    """Each field of `schema`: its name, whether it is required and its default (read once, not per answer)."""
    return tuple((name, field.is_required(), field.default) for name, field in schema.model_fields.items())


AdminDep = Annotated[None, Depends(require_admin)]
EventsWriterDep = Annotated[None, Depends(require_events_writer)]
CustomerPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, description=CUSTOMER_ID_RULE)]
ArticlePath = Annotated[str, Path(pattern=ARTICLE_ID_PATTERN, description="1-10 digits, leading zero optional",
                                  examples=["0663713001"])]
