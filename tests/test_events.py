"""Live purchase events: the SQLite log, its export in the raw transactions format, and survival of a SIGKILL."""

from __future__ import annotations

import csv
import sqlite3
import threading
from datetime import date
from pathlib import Path

import httpx
import pytest
import serving_support as s
from typer.testing import CliRunner

from hmrec.cli import app as cli
from hmrec.raw.schema import TRANSACTION_COLUMNS
from hmrec.serving.events import EventStore, Purchase, export_csv

CUSTOMER = "00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657"


def test_store_is_wal_with_full_sync_and_keeps_order(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    first = store.add(Purchase(CUSTOMER, 108775015, date(2021, 3, 11), 0.0339, 2))
    second = store.add(Purchase("new-1", 663713001, date(2021, 3, 12), 0.5, 1))
    assert (first, second) == (1, 2)
    assert store._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    # a second connection (another process would do the same) sees both, committed
    assert [p.article_id for p in EventStore(tmp_path / "events.sqlite").all()] == [108775015, 663713001]


def test_export_writes_the_transactions_train_format(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    store.add(Purchase(CUSTOMER, 108775015, date(2021, 3, 11), 0.0339, 2))
    store.add(Purchase("new-1", 663713001, date(2021, 3, 12), 0.5, 1))
    store.close()
    assert export_csv(tmp_path / "events.sqlite", tmp_path / "out.csv") == 2
    assert (tmp_path / "out.csv").read_text() == (
        "t_dat,customer_id,article_id,price,sales_channel_id\n"
        f"2021-03-11,{CUSTOMER},0108775015,0.0339,2\n"
        "2021-03-12,new-1,0663713001,0.5,1\n"
    )


def test_export_of_a_missing_database_writes_only_the_header(tmp_path):
    assert export_csv(tmp_path / "none.sqlite", tmp_path / "out.csv") == 0
    assert (tmp_path / "out.csv").read_text() == ",".join(TRANSACTION_COLUMNS) + "\n"


def test_cli_export_reads_the_workdirs_events(tmp_path):
    store = EventStore(tmp_path / "work" / "events.sqlite")
    store.add(Purchase(CUSTOMER, 108775015, date(2021, 3, 11), 0.0339, 2))
    store.close()
    result = CliRunner().invoke(cli, ["events", "export", "--workdir", str(tmp_path / "work"),
                                      "--out", str(tmp_path / "events.csv")])
    assert result.exit_code == 0, result.output
    assert "wrote 1 events" in result.output
    rows = list(csv.DictReader((tmp_path / "events.csv").open()))
    assert rows == [{"t_dat": "2021-03-11", "customer_id": CUSTOMER, "article_id": "0108775015", "price": "0.0339",
                     "sales_channel_id": "2"}]


def test_concurrent_adds_from_threads_are_all_stored(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")

    def add_many(worker: int) -> None:
        for i in range(25):
            store.add(Purchase(f"w{worker}", 100 + i, date(2021, 3, 11), 0.01, 2))

    threads = [threading.Thread(target=add_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 100


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return s.handmade_workdir(tmp_path_factory.mktemp("events"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_acknowledged_events_survive_sigkill_of_the_server(workdir, tmp_path, workers):
    """Post events from 4 threads, SIGKILL the server (every worker) mid-stream; every 201 must be in the log after
    restart."""
    events_db = tmp_path / "events.sqlite"
    server = s.Server(workdir, events_db, tmp_path / "server.log", HMREC_WORKERS=workers).start()
    acknowledged: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def post(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            n = 0
            while not stop.is_set():
                customer = f"kill-{worker}-{n}"
                try:
                    response = client.post("/events/purchases", json={"customer_id": customer,
                                                                       "article_id": s.ARTICLE_IDS[n % 10]})
                except httpx.TransportError:
                    return  # the server is gone: this event was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.append((customer, s.ARTICLE_IDS[n % 10]))
                n += 1

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 150:
        stop.wait(0.02)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()

    stored = {(r[0], r[1]) for r in sqlite3.connect(events_db).execute("SELECT customer_id, article_id FROM purchases")}
    assert set(acknowledged) <= stored
    # and the restarted service applies them: a killed-in-flight new customer is warm
    with s.Server(workdir, events_db, tmp_path / "server2.log", HMREC_WORKERS=workers) as restarted:
        customer, article = acknowledged[-1]
        body = {"customer_id": customer, "k": 1, "include_purchased": True}  # a live purchase is left out otherwise
        answer = httpx.post(f"{restarted.url}/recommendations", json=body).json()
        assert answer["strategy"] == "personalized"
        assert answer["items"][0]["article_id"] == f"{article:010d}"
