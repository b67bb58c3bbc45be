"""The served models: load the champion (and an experiment's other variants), warm them up, swap them in, follow
other workers' reloads, report heartbeats."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import polars as pl

from hmrec.registry.experiment import Experiment, ExperimentError, read_experiment
from hmrec.registry.model_bundle import BundleError
from hmrec.serving.events import EventStoreUnavailable, WorkerCoordination
from hmrec.serving.model import LoadedModel, load_model
from hmrec.serving.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotReadyError(RuntimeError):
    """No model is loaded; the message says why."""


class ReloadError(RuntimeError):
    """A champion could not be loaded; the message says why. The model already serving is kept."""


CHAMPION = "champion"
# loader() loads the champion, loader(alias) another registry alias (an experiment's variant); each warmed up
Loader = Callable[..., LoadedModel]
# What a bundle's own code (torch, LightGBM, FAISS, polars) raises when its files do not fit the code reading them,
# e.g. a bundle written by an older release: each must leave the serving model in place, never crash the service.
LOAD_ERRORS = (BundleError, OSError, ValueError, KeyError, IndexError, RuntimeError, ImportError, AttributeError,
               TypeError, pl.exceptions.PolarsError)


def champion_loader(settings: Settings) -> Loader:
    """Load the registry's champion (or another alias) for `settings.workdir`, checksums verified by the registry."""

    def load(alias: str = CHAMPION) -> LoadedModel:
        from mlflow.exceptions import MlflowException

        from hmrec.registry.location import missing_registry
        from hmrec.registry.versions import Registry, RegistryError

        missing = missing_registry(settings.workdir)
        if missing:
            raise ReloadError(f"cannot load the {alias}: {missing}")
        try:
            registry = Registry.for_workdir(settings.workdir)
            version, path = registry.load_version(alias)  # one alias look-up: a promote can't split them
            model = load_model(Path(path), version)
            model.clock = settings.today
            return model
        except (RegistryError, MlflowException, *LOAD_ERRORS) as error:
            raise ReloadError(f"cannot load the {alias} from {settings.workdir}: "
                              f"{type(error).__name__}: {error}") from error

    return load


@dataclass(frozen=True)
class Served:
    """What one worker serves, swapped as one reference: the experiment (None: none) and a model per variant."""

    experiment: Experiment | None
    models: dict[str, LoadedModel]  # alias -> model; only `champion` without an experiment

    @property
    def default(self) -> LoadedModel:
        return self.models[self.experiment.default if self.experiment else CHAMPION]

    def model_for(self, customer_id: str) -> LoadedModel:
        return self.models[self.experiment.variant_of(customer_id)] if self.experiment else self.default

    def versions(self) -> dict[str, int | None]:
        return {alias: model.version for alias, model in self.models.items()}


