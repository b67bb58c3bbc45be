"""Live histories: purchase events from the event store, applied per customer, and the service's clock."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.raw.schema import SALES_CHANNELS
from hmrec.serving.cards import find_article
from hmrec.serving.events import EventLog, EventStoreUnavailable, Purchase, StoredPurchase
from hmrec.serving.model import LoadedModel
from hmrec.serving.schemas import MAX_PRICE
from hmrec.serving.settings import Settings

ONLINE = 2  # sales_channel_id of a purchase made through the service
_EPOCH = date(1970, 1, 1)
_NO_HISTORY = pl.DataFrame(schema={"row": pl.UInt32, "t_dat": pl.Date, "article_idx": pl.Int32, "price": pl.Float32,
                                   "sales_channel_id": pl.Int8})


class InvalidEventError(ValueError):
    """A live event the service refuses (e.g. dated outside the days it can serve); `field` names the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class History:
    """One customer's purchases as the model sees them (oldest first) and the service day they are asked on."""

    t_dat: np.ndarray  # days since 1970-01-01, int32
    article_idx: np.ndarray  # int32
    price: np.ndarray  # float32
    channel: np.ndarray  # int8
    as_of: date

    def __len__(self) -> int:
        return len(self.t_dat)

    def frame(self) -> pl.DataFrame:
        return history_frame([self])


def history_frame(histories: list[History]) -> pl.DataFrame:
    """The Query.history frame of one or more customers, `row` numbering them in order."""
    if not histories:
        return _NO_HISTORY
    # Series cast one by one: a frame-level cast runs the expression engine, a fixed cost per answer batch
    return pl.DataFrame([
        pl.Series("row", np.repeat(np.arange(len(histories), dtype=np.uint32), [len(h) for h in histories])),
        pl.Series("t_dat", np.concatenate([h.t_dat for h in histories])).cast(pl.Date),
        pl.Series("article_idx", np.concatenate([h.article_idx for h in histories])),
        pl.Series("price", np.concatenate([h.price for h in histories])),
        pl.Series("sales_channel_id", np.concatenate([h.channel for h in histories])),
    ])


def as_of_for(today: date, last_day: int | None) -> date:
    """The service's clock for a customer: the service's date (LoadedModel.today), or the day after their latest
    purchase when later.

    The data may end long ago (the public sample ends in 2020), so the wall clock would put every customer
    months after their last purchase; the service's date is the day after the data's end unless HMREC_TODAY says
    otherwise, and events without a day are dated on it.
    """
    return today if last_day is None else max(today, _EPOCH + timedelta(days=int(last_day) + 1))


def event_days(model: LoadedModel) -> tuple[date, date]:
    """The days a live event may have: from the data's first day to the service's date + 1 day."""
    return model.data_start or model.data_end, model.today + timedelta(days=1)


def _usable(purchase: Purchase) -> bool:
    """A stored event the model can take: a finite price in the API's range and a known channel."""
    return 0 <= purchase.price <= MAX_PRICE and purchase.sales_channel_id in SALES_CHANNELS


