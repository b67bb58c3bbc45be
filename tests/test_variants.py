"""Two registered versions served side by side: each customer answered by their variant's version, counted per
variant in /metrics and on the admin page, through a TestClient and a real `hmrec serve`; a reload follows each
alias in every worker."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import httpx
import pytest
import serving_support as s
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.registry.experiment import Experiment, read_experiment, write_experiment
from hmrec.registry.versions import Registry
from hmrec.serving.app import create_app
from hmrec.serving.settings import Settings

AUTH = {"Authorization": f"Bearer {s.ADMIN_TOKEN}"}
CUSTOMERS = [s.FREQUENT, s.OCCASIONAL, s.COLD_AGED, s.COLD_NO_AGE, s.BUYER_31, s.BUYER_33]
GLOBAL_TOP3 = [f"{s.ARTICLE_IDS[i]:010d}" for i in s.GLOBAL_BESTSELLERS[:3]]


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> tuple[Path, int, int]:
    """Version 1 (repurchase) the champion, version 2 (global popularity) the challenger."""
    workdir, v1, v2 = s.two_versions(tmp_path_factory.mktemp("variants"))
    Registry.for_workdir(workdir).set_alias("challenger", v2)
    return workdir, v1, v2


def half_and_half() -> Experiment:
    """A 50/50 experiment whose name puts FREQUENT in the challenger and BUYER_31 in the champion (the first such
    name: the split is a hash, so the test looks for one rather than assume it)."""
    for n in itertools.count():
        experiment = Experiment(f"ab-{n}", (("champion", 0.5), ("challenger", 0.5)))
        if (experiment.variant_of(s.FREQUENT), experiment.variant_of(s.BUYER_31)) == ("challenger", "champion"):
            return experiment
    raise AssertionError("unreachable")


def settings_for(workdir: Path, tmp_path: Path, **extra) -> Settings:
    return Settings(workdir=workdir, events_path=tmp_path / "events.sqlite", admin_token=s.ADMIN_TOKEN,
                    experiment_path=tmp_path / "experiment.json", **extra)


def test_each_customer_is_answered_by_their_variants_version(versions, tmp_path):
    workdir, v1, v2 = versions
    experiment = half_and_half()
    write_experiment(tmp_path / "experiment.json", experiment)
    with TestClient(create_app(settings_for(workdir, tmp_path))) as client:
        for customer in CUSTOMERS * 2:  # the second round is answered from the cache
            answer = client.post("/recommendations", json={"customer_id": customer, "k": 3}).json()
            variant = experiment.variant_of(customer)
            assert (answer["variant"], answer["model_version"]) == (variant, {"champion": v1, "challenger": v2}[variant])
        # version 2 (popularity) answers FREQUENT the global bestsellers, whatever they bought
        frequent = client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}).json()
        assert [it["article_id"] for it in frequent["items"]] == GLOBAL_TOP3
        again = client.get(f"/customers/{s.FREQUENT}/buy-again").json()
        assert (again["variant"], again["model_version"]) == ("challenger", v2)
        assert client.get("/ready").json()["model_version"] == v1  # the default variant: the champion
        # each customer asked twice, FREQUENT (a challenger's) once more
        expected = {(variant, version): 2 * sum(experiment.variant_of(c) == variant for c in CUSTOMERS)
                    for variant, version in (("champion", v1), ("challenger", v2))}
        expected[("challenger", v2)] += 1
        assert variant_counts(client.get("/metrics").text) == expected
        status = client.get("/admin/experiment", headers=AUTH).json()
        assert status["experiment"]["name"] == experiment.name
        assert [(v["variant"], v["share"], v["model_version"]) for v in status["variants"]] == [
            ("champion", 0.5, v1), ("challenger", 0.5, v2)]
        assert client.get("/admin/experiment").status_code == 401


def variant_counts(metrics: str) -> dict[tuple[str, int], int]:
    """hmrec_variant_answers_total of /recommendations by (variant, version)."""
    found = re.findall(r'hmrec_variant_answers_total\{route="/recommendations",variant="(\w+)",version="(\d+)"\} '
                       r'([0-9.]+)', metrics)
    return {(variant, int(version)): int(float(n)) for variant, version, n in found}


def test_without_an_experiment_the_champion_answers_everyone(versions, tmp_path):
    workdir, v1, _ = versions
    with TestClient(create_app(settings_for(workdir, tmp_path))) as client:
        for customer in CUSTOMERS:
            answer = client.post("/recommendations", json={"customer_id": customer, "k": 3}).json()
            assert (answer["variant"], answer["model_version"]) == ("champion", v1)
        status = client.get("/admin/experiment", headers=AUTH).json()
        assert status["experiment"] is None and [v["variant"] for v in status["variants"]] == ["champion"]


def test_a_variant_that_cannot_load_keeps_every_model_serving(versions, tmp_path):
    workdir, v1, _ = versions
    with TestClient(create_app(settings_for(workdir, tmp_path))) as client:
        write_experiment(tmp_path / "experiment.json", Experiment("e", (("champion", 0.5), ("green", 0.5))))
        response = client.post("/admin/reload", headers=AUTH)
        assert (response.status_code, response.json()["detail"]) == (
            409, "reload failed: cannot load the green from HMREC_WORKDIR: RegistryError: alias 'green' is not set on "
                 f"hmrec-recommender; still serving version {v1}")
        answers = [client.post("/recommendations", json={"customer_id": c, "k": 3}).json() for c in CUSTOMERS]
        assert {(a["variant"], a["model_version"]) for a in answers} == {("champion", v1)}


def test_a_reload_follows_each_alias_in_every_worker(versions, tmp_path):
    workdir, v1, v2 = versions
    registry = Registry.for_workdir(workdir)
    experiment = half_and_half()
    write_experiment(tmp_path / "experiment.json", experiment)
    settings = settings_for(workdir, tmp_path, reload_poll_seconds=0.1)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        v3 = s.register(workdir, s.write_handmade_bundle(tmp_path / "v3"), promote=False)
        registry.set_alias("challenger", v3)
        try:
            assert first.post("/admin/reload", headers=AUTH).status_code == 200
            wait_for(lambda: second.app.state.holder.served.versions() == {"champion": v1, "challenger": v3})
            for client in (first, second):
                answers = {c: client.post("/recommendations", json={"customer_id": c, "k": 3}).json()
                           for c in (s.FREQUENT, s.BUYER_31)}
                assert [(a["variant"], a["model_version"]) for a in answers.values()] == [
                    ("challenger", v3), ("champion", v1)]
            (tmp_path / "experiment.json").unlink()  # hmrec experiment stop
            assert second.post("/admin/reload", headers=AUTH).status_code == 200
            wait_for(lambda: list(first.app.state.holder.served.versions()) == ["champion"])
            answer = first.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}).json()
            assert (answer["variant"], answer["model_version"]) == ("champion", v1)
        finally:
            registry.set_alias("challenger", v2)


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the other worker did not follow the reload"
        time.sleep(0.02)


def test_a_real_server_serves_both_versions_side_by_side(versions, tmp_path):
    workdir, v1, v2 = versions
    experiment = half_and_half()
    write_experiment(tmp_path / "experiment.json", experiment)
    # one worker: every worker hashes alike (test_experiment.py runs the split in other processes), and a second
    # would double the start-up, the cost of this test
    with s.Server(workdir, tmp_path / "events.sqlite", tmp_path / "server.log",
                  HMREC_EXPERIMENT_PATH=str(tmp_path / "experiment.json")) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(3):
                answers = [client.post("/recommendations", json={"customer_id": c, "k": 3}).json()
                           for c in (s.FREQUENT, s.BUYER_31)]
                assert [(a["variant"], a["model_version"]) for a in answers] == [("challenger", v2), ("champion", v1)]
            counts = variant_counts(client.get("/metrics").text)
        assert (counts[("challenger", v2)], counts[("champion", v1)]) == (3, 3)


def test_the_experiment_commands_start_show_and_stop(versions):
    workdir, v1, v2 = versions
    run = CliRunner().invoke
    refused = run(app, ["experiment", "start", "--workdir", str(workdir), "--variant", "champion=0.9",
                        "--variant", "blue=0.1"])
    assert refused.exit_code == 1 and not (workdir / "experiment.json").exists()
    assert refused.output.startswith("error: alias 'blue' is not set on any version (1 of 2 variants): point it at one "
                                     "with `hmrec registry alias blue VERSION`")
    started = run(app, ["experiment", "start", "--workdir", str(workdir), "--variant", "champion=90%",
                        "--variant", "challenger=10%", "--name", "cli"])
    assert started.exit_code == 0, started.output
    assert started.output.startswith(f"experiment cli: champion (version {v1}) 90.0%, challenger (version {v2}) 10.0%")
    assert read_experiment(workdir / "experiment.json") == Experiment("cli", (("champion", 0.9), ("challenger", 0.1)),
                                                                      started=read_experiment(
                                                                          workdir / "experiment.json").started)
    shown = run(app, ["experiment", "show", "--workdir", str(workdir)]).output.splitlines()
    assert [line.split() for line in shown[1:]] == [["champion", "90.0%", "version", str(v1)],
                                                    ["challenger", "10.0%", "version", str(v2)]]
    assert run(app, ["experiment", "stop", "--workdir", str(workdir)]).output.startswith("stopped experiment cli;")
    assert not (workdir / "experiment.json").exists()
