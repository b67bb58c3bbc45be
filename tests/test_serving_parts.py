"""The services of a worker (serving/services.py), each used on its own with the real bundle and event store."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import serving_support as s

from hmrec.serving.cache import AnswerCache
from hmrec.serving.events import Purchase, SqliteEventStore
from hmrec.serving.live import LiveHistories, as_of_for
from hmrec.serving.model_holder import ModelHolder, NotReadyError, ReloadError, champion_loader
from hmrec.serving.settings import Settings


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return s.handmade_workdir(tmp_path_factory.mktemp("parts"))


@pytest.fixture
def settings(workdir, tmp_path) -> Settings:
    return Settings(workdir=workdir, events_path=tmp_path / "events.sqlite")


def test_the_clock_is_the_later_of_the_services_date_and_the_day_after_the_last_purchase():
    today = date(2021, 3, 11)  # the day after the data's end, or HMREC_TODAY
    assert as_of_for(today, None) == date(2021, 3, 11)
    assert as_of_for(today, (date(2021, 3, 1) - date(1970, 1, 1)).days) == date(2021, 3, 11)  # an older purchase
    assert as_of_for(today, (date(2021, 3, 12) - date(1970, 1, 1)).days) == date(2021, 3, 13)


def test_a_failed_reload_keeps_the_serving_model_and_the_cache(settings, tmp_path):
    store = SqliteEventStore(tmp_path / "events.sqlite")
    cache, champion = AnswerCache(10), champion_loader(settings)

    def broken():
        raise ReloadError("the bundle is broken")

    loads = [champion, broken]
    holder = ModelHolder(settings, store, lambda: loads.pop(0)(), swapped=lambda: cache.clear())
    with pytest.raises(NotReadyError, match="^the model has not been loaded yet$"):
        _ = holder.model
    assert holder.reload() == (None, 1)
    model = holder.model
    cache.put("x", 1, {"model_version": 1}, cache.generation("x"))
    with pytest.raises(ReloadError, match="^the bundle is broken$"):
        holder.reload()
    assert holder.is_serving(model) and cache.get("x", 1) == {"model_version": 1}
    assert [(b.version, b.reload_id) for b in store.live_workers(60)] == [(1, store.last_reload())]
    holder.close()
    assert store.live_workers(60) == []


def test_two_workers_live_histories_share_one_store(settings, tmp_path):
    store = SqliteEventStore(tmp_path / "events.sqlite")
    model = champion_loader(settings)()
    told_a, told_b = [], []
    a, b = LiveHistories(settings, store, told_a.append), LiveHistories(settings, store, told_b.append)
    bought = a.record_purchase(model, "newbie", s.ARTICLE_IDS[4], None, None, None).purchase
    assert bought == Purchase("newbie", s.ARTICLE_IDS[4], s.DATA_END + timedelta(days=1), bought.price, 2)
    assert (told_a, told_b, b.live_events("newbie")) == (["newbie"], [], [])
    b.sync_events()
    assert (told_b, b.live_events("newbie")) == (["newbie"], [bought])
    history = b.history(model, "newbie", None)
    assert (history.article_idx.tolist(), history.as_of) == ([4], s.DATA_END + timedelta(days=2))
    assert b.recently_bought(model, "newbie", history.as_of) == {4}
    assert b.purchase_count(model, "newbie", None) == 1
