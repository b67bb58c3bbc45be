"""One worker process's services, built once in the app's lifespan: each route reaches the one it needs through
its own dependency (serving/deps.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hmrec.serving.cache import AnswerCache
from hmrec.serving.cards import ArticleCards
from hmrec.serving.catalogue_views import CatalogueViews
from hmrec.serving.events import EventStore
from hmrec.serving.impressions import ImpressionWriter
from hmrec.serving.live import LiveHistories
from hmrec.serving.metrics import ServiceMetrics
from hmrec.serving.model_holder import Loader, ModelHolder
from hmrec.serving.recommend import RecommendService
from hmrec.serving.settings import Settings


@dataclass(frozen=True)
class Services:
    """`holder` (the model and its reloads), `live` (purchase events), `recommendations` (with the answer cache and
    batcher), `views` (articles, popular, customers) and `impressions` (what answers showed), each owning its own
    data."""

    holder: ModelHolder
    live: LiveHistories
    recommendations: RecommendService
    views: CatalogueViews
    impressions: ImpressionWriter

    def close(self) -> None:
        self.impressions.close(timeout=0.5)  # half the shutdown's second: the last impressions, then the rest
        self.holder.close()
        self.recommendations.close()


def build_services(settings: Settings, events: EventStore, loader: Loader,
                   metrics: ServiceMetrics | None = None) -> Services:
    """The services of one worker on `events` (one store object is the event log, the worker coordination and the
    impressions' table); `loader` loads a champion (or, given an alias, an experiment's variant), which the
    recommendations warm up before the holder swaps it in; `metrics` (default: a registry of their own) counts the
    impressions written and dropped."""
    cache = AnswerCache(settings.cache_size)
    cards = ArticleCards(settings.images_dir)
    live = LiveHistories(settings, events, applied=cache.invalidate)
    # the holder calls its loader only on a reload, after `recommendations` below exists
    holder = ModelHolder(settings, events, lambda *alias: recommendations.warmed(loader(*alias)),
                         swapped=cache.clear)
    recommendations = RecommendService(settings, holder, live, cards, cache)
    impressions = ImpressionWriter(events, metrics or ServiceMetrics(), settings.impressions_queue,
                                   settings.impressions_flush_seconds, settings.impressions_retention_days)
    return Services(holder, live, recommendations, CatalogueViews(holder, live, cards), impressions)
