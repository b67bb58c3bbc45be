"""Hot reload: POST /admin/reload swaps to the newly promoted champion, keeps the old one on failure, and never
fails a request in flight."""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import serving_support as s
from fastapi.testclient import TestClient

from hmrec.registry.checksums import write_manifest
from hmrec.registry.versions import Registry
from hmrec.serving.app import create_app
from hmrec.serving.settings import Settings

AUTH = {"Authorization": f"Bearer {s.ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> tuple[Path, int, int]:
    return s.two_versions(tmp_path_factory.mktemp("reload"))


def client_for(workdir: Path, events: str) -> TestClient:
    settings = Settings(workdir=workdir, events_url=events, admin_token=s.ADMIN_TOKEN)
    return TestClient(create_app(settings))


def test_reload_swaps_to_the_new_champion_and_drops_cached_answers(versions, events_target):
    workdir, v1, v2 = versions
    registry = Registry.for_workdir(workdir)
    registry.promote(v1)
    with client_for(workdir, events_target) as client:
        before = client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}).json()
        assert before["model_version"] == v1 and before["strategy"] == "personalized"
        registry.promote(v2)
        response = client.post("/admin/reload", headers=AUTH)
        assert response.status_code == 200
        assert response.json() == {"previous_version": v1, "model_version": v2, "workers_serving": 1, "workers": 1}
        assert client.get("/ready").json()["model_version"] == v2
        after = client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}).json()
        assert (after["model_version"], after["cached"]) == (v2, False)
        # version 2 is global popularity: the same list for everyone, whatever they bought
        assert [it["article_id"] for it in after["items"]] == [f"{s.ARTICLE_IDS[i]:010d}" for i in (7, 0, 1)]
        assert "hmrec_model_version 2.0" in client.get("/metrics").text
    registry.promote(v1)


def test_failed_reload_keeps_the_old_model_serving(versions, tmp_path):
    workdir, v1, _ = versions
    registry = Registry.for_workdir(workdir)
    registry.promote(v1)
    broken = s.register(workdir, s.write_handmade_bundle(tmp_path / "broken"), promote=False)
    stored = registry.load(broken)  # the registry's own copy, read in place
    original = (stored / "articles.parquet").read_bytes()
    (stored / "articles.parquet").write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with client_for(workdir, str(tmp_path / "events.sqlite")) as client:
            # point the alias at the altered version directly: promote() itself would refuse it
            registry.client.set_registered_model_alias(registry.name, "champion", str(broken))
            response = client.post("/admin/reload", headers=AUTH)
            assert response.status_code == 409
            detail = response.json()["detail"]
            assert detail.startswith("reload failed: cannot load the champion from HMREC_WORKDIR: ")
            assert "articles.parquet" in detail
            assert detail.endswith(f"; still serving version {v1}")
            assert client.get("/ready").json()["model_version"] == v1
            answer = client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3})
            assert answer.status_code == 200 and answer.json()["model_version"] == v1
            assert 'hmrec_reloads_total{outcome="failed"} 1.0' in client.get("/metrics").text
    finally:
        (stored / "articles.parquet").write_bytes(original)
        registry.promote(v1)


@pytest.mark.parametrize(("events_target", "workers"), [("sqlite", 1), ("sqlite", 2), ("postgresql", 2)],
                         indirect=["events_target"])
