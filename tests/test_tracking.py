"""MLflow tracking of pipeline runs on a real SQLite store: what is logged can be read back; the env var wins."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from test_registry import make_bundle  # noqa: E402

from hmrec.registry.location import ENV_TRACKING_URI, tracking_uri  # noqa: E402
from hmrec.registry.tracking import EXPERIMENT, Tracker, metric_name, start_run  # noqa: E402
from hmrec.registry.versions import Registry  # noqa: E402


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv(ENV_TRACKING_URI, raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One tracking store for the run tests (creating one costs ~2 s); each test makes its own runs."""
    return tmp_path_factory.mktemp("work")


def write_report(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "report.md").write_text("# Report\n\nfinal MAP@12 0.0312\n")
    (directory / "metrics.json").write_text(json.dumps({"methods": {"final": {"map@12": 0.0312}}}))
    figure, axes = plt.subplots()
    axes.plot([1, 2, 3], [0.5, 0.3, 0.2])
    figure.savefig(directory / "loss.png")
    plt.close(figure)
    return directory


def test_default_uri_is_a_sqlite_file_in_the_workdir(tmp_path):
    assert tracking_uri(tmp_path / "w") == f"sqlite:///{(tmp_path / 'w').resolve()}/mlflow.db"
    assert tracking_uri("w").startswith("sqlite:////") and tracking_uri("w").endswith("/w/mlflow.db")


def test_metric_names_are_made_acceptable_to_mlflow():
    assert metric_name("final/map@12") == "final/map_at_12"
    assert metric_name("recall@100 (all)") == "recall_at_100 _all_"


def test_a_run_logs_params_metrics_and_artifacts_that_read_back(workdir, tmp_path):
    report = write_report(tmp_path / "report")
    with Tracker.start(workdir, run_name="nightly", params={"seed": 7, "two_tower": {"dim": 64}}) as tracker:
        tracker.log_params({"rows_transactions": 1234})
        tracker.log_metrics({"methods": {"final": {"map@12": 0.0312, "skipped": None}}, "etl_seconds": 1.5})
        for epoch, loss in enumerate([0.9, 0.7, 0.6]):
            tracker.log_metrics({"two_tower_loss": loss}, step=epoch)
        tracker.log_artifacts(report, "report")
        tracker.log_dict({"final": {"map@12": 0.0312}}, "metrics.json")
        run_id = tracker.run_id

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "nightly"
    assert run.data.params == {"seed": "7", "two_tower.dim": "64", "rows_transactions": "1234"}
    assert run.data.metrics == {"methods/final/map_at_12": 0.0312, "etl_seconds": 1.5, "two_tower_loss": 0.6}
    history = client.get_metric_history(run_id, "two_tower_loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.7), (2, 0.6)]
    assert sorted(a.path for a in client.list_artifacts(run_id, "report")) == [
        "report/loss.png", "report/metrics.json", "report/report.md"]
    stored = workdir / "mlartifacts" / run_id / "artifacts"
    assert (stored / "report" / "loss.png").read_bytes() == (report / "loss.png").read_bytes()
    assert (stored / "report" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((stored / "metrics.json").read_text()) == {"final": {"map@12": 0.0312}}
    assert client.get_experiment_by_name(EXPERIMENT).artifact_location == (workdir / "mlartifacts").resolve().as_uri()


def test_a_failing_block_marks_the_run_failed_and_bad_metrics_name_the_key(workdir):
    with pytest.raises(ValueError, match=r"metric 'final/method' is 'als' \(str\); metrics must be numbers"):
        with start_run(workdir, "broken", {"seed": 1}) as tracker:
            run_id = tracker.run_id
            tracker.log_metrics({"final": {"method": "als"}})
    client = MlflowClient(tracking_uri=tracking_uri(workdir))
    assert client.get_run(run_id).info.status == "FAILED"
    with start_run(workdir, "again") as tracker:
        pass
    assert client.get_run(tracker.run_id).info.experiment_id == client.get_run(run_id).info.experiment_id


def test_mlflow_tracking_uri_points_runs_and_versions_elsewhere(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv(ENV_TRACKING_URI, f"sqlite:///{shared}/mlflow.db")
    workdir = tmp_path / "work"
    assert tracking_uri(workdir) == f"sqlite:///{shared}/mlflow.db"
    with Tracker.start(workdir, run_name="elsewhere", params={"seed": 3}) as tracker:
        version = Registry.for_workdir(workdir).register(make_bundle(tmp_path / "b"), run_id=tracker.run_id)

    assert (shared / "mlflow.db").is_file() and not (workdir / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{shared}/mlflow.db")
    assert client.get_run(tracker.run_id).data.params == {"seed": "3"}
    assert client.get_model_version("hmrec-recommender", str(version)).run_id == tracker.run_id


def files_under(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*") if path.is_file()}


def test_a_copied_workdir_keeps_its_artifacts_in_the_copy(tmp_path):
    original = tmp_path / "original"
    Registry.for_workdir(original).register(make_bundle(tmp_path / "b1"))
    before = files_under(original / "mlartifacts")
    copy = tmp_path / "moved" / "copy"
    shutil.copytree(original, copy)

    registry = Registry.for_workdir(copy)
    assert registry.load(1).is_relative_to(copy / "mlartifacts")  # the copy's own files, checksums verified
    registry.register(make_bundle(tmp_path / "b2", map12=0.05))
    assert files_under(original / "mlartifacts") == before  # nothing landed in the original
    assert registry.load(2).is_relative_to(copy / "mlartifacts")
    assert len(files_under(copy / "mlartifacts")) == 2 * len(before)
    assert Registry.for_workdir(original).load(1).is_relative_to(original / "mlartifacts")


def test_a_run_whose_process_was_killed_is_marked_killed_when_the_workdir_is_next_opened(tmp_path):
    script = ("import os, signal, sys\nfrom hmrec.registry.tracking import start_run\n"
              "with start_run(sys.argv[1], 'doomed'):\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    died = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, timeout=120)
    assert died.returncode == -signal.SIGKILL
    client = MlflowClient(tracking_uri=tracking_uri(tmp_path))
    [run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "RUNNING"

    with start_run(tmp_path, "next"):  # opening the workdir again, as the next pipeline run does
        pass
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["hmrec.ended"] == f"process {run.data.tags['hmrec.pid']} was gone when the workdir was " \
                                           "next opened"
