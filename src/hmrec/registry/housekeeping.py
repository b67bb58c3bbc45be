"""Opening a workdir's tracking store: artifact locations follow a moved or copied workdir, and runs whose
process died (SIGKILL, power cut) are marked KILLED instead of staying RUNNING forever."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from contextlib import closing
from pathlib import Path

import psutil
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

HOST_TAG = "hmrec.host"  # set on every run at its start: which machine and process own it while RUNNING
PID_TAG = "hmrec.pid"
# Every column of MLflow's SQL store holding an artifact URI (absolute: MLflow resolves them when it writes them).
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("model_versions", "source"),
                     ("model_versions", "storage_location"), ("logged_models", "artifact_location"))


def owner_tags() -> dict[str, str]:
    """The tags that let a later opening tell whether a RUNNING run's process is still alive."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def rebase_artifacts(db: Path, root: str) -> int:
    """Point the artifact URIs that the SQLite store `db` records under another folder's `mlartifacts` (the workdir
    it was copied or moved from) at `root`, this workdir's; how many locations moved."""
    if not db.is_file():
        return 0
    name = root.rsplit("/", 1)[-1]
    with closing(sqlite3.connect(db, timeout=30)) as connection, connection:
        olds = {location for (location,) in connection.execute("SELECT artifact_location FROM experiments")
                if location and location.startswith("file:") and location.endswith(f"/{name}") and location != root}
        if not olds:
            return 0
        tables = {t: {row[1] for row in connection.execute(f"PRAGMA table_info({t})")} for t, _ in _LOCATION_COLUMNS}
        moved = 0
        for old in olds:
            for table, column in _LOCATION_COLUMNS:
                if column in tables[table]:
                    moved += connection.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 - names are ours
                        f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                        (root, len(old) + 1, old, len(old) + 1, f"{old}/")).rowcount
    log.warning("%s was made under another folder (%s): %d artifact locations now point into %s",
                db, ", ".join(sorted(olds)), moved, root)
    return moved


def mark_dead_runs(client: MlflowClient) -> list[str]:
    """Mark KILLED every RUNNING run started on this machine by a process that is gone; their ids."""
    host, marked = socket.gethostname(), []
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000)
        for run in runs:
            tags = run.data.tags
            if tags.get(HOST_TAG) != host or _alive(int(tags.get(PID_TAG, "0")), run.info.start_time):
                continue
            client.set_tag(run.info.run_id, "hmrec.ended",
                           f"process {tags[PID_TAG]} was gone when the workdir was next opened")
            client.set_terminated(run.info.run_id, status="KILLED")
            marked.append(run.info.run_id)
    except MlflowException as error:  # tidying must never stop the store from opening
        log.warning("could not check for runs left RUNNING by dead processes: %s", error)
    if marked:
        log.warning("marked %d run(s) KILLED: their process died while they ran: %s", len(marked), ", ".join(marked))
    return marked


def _alive(pid: int, run_started_ms: int) -> bool:
    """The run's process still runs: that pid exists and was started before the run (not a reused pid)."""
    try:
        return psutil.Process(pid).create_time() * 1000 <= run_started_ms + 1000
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # exists, another user's: assume it is the owner
        return True