class ModelHolder:
    """Holds the served models (swapped by one reference assignment), this worker's place in the reload log and its
    heartbeat row.

    Without an experiment file (settings.experiment_file) it serves the champion; with one, a model per variant,
    each customer answered by the variant their id hashes to (registry/experiment.py). `model` is the default
    variant's (the champion's when it takes part), which answers what is asked for no customer.

    Several holders, one per uvicorn worker process, share one event store: a thread follows the reload log, so a
    reload made through any worker reaches them all. `loader` loads and warms up a model (a ReloadError refuses it);
    `swapped` is called right after each swap, before the reload is announced (the answer cache drops old answers)."""

    def __init__(self, settings: Settings, events: WorkerCoordination, loader: Loader, swapped: Callable[[], None]):
        self.settings = settings
        self.events = events
        self._loader = loader
        self._swapped = swapped
        self._served: Served | None = None
        self.load_error: str | None = "the model has not been loaded yet"
        self.on_swap: Callable[[int | None], None] | None = None  # told the new version after every swap
        self._reload_lock = threading.Lock()
        # a worker starting now loads the current champion anyway
        self._reload_seen = _or_else(events.last_reload, 0)
        # its row in the store's workers table: unique across machines, readable in a log
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.token = secrets.token_hex(8)  # names this worker in answers (/ready) without giving its process id
        self._beat = (None, self._reload_seen)  # (version, reload acted on) that the heartbeat repeats
        self._beat_lock = threading.Lock()
        # rows of killed workers, long gone
        _or_else(lambda: events.prune_workers(silent_for=60 * settings.worker_timeout_seconds), 0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.polls = 0  # reload-log polls the follower has finished (tests wait on it instead of sleeping)

    @property
    def model(self) -> LoadedModel:
        """The default variant's model (the champion's without an experiment)."""
        return self._now().default

    def model_for(self, customer_id: str) -> LoadedModel:
        """The model of the variant `customer_id` belongs to (the champion without an experiment)."""
        return self._now().model_for(customer_id)

    def _now(self) -> Served:
        served = self._served
        if served is None:
            raise NotReadyError(self.load_error or "no model is loaded")
        return served

    @property
    def _model(self) -> LoadedModel | None:
        return self._served.default if self._served is not None else None

    @property
    def serving(self) -> LoadedModel | None:
        """The default model now serving, or None before the first load (`model` raises instead)."""
        return self._model

    @property
    def served(self) -> Served | None:
        """Every variant now serving (None before the first load)."""
        return self._served

    def is_serving(self, model: LoadedModel) -> bool:
        """Whether `model` is still one serving (an answer from a swapped-out model is not cached)."""
        served = self._served
        return served is not None and any(m is model for m in served.models.values())

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        _or_else(lambda: self.events.forget_workers([self.worker]), None)

    def reload(self, announce: bool = True, upto: int | None = None) -> tuple[int | None, int | None]:
        """Read the experiment file, load each variant's alias (the champion alone without one) beside the serving
        models, then swap them all at once; returns the default variant's (old version, new version).

        announce: record the reload in the event store, so the other worker processes follow.
        upto: the reload-log id a follower is catching up to (nothing to do if already seen)."""
        if not self._reload_lock.acquire(blocking=False):
            raise ReloadError("a reload is already in progress")
        try:
            old = self._model
            if upto is not None and upto <= self._reload_seen:
                serving = old.version if old else None
                return serving, serving
            try:
                served = self._load_all()
            except ReloadError as error:
                if old is None:
                    self.load_error = str(error)
                raise
            self._served, new = served, served.default  # the swap: requests that already hold `old` finish with it
            self.load_error = None
            self._swapped()
            if announce:
                try:
                    self._reload_seen = max(self._reload_seen, self.events.announce_reload(new.version))
                except EventStoreUnavailable as error:
                    log.error("serving version %s, but the other workers cannot be told: %s", new.version, error)
            if self.on_swap is not None:
                self.on_swap(new.version)
            log.info("serving version %s (was %s)%s", new.version, old.version if old else None,
                     f"; experiment {served.experiment.name}: {served.versions()}" if served.experiment else "")
            return (old.version if old else None), new.version
        finally:
            if upto is not None:  # a failed follow is not retried: the old model keeps serving, the log says why
                self._reload_seen = max(self._reload_seen, upto)
            self._report()
            self._reload_lock.release()

    def _load_all(self) -> Served:
        """The experiment's variants (or the champion alone), each loaded and warmed up; ReloadError if any fails."""
        try:
            experiment = read_experiment(self.settings.experiment_file)
        except ExperimentError as error:
            raise ReloadError(str(error)) from error
        aliases = experiment.aliases if experiment else (CHAMPION,)
        models = {alias: self._loader() if alias == CHAMPION else self._loader(alias) for alias in aliases}
        for alias, model in models.items():
            model.variant = alias  # what its answers say
        return Served(experiment, models)

    def _report(self) -> None:
        model = self._model
        with self._beat_lock:  # a heartbeat never writes an older state over this one
            self._beat = (model.version if model else None, self._reload_seen)
            _or_else(lambda: self.events.report_worker(self.worker, *self._beat), None)

    def _heartbeat(self) -> None:
        with self._beat_lock:
            self.events.report_worker(self.worker, *self._beat)

    def wait_for_workers(self, timeout: float) -> tuple[int, int]:
        """After this worker's reload: wait until every live worker has acted on it (loaded the champion, or
        failed and kept its model); (workers serving this worker's version, live workers)."""
        deadline = time.monotonic() + timeout
        mine = [(self._model.version if self._model else None, self._reload_seen)]
        while True:  # without the store, only this worker is known to serve the version
            beats = _or_else(lambda: self.events.live_workers(self.settings.worker_timeout_seconds), None)
            live = mine if beats is None else [(beat.version, beat.reload_id) for beat in beats]
            if all(seen >= self._reload_seen for _, seen in live) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        version = self._model.version if self._model else None
        return sum(1 for v, seen in live if v == version and seen >= self._reload_seen), len(live)

    def follow_reloads(self, interval: float) -> None:
        """Poll the reload log every `interval` seconds in a thread, loading the champion when another worker did;
        and write this worker's heartbeat in another, so a long load never makes it look dead."""
        self._start("hmrec-heartbeat", self.settings.heartbeat_seconds, self._heartbeat)
        self._start("hmrec-reload-follower", interval, self._follow)

    def _follow(self) -> None:
        try:
            latest = self.events.last_reload()
            if latest > self._reload_seen:
                try:
                    self.reload(announce=False, upto=latest)
                except ReloadError as error:
                    log.error("did not follow a reload made by another worker: %s", error)
        finally:
            self.polls += 1

    def _start(self, name: str, interval: float, step: Callable[[], None]) -> None:
        """Run `step` every `interval` seconds in a daemon thread until close; a failure is logged and retried."""

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    step()
                except EventStoreUnavailable:
                    pass  # the store logged why; its next call tries again
                except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                    log.exception("%s failed; retrying in %.1f s", name, interval)

        self._threads.append(threading.Thread(target=run, name=name, daemon=True))
        self._threads[-1].start()


def _or_else(call: Callable[[], T], fallback: T) -> T:
    """`call()`, or `fallback` when the event store cannot answer (it logs why): coordination waits for the store,
    serving does not."""
    try:
        return call()
    except EventStoreUnavailable:
        return fallback
