"""MLflow tracking of pipeline runs: where runs are stored, and one run's params, metrics and artifacts.

By default everything stays inside the working folder: a SQLite tracking store `WORKDIR/mlflow.db`
and an artifact folder `WORKDIR/mlartifacts` (MLflow records absolute artifact URIs; opening the store rebases
them, so a moved or copied workdir is self-contained: see housekeeping.py). Setting `MLFLOW_TRACKING_URI` (e.g. to
`http://mlflow.internal:5000`) sends runs and model versions to a shared server instead. Browse the
default store with `mlflow ui --backend-store-uri sqlite:///WORKDIR/mlflow.db`.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from numbers import Number
from pathlib import Path
from typing import Any

# An offline pipeline has nowhere to send usage telemetry, and a bar per downloaded bundle is noise in
# the service's logs; the user can still turn either back on.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from mlflow import MlflowClient  # noqa: E402  (after the telemetry default above)
from mlflow.entities import Metric, Param, RunStatus  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode  # noqa: E402
from mlflow.utils.time import get_current_time_millis  # noqa: E402

from hmrec.registry.housekeeping import mark_dead_runs, owner_tags, rebase_artifacts  # noqa: E402
from hmrec.registry.location import embedded_db, is_server_uri, tracking_uri  # noqa: E402
from hmrec.workdir import disk_full_reason  # noqa: E402

log = logging.getLogger(__name__)

EXPERIMENT = "hmrec"
ARTIFACT_DIR = "mlartifacts"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
_BATCH = 100  # MLflow accepts at most 100 params per log_batch call
_BAD_NAME_CHARS = re.compile(r"[^/\w.\- :]")
# MLflow logs its schema migrations on every new database and a "waiting" line per model version at
# INFO; they are not our news.
_NOISY_LOGGERS = ("alembic", "mlflow.store.model_registry.abstract_store")
# MLflow's database layer logs every SQLAlchemy error with its traceback before raising it again (as an
# MlflowException): the raised error is what we report, in one line.
_RERAISING_LOGGER = "mlflow.store.db.utils"


def unreadable_store(workdir: str | Path, error: Exception) -> str:
    """Why the workdir's tracking store cannot be read, in one line with the fix."""
    cause = (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0][:200]
    db = embedded_db(workdir)
    if db is not None and (reason := disk_full_reason(error, db)):
        return f"{db} could not be written: the disk filled up ({reason}); free space beside it and run again"
    if db is None:
        return f"the tracking store {tracking_uri(workdir)} cannot be read ({cause}); check MLFLOW_TRACKING_URI"
    return (f"{db} cannot be read ({cause}): it is damaged or not an MLflow database; restore it from a backup, "
            f"or move it aside and run `hmrec pipeline --raw DIR --workdir {workdir} --promote` for a new registry")


def artifact_location(workdir: str | Path, uri: str) -> str | None:
    """Where a new experiment keeps artifacts: `WORKDIR/mlartifacts` unless a server decides."""
    if is_server_uri(uri):
        return None
    return (Path(workdir).resolve() / ARTIFACT_DIR).as_uri()


def local_path(uri: str) -> Path | None:
    """The folder a `file:` URI or plain path names; None for a remote artifact store."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (one letter: a Windows drive)
        return Path(uri)
    return None


def walk_artifacts(client: MlflowClient, run_id: str, path: str):
    """(path, size) of every file under `path` of the run's artifacts, recursively."""
    for entry in client.list_artifacts(run_id, path):
        if entry.is_dir:
            yield from walk_artifacts(client, run_id, entry.path)
        else:
            yield entry.path, entry.file_size


def quiet_mlflow() -> None:
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger(_RERAISING_LOGGER).setLevel(logging.CRITICAL)


def client_for(workdir: str | Path) -> MlflowClient:
    """A client on the workdir's tracking store (created on first use) whose registry is the same store.

    Opening the embedded store (the default) first points its artifact locations into this workdir, should it
    have been moved or copied; opening any store marks KILLED the runs a dead process of this machine left RUNNING."""
    quiet_mlflow()
    uri = tracking_uri(workdir)
    if not is_server_uri(uri):
        Path(workdir).mkdir(parents=True, exist_ok=True)
    if (db := embedded_db(workdir)) is not None:
        rebase_artifacts(db, artifact_location(workdir, uri))
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI", "").strip() or uri
    client = MlflowClient(tracking_uri=uri, registry_uri=registry_uri)
    mark_dead_runs(client)
    return client


def experiment_id(client: MlflowClient, workdir: str | Path, name: str = EXPERIMENT) -> str:
    """The id of experiment `name`, created with the workdir's artifact folder if it does not exist."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = artifact_location(workdir, client.tracking_uri)
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        # Another process created it between our look-up and our create.
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


class Tracker:
    """One MLflow run: log parameters, metrics (nested dicts flattened) and artifact folders to it."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    @classmethod
    @contextmanager
    def start(
        cls, workdir: str | Path, run_name: str, params: Mapping[str, Any] | None = None,
        *, experiment: str = EXPERIMENT, tags: Mapping[str, str] | None = None,
    ) -> Iterator[Tracker]:
        """Open a run in the workdir's tracking store; it ends FINISHED, or FAILED if the block raises."""
        client = client_for(workdir)
        run = client.create_run(experiment_id(client, workdir, experiment), run_name=run_name,
                                tags={**owner_tags(), **(tags or {})})
        tracker = cls(client, run.info.run_id)
        log.info("tracking run %s (%s) in %s", run_name, tracker.run_id, client.tracking_uri)
        try:
            if params:
                tracker.log_params(params)
            yield tracker
        except BaseException as error:
            # KeyboardInterrupt and friends end the run as KILLED, real failures as FAILED; both re-raise.
            status = "FAILED" if isinstance(error, Exception) else "KILLED"
            client.set_terminated(tracker.run_id, status=status)
            raise
        client.set_terminated(tracker.run_id, status=RunStatus.to_string(RunStatus.FINISHED))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested dicts become dotted names, values are stringified (cut at 6000 chars)."""
        flat = [Param(metric_name(key), str(value)[:_MAX_PARAM_LENGTH]) for key, value in _flatten(params, ".")]
        for start in range(0, len(flat), _BATCH):
            self.client.log_batch(self.run_id, params=flat[start:start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics; nested dicts become `a/b` names, `@` becomes `_at_`; None values are skipped."""
        now = get_current_time_millis()
        batch = []
        for key, value in _flatten(metrics, "/"):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, Number):
                raise ValueError(f"metric {key!r} is {value!r} ({type(value).__name__}); metrics must be numbers")
            batch.append(Metric(metric_name(key), float(value), now, step or 0))
        for start in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        """Upload a folder's files (report.md, metrics.json, *.png) under `artifact_path` of the run."""
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as a JSON (or YAML, by extension) artifact, e.g. `metrics.json`."""
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))


def start_run(
    workdir: str | Path, run_name: str, params: Mapping[str, Any] | None = None, **kwargs: Any
) -> Any:
    """Same as `Tracker.start`: `with start_run(workdir, "nightly", {"seed": 7}) as tracker: ...`."""
    return Tracker.start(workdir, run_name, params, **kwargs)


def metric_name(key: str) -> str:
    """A name MLflow accepts: `map@12` -> `map_at_12`, other odd characters -> `_`."""
    return _BAD_NAME_CHARS.sub("_", key.replace("@", "_at_"))


def _flatten(values: Mapping[str, Any], sep: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _flatten(value, sep, name)
        else:
            yield name, value
