"""What every saved model and published folder shares: its config.json, the not-fitted guard, the atomic swap."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path

CONFIG_FILE = "config.json"


def write_config(directory: Path, config, name: str = CONFIG_FILE) -> None:
    """`config` (a dataclass, or a dict of JSON values) as `directory/name`, the folder made if missing."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(asdict(config) if is_dataclass(config) else config, indent=2))


def read_config(directory: Path, config_type: type | None = None, name: str = CONFIG_FILE):
    """What `write_config` wrote: the dataclass `config_type` built from it, or (None) the dict itself."""
    values = json.loads((Path(directory) / name).read_text())
    return config_type(**values) if config_type is not None else values


class NotFittedError(RuntimeError):
    """A model asked to answer, explain or save before `fit` or `load`."""


def require_fitted(model: object, *state: object) -> None:
    """Raise NotFittedError naming `model`'s class unless every piece of its fitted `state` is there (not None)."""
    if any(value is None for value in state):
        raise NotFittedError(f"{type(model).__name__} is not fitted: call fit(TrainData) or load(directory) first")


def swap_folder(built: Path, target: Path) -> None:
    """Put the complete folder `built` (beside `target`, on the same file system) in the place of `target`, never
    leaving `target` half-written: the old folder is moved aside first, `built` renamed into place, the old one
    deleted last."""
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def publish_copy(source: Path, target: Path) -> None:
    """Replace the folder `target` with a copy of `source`, staged beside it and swapped in (`swap_folder`)."""
    staging = target.with_name(f".{target.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    swap_folder(staging, target)
