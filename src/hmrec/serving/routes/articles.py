"""GET /articles/{id}, its similar articles, and its drawn picture."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Response

from hmrec.serving.deps import ArticlePath, ImpressionsDep, ViewsDep
from hmrec.serving.images import article_svg
from hmrec.serving.schemas import CUSTOMER_ID_PATTERN, ArticleDetail, SimilarResponse, error_responses, parse_article_id

router = APIRouter(tags=["articles"])
NOT_FOUND = error_responses(404, 422, 503)


@router.get("/articles/{article_id}", response_model=ArticleDetail, responses=NOT_FOUND,
            summary="One article; the id may omit the leading zero")
def article(article_id: ArticlePath, views: ViewsDep) -> dict:
    return views.article(parse_article_id(article_id))


@router.get("/articles/{article_id}/similar", response_model=SimilarResponse, responses=NOT_FOUND,
            summary="Nearest articles by two-tower vectors, of the same product type, then group (by sales when "
            "the model has no vectors)")
def similar(article_id: ArticlePath, views: ViewsDep, impressions: ImpressionsDep,
            k: Annotated[int, Query(ge=1, le=100)] = 12,
            any_type: Annotated[bool, Query(description="Also articles of other product groups")] = False,
            customer_id: Annotated[str | None, Query(pattern=CUSTOMER_ID_PATTERN, description="The customer the "
                                                     "articles are shown to: the answer is recorded as their "
                                                     "impression")] = None) -> dict:
    received = time.time()
    answer = views.similar(parse_article_id(article_id), k, any_type)
    if customer_id is None:
        return {**answer, "request_id": impressions.request_id()}
    shown = {**answer, "customer_id": customer_id, "as_of": views.service_day(customer_id).isoformat(),
             "model_version": views.holder.model.version}
    return {**answer, "request_id": impressions.shown(shown, "similar", received)}


@router.get("/articles/{article_id}/image.svg", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"image/svg+xml": {}}}},
            summary="A picture drawn from the article's colour and product group")
def image(article_id: ArticlePath, views: ViewsDep) -> Response:
    detail = views.article(parse_article_id(article_id))
    svg = article_svg(detail["perceived_colour"], detail["colour"], detail["product_group"], detail["product_type"])
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})