class LiveHistories:
    """The purchases made through the service, per customer, as read from the event store (by any worker).

    `applied` is told the customer of every event applied (the answer cache drops their answers)."""

    def __init__(self, settings: Settings, events: EventLog, applied: Callable[[str], None]):
        self.settings = settings
        self.events = events
        self._applied = applied
        self._live: dict[str, list[Purchase]] = defaultdict(list)
        self._live_lock = threading.Lock()
        self._event_seen = 0  # id of the last event applied to _live
        self.sync_events()

    def sync_events(self) -> bool:
        """Apply events committed since the last call, by any worker process, and drop their customers' answers.
        False when the store cannot be read: answers then come from the events this worker already holds (degraded).
        """
        try:
            new = self.events.since(self._event_seen)
        except EventStoreUnavailable:
            return False  # the store logged why
        if not new:
            return True
        with self._live_lock:
            for event_id, purchase in new:
                if event_id > self._event_seen:  # another thread may have applied it meanwhile
                    self._live[purchase.customer_id].append(purchase)
                    self._event_seen = event_id
                    self._applied(purchase.customer_id)
        return True

    def live_events(self, customer_id: str) -> list[Purchase]:
        with self._live_lock:
            return list(self._live.get(customer_id, ()))

    def recently_bought(self, model: LoadedModel, customer_id: str, as_of: date) -> set[int]:
        """article_idx of the customer's live purchases (made after the model's data) in the last
        `settings.purchased_days` days before `as_of`: the shop does not offer them straight back."""
        since = as_of - timedelta(days=self.settings.purchased_days)
        found = (model.catalogue.find(p.article_id) for p in self.live_events(customer_id) if p.t_dat >= since)
        return {idx for idx in found if idx is not None}

    def live_article_indices(self, model: LoadedModel, customer_id: str) -> list[int]:
        """article_idx of each of the customer's live purchases of an article the model knows."""
        found = (model.catalogue.find(p.article_id) for p in self.live_events(customer_id))
        return [idx for idx in found if idx is not None]

    def purchase_count(self, model: LoadedModel, customer_id: str, customer_idx: int | None) -> int:
        """All the customer's purchases: the bundle's total (its history keeps only the latest) plus live ones."""
        live = sum(1 for p in self.live_events(customer_id) if model.catalogue.find(p.article_id) is not None)
        return (model.purchase_total(customer_idx) if customer_idx is not None else 0) + live

    def history(self, model: LoadedModel, customer_id: str, customer_idx: int | None) -> History:
        """The customer's bundle history plus live events (the latest `history_limit`), oldest first, and the
        service's clock for them (see as_of_for)."""
        rows = model.histories.rows(customer_idx) if customer_idx is not None else slice(0, 0)
        h = model.histories
        days, items, prices, channels = h.t_dat[rows], h.article_idx[rows], h.price[rows], h.channel[rows]
        first, last = event_days(model)
        # the checks record_purchase makes, again: the events file may hold rows written by anything
        live = [(p, model.catalogue.find(p.article_id)) for p in self.live_events(customer_id)
                if first <= p.t_dat <= last and _usable(p)]
        live = [(p, idx) for p, idx in live if idx is not None]
        if live:
            days = np.concatenate([days, np.array([(p.t_dat - _EPOCH).days for p, _ in live], dtype=np.int32)])
            items = np.concatenate([items, np.array([idx for _, idx in live], dtype=np.int32)])
            prices = np.concatenate([prices, np.array([p.price for p, _ in live], dtype=np.float32)])
            channels = np.concatenate([channels, np.array([p.sales_channel_id for p, _ in live], dtype=np.int8)])
            order = np.argsort(days, kind="stable")
            days, items, prices, channels = days[order], items[order], prices[order], channels[order]
        keep = slice(max(0, len(days) - self.settings.history_limit), None)
        as_of = as_of_for(model.today, int(days[-1]) if len(days) else None)
        return History(days[keep], items[keep], prices[keep], channels[keep], as_of)

    def record_purchase(self, model: LoadedModel, customer_id: str, article_id: int, price: float | None,
                        channel: int | None, t_dat: date | None, request_id: str | None = None,
                        event_id: str | None = None) -> StoredPurchase:
        """Commit the event to the event store (with the answer it came from and the client's id for it: a repeat
        of an `event_id` is not stored again), then apply it to the customer's live history; EventStoreUnavailable
        (nothing stored) when the store cannot take it."""
        idx = find_article(model, article_id)
        if price is None:
            typical = model.catalogue.prices[idx]
            price = float(typical if not np.isnan(typical) else model.catalogue.median_price)
        day = t_dat or model.today  # the service's date (see as_of_for)
        first, last = event_days(model)
        if not first <= day <= last:
            raise InvalidEventError("t_dat", f"must be a day from {first} (the data's first day) to {last} (the "
                                    f"service's date + 1 day); got {day}")
        purchase = Purchase(customer_id, int(article_id), day, float(price), channel or ONLINE)
        stored = self.events.add_purchase(purchase, request_id, event_id)
        self.sync_events()  # applies this event (and any other worker's) and drops the customer's cached answers
        return stored
