"""Retention: only events dated before the data end of every version an alias serves, and received over the window
ago, are deleted; in SQLite and PostgreSQL, by the library, `hmrec events compact` and `hmrec serve` at start-up."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
import serving_support as s
from typer.testing import CliRunner

from hmrec.cli import app as cli
from hmrec.registry.versions import Registry
from hmrec.serving.events import Purchase, open_event_store, sqlite_path
from hmrec.serving.events.retention import NothingServedError, compact_events

CHAMPION_END = s.DATA_END + timedelta(days=5)  # 2021-03-15: the champion, trained later
CHALLENGER_END = s.DATA_END  # 2021-03-10: an experiment's alias on the earlier version: the boundary
# (customer, day, received over the window ago?) -> kept?
PLANTED = {
    ("old-before", date(2021, 3, 9), True): False,  # the only one every served version trained past, and old
    ("old-on-the-boundary", CHALLENGER_END, True): True,  # on the challenger's last day: not "before" it
    ("old-after-challenger", date(2021, 3, 12), True): True,  # before the champion's end only: the challenger
    # was trained without it
    ("old-after-both", date(2021, 3, 16), True): True,
    ("recent-before", date(2021, 3, 1), False): True,  # trained past, but received inside the window
}
RETENTION_DAYS = 30


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Version 1 (data end 03-10) under the alias `challenger`, version 2 (data end 03-15) the champion."""
    root = tmp_path_factory.mktemp("retention")
    workdir = root / "work"
    s.register(workdir, s.write_handmade_bundle(root / "v1"), promote=False)
    s.register(workdir, s.write_handmade_bundle(root / "v2", data_end=CHAMPION_END))
    registry = Registry.for_workdir(workdir)
    registry.client.set_registered_model_alias(registry.name, "challenger", "1")
    return workdir


def plant(target: str) -> None:
    """The PLANTED events, those received over the window ago back-dated on the store's own clock."""
    store = open_event_store(target)
    for customer, day, _ in PLANTED:
        store.add(Purchase(customer, s.ARTICLE_IDS[0], day, 0.01, 2))
    store.close()
    old = [customer for customer, _, received_long_ago in PLANTED if received_long_ago]
    if sqlite_path(target) is not None:
        with sqlite3.connect(target) as connection:
            connection.executemany("UPDATE purchases SET received_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', "
                                   f"'-{RETENTION_DAYS + 1} days') WHERE customer_id = ?", [(c,) for c in old])
        connection.close()
        return
    import psycopg

    with psycopg.connect(target, autocommit=True) as connection:
        connection.execute("UPDATE purchases SET received_at = now() - make_interval(days => %s) "
                           "WHERE customer_id = ANY(%s)", (RETENTION_DAYS + 1, old))


def kept() -> set[str]:
    return {customer for (customer, _, _), stays in PLANTED.items() if stays}


def test_only_events_every_served_version_trained_past_and_out_of_the_window_go(workdir, events_target):
    plant(events_target)
    store = open_event_store(events_target)
    try:
        result = compact_events(store, Registry.for_workdir(workdir), RETENTION_DAYS)
        assert result.served == {"challenger": (1, CHALLENGER_END), "champion": (2, CHAMPION_END)}
        assert (result.before, result.deleted) == (CHALLENGER_END, 1)
        assert {p.customer_id for p in store.all()} == kept()
        ids = [i for i, _ in store.since(0)]
        store.add(Purchase("after", s.ARTICLE_IDS[1], CHAMPION_END, 0.01, 2))
        assert store.since(ids[-1])[0][0] > max(ids)  # ids go on rising: a worker's `since` misses nothing
        assert compact_events(store, Registry.for_workdir(workdir), RETENTION_DAYS).deleted == 0
    finally:
        store.close()


def test_the_command_compacts_and_says_what_and_why(workdir, tmp_path, monkeypatch):
    events = tmp_path / "events.sqlite"
    plant(str(events))
    monkeypatch.setenv("HMREC_EVENTS_PATH", str(events))
    result = CliRunner().invoke(cli, ["events", "compact", "--workdir", str(workdir), "--retention-days",
                                      str(RETENTION_DAYS)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"deleted 1 live event dated before {CHALLENGER_END} and received over {RETENTION_DAYS} days ago; data ends "
        f"of the served versions: challenger = version 1 ({CHALLENGER_END}), champion = version 2 ({CHAMPION_END})")
    assert s.stored_purchases(str(events)) == {(c, s.ARTICLE_IDS[0]) for c in kept()}
    refused = CliRunner().invoke(cli, ["events", "compact", "--workdir", str(workdir)])
    assert refused.exit_code == 1
    assert refused.output.strip() == ("error: how long to keep events? pass --retention-days N or set "
                                      "HMREC_EVENTS_RETENTION_DAYS")


def test_nothing_is_deleted_when_no_alias_serves_a_version(tmp_path):
    workdir = tmp_path / "work"
    s.register(workdir, s.write_handmade_bundle(tmp_path / "v1"), promote=False)
    events = str(tmp_path / "events.sqlite")
    plant(events)
    store = open_event_store(events)
    try:
        with pytest.raises(NothingServedError, match="no alias of hmrec-recommender points at a version"):
            compact_events(store, Registry.for_workdir(workdir), 0)
        assert store.count() == len(PLANTED)
    finally:
        store.close()


def test_serve_compacts_at_start_up_when_a_retention_is_set(workdir, tmp_path, capsys):
    from hmrec.commands.serve import _compact_at_start
    from hmrec.serving.settings import Settings

    events = tmp_path / "events.sqlite"
    plant(str(events))
    _compact_at_start(Settings(workdir=workdir, events_path=events, events_retention_days=RETENTION_DAYS))
    assert capsys.readouterr().err.startswith(f"deleted 1 live event dated before {CHALLENGER_END}")
    assert {c for c, _ in s.stored_purchases(str(events))} == kept()
