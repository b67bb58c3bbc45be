"""Who may post live events: the bearer token HMREC_EVENTS_TOKEN, anyone under --demo, no one when neither is set;
and a disk filling up under the SQLite event store answers 503, keeping every event taken before."""

from __future__ import annotations

import resource
from pathlib import Path

import httpx
import pytest
import serving_support as s
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hmrec.commands.serve import _events_access
from hmrec.serving import deps
from hmrec.serving.app import create_app
from hmrec.serving.events import SqliteEventStore
from hmrec.serving.settings import Settings
from hmrec.support.launcher import files_of_at_most

BODY = {"customer_id": "token-check", "article_id": f"{s.ARTICLE_IDS[4]:010d}"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return s.handmade_workdir(tmp_path_factory.mktemp("access"))


def client_for(workdir: Path, tmp_path: Path, **settings) -> TestClient:
    return TestClient(create_app(Settings(workdir=workdir, events_path=tmp_path / "e.sqlite", **settings)))


def stored(client: TestClient) -> int:
    return client.get(f"/customers/{BODY['customer_id']}").json()["summary"]["purchase_count"]


def test_an_event_without_the_token_is_401_and_not_stored(workdir, tmp_path):
    with client_for(workdir, tmp_path, events_token=s.EVENTS_TOKEN) as client:
        response = client.post("/events/purchases", json=BODY)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() == {"detail": "live events need the events token: send `Authorization: Bearer "
                                             "<HMREC_EVENTS_TOKEN>`"}
        # refused before the body is read: an invalid body without the token says nothing about the body
        assert client.post("/events/purchases", json={"customer_id": ""}).status_code == 401
        assert stored(client) == 0
        assert client.post("/events/purchases", json=BODY, headers=s.EVENTS_AUTH).status_code == 201
        assert stored(client) == 1


def test_a_wrong_token_is_401_and_compared_in_constant_time(workdir, tmp_path, monkeypatch):
    compared = []
    real = deps.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", recording)
    with client_for(workdir, tmp_path, events_token=s.EVENTS_TOKEN) as client:
        response = client.post("/events/purchases", json=BODY, headers={"Authorization": "Bearer test-events-token-0"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert response.json() == {"detail": "wrong events token in the Authorization header"}
        assert stored(client) == 0
    assert compared == [(b"test-events-token-0", s.EVENTS_TOKEN.encode())]


def test_without_a_token_configured_events_are_refused_with_how_to_turn_them_on(workdir, tmp_path):
    with client_for(workdir, tmp_path) as client:
        for headers in ({}, s.EVENTS_AUTH):
            response = client.post("/events/purchases", json=BODY, headers=headers)
            assert response.status_code == 403
            assert response.json() == {"detail": "live events are turned off: this service has no HMREC_EVENTS_TOKEN; "
                                       "set one and send it as `Authorization: Bearer <token>`, or start `hmrec serve "
                                       "--demo` to take anonymous events"}
        assert client.post("/recommendations", json={"customer_id": s.FREQUENT}).status_code == 200  # reads stay open
    assert _events_access(Settings(workdir=workdir)) == (
        "live events: refused (403) until HMREC_EVENTS_TOKEN is set (clients then send it as a bearer token), or "
        "start with --demo for anonymous events")


def test_demo_takes_anonymous_events_and_says_so(workdir, tmp_path):
    with client_for(workdir, tmp_path, demo=True) as client:
        assert client.post("/events/purchases", json=BODY).status_code == 201
        assert stored(client) == 1
    assert _events_access(Settings(workdir=workdir, demo=True)).startswith(
        "live events: anonymous (--demo): anyone who can reach this port may add purchases to any customer")


def test_a_short_token_is_refused_at_start_up(workdir):
    with pytest.raises(ValidationError, match="HMREC_EVENTS_TOKEN has 6 characters; use at least 16"):
        Settings(workdir=workdir, events_token="secret")


def test_the_openapi_document_declares_the_bearer_token_and_its_refusals(workdir, tmp_path):
    with client_for(workdir, tmp_path, events_token=s.EVENTS_TOKEN) as client:
        operation = client.get("/openapi.json").json()["paths"]["/events/purchases"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert set(operation["responses"]["401"]["headers"]) == {"WWW-Authenticate"}
    assert "403" in operation["responses"]


# ---- a full disk ---------------------------------------------------------------------------------------------

FILE_LIMIT = 128 * 1024  # bytes any file of the server may reach: its write-ahead log fills it after a few dozen events


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no RLIMIT_FSIZE on this system to fill a disk")
def test_a_full_disk_answers_503_with_retry_after_and_keeps_the_events_taken(workdir, tmp_path):
    events = tmp_path / "events.sqlite"
    SqliteEventStore(events).close()  # the tables, so the server's first writes are events and heartbeats
    server = s.Server(workdir, events, tmp_path / "server.log", preexec_fn=files_of_at_most(FILE_LIMIT))
    taken, refused = [], None
    with server, httpx.Client(base_url=server.url, headers=s.EVENTS_AUTH, timeout=60) as client:
        for n in range(FILE_LIMIT // 1024):  # each commit adds at least one 4 KiB page to the log
            body = {"customer_id": f"full-{n}", "article_id": s.ARTICLE_IDS[n % 10]}
            response = client.post("/events/purchases", json=body)
            if response.status_code != 201:
                refused = response
                break
            taken.append((body["customer_id"], body["article_id"]))
        assert refused is not None, f"{len(taken)} events fitted under a {FILE_LIMIT}-byte file limit"
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["detail"].startswith("the event store cannot take the event now; nothing was stored")
        assert client.get("/health").status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert "live events: need the bearer token HMREC_EVENTS_TOKEN" in log
    assert "Traceback" not in log
    assert taken and set(taken) <= s.stored_purchases(events)
