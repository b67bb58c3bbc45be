"""The service's one entry point for the routes: composes the model holder, live histories, recommendations and
catalogue views, each owning its own data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from hmrec.serving.cache import AnswerCache
from hmrec.serving.cards import ArticleCards, NotFoundError
from hmrec.serving.catalogue_views import CatalogueViews
from hmrec.serving.events import EventStore, Purchase
from hmrec.serving.live import InvalidEventError, LiveHistories
from hmrec.serving.model import LoadedModel
from hmrec.serving.model_holder import Loader, ModelHolder, NotReadyError, ReloadError, champion_loader
from hmrec.serving.recommend import RecommendService
from hmrec.serving.settings import Settings

__all__ = ["Engine", "InvalidEventError", "Loader", "NotFoundError", "NotReadyError", "ReloadError",
           "champion_loader"]


class Engine:
    """One worker process's service: `holder` (the model and its reloads), `live` (purchase events), `service`
    (recommendations, with the answer cache and batcher) and `views` (articles, popular, customers)."""

    def __init__(self, settings: Settings, events: EventStore, loader: Loader):
        self.settings = settings
        cache = AnswerCache(settings.cache_size)
        cards = ArticleCards(settings.images_dir)
        self.live = LiveHistories(settings, events, applied=cache.invalidate)
        # the loader warms each model up through the service before the swap; it runs only after __init__
        self.holder = ModelHolder(settings, events, lambda: self.service.warmed(loader()), swapped=cache.clear)
        self.service = RecommendService(settings, self.holder, self.live, cards, cache)
        self.views = CatalogueViews(self.holder, self.live, cards)
        # what the routes, the app and the benchmarks call, each answered by the one class that owns its data
        self.reload, self.wait_for_workers = self.holder.reload, self.holder.wait_for_workers
        self.follow_reloads = self.holder.follow_reloads
        self.recommend_async, self.answer_many = self.service.recommend_async, self.service.answer_many
        self.buy_again = self.service.buy_again
        self.article, self.similar, self.popular = self.views.article, self.views.similar, self.views.popular
        self.customer = self.views.customer

    @property
    def model(self) -> LoadedModel:
        return self.holder.model

    @property
    def serving(self) -> LoadedModel | None:
        return self.holder.serving

    @property
    def polls(self) -> int:
        return self.holder.polls

    @property
    def on_swap(self) -> Callable[[int | None], None] | None:
        return self.holder.on_swap

    @on_swap.setter
    def on_swap(self, listener: Callable[[int | None], None] | None) -> None:
        self.holder.on_swap = listener

    def record_purchase(self, customer_id: str, article_id: int, price: float | None, channel: int | None,
                        t_dat: date | None) -> Purchase:
        return self.live.record_purchase(self.model, customer_id, article_id, price, channel, t_dat)

    def close(self) -> None:
        self.holder.close()
        self.service.close()
