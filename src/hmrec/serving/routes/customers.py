"""GET /customers/{id}: profile, purchase summary and recent purchases (live events included)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Response

from hmrec.serving.deps import AnsweringDep, CustomerPath, MetricsDep, ViewsDep, flag_degraded
from hmrec.serving.schemas import BuyAgainResponse, CustomerResponse, error_responses

router = APIRouter(tags=["customers"])


@router.get("/customers/{customer_id}", response_model=CustomerResponse, responses=error_responses(422, 503),
            summary="A customer's profile and recent purchases; an unknown id is a new customer (known=false)")
def customer(customer_id: CustomerPath, views: ViewsDep, metrics: MetricsDep, response: Response) -> dict:
    return flag_degraded(views.customer(customer_id), response, metrics, "/customers/{customer_id}")


@router.get("/customers/{customer_id}/buy-again", response_model=BuyAgainResponse,
            responses=error_responses(422, 503),
            summary="Repurchase picks: what the customer bought most often, minus what they just bought")
def buy_again(customer_id: CustomerPath, answering: AnsweringDep, response: Response,
              k: Annotated[int, Query(ge=1, le=100)] = 12) -> dict:
    received = time.time()
    answer = answering.recommendations.buy_again(customer_id, k)
    # an impression like any answer's
    answer["request_id"] = answering.impressions.shown(answer, "buy_again", received)
    metrics = answering.metrics
    metrics.variant_answer(answer, "/customers/{customer_id}/buy-again")
    return flag_degraded(answer, response, metrics, "/customers/{customer_id}/buy-again")
