"""Dependencies shared by the routers: the engine, the settings, the admin check, and validated path ids."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hmrec.raw.schema import CUSTOMER_ID_RULE
from hmrec.serving.engine import Engine
from hmrec.serving.metrics import ServiceMetrics
from hmrec.serving.schemas import ARTICLE_ID_PATTERN, CUSTOMER_ID_PATTERN
from hmrec.serving.settings import Settings


# async, though nothing here waits: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
# per dependency per request
async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]

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


AdminDep = Annotated[None, Depends(require_admin)]
CustomerPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, description=CUSTOMER_ID_RULE)]
ArticlePath = Annotated[str, Path(pattern=ARTICLE_ID_PATTERN, description="1-10 digits, leading zero optional",
                                  examples=["0663713001"])]
