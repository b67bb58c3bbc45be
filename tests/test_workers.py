"""Several worker processes: events and reloads made through one worker reach all of them, metrics add up over
workers, and the supervisor replaces a worker that dies."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import serving_support as s
from fastapi.testclient import TestClient

from hmrec.registry.versions import Registry
from hmrec.serving.app import create_app
from hmrec.serving.model_holder import champion_loader
from hmrec.serving.settings import Settings

AUTH = {"Authorization": f"Bearer {s.ADMIN_TOKEN}"}
NEW_CUSTOMER = "brand-new-customer"


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> tuple[Path, int, int]:
    return s.two_versions(tmp_path_factory.mktemp("workers"))


class CountingLoader:
    """The registry's champion loader, counting its loads."""

    def __init__(self, settings: Settings):
        self.load, self.calls = champion_loader(settings), 0

    def __call__(self):
        self.calls += 1
        return self.load()


def app_for(workdir: Path, events: str, **settings: float) -> tuple[TestClient, CountingLoader]:
    """A worker in this process on the event store `events` (a SQLite path or a postgresql:// URL)."""
    settings = Settings(workdir=workdir, events_url=events, admin_token=s.ADMIN_TOKEN, reload_poll_seconds=0.1,
                        events_token=s.EVENTS_TOKEN, **settings)
    loader = CountingLoader(settings)
    return TestClient(create_app(settings, loader), headers=s.EVENTS_AUTH), loader


def wait_for_polls(client: TestClient, polls: int, timeout: float = 30) -> None:
    """Until the worker's reload follower has polled the reload log `polls` more times."""
    holder = client.app.state.holder
    target, deadline = holder.polls + polls, time.monotonic() + timeout
    while holder.polls < target:
        assert time.monotonic() < deadline, f"the reload follower polled {holder.polls} times, not {target}"
        time.sleep(0.01)


def recommend(client, customer_id: str) -> dict:
    response = client.post("/recommendations", json={"customer_id": customer_id, "k": 3})
    assert response.status_code == 200, response.text
    return response.json()


def test_an_event_stored_by_one_worker_changes_the_next_answer_of_another(versions, events_target):
    workdir, _, _ = versions
    events = events_target
    (first, _), (second, _) = app_for(workdir, events), app_for(workdir, events)
    with first, second:
        before = recommend(second, NEW_CUSTOMER)
        assert (before["strategy"], recommend(second, NEW_CUSTOMER)["cached"]) == ("cold_start", True)
        bought = f"{s.ARTICLE_IDS[4]:010d}"
        assert first.post("/events/purchases", json={"customer_id": NEW_CUSTOMER, "article_id": bought}).status_code \
            == 201
        after = recommend(second, NEW_CUSTOMER)  # the cached cold answer must not survive the other worker's event
        assert (after["strategy"], after["cached"]) == ("personalized", False)
        # version 1 is repurchase: the one article bought is its answer, which the shop leaves out unless asked
        assert bought not in [it["article_id"] for it in after["items"]]
        asked = second.post("/recommendations", json={"customer_id": NEW_CUSTOMER, "include_purchased": True}).json()
        assert asked["items"][0]["article_id"] == bought
        assert asked["items"][0]["reason"] == "you bought this before"
        history = second.get(f"/customers/{NEW_CUSTOMER}").json()["recent_purchases"]
        assert [p["article_id"] for p in history] == [bought]


def test_a_reload_through_one_worker_is_followed_by_the_others(versions, events_target):
    workdir, v1, v2 = versions
    registry = Registry.for_workdir(workdir)
    events = events_target
    try:
        (first, first_loads), (second, second_loads) = app_for(workdir, events), app_for(workdir, events)
        with first, second:
            assert recommend(second, s.FREQUENT)["model_version"] == v1
            registry.promote(v2)
            # the answer comes once the other worker has followed
            assert first.post("/admin/reload", headers=AUTH).json() == {
                "previous_version": v1, "model_version": v2, "workers_serving": 2, "workers": 2}
            assert second.get("/ready").json()["model_version"] == v2
            answer = recommend(second, s.FREQUENT)
            assert (answer["model_version"], answer["cached"]) == (v2, False)
            assert "hmrec_model_version 2.0" in second.get("/metrics").text
            wait_for_polls(first, 3)  # the worker that reloaded does not reload again on its own news
            assert (first_loads.calls, second_loads.calls) == (2, 2)
    finally:
        registry.promote(v1)