def test_reload_under_concurrent_load_fails_no_request(versions, tmp_path, workers, events_target):
    workdir, v1, v2 = versions
    registry = Registry.for_workdir(workdir)
    registry.promote(v1)
    customers = [s.FREQUENT, s.OCCASIONAL, s.COLD_AGED, s.COLD_NO_AGE, "someone-new"]
    results: list[tuple[int, int | None, float]] = []  # (status, model version, time the request started)
    lock = threading.Lock()
    stop = threading.Event()

    def load(seed: int, url: str) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                if rng.random() < 0.8:
                    response = client.post("/recommendations", json={"customer_id": rng.choice(customers), "k": 5})
                    version = response.json().get("model_version")
                else:
                    response = client.get(f"/customers/{rng.choice(customers)}")
                    version = None
                with lock:
                    results.append((response.status_code, version, started))

    with s.Server(workdir, events_target, tmp_path / "server.log", HMREC_WORKERS=str(workers),
                  HMREC_RELOAD_POLL_SECONDS="0.2") as server:
        threads = [threading.Thread(target=load, args=(seed, server.url)) for seed in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(results) >= 30, "30 answers before the reload", results)
        registry.promote(v2)
        response = httpx.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60)
        reloaded_at = time.monotonic()
        wait_until(lambda: sum(1 for *_, started in results if started > reloaded_at) >= 30,
                   "30 answers after the reload", results)
        stop.set()
        for thread in threads:
            thread.join()
    registry.promote(v1)

    # with several workers the answer waits until all of them serve version 2
    assert response.status_code == 200
    assert response.json() == {"previous_version": v1, "model_version": v2, "workers_serving": workers,
                               "workers": workers}
    assert len(results) > 50
    assert [r for r in results if r[0] != 200] == []
    versions_seen = [v for _, v, _ in results if v is not None]
    assert set(versions_seen) == {v1, v2}
    assert {v for _, v, started in results if v is not None and started > reloaded_at} == {v2}


def wait_until(condition, what: str, results: list, timeout: float = 60) -> None:
    """Until `condition()` holds; fails naming `what` and how many results came in."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s ({len(results)} results in all)"
        time.sleep(0.02)


def test_reload_to_a_bundle_of_the_old_format_is_refused_naming_the_command_that_rebuilds_it(versions, tmp_path):
    """A registered, checksum-valid bundle whose manifest says format 1: refused in one line, the old model kept."""
    workdir, v1, _ = versions
    registry = Registry.for_workdir(workdir)
    registry.promote(v1)
    bundle = tmp_path / "old"
    shutil.copytree(registry.load(v1), bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    old = s.register(workdir, bundle, promote=False)
    try:
        with client_for(workdir, str(tmp_path / "events.sqlite")) as client:
            registry.promote(old)
            response = client.post("/admin/reload", headers=AUTH)
            assert response.status_code == 409
            assert response.json()["detail"] == (
                "reload failed: cannot load the champion from HMREC_WORKDIR: BundleError: "
                f"{_public(registry.load(old), workdir)}/manifest.json is a bundle of format 1, this release reads format 2: "
                "rebuild it with `hmrec pipeline --raw DIR --workdir WORKDIR --promote`; still serving version "
                f"{v1}")
            assert "\n" not in response.json()["detail"]
    finally:
        registry.promote(v1)


def test_reload_to_a_bundle_the_code_cannot_load_keeps_the_old_model(versions, tmp_path):
    """A registered, checksum-valid bundle whose recommender fails to load (here: it names a class outside hmrec)."""
    workdir, v1, _ = versions
    registry = Registry.for_workdir(workdir)
    registry.promote(v1)
    bundle = tmp_path / "alien"
    bundle.mkdir()
    for name in ("articles.parquet", "customers.parquet", "history.parquet"):
        (bundle / name).write_bytes((registry.load(v1) / name).read_bytes())
    shutil.copytree(registry.load(v1) / "cold_start", bundle / "cold_start")
    (bundle / "final").mkdir()
    (bundle / "final" / "recommender.json").write_text('{"module": "os", "class": "PathLike"}')
    write_manifest(bundle, store_fingerprint="handmade", extra={"data_end": s.DATA_END.isoformat()})
    alien = s.register(workdir, bundle, promote=False)
    try:
        with client_for(workdir, str(tmp_path / "events.sqlite")) as client:
            registry.promote(alien)
            response = client.post("/admin/reload", headers=AUTH)
            assert response.status_code == 409
            assert response.json()["detail"] == (
                "reload failed: cannot load the champion from HMREC_WORKDIR: ValueError: "
                f"{_public(registry.load(alien), workdir)}/final/recommender.json names os, which is not part of hmrec; "
                f"still serving version {v1}")
            assert client.post("/recommendations", json={"customer_id": s.FREQUENT}).json()["model_version"] == v1
    finally:
        registry.promote(v1)


def _public(bundle: Path, workdir: Path) -> str:
    """How an answer names a bundle folder: under HMREC_WORKDIR, never by its absolute path."""
    return f"HMREC_WORKDIR/{Path(bundle).resolve().relative_to(workdir.resolve())}"
