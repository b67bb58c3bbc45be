"""`hmrec serve` opens its port before the model has loaded: /health answers at once, /ready and the model's routes
503 with Retry-After while it loads, then 200. Two workers: each listens while loading (one worker takes the same
path, under the same supervisor)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import serving_support as s

LOADING = {"status": "loading", "detail": "no model is loaded: the champion is still loading"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return s.handmade_workdir(tmp_path_factory.mktemp("readiness"))


def refused_while_loading(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == LOADING
    assert int(response.headers["Retry-After"]) > 0


def test_ready_answers_503_while_the_model_loads_then_200(workdir, tmp_path):
    gate = tmp_path / "load-now"  # the load waits for this file (HMREC_TEST_LOAD_GATE): no race with a fast load
    server = s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log", HMREC_WORKERS="2",
                      HMREC_TEST_LOAD_GATE=str(gate))
    try:
        server.spawn().wait_listening()
        for _ in range(6):  # a new connection each: with two workers, the kernel hands them to both
            assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
            refused_while_loading(httpx.get(f"{server.url}/ready", timeout=30))
        refused_while_loading(httpx.post(f"{server.url}/recommendations", json={"customer_id": s.FREQUENT},
                                         timeout=30))
        refused_while_loading(httpx.get(f"{server.url}/customers/{s.FREQUENT}", timeout=30))
        refused_while_loading(httpx.get(f"{server.url}/popular", timeout=30))
        declared = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]["/ready"]["get"]["responses"]
        assert declared["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/NotReadyBody")
        assert "Retry-After" in declared["503"]["headers"]

        gate.touch()
        server.wait_ready()  # every worker answers /ready 200
        answer = httpx.post(f"{server.url}/recommendations", json={"customer_id": s.FREQUENT}, timeout=30)
        assert answer.status_code == 200, answer.text
        log = server.wait_logged("serving on http://127.0.0.1")  # the supervisor's poll of /ready may lag ours
        assert log.index("listening on 127.0.0.1") < log.index("serving on http://127.0.0.1"), log
    finally:
        server.stop()
