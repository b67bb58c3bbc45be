"""One writer per workdir: a second pipeline refuses naming the first's PID, a killed writer's lock and leftovers
go, and a promotion refuses to move a champion that moved while its run ran."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serving_support as s

from hmrec.registry.versions import ChampionMovedError, Registry
from hmrec.registry.writer import workdir_writer
from hmrec.sample.generate import generate
from hmrec.store.build import build_store
from hmrec.support.launcher import HMREC
from hmrec.workdir import LOCK_FILE, LockedError, exclusive, store_lock_path

HOLD = """import sys, time
from hmrec.workdir import exclusive
with exclusive(sys.argv[1], command="test holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def wait_for(condition, timeout: float = 180.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def holding(path: Path) -> subprocess.Popen:
    """Another process holding the lock file `path` until it is killed."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_holder_is_refused_naming_the_first_and_a_killed_holder_releases(tmp_path):
    lock = tmp_path / LOCK_FILE
    child = holding(lock)
    try:
        with pytest.raises(LockedError) as refused, exclusive(lock):
            pass
        message = str(refused.value)
        assert f"process {child.pid} " in message and "(`test holder`)" in message and "\n" not in message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with exclusive(lock) as took:  # the OS dropped the dead holder's lock
        assert took and lock.read_text().startswith(f"{os.getpid()} ")
    assert lock.read_text() == ""  # released: no stale PID left to read


def test_wait_queues_behind_the_holder(tmp_path, caplog):
    lock = tmp_path / LOCK_FILE
    child = holding(lock)
    killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1); os.kill({child.pid}, 9)"])
    with caplog.at_level(logging.WARNING, logger="hmrec.workdir"), exclusive(lock, wait=True) as took:
        assert took and child.wait(timeout=10) == -signal.SIGKILL  # got it only once the holder was killed
    killer.wait()
    assert f"waiting for process {child.pid} (`test holder`)" in caplog.text


def test_nested_writers_in_one_process_share_the_lock(tmp_path):
    lock = tmp_path / LOCK_FILE
    with exclusive(lock) as outer, exclusive(lock) as inner:
        assert outer and not inner
    with exclusive(lock) as again:
        assert again


def test_two_pipelines_on_one_workdir_the_second_refuses_naming_the_first(tmp_path):
    generate("tiny", seed=3, out=tmp_path / "raw")
    workdir = tmp_path / "work"
    command = [str(HMREC), "pipeline", "--raw", str(tmp_path / "raw"), "--workdir", str(workdir)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = workdir / LOCK_FILE
        wait_for(lambda: lock.is_file() and lock.read_text().startswith(f"{first.pid} "), what="the first's lock")
        second = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert second.returncode == 1
        line = second.stderr.strip()
        assert "\n" not in line and f"process {first.pid} " in line and "hmrec pipeline" in line, line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with exclusive(workdir / LOCK_FILE) as took:  # killed: nothing holds the workdir now
        assert took


def test_a_writer_removes_what_killed_runs_left(tmp_path, caplog):
    from hmrec.recommenders.popularity import PopularityRecommender

    workdir = s.handmade_workdir(tmp_path)  # version 1 (repurchase), registered from tmp_path/bundles/v1
    registered = s.write_handmade_bundle(workdir / "bundles" / "20261202T090909Z", PopularityRecommender())
    s.register(workdir, registered, promote=False)
    # killed between writing its bundle and registering it (another bundle: it keeps one purchase per customer)
    orphan = s.write_handmade_bundle(workdir / "bundles" / "20261202T101010Z", history_tail=1)
    partial = workdir / "bundles" / "20261202T111111Z"  # killed while writing: no manifest yet
    partial.mkdir()
    (partial / "articles.parquet").write_bytes(b"PAR1")
    scoring = workdir / ".scoring-abc123"
    scoring.mkdir()
    with caplog.at_level(logging.WARNING, logger="hmrec.registry.writer"), workdir_writer(workdir):
        pass
    assert registered.is_dir() and not orphan.exists() and not partial.exists() and not scoring.exists()
    assert sum("removing" in r.getMessage() for r in caplog.records) == 3


def test_a_killed_etl_leaves_nothing_after_the_next_build(tmp_path, caplog):
    generate("tiny", seed=3, out=tmp_path / "raw")
    store = tmp_path / "store"
    building = tmp_path / ".store.building-k1ll3d"  # what a SIGKILL mid-build leaves beside the store
    building.mkdir()
    (building / "customers.parquet").write_bytes(b"PAR1")
    with caplog.at_level(logging.WARNING, logger="hmrec.store.build"):
        build_store(tmp_path / "raw", store)
    assert not building.exists() and (store / "manifest.json").is_file()
    assert any(str(building) in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "store", "store.lock"]


def test_an_etl_on_a_store_being_built_refuses(tmp_path):
    generate("tiny", seed=3, out=tmp_path / "raw")
    child = holding(store_lock_path(tmp_path / "store"))
    try:
        result = subprocess.run([str(HMREC), "etl", "--raw", str(tmp_path / "raw"), "--store", str(tmp_path / "store")],
                                capture_output=True, text=True, timeout=300)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert result.returncode == 1 and f"process {child.pid} " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "store").exists()


def test_promotion_refuses_when_the_champion_moved_since_the_run_started(tmp_path):
    workdir, v1, v2 = s.two_versions(tmp_path)
    registry = Registry.for_workdir(workdir)
    v3 = s.register(workdir, s.write_handmade_bundle(tmp_path / "bundles" / "v3"), promote=False)
    started_from = registry.champion_version()
    assert started_from == v1
    registry.promote(v2)  # another run (or person) promoted meanwhile
    with pytest.raises(ChampionMovedError, match=f"champion moved from version {v1} to {v2}.*promote {v3}"):
        registry.promote(v3, expected=started_from)
    assert registry.champion_version() == v2
    registry.promote(v3, expected=v2)
    assert registry.champion_version() == v3


def test_a_writer_removes_a_bundle_upload_whose_run_was_killed_before_its_version(tmp_path):
    workdir = s.handmade_workdir(tmp_path)
    registry = Registry.for_workdir(workdir)
    run = registry.client.create_run(registry.client.get_experiment_by_name("hmrec").experiment_id)
    registry.client.log_artifacts(run.info.run_id, str(s.write_handmade_bundle(tmp_path / "b2")), "bundle")
    registry.client.set_terminated(run.info.run_id, status="KILLED")
    upload = Path(run.info.artifact_uri.removeprefix("file://")) / "bundle"
    assert (upload / "manifest.json").is_file()
    with workdir_writer(workdir):
        pass
    assert not upload.exists()
    registry.load(1)  # the registered version's upload is untouched


@pytest.mark.parametrize("command", [["registry", "promote", "1"], ["evaluate", "--refit"]])
def test_other_writers_refuse_while_the_workdir_is_held(command, tmp_path):
    from raw_helpers import write_raw

    workdir = s.handmade_workdir(tmp_path)
    build_store(write_raw(tmp_path / "raw"), workdir / "store")
    child = holding(workdir / LOCK_FILE)
    try:
        result = subprocess.run([str(HMREC), *command, "--workdir", str(workdir)], capture_output=True, text=True,
                                timeout=300)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {workdir} is in use: process {child.pid} (`test holder`) holds {workdir / LOCK_FILE}; wait for it "
        "to finish, or pass --wait to queue behind it"]
