"""A live experiment between registry aliases: W/experiment.json, its traffic shares, and each customer's variant."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

EXPERIMENT_FILE = "experiment.json"
ALIAS_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")  # MLflow's alias names, kept short for metric labels
NAME_RULE = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
SHARE_TOLERANCE = 1e-6  # shares written as 0.9 and 0.1 sum to 1 within float rounding
START = "hmrec experiment start --workdir W --variant champion=0.9 --variant challenger=0.1"


class ExperimentError(ValueError):
    """An experiment file or definition the service refuses; the message names the file and the fix."""


@dataclass(frozen=True)
class Experiment:
    """Variants (registry aliases) in a fixed order with their traffic shares, summing to 1.

    A customer's variant is `variant_of(customer_id)`: the same on every worker and machine, because it depends only
    on the experiment's name and the customer id (sha256, not Python's per-process `hash`)."""

    name: str
    variants: tuple[tuple[str, float], ...]  # (alias, share), in the order the shares are laid out on [0, 1)
    started: str = ""

    def __post_init__(self) -> None:
        problems = _problems(self.name, self.variants)
        if problems:
            raise ExperimentError(f"experiment {self.name!r}: {'; '.join(problems)}")

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(alias for alias, _ in self.variants)

    @property
    def default(self) -> str:
        """The variant that answers what is asked for no customer (the demo's version, /popular): the champion when
        it takes part, else the first variant."""
        return "champion" if "champion" in self.aliases else self.aliases[0]

    def variant_of(self, customer_id: str) -> str:
        point, upper = bucket(self.name, customer_id), 0.0
        for alias, share in self.variants:
            upper += share
            if point < upper:
                return alias
        return self.variants[-1][0]  # float rounding left a sliver above the last bound

    def as_json(self) -> dict:
        return {"name": self.name, "started": self.started,
                "variants": [{"alias": alias, "share": share} for alias, share in self.variants]}


def bucket(name: str, customer_id: str) -> float:
    """The customer's point in [0, 1): the first 8 bytes of sha256(name NUL customer_id) over 2^64."""
    digest = hashlib.sha256(f"{name}\0{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _problems(name: str, variants: tuple[tuple[str, float], ...]) -> list[str]:
    problems = []
    if not NAME_RULE.match(name or ""):
        problems.append("the name must be 1-80 letters, digits or _.:-")
    if not variants:
        problems.append("no variant is named")
    aliases = [alias for alias, _ in variants]
    bad = [alias for alias in aliases if not ALIAS_RULE.match(alias)]
    if bad:
        problems.append(f"{len(bad)} variant(s) are not registry alias names (e.g. {bad[0][:40]!r})")
    if len(set(aliases)) != len(aliases):
        problems.append("a variant is named twice")
    shares = [share for _, share in variants]
    if any(not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0 or s > 1 for s in shares):
        problems.append(f"every share must be in (0, 1], got {shares}")
    elif variants and abs(sum(shares) - 1) > SHARE_TOLERANCE:
        problems.append(f"the shares sum to {sum(shares):.6g}, not 1")
    return problems


def new_experiment(variants: list[tuple[str, float]], name: str | None = None) -> Experiment:
    """An experiment starting now; its default name holds the start time, so a new one reshuffles the customers."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Experiment(name or f"exp-{started.replace(':', '')}", tuple(variants), started)


def parse_variant(text: str) -> tuple[str, float]:
    """`alias=share` (share a fraction like 0.1 or a percentage like 10%)."""
    alias, sep, share = text.partition("=")
    try:
        value = float(share[:-1]) / 100 if share.endswith("%") else float(share)
    except ValueError:
        value = None
    if not sep or value is None:
        raise ExperimentError(f"--variant {text!r} is not ALIAS=SHARE, e.g. champion=0.9 or challenger=10%")
    return alias.strip(), value


def experiment_path(workdir: str | Path) -> Path:
    return Path(workdir) / EXPERIMENT_FILE


def read_experiment(path: Path) -> Experiment | None:
    """The experiment in `path`, or None when there is no file (then the champion serves everyone)."""
    try:
        data = json.loads(path.read_text())
        variants = tuple((str(v["alias"]), float(v["share"])) for v in data["variants"])
        return Experiment(str(data["name"]), variants, str(data.get("started", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:  # ExperimentError is a ValueError
        raise ExperimentError(f"{path} is not a valid experiment ({type(error).__name__}: {error}): write it again "
                              f"with `{START}`, or remove it with `hmrec experiment stop`") from error


def write_experiment(path: Path, experiment: Experiment) -> None:
    """Replace the file atomically: a worker reading it during a reload sees the old one or the new one."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(experiment.as_json(), indent=2) + "\n")
    os.replace(staging, path)


def remove_experiment(path: Path) -> Experiment | None:
    """Delete the file; the experiment it held (None: there was none)."""
    try:
        current = read_experiment(path)
    except ExperimentError:
        current = None
    path.unlink(missing_ok=True)
    return current
