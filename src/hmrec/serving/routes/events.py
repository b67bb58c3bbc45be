"""POST /events/purchases: a live purchase, committed to disk before the 201 and applied at once."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from hmrec.raw.schema import format_article_id
from hmrec.serving.deps import EventsWriterDep, HolderDep, LiveDep, MetricsDep
from hmrec.serving.limits import EVENTS_PATH
from hmrec.serving.schemas import PurchaseEvent, PurchaseStored, error_responses

router = APIRouter(tags=["events"])


@router.post(
    EVENTS_PATH,
    response_model=PurchaseStored,
    status_code=status.HTTP_201_CREATED,
    summary="Record a purchase",
    description="Stored in SQLite (WAL, synchronous=FULL) and committed before the 201 is sent; the customer's "
    "next recommendations include it. Without `t_dat` the purchase is dated the day after the data's last day. "
    "Needs `Authorization: Bearer <HMREC_EVENTS_TOKEN>` unless the service runs with `--demo`. "
    "An `event_id` sent before answers 200 with the stored event and `duplicate: true`, storing nothing.",
    responses={200: {"model": PurchaseStored, "description": "The `event_id` was stored before: the stored event, "
                     "with `duplicate: true`; nothing new is stored"},
               **error_responses(401, 403, 404, 413, 422, 429, 503)},
)
def purchase(_: EventsWriterDep, body: PurchaseEvent, holder: HolderDep, live: LiveDep, metrics: MetricsDep,
             response: Response) -> dict:
    stored = live.record_purchase(holder.model, body.customer_id, body.article_id, body.price, body.sales_channel_id,
                                  body.t_dat, body.request_id, body.event_id)
    if stored.duplicate:
        response.status_code = status.HTTP_200_OK
    else:
        metrics.events.inc()
    p = stored.purchase
    return {"customer_id": p.customer_id, "article_id": format_article_id(p.article_id), "t_dat": p.t_dat,
            "price": p.price, "sales_channel_id": p.sales_channel_id, "request_id": body.request_id,
            "event_id": body.event_id, "duplicate": stored.duplicate}
