"""The `hmrec` command as a newcomer meets it: hints that name the fix, nothing created by reading, a pipeline that
checks its inputs first, `evaluate` without refitting, and `serve` that says it serves only once it does."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import serving_support as s
from pipeline_settings import CHEAP_ARGS
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.support.launcher import HMREC, files_of_at_most, free_port

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", [["registry", "list"], ["registry", "show", "1"], ["registry", "promote", "1"],
                                     ["serve", "--port", "0"]])
def test_reading_a_missing_workdir_fails_and_creates_nothing(command, tmp_path):
    workdir = tmp_path / "no-such-work"
    result = run(*command, "--workdir", workdir)
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {workdir} does not exist: run `hmrec pipeline --raw DIR --workdir "
                                     f"{workdir} --promote` to train and register a model")
    assert not workdir.exists()


def test_a_workdir_without_registry_is_not_given_one(tmp_path):
    result = run("registry", "list", "--workdir", tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path} holds no registry (mlflow.db is missing)" in result.output
    assert list(tmp_path.iterdir()) == []


def test_registry_list_on_a_registry_without_versions_names_the_pipeline(tmp_path):
    from hmrec.registry.versions import Registry

    Registry.for_workdir(tmp_path).versions()  # an empty registry
    result = run("registry", "list", "--workdir", tmp_path)
    assert result.exit_code == 0
    assert "is registered yet: run `hmrec pipeline --raw DIR --workdir" in result.output


def test_pipeline_checks_its_inputs_before_opening_a_tracking_run(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "customers.csv").write_text("customer_id\n")
    result = run("pipeline", "--raw", tmp_path / "raw", "--workdir", tmp_path / "work")
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {tmp_path / 'raw'} lacks articles.csv, transactions_train.csv (it needs customers.csv, articles.csv, "
        "transactions_train.csv): check --raw, or write a sample there with `hmrec data generate --out DIR`")
    assert not (tmp_path / "work").exists()  # no mlflow.db, so no FAILED run


def test_registry_show_summarises_a_version_and_json_gives_the_whole_manifest(pipeline_run):
    result = run("registry", "show", "1", "--workdir", pipeline_run.workdir)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) <= 40, result.output
    assert lines[0] == "hmrec-recommender version 1  (aliases: champion)"
    assert "the last 7 days held out for evaluation" in result.output
    assert re.search(r"^  final +(  +0\.\d{4}){4}$", result.output, re.MULTILINE), result.output  # 4-digit metrics
    assert "settings chosen on validation" in result.output and "n_per_source.repurchase" in result.output
    assert all(line.endswith(" 0 (source left out: no candidates from it)") for line in lines
               if line.strip().startswith("n_per_source.") and line.split()[1] == "0")
    assert not re.search(r"[0-9a-f]{40}", result.output)  # no sha256 lines
    manifest = json.loads(run("registry", "show", "1", "--json", "--workdir", pipeline_run.workdir).output)
    assert len(manifest["files"]) > 10 and manifest["final"] == "final"


def test_help_shows_no_type_on_flags():
    for command in ([], ["pipeline"], ["registry", "show"], ["evaluate"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
        assert result.exit_code == 0 and "--help" in result.output, result.output
        assert "<bool>" not in result.output, result.output


def test_evaluate_scores_the_champion_without_refitting(pipeline_run, tmp_path):
    started = time.perf_counter()
    result = run("evaluate", "--workdir", pipeline_run.workdir, "--reports", tmp_path / "reports")
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "reports" / "latest" / "metrics.json").read_text())
    trained = json.loads((pipeline_run.workdir / "reports" / "latest" / "metrics.json").read_text())
    from hmrec.recommenders.base import load_recommender
    from hmrec.registry.versions import Registry

    champion = load_recommender(Registry.for_workdir(pipeline_run.workdir).load("champion") / "final")
    assert set(scored["methods"]) == {"final", *champion.sources}  # what the bundle holds, nothing refitted
    for name, metrics in scored["methods"].items():  # the same model on the same window: the same figures
        assert metrics["map@12"] == pytest.approx(trained["methods"][name]["map@12"], abs=1e-9), name
    assert scored["run"]["model_version"] == 1
    assert time.perf_counter() - started < 120


def test_evaluate_refit_fits_every_method_again_and_registers_nothing(pipeline_run, tmp_path):
    import shutil

    workdir = tmp_path / "work"
    shutil.copytree(pipeline_run.workdir / "store", workdir / "store")  # the store alone: no registry, no champion
    result = run("evaluate", "--workdir", workdir, "--reports", tmp_path / "reports", "--refit",
                 *CHEAP_ARGS)  # the pipeline fixture's settings
    assert result.exit_code == 0, result.output
    refitted = json.loads((tmp_path / "reports" / "latest" / "metrics.json").read_text())
    trained = json.loads((pipeline_run.workdir / "reports" / "latest" / "metrics.json").read_text())
    assert set(refitted["methods"]) == set(trained["methods"])  # the baselines too, not only the champion's parts
    assert {"popularity", "als"} <= set(refitted["methods"])
    for name in ("popularity", "age_popularity", "repurchase"):  # deterministic fits: the pipeline's figures
        assert refitted["methods"][name] == pytest.approx(trained["methods"][name], abs=1e-12), name
    assert "model_version" not in refitted["run"]
    assert sorted(p.name for p in workdir.iterdir()) == [".lock", "store"]  # the writer lock; no registry or bundle


def test_evaluate_without_a_store_names_the_pipeline(tmp_path):
    result = run("evaluate", "--workdir", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {tmp_path / 'store'} holds no feature store: run `hmrec pipeline "
                                     f"--raw DIR --workdir {tmp_path}`")


def serve(workdir, port: int, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "HMREC_EVENTS_PATH": str(workdir.parent / "events.sqlite"), **env}
    if "MLFLOW_TRACKING_URI" not in env:
        environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([str(HMREC), "serve", "--workdir", str(workdir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                            start_new_session=True)


def test_serving_on_is_printed_once_the_server_answers(tmp_path):
    process = serve(s.handmade_workdir(tmp_path), port := free_port())
    try:
        line = process.stdout.readline()  # blocks until the CLI prints
        assert line.startswith(f"serving on http://127.0.0.1:{port}/"), process.stderr.read()
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_sigterm_during_start_up_stops_at_once(tmp_path):
    """The champion's registry is a server that never answers, so the model load hangs (the port open meanwhile):
    SIGTERM does not wait for it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        registry = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = serve(tmp_path / "work", free_port(), MLFLOW_TRACKING_URI=registry)
        try:
            for line in process.stderr:
                if "Waiting for application startup" in line:
                    break
            started = time.monotonic()
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
            assert time.monotonic() - started < 5
            assert process.returncode == 0  # the supervisor stopped its worker; the load it left is no error
            assert "serving on" not in process.stdout.read()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_version_number_beyond_any_registry_is_one_line(tmp_path):
    workdir = s.handmade_workdir(tmp_path)
    result = run("registry", "promote", "99999999999999999999", "--workdir", workdir)
    assert result.exit_code == 1
    assert result.output.strip() == ("error: version 99999999999999999999 does not exist (versions are at most "
                                     "9223372036854775807); `hmrec registry list` shows the versions")