def test_a_worker_started_after_a_reload_does_not_replay_it(versions, events_target):
    workdir, v1, _ = versions
    events = events_target
    (first, _), (late, late_loads) = app_for(workdir, events), app_for(workdir, events)
    with first:
        assert first.post("/admin/reload", headers=AUTH).status_code == 200
        with late:
            wait_for_polls(late, 3)
            assert late.get("/ready").json()["model_version"] == v1
            assert late_loads.calls == 1  # its start, not a replay of the reload before it


def test_a_reload_waits_for_a_silent_worker_no_longer_than_the_heartbeat_timeout(versions, events_target):
    """A worker on another machine that was killed leaves a row whose heartbeat stops: a reload waits for it only
    until the heartbeat is older than the timeout, then answers for the workers still live."""
    from hmrec.serving.events import open_event_store

    workdir, v1, _ = versions
    store = open_event_store(events_target)
    store.report_worker("other-machine-4242-dead", v1, 0)  # its last beat, before the reload it never follows
    first, _ = app_for(workdir, events_target, heartbeat_seconds=0.2, worker_timeout_seconds=1.5)
    with first:
        assert [b.worker for b in store.live_workers(timeout=30)][0] == "other-machine-4242-dead"
        started = time.monotonic()
        assert first.post("/admin/reload", headers=AUTH).json() == {
            "previous_version": v1, "model_version": v1, "workers_serving": 1, "workers": 1}
        assert time.monotonic() - started < 10  # not reload_wait_seconds (120)
    store.close()


def _answers_by_worker(url: str, customer_id: str, workers: int, tries: int = 60) -> dict[str, dict]:
    """One answer from each worker: a new connection per try, the worker named by /ready on that connection."""
    answers: dict[str, dict] = {}
    for _ in range(tries):
        with httpx.Client(base_url=url, timeout=10) as client:
            process = client.get("/ready").json()["worker"]
            answers[process] = recommend(client, customer_id)
        if len(answers) == workers:
            break
    return answers


def test_two_worker_processes_share_events_reloads_and_metrics(versions, tmp_path):
    workdir, v1, v2 = versions
    registry = Registry.for_workdir(workdir)
    server = s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log", HMREC_WORKERS="2",
                      HMREC_RELOAD_POLL_SECONDS="0.1")
    try:
        with server:
            assert len(server.ready_processes()) == 2
            with httpx.Client(base_url=server.url, timeout=10, headers=s.EVENTS_AUTH) as client:
                assert client.post("/events/purchases", json={"customer_id": NEW_CUSTOMER,
                                                              "article_id": s.ARTICLE_IDS[4]}).status_code == 201
            answers = _answers_by_worker(server.url, NEW_CUSTOMER, 2)
            assert len(answers) == 2, "every try landed on the same worker"
            assert {a["strategy"] for a in answers.values()} == {"personalized"}

            registry.promote(v2)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                assert client.post("/admin/reload", headers=AUTH).json()["workers_serving"] == 2
            answers = _answers_by_worker(server.url, s.FREQUENT, 2)
            assert {a["model_version"] for a in answers.values()} == {v2} and len(answers) == 2

            before = _recommendations_counted(server.url)
            for _ in range(10):  # new connections, so both workers answer some
                with httpx.Client(base_url=server.url, timeout=10) as client:
                    recommend(client, s.OCCASIONAL)
            assert _recommendations_counted(server.url) == before + 10  # whichever worker answers /metrics
    finally:
        registry.promote(v1)


def _recommendations_counted(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    assert "hmrec_cold_start_share" in text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("hmrec_recommendations_total{"))


def _worker_processes(server: s.Server) -> list[psutil.Process]:
    """The supervisor's worker processes: the children of its fork server (not its resource tracker)."""
    children = psutil.Process(server.process.pid).children()
    fork_servers = [c for c in children if "multiprocessing.forkserver" in " ".join(c.cmdline())]
    return [worker for fork_server in fork_servers for worker in fork_server.children()]


def wait_for_one_new_worker(server: s.Server, serving: set[str], timeout: float) -> None:
    """Until as many workers as before answer /ready, one of them new: all of `serving` (their tokens before)
    but one, and a token not among them."""
    deadline = time.monotonic() + timeout
    replaced: set[str] = set()
    while time.monotonic() < deadline:
        replaced = server.ready_processes()
        if len(replaced) == len(serving) and len(replaced & serving) == len(serving) - 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"no replacement worker within {timeout} s ({replaced}): {server.log_path.read_text()}")


