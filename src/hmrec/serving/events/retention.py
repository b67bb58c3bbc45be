"""Retention of live events: delete only those every served model has trained past, once older than a window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from mlflow.exceptions import MlflowException

from hmrec.registry.versions import Registry, RegistryError
from hmrec.serving.events.base import EventLog


class NothingServedError(RegistryError):
    """No registry alias points at a version, so no event is known to be in any model's training data."""


@dataclass(frozen=True)
class Compaction:
    """What `compact_events` did: the aliases served (alias -> (version, data end)), the day before which events were
    deleted (the earliest of those data ends), the retention window and how many events went."""

    served: dict[str, tuple[int, date]]
    before: date
    retention_days: int
    deleted: int

    def describe(self) -> str:
        ends = ", ".join(f"{alias} = version {v} ({end})" for alias, (v, end) in self.served.items())
        events = f"{self.deleted:,} live event{'' if self.deleted == 1 else 's'}"
        return (f"deleted {events} dated before {self.before} and received over {self.retention_days} days ago; data "
                f"ends of the served versions: {ends}")


def served_data_ends(registry: Registry) -> dict[str, tuple[int, date]]:
    """Every alias of the registered model (champion, experiment variants...) -> (version, its manifest's data end)."""
    try:
        aliases = registry.client.get_registered_model(registry.name).aliases or {}
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    versions = {alias: int(version) for alias, version in sorted(aliases.items())}
    return {alias: (v, date.fromisoformat(registry.manifest(v)["data_end"])) for alias, v in versions.items()}


def compact_events(log_store: EventLog, registry: Registry, retention_days: int) -> Compaction:
    """Delete the events dated before the data end of every version an alias serves (so each was in every served
    model's training window: none that no training run has seen is lost) and received over `retention_days` days
    ago (time to `hmrec events export` them into the next training data). NothingServedError without an alias."""
    served = served_data_ends(registry)
    if not served:
        raise NothingServedError(f"no alias of {registry.name} points at a version in the registry of "
                                 f"{registry.workdir}, so no live event is known to be trained on: none deleted "
                                 "(promote one: `hmrec registry promote VERSION`)")
    before = min(end for _, end in served.values())
    return Compaction(served, before, retention_days, log_store.compact(before, retention_days))
