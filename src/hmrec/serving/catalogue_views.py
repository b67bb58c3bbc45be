"""Read-only views of the served model: an article, similar articles, popular articles, a customer."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from hmrec.serving.cards import ArticleCards, find_article
from hmrec.serving.cold_start import cold_answer
from hmrec.serving.live import LiveHistories
from hmrec.serving.model import LoadedModel
from hmrec.serving.model_holder import ModelHolder
from hmrec.serving.schemas import shown_score
from hmrec.store.tables import AGE_BUCKET_LABELS, age_bucket

RECENT_PURCHASES = 20
SIMILAR_FETCH = 200  # neighbours fetched before keeping those of the same product type or group


class CatalogueViews:
    """Answers the article, similar, popular and customer endpoints; holds no data of its own."""

    def __init__(self, holder: ModelHolder, live: LiveHistories, cards: ArticleCards):
        self.holder = holder
        self.live = live
        self.cards = cards

    def article_index(self, article_id: int) -> tuple[LoadedModel, int]:
        model = self.holder.model
        return model, find_article(model, article_id)

    def article(self, article_id: int) -> dict:
        model, idx = self.article_index(article_id)
        text = model.catalogue.text
        return {**self.cards.card(model, idx), "product_code": int(model.catalogue.product_codes[idx]),
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
            method, kind = model.recommender.similar_by(), "similarity"  # the source that answered likeness
        else:
            pairs, method, kind = _same_type(model, idx, k), "same_product_type", "recent_sales"
        items = [{**self.cards.card(model, a), "score": shown_score(s), "score_kind": kind} for a, s in pairs]
        return {"article": {**self.cards.card(model, idx)}, "method": method, "items": items}

    def service_day(self, customer_id: str) -> date:
        """The service's clock for the customer (their answers' `as_of`)."""
        model = self.holder.model
        return self.live.history(model, customer_id, model.find_customer(customer_id)).as_of

    def popular(self, age: int | None, k: int) -> dict:
        model = self.holder.model
        bucket = None
        profile = model.profile(None)
        if age is not None:
            bucket = int(pl.select(age_bucket(pl.lit(age, dtype=pl.Int16))).item())
            profile = profile.with_columns(pl.lit(age, dtype=profile.schema["age"]).alias("age"),
                                           pl.lit(bucket, dtype=pl.Int8).alias("age_bucket"))
        items = cold_answer(model, profile, k)
        label = AGE_BUCKET_LABELS[bucket] if bucket is not None and items and \
            items[0]["sources"] == [model.cold_start.name] else None
        return {"age_bucket": label, "model_version": model.version,
                "items": [{**self.cards.card(model, it["article_idx"]), "score": shown_score(it["score"]),
                           "score_kind": it["score_kind"]} for it in items]}

    def customer(self, customer_id: str) -> dict:
        model = self.holder.model
        fresh = self.live.sync_events()
        customer_idx = model.find_customer(customer_id)
        history = self.live.history(model, customer_id, customer_idx).frame()
        profile = model.profile(customer_idx).row(0, named=True)
        recent = history.reverse().head(RECENT_PURCHASES)
        purchases = [
            {**self.cards.card(model, int(a)), "t_dat": t.isoformat(), "price": round(float(p), 6),
             "sales_channel_id": int(c)}
            for t, a, p, c in recent.select("t_dat", "article_idx", "price", "sales_channel_id").iter_rows()
        ]
        return {
            "customer_id": customer_id,
            "known": customer_idx is not None,
            "profile": _public_profile(profile),
            "summary": _summary(model, history, self.live.purchase_count(model, customer_id, customer_idx),
                                self._spent(model, customer_id, customer_idx)),
            "recent_purchases": purchases,
            "degraded": not fresh,
        }


    def _spent(self, model: LoadedModel, customer_id: str, customer_idx: int | None) -> float | None:
        """What the customer paid in all, the model's data and live purchases (None: a bundle without totals)."""
        spent = model.spent_total(customer_idx) if customer_idx is not None else 0.0
        if spent is None:
            return None
        return spent + sum(p.price for p in self.live.live_events(customer_id)
                           if model.catalogue.find(p.article_id) is not None)


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


def _summary(model: LoadedModel, history: pl.DataFrame, purchase_count: int, spent: float | None) -> dict:
    """Counts every purchase and averages every price paid (`spent` over the count; the served, latest, ones for a
    bundle without totals); the last day and favourite group are of the served ones."""
    if history.height == 0:
        return {"purchase_count": purchase_count, "last_purchase": None, "average_price": None,
                "favourite_index_group": None}
    groups = [model.catalogue.text["index_group_name"][i] for i in history["article_idx"].to_list()]
    named = [g for g in groups if g]
    favourite = max(sorted(set(named)), key=named.count) if named else None
    return {
        "purchase_count": max(purchase_count, history.height),
        "last_purchase": history["t_dat"].max().isoformat(),
        "average_price": round(spent / purchase_count if spent is not None and purchase_count else
                               float(history["price"].mean()), 6),
        "favourite_index_group": favourite,
    }


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
