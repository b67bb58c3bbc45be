"""Two `hmrec serve` instances, separate process trees as two machines would run them, on one PostgreSQL event
store: events, reloads and a SIGKILL of one of them."""

from __future__ import annotations

import threading

import httpx
import pytest
import serving_support as s

from hmrec.registry.versions import Registry

AUTH = {"Authorization": f"Bearer {s.ADMIN_TOKEN}"}
NEW_CUSTOMER = "new-on-machine-a"
MACHINE = {"HMREC_WORKERS": "1", "HMREC_RELOAD_POLL_SECONDS": "0.2", "HMREC_HEARTBEAT_SECONDS": "0.5",
           "HMREC_WORKER_TIMEOUT_SECONDS": "3"}


def recommend(url: str, customer_id: str) -> dict:
    """The answer with live purchases included: by default the shop leaves out what was just bought, and these
    tests look for it to see that one machine's event reached the other."""
    body = {"customer_id": customer_id, "k": 3, "include_purchased": True}
    response = httpx.post(f"{url}/recommendations", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def machines(tmp_path, postgres):
    workdir, v1, v2 = s.two_versions(tmp_path)
    url = postgres.create_database("machines")
    a = s.Server(workdir, url, tmp_path / "a.log", **MACHINE).start()
    b = s.Server(workdir, url, tmp_path / "b.log", **MACHINE).start()
    yield workdir, url, a, b, (v1, v2)
    a.stop()
    b.stop()


def test_two_machines_share_events_and_reloads_and_survive_a_sigkill(machines):
    workdir, url, a, b, (v1, v2) = machines
    # an event posted to one machine changes the next answer of the other
    assert recommend(b.url, NEW_CUSTOMER)["strategy"] == "cold_start"
    bought = s.ARTICLE_IDS[4]
    assert httpx.post(f"{a.url}/events/purchases", json={"customer_id": NEW_CUSTOMER, "article_id": bought},
                      headers=s.EVENTS_AUTH) \
        .status_code == 201
    after = recommend(b.url, NEW_CUSTOMER)
    assert (after["strategy"], after["cached"], after["items"][0]["article_id"]) == \
        ("personalized", False, f"{bought:010d}")

    # a reload through one is followed by both before it answers
    Registry.for_workdir(workdir).promote(v2)
    assert httpx.post(f"{a.url}/admin/reload", headers=AUTH, timeout=60).json() == {
        "previous_version": v1, "model_version": v2, "workers_serving": 2, "workers": 2}
    assert httpx.get(f"{b.url}/ready").json()["model_version"] == v2

    # SIGKILL of machine A while both take events: no acknowledged event is lost, B applies A's
    acknowledged: list[tuple[str, int]] = []
    stop = threading.Event()
    threads = [threading.Thread(target=s.post_until_stopped, args=(server.url, f"{name}{i}", acknowledged, stop))
               for name, server in (("a", a), ("b", b)) for i in range(2)]
    for thread in threads:
        thread.start()
    while len([c for c, _ in acknowledged if c.startswith("a")]) < 60:
        stop.wait(0.02)
    a.kill()
    stop.set()
    for thread in threads:
        thread.join()
    assert set(acknowledged) <= s.stored_purchases(url)
    from_a = next(c for c, _ in reversed(acknowledged) if c.startswith("a"))
    assert recommend(b.url, from_a)["strategy"] == "personalized"

    # a reload through the survivor waits for A only until A's heartbeat times out, then counts B alone
    Registry.for_workdir(workdir).promote(v1)
    assert httpx.post(f"{b.url}/admin/reload", headers=AUTH, timeout=60).json() == {
        "previous_version": v2, "model_version": v1, "workers_serving": 1, "workers": 1}
