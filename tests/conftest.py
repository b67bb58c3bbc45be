"""Fixtures shared across test files: one real pipeline run on the tiny sample, reused by every test that needs it;
one real PostgreSQL server, and the event store target of each backend for the tests run against both."""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_settings import SHARED_RUN_ARGS
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.sample.generate import generate
from hmrec.store import build
from hmrec.store.tables import Store


@dataclass(frozen=True)
class PipelineRun:
    root: Path
    workdir: Path
    printed: str  # the last line `hmrec pipeline` printed


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> PipelineRun:
    """`hmrec pipeline --promote` once on the tiny sample with the cheap settings and a label window behind the
    settings' week (pipeline_settings.py), through the real CLI; treat its workdir as read-only. Under `make
    test`'s two pytest processes the first to need it runs it and the other waits for it (a file lock in their
    shared temporary folder), instead of each running its own."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # .../pytest-N/, above each process's own popen-gwN/
    root, printed = shared / "pipeline", shared / "pipeline.printed"
    with open(shared / "pipeline.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when a failure leaves this block
        if not printed.is_file():
            shutil.rmtree(root, ignore_errors=True)  # what a failed run of the other process left
            generate("tiny", seed=3, out=root / "raw")
            result = CliRunner().invoke(
                app, ["pipeline", "--raw", str(root / "raw"), "--workdir", str(root / "work"), "--promote", *SHARED_RUN_ARGS]
            )
            assert result.exit_code == 0, result.output
            printed.write_text(result.output.strip().splitlines()[-1])
    return PipelineRun(root, root / "work", printed.read_text())


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL server for the whole session (see hmrec.support.local_postgres); stopped at the end."""
    from hmrec.support.local_postgres import TemporaryPostgres

    with TemporaryPostgres() as server:
        yield server


_databases = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def events_target(request, tmp_path) -> str:
    """An empty event store of each backend: a SQLite file path, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "events.sqlite")
    return request.getfixturevalue("postgres").create_database(f"events_{next(_databases)}")


# ---- the Ray tests (test_scale*.py): a real local cluster and the tiny sample, one of each per module ----------


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for every test here: 2 CPUs, no dashboard, no usage statistics, Ray's logs kept quiet."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "raw"
    generate("tiny", seed=3, out=out)
    return out


@pytest.fixture(scope="module")
def tiny_store(tiny_raw, tmp_path_factory) -> Store:
    folder = tmp_path_factory.mktemp("scoring") / "store"
    build.build_store(tiny_raw, folder, partitions=3)  # as the Ray engine writes it: the scorers read partitions
    return Store(folder)
