"""POST /recommendations: ranked articles for one customer, with reasons and the strategy used."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from hmrec.serving.deps import answered, get_answering
from hmrec.serving.schemas import RecommendationRequest, RecommendationResponse, error_responses

router = APIRouter(tags=["recommendations"])


@router.post(
    "/recommendations",
    response_model=RecommendationResponse,
    summary="Recommend k articles to a customer",
    description="Known customers with purchases (bundle history plus live events) get the model's ranking; "
    "a known customer without purchases gets their age group's bestsellers, an unknown id the global ones "
    "(strategy `cold_start`). Articles bought through live events in the last HMREC_PURCHASED_DAYS days are left "
    "out unless `include_purchased`. "
    "`path` says whether the answer was looked up in the version's precomputed answers (active customers without "
    "live events) or computed online. Every answer is recorded as an impression under its new `request_id`. "
    "`variant` and `model_version` say which registry alias and version answered "
    "(a customer's variant of the live experiment is fixed by their id).",
    responses=error_responses(413, 422, 503),
)
async def recommend(body: RecommendationRequest, request: Request) -> Response:
    received = time.time()
    # `AnsweringDep`'s function called here: FastAPI resolving the dependency cost a tenth of a lookup's CPU
    answering = await get_answering(request)
    answer = await answering.recommendations.recommend_async(body.customer_id, body.k, body.include_purchased)
    metrics = answering.metrics
    metrics.recommendation(answer["strategy"], answer["cached"], answer["path"])
    answer = {**answer, "request_id": answering.impressions.shown(answer, body.surface, received)}
    metrics.variant_answer(answer, "/recommendations")
    return answered(answer, RecommendationResponse, metrics, "/recommendations")
