"""How the service answers: the current model, live histories, the answer cache, and every lookup an endpoint makes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from starlette.concurrency import run_in_threadpool

from hmrec.recommenders.base import PAD_ITEM, Query, Recs
from hmrec.recommenders.popularity import fill_with
from hmrec.registry.model_bundle import BundleError, LoadedModel, load_bundle
from hmrec.serving.batching import Batcher
from hmrec.serving.cache import AnswerCache
from hmrec.serving.events import EventStore, Purchase
from hmrec.serving.reasons import explain, word
from hmrec.serving.settings import Settings
from hmrec.store.tables import AGE_BUCKET_LABELS, age_bucket

log = logging.getLogger(__name__)

ONLINE = 2  # sales_channel_id of a purchase made through the service
MAX_PRICE = 1e6  # the API's upper bound on an event's price (schemas.PurchaseEvent)
RECENT_PURCHASES = 20
CARD_CACHE = 20_000  # article cards kept per model: the articles answers show most
SIMILAR_FETCH = 200  # neighbours fetched before keeping those of the same product type or group


class NotReadyError(RuntimeError):
    """No model is loaded; the message says why."""


class NotFoundError(LookupError):
    """An id the current model does not know; the message names it."""


class ReloadError(RuntimeError):
    """A champion could not be loaded; the message says why. The model already serving is kept."""


class InvalidEventError(ValueError):
    """A live event the service refuses (e.g. dated outside the days it can serve); `field` names the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


Loader = Callable[[], LoadedModel]
# What a bundle's own code (torch, LightGBM, FAISS, polars) raises when its files do not fit the code reading them,
# e.g. a bundle written by an older release: each must leave the serving model in place, never crash the service.
LOAD_ERRORS = (BundleError, OSError, ValueError, KeyError, IndexError, RuntimeError, ImportError, AttributeError,
               TypeError, pl.exceptions.PolarsError)


def champion_loader(settings: Settings) -> Loader:
    """Load the registry's champion for `settings.workdir`, checksums verified by the registry."""

    def load() -> LoadedModel:
        from mlflow.exceptions import MlflowException

        from hmrec.registry.versions import Registry, RegistryError, missing_registry

        missing = missing_registry(settings.workdir)
        if missing:
            raise ReloadError(f"cannot load the champion: {missing}")
        try:
            registry = Registry.for_workdir(settings.workdir)
            version, path = registry.load_version("champion")  # one alias look-up: a promote can't split them
            return load_bundle(Path(path), version)
        except (RegistryError, MlflowException, *LOAD_ERRORS) as error:
            raise ReloadError(f"cannot load the champion from {settings.workdir}: "
                              f"{type(error).__name__}: {error}") from error

    return load


