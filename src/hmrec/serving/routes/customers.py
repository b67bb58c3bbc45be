"""GET /customers/{id}: profile, purchase summary and recent purchases (live events included)."""

from __future__ import annotations

from fastapi import APIRouter

from hmrec.serving.deps import CustomerPath, EngineDep
from hmrec.serving.schemas import CustomerResponse, error_responses

router = APIRouter(tags=["customers"])


@router.get("/customers/{customer_id}", response_model=CustomerResponse, responses=error_responses(422, 503),
            summary="A customer's profile and recent purchases; an unknown id is a new customer (known=false)")
def customer(customer_id: CustomerPath, engine: EngineDep) -> dict:
    return engine.customer(customer_id)