@pytest.mark.parametrize("command", [["registry", "list"], ["registry", "show", "1"], ["registry", "promote", "1"]])
def test_a_damaged_mlflow_db_is_one_line_naming_it(command, tmp_path):
    workdir = s.handmade_workdir(tmp_path)
    with (workdir / "mlflow.db").open("r+b") as db:
        db.write(os.urandom(4096))  # over the header
    result = run(*command, "--workdir", workdir)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {workdir.resolve() / 'mlflow.db'} cannot be read ("), lines
    assert "restore it from a backup" in lines[0]


def test_a_disk_filling_up_under_the_registry_is_one_line_and_keeps_the_champion(tmp_path):
    workdir = s.handmade_workdir(tmp_path)
    db = workdir.resolve() / "mlflow.db"
    result = subprocess.run([str(HMREC), "registry", "alias", "challenger", "1", "--workdir", str(workdir)],
                            capture_output=True, text=True, timeout=300,
                            preexec_fn=files_of_at_most(db.stat().st_size // 4))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # opening the registry may write (and fail) already, or only the alias's change
    assert result.stderr.strip().splitlines()[-1] in (
        f"error: {db} could not be written: the disk filled up (File too large); free space beside it and run again",
        f"error: the disk filled up while {workdir} was written (File too large); free space beside it and run again "
        f"(the champion is unchanged)")
    listed = run("registry", "list", "--workdir", workdir)
    assert listed.exit_code == 0 and "champion" in listed.output and "challenger" not in listed.output


def test_a_disk_filling_up_under_any_other_write_of_a_workdir_command_is_one_line(tmp_path):
    # numpy's short write names no cause (no errno): the file size limit this process runs under explains it
    child = (
        "import numpy as np, typer\n"
        "from pathlib import Path\n"
        "from hmrec.commands.shared import writes_workdir\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "@writes_workdir\n"
        "def write(workdir: Path) -> None:\n"
        "    np.save(workdir / 'big.npy', np.zeros(100_000))\n"
        "app()\n"
    )
    result = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True,
                            timeout=120, preexec_fn=files_of_at_most(100_000))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (f"error: the disk filled up while {tmp_path} was written (File too large); "
                                     f"free space beside it and run again (the champion is unchanged)")
    unlimited = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True,
                               timeout=120)
    assert unlimited.returncode == 0, unlimited.stderr  # the same command where the file fits


def test_data_too_short_for_the_pipeline_is_one_line_naming_the_days_needed(tmp_path):
    from raw_helpers import write_raw

    one_day = ["2020-09-01,c1,0663713001,0.0508,2", "2020-09-01,c2,0541518023,0.0304,1"]
    raw = write_raw(tmp_path / "raw", transactions=one_day)
    result = run("pipeline", "--raw", raw, "--workdir", tmp_path / "work")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: the data covers 1 day(s) (2020-09-01 .. 2020-09-01), but the pipeline's settings need at least 22: "
        "7 held-out (--test-days), 1 label window(s) of 7 days for the ranker (--horizon-days), a validation window "
        "of 7 days and 1 day of history before it; give it longer data, fewer --test-days or a shorter "
        "--horizon-days")


