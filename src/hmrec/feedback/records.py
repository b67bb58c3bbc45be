"""What the loop's analytics read: an impression (what one answer showed) and a sale (one purchase), as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class Impression:
    """One answer as the customer saw it: `articles` are the shown article ids, rank 1 first.

    `service_day` is the service's clock for the customer (the answer's `as_of`), `received_at` the wall-clock time
    (UTC) the request arrived; `variant` the experiment arm that answered and `model_version` its registry version."""

    request_id: str
    customer_id: str
    model_version: int | None
    variant: str
    surface: str
    service_day: date
    received_at: datetime
    articles: tuple[int, ...]


@dataclass(frozen=True)
class Sale:
    """One purchase: the day and price, the `request_id` of the answer it came from when the client sent one, and
    when the service received it (None for a purchase that did not come through the service)."""

    customer_id: str
    article_id: int
    t_dat: date
    price: float
    request_id: str | None = None
    received_at: datetime | None = None
