"""GET /popular: bestsellers of the data's last days, for an age or for everyone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hmrec.serving.deps import ViewsDep
from hmrec.serving.schemas import PopularResponse, error_responses

router = APIRouter(tags=["articles"])


@router.get("/popular", response_model=PopularResponse, responses=error_responses(422, 503),
            summary="Bestsellers, for an age group if `age` is given")
def popular(
    views: ViewsDep,
    age: Annotated[int | None, Query(ge=0, le=130, description="Customer age in years")] = None,
    k: Annotated[int, Query(ge=1, le=100)] = 12,
) -> dict:
    return views.popular(age, k)
