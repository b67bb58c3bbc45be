"""Live purchase events: the event store (SQLite and PostgreSQL), its export in the raw transactions format, commit
order under concurrent writers, worker heartbeats, and survival of a SIGKILL."""

from __future__ import annotations

import csv
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
import serving_support as s
from typer.testing import CliRunner

from hmrec.cli import app as cli
from hmrec.raw.schema import TRANSACTION_COLUMNS
from hmrec.serving.events import Purchase, SqliteEventStore, export_csv, open_event_store

CUSTOMER = "00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657"


def test_sqlite_store_is_wal_with_full_sync_and_keeps_order(tmp_path):
    store = SqliteEventStore(tmp_path / "events.sqlite")
    first = store.add(Purchase(CUSTOMER, 108775015, date(2021, 3, 11), 0.0339, 2))
    second = store.add(Purchase("new-1", 663713001, date(2021, 3, 12), 0.5, 1))
    assert (first, second) == (1, 2)
    assert store._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    # a second connection (another process would do the same) sees both, committed
    assert [p.article_id for p in SqliteEventStore(tmp_path / "events.sqlite").all()] == [108775015, 663713001]


def test_a_sqlite_url_and_a_bad_scheme(tmp_path):
    store = open_event_store(f"sqlite:///{tmp_path}/events.sqlite")
    assert isinstance(store, SqliteEventStore) and store.path == tmp_path / "events.sqlite"
    store.close()
    with pytest.raises(ValueError, match=r"mysql://\.\.\. is not supported: use sqlite:///"):
        open_event_store("mysql://localhost/events")


def test_export_writes_the_transactions_train_format(events_target, tmp_path):
    store = open_event_store(events_target)
    store.add(Purchase(CUSTOMER, 108775015, date(2021, 3, 11), 0.0339, 2))
    store.add(Purchase("new-1", 663713001, date(2021, 3, 12), 0.5, 1))
    store.close()
    assert export_csv(events_target, tmp_path / "out.csv") == 2
    assert (tmp_path / "out.csv").read_text() == (
        "t_dat,customer_id,article_id,price,sales_channel_id\n"
        f"2021-03-11,{CUSTOMER},0108775015,0.0339,2\n"
        "2021-03-12,new-1,0663713001,0.5,1\n"
    )


def test_export_of_a_missing_database_writes_only_the_header(tmp_path):
    assert export_csv(tmp_path / "none.sqlite", tmp_path / "out.csv") == 0
    assert (tmp_path / "out.csv").read_text() == ",".join(TRANSACTION_COLUMNS) + "\n"


