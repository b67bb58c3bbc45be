"""The recommendation service: cached and batched answers, cold start, recently bought left out, buy again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import date

import numpy as np
import polars as pl
from starlette.concurrency import run_in_threadpool

from hmrec.data import PAD_ITEM, Query, Recs
from hmrec.recommenders.popularity import fill_with
from hmrec.serving.batching import Batcher
from hmrec.serving.cache import AnswerCache
from hmrec.serving.cards import ArticleCards
from hmrec.serving.cold_start import cold_answer
from hmrec.serving.live import History, LiveHistories, history_frame
from hmrec.serving.model import LoadedModel
from hmrec.serving.model_holder import LOAD_ERRORS, ModelHolder, ReloadError
from hmrec.serving.precomputed import ONLINE, PRECOMPUTED
from hmrec.serving.reasons import explain
from hmrec.serving.schemas import shown_score
from hmrec.serving.settings import Settings


class RecommendService:
    """Answers customers from the served model and their live histories; owns the answer cache and the batcher."""

    def __init__(self, settings: Settings, holder: ModelHolder, live: LiveHistories, cards: ArticleCards,
                 cache: AnswerCache):
        self.settings = settings
        self.holder = holder
        self.live = live
        self.cards = cards
        self.cache = cache
        self.batcher = Batcher(self.answer_many, settings.batch_max) if settings.batch_max > 1 else None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def warmed(self, model: LoadedModel) -> LoadedModel:
        """Answer one sample customer before the swap: the first call pays one-off set-up (thread pools, lazy
        imports), and a model that cannot answer at all must not replace one that can."""
        customer_id = model.samples.get("frequent") or next(iter(model.samples.values()), None)
        if customer_id is None:
            return model
        try:
            self.answer_many(model, [(customer_id, 12)])
        except LOAD_ERRORS as error:
            raise ReloadError(f"version {model.version} loaded but cannot answer: {type(error).__name__}: {error}") \
                from error
        return model

    async def recommend_async(self, customer_id: str, k: int, include_purchased: bool = False) -> dict:
        """One customer's answer: a cache hit never leaves the event loop, a miss joins the batcher's next model
        call (or runs in the thread pool when batching is off). Articles the customer bought through live events in
        the last `settings.purchased_days` days are left out unless `include_purchased` (never cached). When the
        event store cannot be read the answer is `degraded` (from the events this worker holds) and never cached."""
        started = time.perf_counter()
        fresh = self.live.sync_events()  # events other workers stored
        model = self.holder.model_for(customer_id)  # the customer's variant's (the champion without an experiment)
        if include_purchased or not fresh:
            answers = await run_in_threadpool(self.answer_many, model, [(customer_id, k)], include_purchased)
            return {**answers[0], "cached": False, "degraded": not fresh, "took_ms": _ms(started)}
        cached = self.cache.get(customer_id, k)
        if cached is not None and cached["model_version"] == model.version:
            return {**cached, "cached": True, "took_ms": _ms(started)}
        generation = self.cache.generation(customer_id)
        precomputed = self.precomputed(model, customer_id, k)
        if precomputed is not None:
            return self._keep(model, customer_id, k, precomputed, generation, started)
        if self.batcher is None:
            answers = await run_in_threadpool(self.answer_many, model, [(customer_id, k)])
            return self._keep(model, customer_id, k, answers[0], generation, started)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict] = loop.create_future()

        def deliver(answer: object, error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(_settle, future, answer, error)
            except RuntimeError:  # the loop closed while the batch ran (shutdown): nobody is waiting
                pass

        self.batcher.submit(model, customer_id, k, deliver)
        return self._keep(model, customer_id, k, await future, generation, started)

    def _keep(self, model: LoadedModel, customer_id: str, k: int, answer: dict, generation: int,
              started: float) -> dict:
        if self.holder.is_serving(model):
            self.cache.put(customer_id, k, answer, generation)
        return {**answer, "cached": False, "took_ms": _ms(started)}

    def precomputed(self, model: LoadedModel, customer_id: str, k: int) -> dict | None:
        """The customer's answer from the version's precomputed table, built as `answer_many` builds the online
        one; None where the batch cannot answer: no table, an unknown customer or one it does not hold, live events
        (they change the history and the clock), a k beyond what it stored, or a history the service would cut."""
        customer_idx = model.find_customer(customer_id)
        if model.answers is None or customer_idx is None or self.live.live_events(customer_id):
            return None
        history = self.live.history(model, customer_id, customer_idx)
        rows = model.histories.rows(customer_idx)
        if rows.stop - rows.start > self.settings.history_limit:  # the batch saw the bundle's whole history
            return None
        hidden = self.live.recently_bought(model, customer_id, history.as_of)  # the just-bought exclusion
        # as many as the online path asks `explain` for: k, and one more for each article left out
        ranked = model.answers.ranked(customer_idx, k, history.as_of, limit=k + len(hidden))
        if ranked is None:
            return None
        return self._response(model, customer_id, k, customer_idx, history, ranked, hidden, model.reasons,
                              PRECOMPUTED)

    def answer_many(self, model: LoadedModel, asks: list[tuple[str, int]],
                    include_purchased: bool = False) -> list[dict]:
        """Answers for (customer_id, k) pairs: customers with purchases share one model call per service day."""
        found = [model.find_customer(customer_id) for customer_id, _ in asks]
        histories = [self.live.history(model, customer_id, idx)
                     for (customer_id, _), idx in zip(asks, found, strict=True)]
        hidden = [set() if include_purchased else self.live.recently_bought(model, customer_id, history.as_of)
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
                ranked[members[row]] = [{"article_idx": a, "score": s, "score_kind": "model", "sources": sources}
                                        for a, s, sources in items]
        return [self._response(model, customer_id, k, found[i], histories[i], ranked.get(i), hidden[i], model.reasons)
                for i, (customer_id, k) in enumerate(asks)]

    def _response(self, model: LoadedModel, customer_id: str, k: int, customer_idx: int | None,
                  history: History, ranked: list[dict] | None, hidden: set[int], reasons: dict,
                  path: str = ONLINE) -> dict:
        def cold() -> list[dict]:
            return _without(cold_answer(model, model.profile(customer_idx), k + len(hidden)), hidden)

        if ranked is None:
            strategy = "cold_start"
            items = cold()[:k]
        else:
            strategy = "personalized"
            visible = _without(ranked, hidden)  # the cold-start answer is asked only when it must fill the list
            items = visible[:k] if len(visible) >= k else _fill(visible, cold(), k)
            bought = history.article_idx.tolist()  # `in` a list of a few dozen ints: no numpy call per article
            for item in items:
                item["reason"] = explain(item["article_idx"], item["sources"], reasons, bought, model.catalogue,
                                         model.recommender.bought_with)
        return {
            "customer_id": customer_id,
            "known_customer": customer_idx is not None,
            "strategy": strategy,
            "path": path,
            "model_version": model.version,
            "variant": model.variant,
            "as_of": history.as_of.isoformat(),
            "items": [_shown(self.cards.card(model, it["article_idx"]), it) for it in items],
        }

    def buy_again(self, customer_id: str, k: int) -> dict:
        """Repurchase picks: the articles the customer bought most often (then most recently), leaving out what
        they bought live in the last `settings.purchased_days` days, as the recommendations do."""
        model = self.holder.model_for(customer_id)
        fresh = self.live.sync_events()
        history = self.live.history(model, customer_id, model.find_customer(customer_id))
        hidden = self.live.recently_bought(model, customer_id, history.as_of)
        counts: dict[int, list[int]] = {}
        for day, idx in zip(history.t_dat.tolist(), history.article_idx.tolist(), strict=True):
            seen = counts.setdefault(idx, [0, day])
            seen[0], seen[1] = seen[0] + 1, max(seen[1], day)
        # the served history keeps the latest purchases only: an article bought more than once counts every
        # purchase of the whole data (the bundle's repeats) plus the live ones
        live = Counter(self.live.live_article_indices(model, customer_id))
        for idx, times, last in model.repeat_purchases(model.find_customer(customer_id)):
            seen = counts.setdefault(idx, [0, (last - date(1970, 1, 1)).days])
            seen[0], seen[1] = max(seen[0], times + live[idx]), max(seen[1], (last - date(1970, 1, 1)).days)
        order = sorted((a for a in counts if a not in hidden), key=lambda a: (-counts[a][0], -counts[a][1], a))[:k]
        items = [{**self.cards.card(model, a), "score": float(counts[a][0]), "score_kind": "times_bought"}
                 for a in order]
        return {"customer_id": customer_id, "model_version": model.version, "variant": model.variant,
                "as_of": history.as_of.isoformat(), "items": items, "degraded": not fresh}


def _query(model: LoadedModel, found: list[int | None], histories: list[History], as_of: date) -> Query:
    """One Query for several customers: profile rows gathered in one call, histories concatenated."""
    if len(found) == 1:  # most model calls: a slice of one row, not a gather (a tenth of the time)
        profiles = model.profile(found[0])
    elif None in found:  # new customers who bought live: blank profiles, rare enough for the slow path
        profiles = pl.concat([model.profile(idx) for idx in found], how="vertical_relaxed")
    else:
        profiles = model.customers[np.asarray(found, dtype=np.int64)]
    return Query(profiles, history_frame(histories), as_of)


def _settle(future: asyncio.Future, answer: object, error: BaseException | None) -> None:
    if future.cancelled():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(answer)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _fill(ranked: list[dict], fallback: list[dict], k: int) -> list[dict]:
    """The model's ranked answer, topped up by `fill_with` (the recommenders' one fill) from the cold-start answer
    when it proposes fewer than k articles; a filled article has no model score."""
    merged = fill_with(_as_recs(ranked, k), _as_recs(fallback, k), k)
    known = {it["article_idx"]: it for it in ranked}
    extra = {it["article_idx"]: {**it, "score": float("nan")} for it in fallback}
    return [known.get(a) or extra[a] for a in merged.items[0].tolist() if a != PAD_ITEM]


def _as_recs(items: list[dict], k: int) -> Recs:
    """One answer list as a one-row Recs of width k."""
    out = Recs.empty(1, k)
    head = items[:k]
    out.items[0, :len(head)] = [it["article_idx"] for it in head]
    out.scores[0, :len(head)] = [it["score"] for it in head]
    return out


def _without(items: list[dict], hidden: set[int]) -> list[dict]:
    return [it for it in items if it["article_idx"] not in hidden] if hidden else items


def _shown(card: dict, item: dict) -> dict:
    """An answer's item: the article's card, then its rounded score, what the score is, its sources and reason (one
    dict built, not a second one merged in)."""
    score = shown_score(item["score"])
    return {**card, "score": score, "score_kind": None if score is None else item["score_kind"],
            "sources": item["sources"], "reason": item["reason"]}