class Engine:
    """Holds the served model (swapped by one reference assignment) and the live purchase events.

    Several engines, one per uvicorn worker process, may share one event store: each request first reads the
    events other workers committed (`sync_events`), and a thread follows the reload log, so an event or a
    reload made through any worker reaches them all."""

    def __init__(self, settings: Settings, events: EventStore, loader: Loader):
        self.settings = settings
        self.events = events
        self._loader = loader
        self._model: LoadedModel | None = None
        self.load_error: str | None = "the model has not been loaded yet"
        self.on_swap: Callable[[int | None], None] | None = None  # told the new version after every swap
        self._live: dict[str, list[Purchase]] = defaultdict(list)
        self._live_lock = threading.Lock()
        self._event_seen = 0  # id of the last event applied to _live
        self._reload_lock = threading.Lock()
        self._reload_seen = events.last_reload()  # a worker starting now loads the current champion anyway
        # its row in the store's workers table: unique across machines, readable in a log
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._beat = (None, self._reload_seen)  # (version, reload acted on) that the heartbeat repeats
        self._beat_lock = threading.Lock()
        events.prune_workers(silent_for=60 * settings.worker_timeout_seconds)  # rows of killed workers, long gone
        self.cache = AnswerCache(settings.cache_size)
        self._batcher = Batcher(self.answer_many, settings.batch_max) if settings.batch_max > 1 else None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.polls = 0  # reload-log polls the follower has finished (tests wait on it instead of sleeping)
        self.sync_events()

    @property
    def model(self) -> LoadedModel:
        model = self._model
        if model is None:
            raise NotReadyError(self.load_error or "no model is loaded")
        return model

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._batcher is not None:
            self._batcher.close()
        self.events.forget_workers([self.worker])

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def serving(self) -> LoadedModel | None:
        """The model now serving, or None before the first load (`model` raises instead)."""
        return self._model

    # ---- model versions --------------------------------------------------------------------------------------

    def reload(self, announce: bool = True, upto: int | None = None) -> tuple[int | None, int | None]:
        """Load the champion beside the serving model, then swap; returns (old version, new version).

        announce: record the reload in the event store, so the other worker processes follow.
        upto: the reload-log id a follower is catching up to (nothing to do if already seen)."""
        if not self._reload_lock.acquire(blocking=False):
            raise ReloadError("a reload is already in progress")
        try:
            old = self._model
            if upto is not None and upto <= self._reload_seen:
                serving = old.version if old else None
                return serving, serving
            try:
                new = self._loader()
                self._warm_up(new)
            except ReloadError as error:
                if old is None:
                    self.load_error = str(error)
                raise
            self._model = new  # the swap: requests that already hold `old` finish with it
            self.load_error = None
            self.cache.clear()
            if announce:
                self._reload_seen = max(self._reload_seen, self.events.announce_reload(new.version))
            if self.on_swap is not None:
                self.on_swap(new.version)
            log.info("serving version %s (was %s)", new.version, old.version if old else None)
            return (old.version if old else None), new.version
        finally:
            if upto is not None:  # a failed follow is not retried: the old model keeps serving, the log says why
                self._reload_seen = max(self._reload_seen, upto)
            self._report()
            self._reload_lock.release()

    def _report(self) -> None:
        model = self._model
        with self._beat_lock:  # a heartbeat never writes an older state over this one
            self._beat = (model.version if model else None, self._reload_seen)
            self.events.report_worker(self.worker, *self._beat)

    def _heartbeat(self) -> None:
        with self._beat_lock:
            self.events.report_worker(self.worker, *self._beat)

    def wait_for_workers(self, timeout: float) -> tuple[int, int]:
        """After this worker's reload: wait until every live worker has acted on it (loaded the champion, or
        failed and kept its model); (workers serving this worker's version, live workers)."""
        deadline = time.monotonic() + timeout
        while True:
            beats = self.events.live_workers(self.settings.worker_timeout_seconds)
            live = [(beat.version, beat.reload_id) for beat in beats]
            if all(seen >= self._reload_seen for _, seen in live) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        version = self._model.version if self._model else None
        return sum(1 for v, seen in live if v == version and seen >= self._reload_seen), len(live)

    def follow_reloads(self, interval: float) -> None:
        """Poll the reload log every `interval` seconds in a thread, loading the champion when another worker did;
        and write this worker's heartbeat in another, so a long load never makes it look dead."""
        self._start("hmrec-heartbeat", self.settings.heartbeat_seconds, self._heartbeat)
        self._start("hmrec-reload-follower", interval, self._follow)

    def _follow(self) -> None:
        try:
            latest = self.events.last_reload()
            if latest > self._reload_seen:
                try:
                    self.reload(announce=False, upto=latest)
                except ReloadError as error:
                    log.error("did not follow a reload made by another worker: %s", error)
        finally:
            self.polls += 1

    def _start(self, name: str, interval: float, step: Callable[[], None]) -> None:
        """Run `step` every `interval` seconds in a daemon thread until close; a failure is logged and retried."""

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the thread must outlive any one failure (a lost connection)
                    log.exception("%s failed; retrying in %.1f s", name, interval)

        self._threads.append(threading.Thread(target=run, name=name, daemon=True))
        self._threads[-1].start()

    def _warm_up(self, model: LoadedModel) -> None:
        """Answer one sample customer before the swap: the first call pays one-off set-up (thread pools, lazy
        imports), and a model that cannot answer at all must not replace one that can."""
        customer_id = model.samples.get("frequent") or next(iter(model.samples.values()), None)
        if customer_id is None:
            return
        try:
            self.answer_many(model, [(customer_id, 12)])
        except LOAD_ERRORS as error:
            raise ReloadError(f"version {model.version} loaded but cannot answer: {type(error).__name__}: {error}") \
                from error

    # ---- recommendations -------------------------------------------------------------------------------------

    async def recommend_async(self, customer_id: str, k: int, include_purchased: bool = False) -> dict:
        """One customer's answer: a cache hit never leaves the event loop, a miss joins the batcher's next model
        call (or runs in the thread pool when batching is off). Articles the customer bought through live events in
        the last `settings.purchased_days` days are left out unless `include_purchased` (never cached)."""
        started = time.perf_counter()
        if include_purchased:
            self.sync_events()
            model = self.model
            answers = await run_in_threadpool(self.answer_many, model, [(customer_id, k)], True)
            return {**answers[0], "cached": False, "took_ms": _ms(started)}
        model, generation, cached = self._lookup(customer_id, k, started)
        if cached is not None:
            return cached
        if self._batcher is None:
            answers = await run_in_threadpool(self.answer_many, model, [(customer_id, k)])
            return self._keep(model, customer_id, k, answers[0], generation, started)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict] = loop.create_future()

        def deliver(answer: object, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(_settle, future, answer, error)
            except RuntimeError:  # the loop closed while the batch ran (shutdown): nobody is waiting
                pass

        self._batcher.submit(model, customer_id, k, deliver)
        return self._keep(model, customer_id, k, await future, generation, started)

    def _lookup(self, customer_id: str, k: int, started: float) -> tuple[LoadedModel, int, dict | None]:
        """(model, cache generation, cached answer or None), after applying events other workers stored."""
        self.sync_events()
        model = self.model
        cached = self.cache.get(customer_id, k)
        if cached is not None and cached["model_version"] == model.version:
            return model, 0, {**cached, "cached": True, "took_ms": _ms(started)}
        return model, self.cache.generation(customer_id), None

    def _keep(self, model: LoadedModel, customer_id: str, k: int, answer: dict, generation: int,
              started: float) -> dict:
        if self._model is model:
            self.cache.put(customer_id, k, answer, generation)
        return {**answer, "cached": False, "took_ms": _ms(started)}

    def answer_many(self, model: LoadedModel, asks: list[tuple[str, int]],
                    include_purchased: bool = False) -> list[dict]:
        """Answers for (customer_id, k) pairs: customers with purchases share one model call per service day."""
        found = [model.find_customer(customer_id) for customer_id, _ in asks]
        histories = [self._history(model, customer_id, idx) for (customer_id, _), idx in zip(asks, found, strict=True)]
        hidden = [set() if include_purchased else self.recently_bought(model, customer_id, history.as_of)
                  for (customer_id, _), history in zip(asks, histories, strict=True)]
        ranked: dict[int, list[dict]] = {}
        by_day: dict[date, list[int]] = defaultdict(list)
        for i, history in enumerate(histories):
            if len(history):
                by_day[history.as_of].append(i)
        for as_of, members in by_day.items():
            query = _query(model, [found[i] for i in members], [histories[i] for i in members], as_of)
            answers = model.recommender.explain(query, max(asks[i][1] + len(hidden[i]) for i in members))
            for row, items in enumerate(answers):
                ranked[members[row]] = [{"article_idx": a, "score": s, "sources": sources} for a, s, sources in items]
        return [self._response(model, customer_id, k, found[i], histories[i], ranked.get(i), hidden[i])
                for i, (customer_id, k) in enumerate(asks)]

    def recently_bought(self, model: LoadedModel, customer_id: str, as_of: date) -> set[int]:
        """article_idx of the customer's live purchases (made after the model's data) in the last
        `settings.purchased_days` days before `as_of`: the shop does not offer them straight back."""
        since = as_of - timedelta(days=self.settings.purchased_days)
        found = (model.catalogue.find(p.article_id) for p in self.live_events(customer_id) if p.t_dat >= since)
        return {idx for idx in found if idx is not None}

    def _response(self, model: LoadedModel, customer_id: str, k: int, customer_idx: int | None,
                  history: _History, ranked: list[dict] | None, hidden: set[int]) -> dict:
        if ranked is None:
            strategy = "cold_start"
            items = _without(self._cold(model, _profile_row(model, customer_idx), k + len(hidden)), hidden)[:k]
        else:
            strategy = "personalized"
            cold = self._cold(model, _profile_row(model, customer_idx), k + len(hidden))
            items = _fill(_without(ranked, hidden), _without(cold, hidden), k)
            reasons = {**model.cold_start.reasons(), **model.recommender.reasons()}
            for item in items:
                item["reason"] = explain(item["article_idx"], item["sources"], reasons, history.article_idx,
                                         model.catalogue, model.recommender.bought_with)
        return {
            "customer_id": customer_id,
            "known_customer": customer_idx is not None,
            "strategy": strategy,
            "model_version": model.version,
            "as_of": history.as_of.isoformat(),
            "items": [{**self.article_card(model, it["article_idx"]), **_ranked(it)} for it in items],
        }

    def _cold(self, model: LoadedModel, profile: pl.DataFrame, k: int) -> list[dict]:
        """The bundle's cold-start recommender (the one the report evaluates under its name) for one profile."""
        query = Query(profile, _history_frame([]), model.data_end + timedelta(days=1))
        reasons = model.cold_start.reasons()
        (answer,) = model.cold_start.explain(query, k)
        return [{"article_idx": a, "score": s, "sources": sources, "reason": word(reasons[sources[0]])}
                for a, s, sources in answer]

    def _history(self, model: LoadedModel, customer_id: str, customer_idx: int | None) -> _History:
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
        as_of = as_of_for(model.data_end, int(days[-1]) if len(days) else None)
        return _History(days[keep], items[keep], prices[keep], channels[keep], as_of)

    def sync_events(self) -> None:
        """Apply events committed since the last call, by any worker process, and drop their customers' answers."""
        new = self.events.since(self._event_seen)
        if not new:
            return
        with self._live_lock:
            for event_id, purchase in new:
                if event_id > self._event_seen:  # another thread may have applied it meanwhile
                    self._live[purchase.customer_id].append(purchase)
                    self._event_seen = event_id
                    self.cache.invalidate(purchase.customer_id)

    # ---- customers, articles, popularity ---------------------------------------------------------------------

    def live_events(self, customer_id: str) -> list[Purchase]:
        with self._live_lock:
            return list(self._live.get(customer_id, ()))

    def customer(self, customer_id: str) -> dict:
        model = self.model
        self.sync_events()
        customer_idx = model.find_customer(customer_id)
        history = self._history(model, customer_id, customer_idx).frame()
        profile = _profile_row(model, customer_idx).row(0, named=True)
        recent = history.reverse().head(RECENT_PURCHASES)
        purchases = [
            {**self.article_card(model, int(a)), "t_dat": t.isoformat(), "price": round(float(p), 6),
             "sales_channel_id": int(c)}
            for t, a, p, c in recent.select("t_dat", "article_idx", "price", "sales_channel_id").iter_rows()
        ]
        return {
            "customer_id": customer_id,
            "known": customer_idx is not None,
            "profile": _public_profile(profile),
            "summary": _summary(model, history, self._purchase_count(model, customer_id, customer_idx)),
            "recent_purchases": purchases,
        }

    def _purchase_count(self, model: LoadedModel, customer_id: str, customer_idx: int | None) -> int:
        """All the customer's purchases: the bundle's total (its history keeps only the latest) plus live ones."""
        live = sum(1 for p in self.live_events(customer_id) if model.catalogue.find(p.article_id) is not None)
        return (model.purchase_total(customer_idx) if customer_idx is not None else 0) + live

    def buy_again(self, customer_id: str, k: int) -> dict:
        """Repurchase picks: the articles the customer bought most often (then most recently), leaving out what
        they bought live in the last `settings.purchased_days` days, as the recommendations do."""
        model = self.model
        self.sync_events()
        history = self._history(model, customer_id, model.find_customer(customer_id))
        hidden = self.recently_bought(model, customer_id, history.as_of)
        counts: dict[int, list[int]] = {}
        for day, idx in zip(history.t_dat.tolist(), history.article_idx.tolist(), strict=True):
            seen = counts.setdefault(idx, [0, day])
            seen[0], seen[1] = seen[0] + 1, max(seen[1], day)
        order = sorted((a for a in counts if a not in hidden), key=lambda a: (-counts[a][0], -counts[a][1], a))[:k]
        items = [{**self.article_card(model, a), "score": float(counts[a][0])} for a in order]
        return {"customer_id": customer_id, "model_version": model.version, "items": items}

    def article_index(self, article_id: int) -> tuple[LoadedModel, int]:
        model = self.model
        idx = model.catalogue.find(article_id)
        if idx is None:
            raise NotFoundError(f"article {article_id:010d} is not in the catalogue of model version {model.version}")
        return model, idx

    def article(self, article_id: int) -> dict:
        model, idx = self.article_index(article_id)
        text = model.catalogue.text
        return {**self.article_card(model, idx), "product_code": int(model.catalogue.product_codes[idx]),
                "perceived_colour": text["perceived_colour_master_name"][idx],
                "department": text["department_name"][idx], "description": text["detail_desc"][idx]}

    def similar(self, article_id: int, k: int, any_type: bool = False) -> dict:
        """Nearest articles by the model's vectors: of the same product type first, then of the same product
        group, and no others unless `any_type` (a sandal's neighbours are footwear, not sunglasses)."""
        model, idx = self.article_index(article_id)
        similar = model.recommender.similar(idx, k + 1 if any_type else min(len(model.catalogue),
                                                                           max(SIMILAR_FETCH, 10 * (k + 1))))
        if similar is not None:
            found, scores = similar
            pairs = [(int(a), float(s)) for a, s in zip(np.ravel(found), np.ravel(scores), strict=True)
                     if int(a) != idx and int(a) >= 0]
            pairs = (pairs if any_type else _same_kind_first(model, idx, pairs))[:k]
            method = "two_tower"  # the one source that declares article likeness
        else:
            pairs, method = _same_type(model, idx, k), "same_product_type"
        items = [{**self.article_card(model, a), "score": s} for a, s in pairs]
        return {"article": {**self.article_card(model, idx)}, "method": method, "items": items}

    def popular(self, age: int | None, k: int) -> dict:
        model = self.model
        bucket = None
        profile = _profile_row(model, None)
        if age is not None:
            bucket = int(pl.select(age_bucket(pl.lit(age, dtype=pl.Int16))).item())
            profile = profile.with_columns(pl.lit(age, dtype=profile.schema["age"]).alias("age"),
                                           pl.lit(bucket, dtype=pl.Int8).alias("age_bucket"))
        items = self._cold(model, profile, k)
        label = AGE_BUCKET_LABELS[bucket] if bucket is not None and items and \
            items[0]["sources"] == ["age_popularity"] else None
        return {"age_bucket": label, "model_version": model.version,
                "items": [{**self.article_card(model, it["article_idx"]), "score": it["score"]} for it in items]}

    def article_card(self, model: LoadedModel, idx: int) -> dict:
        """What every answer shows of an article; kept on the model, so callers copy it into their own dicts."""
        card = model.cards.get(idx)
        if card is None:
            card = self._card(model, idx)
            if len(model.cards) < CARD_CACHE:
                model.cards[idx] = card
        return card

    def _card(self, model: LoadedModel, idx: int) -> dict:
        c = model.catalogue
        article_id = f"{int(c.article_ids[idx]):010d}"
        price = c.prices[idx]
        return {
            "article_id": article_id,
            "name": c.text["prod_name"][idx],
            "product_type": c.text["product_type_name"][idx],
            "product_group": c.text["product_group_name"][idx],
            "colour": c.text["colour_group_name"][idx],
            "index_group": c.text["index_group_name"][idx],
            "price": None if np.isnan(price) else round(float(price), 6),
            "image_url": self.image_url(article_id),
        }

    def image_url(self, article_id: str) -> str:
        images = self.settings.images_dir
        if images is not None and (images / article_id[:3] / f"{article_id}.jpg").is_file():
            return f"/images/{article_id[:3]}/{article_id}.jpg"
        return f"/articles/{article_id}/image.svg"

    # ---- events ----------------------------------------------------------------------------------------------

    def record_purchase(self, customer_id: str, article_id: int, price: float | None, channel: int | None,
                        t_dat: date | None) -> Purchase:
        """Commit the event to the event store, then apply it to the customer's live history."""
        model, idx = self.article_index(article_id)
        if price is None:
            typical = model.catalogue.prices[idx]
            price = float(typical if not np.isnan(typical) else model.catalogue.median_price)
        day = t_dat or model.data_end + timedelta(days=1)  # the service's date (see as_of_for)
        first, last = event_days(model)
        if not first <= day <= last:
            raise InvalidEventError("t_dat", f"must be a day from {first} (the data's first day) to {last} (the "
                                    f"service's date + 1 day); got {day}")
        purchase = Purchase(customer_id, int(article_id), day, float(price), channel or ONLINE)
        self.events.add(purchase)
        self.sync_events()  # applies this event (and any other worker's) and drops the customer's cached answers
        return purchase


_EPOCH = date(1970, 1, 1)
_NO_HISTORY = pl.DataFrame(schema={"row": pl.UInt32, "t_dat": pl.Date, "article_idx": pl.Int32, "price": pl.Float32,
                                   "sales_channel_id": pl.Int8})


@dataclass
class _History:
    """One customer's purchases as the model sees them (oldest first) and the service day they are asked on."""

    t_dat: np.ndarray  # days since 1970-01-01, int32
    article_idx: np.ndarray  # int32
    price: np.ndarray  # float32
    channel: np.ndarray  # int8
    as_of: date

    def __len__(self) -> int:
        return len(self.t_dat)

    def frame(self) -> pl.DataFrame:
        return _history_frame([self])


def _history_frame(histories: list[_History]) -> pl.DataFrame:
    """The Query.history frame of one or more customers, `row` numbering them in order."""
    if not histories:
        return _NO_HISTORY
    return pl.DataFrame({
        "row": np.repeat(np.arange(len(histories), dtype=np.uint32), [len(h) for h in histories]),
        "t_dat": np.concatenate([h.t_dat for h in histories]),
        "article_idx": np.concatenate([h.article_idx for h in histories]),
        "price": np.concatenate([h.price for h in histories]),
        "sales_channel_id": np.concatenate([h.channel for h in histories]),
    }).with_columns(pl.col("t_dat").cast(pl.Date))


def _query(model: LoadedModel, found: list[int | None], histories: list[_History], as_of: date) -> Query:
    """One Query for several customers: profile rows gathered in one call, histories concatenated."""
    if None in found:  # new customers who bought live: blank profiles, rare enough for the slow path
        profiles = pl.concat([_profile_row(model, idx) for idx in found], how="vertical_relaxed")
    else:
        profiles = model.customers[np.asarray(found, dtype=np.int64)]
    return Query(profiles, _history_frame(histories), as_of)


def _settle(future: asyncio.Future, answer: object, error: BaseException | None) -> None:
    if future.cancelled():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(answer)


def as_of_for(data_end: date, last_day: int | None) -> date:
    """The service's clock: the day after the later of the data's end and the customer's latest purchase.

    The data may end long ago (the public sample ends in 2020), so the wall clock would put every customer
    months after their last purchase; events without a day are dated data_end + 1 for the same reason.
    """
    latest = data_end if last_day is None else max(data_end, _EPOCH + timedelta(days=int(last_day)))
    return latest + timedelta(days=1)


def event_days(model: LoadedModel) -> tuple[date, date]:
    """The days a live event may have: from the data's first day to the service's date (data end + 1) + 1 day."""
    return model.data_start or model.data_end, model.data_end + timedelta(days=2)


def _usable(purchase: Purchase) -> bool:
    """A stored event the model can take: a finite price in the API's range and a known channel."""
    return 0 <= purchase.price <= MAX_PRICE and purchase.sales_channel_id in (1, 2)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _profile_row(model: LoadedModel, customer_idx: int | None) -> pl.DataFrame:
    return model.profile(customer_idx)


def _public_profile(profile: dict) -> dict:
    bucket = profile.get("age_bucket")
    return {
        "age": profile.get("age"),
        "age_bucket": AGE_BUCKET_LABELS[bucket] if bucket is not None and bucket >= 0 else None,
        "club_member_status": profile.get("club_member_status"),
        "fashion_news_frequency": profile.get("fashion_news_frequency"),
        "FN": profile.get("FN"),
        "Active": profile.get("Active"),
    }


def _summary(model: LoadedModel, history: pl.DataFrame, purchase_count: int) -> dict:
    """Counts every purchase; the last day, average price and favourite group are of the served (latest) ones."""
    if history.height == 0:
        return {"purchase_count": purchase_count, "last_purchase": None, "average_price": None,
                "favourite_index_group": None}
    groups = [model.catalogue.text["index_group_name"][i] for i in history["article_idx"].to_list()]
    named = [g for g in groups if g]
    favourite = max(sorted(set(named)), key=named.count) if named else None
    return {
        "purchase_count": max(purchase_count, history.height),
        "last_purchase": history["t_dat"].max().isoformat(),
        "average_price": round(float(history["price"].mean()), 6),
        "favourite_index_group": favourite,
    }


def _fill(ranked: list[dict], fallback: list[dict], k: int) -> list[dict]:
    """The model's ranked answer, topped up by `fill_with` (the recommenders' one fill) from the cold-start answer
    when it proposes fewer than k articles; a filled article has no model score."""
    merged = fill_with(_as_recs(ranked, k), _as_recs(fallback, k), k)
    known = {it["article_idx"]: it for it in ranked}
    extra = {it["article_idx"]: {**it, "score": float("nan")} for it in fallback}
    return [known.get(a) or extra[a] for a in merged.items[0].tolist() if a != PAD_ITEM]


def _as_recs(items: list[dict], k: int) -> Recs:
    """One answer list as a one-row Recs of width k."""
    out = Recs(np.full((1, k), PAD_ITEM, dtype=np.int32), np.full((1, k), np.nan, dtype=np.float32))
    head = items[:k]
    out.items[0, :len(head)] = [it["article_idx"] for it in head]
    out.scores[0, :len(head)] = [it["score"] for it in head]
    return out


def _without(items: list[dict], hidden: set[int]) -> list[dict]:
    return [it for it in items if it["article_idx"] not in hidden] if hidden else items


def _ranked(item: dict) -> dict:
    score = item["score"]
    return {"score": None if score != score else round(score, 6), "sources": item["sources"],
            "reason": item["reason"]}


def _same_kind_first(model: LoadedModel, idx: int, pairs: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The neighbours of the same product type, in the model's order, then those of the same product group."""
    c = model.catalogue
    kind = c.product_types[idx]
    group = c.text["product_group_name"][idx]
    typed = {a for a, _ in pairs if kind >= 0 and c.product_types[a] == kind}
    same_group = [p for p in pairs if p[0] not in typed and group and c.text["product_group_name"][p[0]] == group]
    return [p for p in pairs if p[0] in typed] + same_group


def _same_type(model: LoadedModel, idx: int, k: int) -> list[tuple[int, float]]:
    c = model.catalogue
    same = np.flatnonzero(c.product_types == c.product_types[idx]) if c.product_types[idx] >= 0 else \
        np.flatnonzero(c.product_codes == c.product_codes[idx])
    same = same[same != idx]
    counts = model.catalogue.sales[same]
    order = np.lexsort((same, -counts))[:k]
    return [(int(same[i]), float(counts[i])) for i in order]
