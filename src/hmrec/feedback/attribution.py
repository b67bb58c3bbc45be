"""Attribution: which impression a purchase came from, and which impressions a purchase of a shown article followed.

One rule decides both (`could_follow`): an impression can have led to a sale when it is the same customer's, it showed
the article, the sale is dated before the impression's service day + `window_days`, and either the sale names the
impression's request id (a direct link: the Buy came from that answer, whatever the service's clock says) or the
sale is on or after the impression's service day and, when both times are known, was received after it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from hmrec.feedback.records import Impression, Sale

DEFAULT_WINDOW_DAYS = 7


@dataclass(frozen=True)
class Attribution:
    """A sale and the impression it is credited to (None: no impression could have led to it); `rank` is the
    article's position in that answer (1 = first), `direct` whether the sale named the impression's request id."""

    sale: Sale
    impression: Impression | None
    rank: int | None
    direct: bool


def could_follow(impression: Impression, sale: Sale, window_days: int = DEFAULT_WINDOW_DAYS) -> bool:
    """Whether `sale` may have come from `impression` (the module's rule)."""
    if impression.customer_id != sale.customer_id or sale.article_id not in impression.articles:
        return False
    if sale.t_dat >= impression.service_day + timedelta(days=window_days):
        return False
    if sale.request_id is not None and sale.request_id == impression.request_id:
        return True
    if sale.t_dat < impression.service_day:
        return False
    return sale.received_at is None or impression.received_at <= sale.received_at


def attribute(impressions: Iterable[Impression], sales: Sequence[Sale],
              window_days: int = DEFAULT_WINDOW_DAYS) -> list[Attribution]:
    """One Attribution per sale, in order: the impression its request id names when that one could have led to it,
    else the latest (service day, then receive time) of the customer's impressions that could have."""
    by_customer, by_request = _index(impressions)
    out = []
    for sale in sales:
        named = by_request.get(sale.request_id) if sale.request_id is not None else None
        if named is not None and could_follow(named, sale, window_days):
            out.append(Attribution(sale, named, named.articles.index(sale.article_id) + 1, True))
            continue
        able = [i for i in by_customer.get(sale.customer_id, ()) if could_follow(i, sale, window_days)]
        best = max(able, key=lambda i: (i.service_day, i.received_at), default=None)
        rank = None if best is None else best.articles.index(sale.article_id) + 1
        out.append(Attribution(sale, best, rank, False))
    return out


def followed(impressions: Sequence[Impression], sales: Iterable[Sale],
             window_days: int = DEFAULT_WINDOW_DAYS) -> list[bool]:
    """For each impression, in order: whether any sale of an article it showed followed it (`could_follow`)."""
    by_customer: dict[str, list[Sale]] = defaultdict(list)
    for sale in sales:
        by_customer[sale.customer_id].append(sale)
    return [any(could_follow(i, s, window_days) for s in by_customer.get(i.customer_id, ())) for i in impressions]


def _index(impressions: Iterable[Impression]) -> tuple[dict[str, list[Impression]], dict[str, Impression]]:
    by_customer: dict[str, list[Impression]] = defaultdict(list)
    by_request: dict[str, Impression] = {}
    for impression in impressions:
        by_customer[impression.customer_id].append(impression)
        by_request[impression.request_id] = impression
    return by_customer, by_request
