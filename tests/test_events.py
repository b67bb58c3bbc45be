"""Live purchase events: the event store (SQLite and PostgreSQL), its export in the raw transactions format, commit
order under concurrent writers, worker heartbeats, and survival of a SIGKILL."""

from __future__ import annotations

import csv
import logging
import os
import random
import signal
import sqlite3
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
    assert store._writer.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    assert store._writer.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
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

    from hmrec.serving.events import EventStoreUnavailable

    url = postgres.create_database("reconnect")
    store = open_event_store(url)
    store.add(Purchase("before", 1, date(2021, 3, 11), 0.01, 2))
    assert len(store.since(0)) == 1  # both connections open
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(EventStoreUnavailable):
        store.since(0)
    with pytest.raises(EventStoreUnavailable):
        store.add(Purchase("lost", 2, date(2021, 3, 11), 0.01, 2))
    assert store.add(Purchase("after", 3, date(2021, 3, 11), 0.01, 2)) > 1
    assert [p.customer_id for _, p in store.since(0)] == ["before", "after"]
    store.close()


# ---- a failing event store: reads degrade, writes answer 503, the store comes back by itself ---------------------

def _checkpointed(path: Path) -> None:
    """Move the write-ahead log into the file, as SQLite does by itself from time to time: what is then damaged in
    the file is damaged for every reader."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def _calls(url: str, tries: int = 1) -> list[httpx.Response]:
    """A recommendation, a customer page, a purchase and /ready, each on its own connection (any worker)."""
    answers = []
    for _ in range(tries):
        answers += [httpx.post(f"{url}/recommendations", json={"customer_id": s.FREQUENT, "k": 3}, timeout=60),
                    httpx.get(f"{url}/customers/{s.FREQUENT}", timeout=60),
                    httpx.post(f"{url}/events/purchases", json={"customer_id": "during", "article_id":
                                                               s.ARTICLE_IDS[1]}, timeout=60, headers=s.EVENTS_AUTH),
                    httpx.get(f"{url}/ready", timeout=60)]
    return answers


def _assert_degraded(answers: list[httpx.Response]) -> None:
    """Every answer of _calls while the store fails: reads 200 and marked, writes 503 with Retry-After, /ready 200."""
    recommendation, customer, purchase, ready = answers
    for read in (recommendation, customer):
        assert read.status_code == 200, read.text
        assert read.json()["degraded"] is True and read.headers["X-Hmrec-Degraded"] == "events"
    assert recommendation.json()["strategy"] == "personalized" and recommendation.json()["cached"] is False
    assert purchase.status_code == 503 and int(purchase.headers["Retry-After"]) >= 1
    assert purchase.json() == {"detail": "the event store cannot take the event now; nothing was stored: retry "
                                         f"after {purchase.headers['Retry-After']} s"}
    assert ready.status_code == 200 and ready.json()["events"] == "degraded"


def _wait_for(condition, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_truncated_events_file_degrades_reads_refuses_writes_and_is_counted(workdir, tmp_path):
    from fastapi.testclient import TestClient

    from hmrec.serving.app import create_app
    from hmrec.serving.settings import Settings

    path = tmp_path / "events.sqlite"
    settings = Settings(workdir=workdir, events_path=path, events_retry_seconds=0.2, events_token=s.EVENTS_TOKEN)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        assert client.post("/events/purchases", json={"customer_id": "before", "article_id": s.ARTICLE_IDS[2]}
                           ).status_code == 201
        fresh = client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}).json()
        assert fresh["degraded"] is False
        _checkpointed(path)
        path.write_bytes(b"")  # truncate -s 0
        answers = [client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}),
                   client.get(f"/customers/{s.FREQUENT}"),
                   client.post("/events/purchases", json={"customer_id": "during", "article_id": s.ARTICLE_IDS[1]}),
                   client.get("/ready")]
        _assert_degraded(answers)
        # the same ranking as before (the cache was not used, nor will this answer be kept in it)
        assert [it["article_id"] for it in answers[0].json()["items"]] == [it["article_id"] for it in fresh["items"]]
        assert client.get("/customers/before").json()["summary"]["purchase_count"] == 1  # the event it held
        metrics = client.get("/metrics").text
        assert 'hmrec_degraded_answers_total{route="/recommendations"} 1.0' in metrics
        assert "hmrec_event_store_refusals_total 1.0" in metrics
        assert client.get("/popular").status_code == 200 and client.get("/health").status_code == 200


def test_a_damaged_events_file_is_salvaged_at_start_up(tmp_path, caplog):
    from hmrec.serving.events.repair import repair_if_damaged

    path = tmp_path / "events.sqlite"
    store = SqliteEventStore(path)
    for i in range(2000):
        store.add(Purchase(f"c{i}", 108775015, date(2021, 3, 11), 0.01, 2))
    store.close()
    _checkpointed(path)
    size = path.stat().st_size
    with path.open("r+b") as handle:  # random bytes over the last pages: the rows there are lost, the rest readable
        handle.seek(size - 3 * 4096)
        handle.write(random.Random(7).randbytes(3 * 4096))
    assert repair_if_damaged(tmp_path / "other.sqlite") is None  # no file: nothing to repair

    with caplog.at_level(logging.ERROR):
        kept = repair_if_damaged(path)
    assert kept is not None and kept.exists() and kept.read_bytes()[-4096:] == random.Random(7).randbytes(
        3 * 4096)[-4096:]
    store = SqliteEventStore(path)
    salvaged = store.since(0)
    assert 1000 < len(salvaged) < 2000
    assert [i for i, _ in salvaged] == sorted(i for i, _ in salvaged) and salvaged[0] == (
        1, Purchase("c0", 108775015, date(2021, 3, 11), 0.01, 2))
    assert store.add(Purchase("next", 108775015, date(2021, 3, 11), 0.01, 2)) > 2000  # above every id given out
    store.close()
    [line] = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert str(path) in line and str(kept) in line and f"salvaged {len(salvaged)} readable events" in line
    assert repair_if_damaged(path) is None


def test_random_bytes_over_the_events_file_while_two_workers_serve(workdir, tmp_path):
    """The file is overwritten while `hmrec serve --workers 2` runs: every worker degrades (never a 500); restarted,
    the service salvages the file before any worker opens it, keeps the damaged one and takes events again."""
    path = tmp_path / "events.sqlite"
    env = {"HMREC_WORKERS": "2", "HMREC_EVENTS_RETRY_SECONDS": "0.5"}
    with s.Server(workdir, path, tmp_path / "server.log", **env) as server:
        assert {r.status_code for r in _calls(server.url)} == {200, 201}
        _checkpointed(path)
        path.write_bytes(random.Random(3).randbytes(path.stat().st_size))
        answers = _calls(server.url, tries=10)
        assert {r.status_code for r in answers} <= {200, 503}, [r.text for r in answers if r.status_code >= 500]
        for start in range(0, len(answers), 4):
            _assert_degraded(answers[start:start + 4])
        assert len(server.ready_processes()) == 2  # both workers answer, degraded
    with s.Server(workdir, path, tmp_path / "server2.log", **env) as restarted:
        assert {r.status_code for r in _calls(restarted.url)} == {200, 201}
        assert httpx.get(f"{restarted.url}/ready").json()["events"] == "ok"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("events.sqlite.corrupt-") and "-wal" not in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == random.Random(3).randbytes(kept[0].stat().st_size)
    assert f"kept it as {kept[0]}" in (tmp_path / "server2.log").read_text()


def _process_tree(root: int) -> list[int]:
    """`root` and every process below it, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree = [root]
    for pid in tree:
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def _thaw(pids: list[int]) -> None:
    """SIGCONT each process, again until none has stayed stopped for a second: `runuser` (the root of the tree when
    the tests run as root) stops itself when it sees its child stop, possibly after its first SIGCONT."""
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    calm_since = time.monotonic()
    while time.monotonic() - calm_since < 1:
        stopped = [pid for pid in pids if _state(pid) in ("T", "t")]
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        if stopped:
            calm_since = time.monotonic()
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of this test's own, to stop and freeze without disturbing the session's."""
    from hmrec.support.local_postgres import TemporaryPostgres

    with TemporaryPostgres() as server:
        yield server


def test_postgres_stopped_or_frozen_degrades_and_recovers_by_itself(workdir, tmp_path, private_postgres):
    """SIGSTOP (the server frozen: its kernel still accepts connections, nothing answers) and then a stopped server:
    the service degrades and answers within the store's timeouts, and takes events again once the server is back."""
    url = private_postgres.create_database("outage")
    env = {"HMREC_EVENTS_TIMEOUT_SECONDS": "1", "HMREC_EVENTS_RETRY_SECONDS": "1"}
    with s.Server(workdir, url, tmp_path / "server.log", **env) as server:
        assert {r.status_code for r in _calls(server.url)} == {200, 201}
        frozen = _process_tree(private_postgres.process.pid)  # each backend is its own process group
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            _assert_degraded(_calls(server.url))
            assert httpx.get(f"{server.url}/popular", timeout=60).status_code == 200
        finally:
            _thaw(frozen)
        _wait_for(lambda: _calls(server.url)[2].status_code == 201, "events taken again after SIGCONT")

        private_postgres.halt()
        _assert_degraded(_calls(server.url))
        private_postgres.start()
        _wait_for(lambda: _calls(server.url)[2].status_code == 201, "events taken again after a restart")
        _wait_for(lambda: httpx.get(f"{server.url}/ready").json()["events"] == "ok", "reads again after a restart")
    assert ("during", s.ARTICLE_IDS[1]) in s.stored_purchases(url)