def test_the_supervisor_replaces_a_worker_killed_with_sigkill(versions, tmp_path):
    workdir, _, _ = versions
    with s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log", HMREC_WORKERS="2") as server:
        serving = server.ready_processes()  # the workers' tokens (/ready names no process id)
        workers = _worker_processes(server)
        assert len(serving) == 2 and len(workers) == 2
        victim = workers[0].pid
        os.kill(victim, signal.SIGKILL)
        wait_for_one_new_worker(server, serving, timeout=60)
        assert victim not in {c.pid for c in _worker_processes(server)}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_frozen_worker_is_replaced_and_health_keeps_answering(versions, tmp_path, workers):
    """kill -STOP a worker: it answers no ping from the supervisor, which kills it and starts another; the service
    then answers every /health again (a call that landed on the frozen worker fails with the kill, it never hangs).
    One worker runs under the supervisor too: frozen, it would hang the whole service."""
    workdir, _, _ = versions
    with s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log", HMREC_WORKERS=workers,
                  HMREC_WORKER_TIMEOUT_SECONDS="5") as server:
        serving = server.ready_processes()
        assert len(serving) == int(workers) == len(_worker_processes(server))
        victim = _worker_processes(server)[0]
        victim.suspend()  # SIGSTOP
        gone, _ = psutil.wait_procs([victim], timeout=90)
        assert gone, server.log_path.read_text()
        wait_for_one_new_worker(server, serving, timeout=90)
        for _ in range(20):  # new connections: the kernel hands them to both workers
            assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
        assert f"worker {victim.pid} answered no ping" in server.log_path.read_text()


def test_a_second_service_is_refused_the_port_and_workers_die_with_a_killed_supervisor(versions, tmp_path):
    workdir, _, _ = versions
    server = s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log", HMREC_WORKERS="2")
    with server:
        workers = _worker_processes(server)
        assert len(workers) == 2 and len(server.ready_processes()) == 2
        # SO_REUSEPORT would let this one bind beside the first, and the kernel share connections between them
        other = s.handmade_workdir(tmp_path / "other")  # another service, another workdir, the same port
        second = subprocess.run([str(s.HMREC), "serve", "--workdir", str(other), "--port",
                                 str(server.port), "--workers", "2"], capture_output=True, text=True, timeout=120,
                                env=server.env)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: 127.0.0.1:{server.port} is already served by another process on this machine (an earlier "
            "`hmrec serve`?); stop it, or choose another --port")

        os.kill(server.process.pid, signal.SIGKILL)  # the supervisor alone, as a crash or the OOM killer would
        server.process.wait(timeout=10)
        gone, alive = psutil.wait_procs(workers, timeout=60)
        assert alive == [], server.log_path.read_text()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=2)


ACCESS_LINE = re.compile(r'^\d\d:\d\d:\d\d INFO uvicorn\.access: 127\.0\.0\.1:\d+ - "POST /recommendations HTTP/1\.1" '
                         r"200", re.MULTILINE)


@pytest.mark.parametrize(("workers", "access_log"), [("1", None), ("2", "true")])
def test_ctrl_c_stops_a_service_that_has_served_requests_at_once_and_cleanly(versions, tmp_path, workers, access_log):
    """Ctrl-C in a terminal sends SIGINT to the whole process group: supervisor and workers alike. Once requests
    were served, a normal interpreter exit waited up to 10 s for anyio's idle threads (and exited 130, which `make`
    reported as an error). Access logs are off by default, and in hmrec's format when turned on."""
    workdir, _, _ = versions
    env = {"HMREC_WORKERS": workers} | ({"HMREC_ACCESS_LOG": access_log} if access_log else {})
    server = s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log", **env).start()
    with httpx.Client(base_url=server.url) as client:  # one kept-alive connection, as a browser holds
        for _ in range(20):
            recommend(client, NEW_CUSTOMER)
        started = time.monotonic()
        os.killpg(server.process.pid, signal.SIGINT)
        code = server.process.wait(timeout=60)
        stopped_in = time.monotonic() - started
    log = server.log_path.read_text()
    assert code == 0, log
    assert stopped_in < 5, log  # 0.3-0.6 s on a shared 2-core machine; generous for a busier one
    assert bool(ACCESS_LINE.search(log)) == bool(access_log), log
    assert "INFO:     " not in log  # every uvicorn line in hmrec's format