def test_cli_export_reads_the_workdirs_events(tmp_path):
    store = SqliteEventStore(tmp_path / "work" / "events.sqlite")
    store.add(Purchase(CUSTOMER, 108775015, date(2021, 3, 11), 0.0339, 2))
    store.close()
    result = CliRunner().invoke(cli, ["events", "export", "--workdir", str(tmp_path / "work"),
                                      "--out", str(tmp_path / "events.csv")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 events" in result.output
    rows = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert rows == [{"t_dat": "2021-03-11", "customer_id": CUSTOMER, "article_id": "0108775015", "price": "0.0339",
                     "sales_channel_id": "2"}]


def test_concurrent_adds_from_threads_are_all_stored(events_target):
    store = open_event_store(events_target)

    def add_many(worker: int) -> None:
        for i in range(25):
            store.add(Purchase(f"w{worker}", 100 + i, date(2021, 3, 11), 0.01, 2))

    threads = [threading.Thread(target=add_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 100
    store.close()


def test_a_reader_polling_during_concurrent_writes_misses_no_event(events_target):
    """Four writers, each with its own connections (as four processes would have), and a reader that polls
    `since(last id seen)` the whole time: every event must reach the reader exactly once, in id order."""
    writers = [open_event_store(events_target) for _ in range(4)]
    reader = open_event_store(events_target)
    seen: list[int] = []
    done = threading.Event()

    def write(store, w: int) -> None:
        for i in range(40):
            store.add(Purchase(f"w{w}", 100 + i, date(2021, 3, 11), 0.01, 2))

    def read() -> None:
        while True:
            finished = done.is_set()  # read once more after the writers are done
            seen.extend(i for i, _ in reader.since(seen[-1] if seen else 0))
            if finished:
                return

    threads = [threading.Thread(target=write, args=(store, w)) for w, store in enumerate(writers)]
    polling = threading.Thread(target=read)
    polling.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    polling.join()
    assert len(seen) == 160 and seen == sorted(set(seen))
    for store in (*writers, reader):
        store.close()


def test_postgres_ids_become_visible_in_commit_order(postgres):
    """A writer that drew an id but has not committed holds back every later id: without the advisory lock the
    second add would commit id 2 first, and a reader at that moment would move past id 1 for ever."""
    import psycopg

    from hmrec.serving.events.postgres import EVENTS_LOCK

    url = postgres.create_database("commit_order")
    store = open_event_store(url)
    added: list[int] = []
    with psycopg.connect(url) as slow:  # a transaction, as PostgresEventStore.add runs it, left open
        slow.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))
        slow.execute("INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) "
                     "VALUES ('2021-03-11', 'slow', 1, 0.01, 2)")
        fast = threading.Thread(target=lambda: added.append(store.add(Purchase("fast", 2, date(2021, 3, 11), 0.01,
                                                                                2))))
        fast.start()
        fast.join(timeout=1.0)
        assert fast.is_alive() and store.since(0) == []  # the second writer waits for the first commit
        slow.commit()
    fast.join(timeout=10)
    assert added == [2]
    assert [(i, p.customer_id) for i, p in store.since(0)] == [(1, "slow"), (2, "fast")]
    store.close()


def test_a_worker_is_live_while_its_heartbeat_is_recent(events_target):
    store = open_event_store(events_target)
    store.report_worker("machine-a-1", 3, 7)
    store.report_worker("machine-b-1", 3, 7)
    assert [(b.worker, b.version, b.reload_id) for b in store.live_workers(timeout=30)] == [
        ("machine-a-1", 3, 7), ("machine-b-1", 3, 7)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # only machine-b keeps beating
        store.report_worker("machine-b-1", 4, 8)
        if [b.worker for b in store.live_workers(timeout=0.3)] == ["machine-b-1"]:
            break
        time.sleep(0.05)
    assert [(b.worker, b.version, b.reload_id) for b in store.live_workers(timeout=0.3)] == [("machine-b-1", 4, 8)]
    assert store.prune_workers(silent_for=0.3) == 1
    assert [b.worker for b in store.live_workers(timeout=30)] == ["machine-b-1"]
    store.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return s.handmade_workdir(tmp_path_factory.mktemp("events"))


@pytest.mark.parametrize(("events_target", "workers"), [("sqlite", "1"), ("sqlite", "2"), ("postgresql", "2")],
                         indirect=["events_target"])
def test_acknowledged_events_survive_sigkill_of_the_server(workdir, tmp_path, workers, events_target):
    """Post events from 4 threads, SIGKILL the server (every worker) mid-stream; every 201 must be in the log after
    restart."""
    events_db = events_target
    server = s.Server(workdir, events_db, tmp_path / "server.log", HMREC_WORKERS=workers).start()
    acknowledged: list[tuple[str, int]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=s.post_until_stopped, args=(server.url, f"kill-{w}", acknowledged, stop))
               for w in range(4)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 150:
        stop.wait(0.02)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()

    assert set(acknowledged) <= s.stored_purchases(events_db)
    # and the restarted service applies them: a killed-in-flight new customer is warm
    with s.Server(workdir, events_db, tmp_path / "server2.log", HMREC_WORKERS=workers) as restarted:
        customer, article = acknowledged[-1]
        body = {"customer_id": customer, "k": 1, "include_purchased": True}  # a live purchase is left out otherwise
        answer = httpx.post(f"{restarted.url}/recommendations", json=body).json()
        assert answer["strategy"] == "personalized"
        assert answer["items"][0]["article_id"] == f"{article:010d}"


def test_postgres_store_reconnects_after_losing_its_connections(postgres):
    """A restarted database (here: every session of ours terminated) fails the call that finds the connection gone,
    unacknowledged, and the next call reconnects."""
    import psycopg

    url = postgres.create_database("reconnect")
    store = open_event_store(url)
    store.add(Purchase("before", 1, date(2021, 3, 11), 0.01, 2))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(psycopg.OperationalError):
        store.since(0)
    with pytest.raises(psycopg.OperationalError):
        store.add(Purchase("lost", 2, date(2021, 3, 11), 0.01, 2))
    assert store.add(Purchase("after", 3, date(2021, 3, 11), 0.01, 2)) > 1
    assert [p.customer_id for _, p in store.since(0)] == ["before", "after"]
    store.close()
