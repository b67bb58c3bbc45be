"""One worker process's services, built once in the app's lifespan: each route reaches the one it needs through
its own dependency (serving/deps.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hmrec.serving.cache import AnswerCache
from hmrec.serving.cards import ArticleCards
from hmrec.serving.catalogue_views import CatalogueViews
from hmrec.serving.events import EventStore
from hmrec.serving.live import LiveHistories
from hmrec.serving.model_holder import Loader, ModelHolder
from hmrec.serving.recommend import RecommendService
from hmrec.serving.settings import Settings


@dataclass(frozen=True)
class Services:
    """`holder` (the model and its reloads), `live` (purchase events), `recommendations` (with the answer cache and
    batcher) and `views` (articles, popular, customers), each owning its own data."""

    holder: ModelHolder
    live: LiveHistories
    recommendations: RecommendService
    views: CatalogueViews

    def close(self) -> None:
        self.holder.close()
        self.recommendations.close()


def build_services(settings: Settings, events: EventStore, loader: Loader) -> Services:
    """The services of one worker on `events` (one store object is both the event log and the worker coordination);
    `loader` loads a champion (or, given an alias, an experiment's variant), which the recommendations warm up
    before the holder swaps it in."""
    cache = AnswerCache(settings.cache_size)
    cards = ArticleCards(settings.images_dir)
    live = LiveHistories(settings, events, applied=cache.invalidate)
    # the holder calls its loader only on a reload, after `recommendations` below exists
    holder = ModelHolder(settings, events, lambda *alias: recommendations.warmed(loader(*alias)),
                         swapped=cache.clear)
    recommendations = RecommendService(settings, holder, live, cards, cache)
    return Services(holder, live, recommendations, CatalogueViews(holder, live, cards))
