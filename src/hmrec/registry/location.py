"""Where a workdir's registry lives, without importing MLflow: a command or a supervisor that only checks the
registry is there starts in a fraction of a second (MLflow's import alone takes about two)."""

from __future__ import annotations

import os
from pathlib import Path

DB_FILE = "mlflow.db"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
_SERVER_SCHEMES = ("http://", "https://", "databricks")


def tracking_uri(workdir: str | Path) -> str:
    """`MLFLOW_TRACKING_URI` when set, else the SQLite store `sqlite:///<absolute workdir>/mlflow.db`."""
    configured = os.environ.get(ENV_TRACKING_URI, "").strip()
    if configured:
        return configured
    return f"sqlite:///{Path(workdir).resolve() / DB_FILE}"


def embedded_db(workdir: str | Path) -> Path | None:
    """The workdir's own mlflow.db when it is the tracking store (the default), else None (a configured store)."""
    db = Path(workdir).resolve() / DB_FILE
    return db if tracking_uri(workdir) == f"sqlite:///{db}" else None


def missing_registry(workdir: str | Path) -> str | None:
    """Why `workdir` holds no registry to read, or None (also when MLFLOW_TRACKING_URI points elsewhere): a command
    that only reads must say so, not create the folder and an empty mlflow.db."""
    workdir = Path(workdir)
    db = embedded_db(workdir)
    if db is None or db.is_file():
        return None
    what = "does not exist" if not workdir.is_dir() else f"holds no registry ({DB_FILE} is missing)"
    return (f"{workdir} {what}: run `hmrec pipeline --raw DIR --workdir {workdir} --promote` to train and register "
            "a model")


def is_server_uri(uri: str) -> bool:
    """True for a tracking server, which chooses its own artifact store; False for a local database."""
    return uri.startswith(_SERVER_SCHEMES)
