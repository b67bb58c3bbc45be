"""The registry shared through a real `mlflow server` (PostgreSQL backend store, artifacts in a folder every
machine reads): `hmrec pipeline`, `hmrec registry` and `hmrec serve` all work through MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import serving_support as s
from pipeline_settings import CHEAP_ARGS
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.sample.generate import generate

MLFLOW = Path(sys.executable).parent / "mlflow"


@pytest.fixture
def mlflow_server(tmp_path, postgres):
    """`mlflow server` on a free port; its runs and versions in PostgreSQL, its artifacts in tmp_path/shared."""
    # one database per test: the server fixture is per test, the PostgreSQL server per session
    store = postgres.create_database(f"mlflow_{uuid.uuid4().hex[:8]}").replace("postgresql://", "postgresql+psycopg://")
    artifacts = tmp_path / "shared" / "artifacts"
    artifacts.mkdir(parents=True)
    port = s.free_port()
    log = (tmp_path / "mlflow.log").open("ab")
    process = subprocess.Popen(
        [str(MLFLOW), "server", "--backend-store-uri", store, "--default-artifact-root", artifacts.as_uri(),
         "--no-serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no background job runners (huey consumers): the registry needs none, and they outlive a stopped server
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "mlflow.log").read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        pytest.fail(f"mlflow server was not up within 120 s: {(tmp_path / 'mlflow.log').read_text()}")
    yield url, artifacts
    os.killpg(process.pid, signal.SIGTERM)  # the CLI and the uvicorn it started
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_registry_and_serve_on_another_machine_use_the_tracking_server(mlflow_server, tmp_path, monkeypatch):
    """What one machine registers, another (an empty workdir) lists, promotes and serves, all through the server."""
    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    s.register(tmp_path / "trainer", s.write_handmade_bundle(tmp_path / "bundles" / "v1"), promote=False)
    assert not (tmp_path / "trainer" / "mlflow.db").exists()  # the version went to the server
    assert len(list(artifacts.rglob("manifest.json"))) == 1  # and the bundle to the shared folder
    runner = CliRunner()
    promoted = runner.invoke(app, ["registry", "promote", "1", "--workdir", str(tmp_path / "other")])
    assert promoted.exit_code == 0, promoted.output
    listed = runner.invoke(app, ["registry", "list", "--workdir", str(tmp_path / "other")])
    assert listed.exit_code == 0, listed.output
    assert "version   1" in listed.output and listed.output.rstrip().endswith("champion")
    with s.Server(tmp_path / "other", tmp_path / "events.sqlite", tmp_path / "serve.log",
                  MLFLOW_TRACKING_URI=url) as server:
        assert httpx.get(f"{server.url}/ready").json()["model_version"] == 1
    assert not (tmp_path / "other" / "mlflow.db").exists()
    assert not (tmp_path / "other" / "registry-cache").exists()  # read in place from the shared folder


@pytest.mark.timeout(900)  # a whole pipeline run on the tiny sample
def test_pipeline_registers_through_the_tracking_server(mlflow_server, tmp_path, monkeypatch):
    url, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    generate("tiny", seed=3, out=tmp_path / "raw")
    runner = CliRunner()
    trained = runner.invoke(app, ["pipeline", "--raw", str(tmp_path / "raw"), "--workdir",
                                  str(tmp_path / "trainer"), "--promote", *CHEAP_ARGS])
    assert trained.exit_code == 0, trained.output
    assert not (tmp_path / "trainer" / "mlflow.db").exists()  # runs and versions went to the server
    assert list(artifacts.rglob("manifest.json"))  # and the bundle to the shared folder
    listed = runner.invoke(app, ["registry", "list", "--workdir", str(tmp_path / "other")])
    assert listed.exit_code == 0, listed.output
    assert "version   1" in listed.output and listed.output.rstrip().endswith("champion")