def make(*args: str, **env: str) -> subprocess.Popen:
    """The repository's Makefile with this interpreter's environment as its .venv, never installing into it."""
    venv = Path(sys.prefix)
    command = ["make", "--no-print-directory", "-o", str(venv / ".installed"), f"VENV={venv}", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env}, start_new_session=True)


def test_make_run_fails_when_the_pipeline_fails_and_serves_nothing(tmp_path):
    sample = tmp_path / "sample"
    sample.mkdir()
    (sample / "transactions_train.csv").write_text("not,the,format\n")
    process = make("run", f"SAMPLE={sample}", f"WORKDIR={tmp_path / 'work'}", f"PORT={free_port()}")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output  # make's own code for a failed recipe
    assert "pipeline] Error 1" in output and "serving on" not in output, output


def test_ctrl_c_on_make_serve_is_no_error(tmp_path):
    """Ctrl-C reaches make and `hmrec serve` alike (one process group); make used to add `Error 130`."""
    workdir, port = s.handmade_workdir(tmp_path), free_port()
    process = make("serve", f"WORKDIR={workdir}", f"PORT={port}", HMREC_EVENTS_PATH=str(tmp_path / "events.sqlite"))
    lines = []
    for line in process.stdout:  # until the service says it serves
        lines.append(line)
        if line.startswith("serving on"):
            break
    assert httpx.get(f"http://127.0.0.1:{port}/customers/{s.FREQUENT}", timeout=10).status_code == 200
    os.killpg(process.pid, signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=60)[0]
    assert "serving on" in output and "Error" not in output, output


def test_serve_removes_the_metrics_folders_of_supervisors_that_are_gone(tmp_path, monkeypatch):
    import tempfile

    from hmrec.commands.serve import metrics_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"hmrec-metrics-{dead.pid}-k1ll3d"  # its supervisor was killed with SIGKILL
    gone.mkdir()
    (gone / "counter_1.db").write_bytes(b"")
    serving = tmp_path / f"hmrec-metrics-{os.getpid()}-l1v3"  # a supervisor still running
    serving.mkdir()
    unnamed = tmp_path / "hmrec-metrics-q1w2e3"  # an older release's name: whose it is cannot be told
    unnamed.mkdir()
    made = Path(metrics_folder())
    assert (gone.exists(), serving.exists(), unnamed.exists()) == (False, True, True)
    assert made.parent == tmp_path and made.name.startswith(f"hmrec-metrics-{os.getpid()}-")
