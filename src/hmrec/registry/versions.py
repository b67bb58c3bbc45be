"""The model registry: versions of `hmrec-recommender`, each a verified bundle folder, and the `champion` alias.

A version is created only after its bundle is completely in the artifact store (upload first, create the
version last), and every load re-checks the bundle against its manifest and the manifest against the
checksum recorded on the version, so a half-written or altered version is never served.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow.artifacts
import sqlalchemy.exc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hmrec.registry.checksums import (
    MANIFEST,
    REREGISTER,
    RegistryError,
    bundle_files,
    map_at_12,
    read_manifest,
    sha256_file,
    verify_bundle,
    write_manifest,
)
from hmrec.registry.housekeeping import owner_tags
from hmrec.registry.tracking import client_for, experiment_id, local_path, unreadable_store, walk_artifacts

__all__ = ["CHAMPION", "MODEL_NAME", "ChampionMovedError", "Registry", "RegistryError", "VersionInfo", "verify_bundle",
           "write_manifest"]

log = logging.getLogger(__name__)

MODEL_NAME = "hmrec-recommender"
CHAMPION = "champion"
BUNDLE_ARTIFACT = "bundle"
CACHE_DIR = "registry-cache"
TAG_MANIFEST_SHA = "manifest_sha256"
TAG_FINGERPRINT = "store_fingerprint"
TAG_MAP12 = "map_at_12"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
BUNDLES_DIR = "bundles"  # W/bundles/<run-id>: what a pipeline run wrote before registering it
MAX_VERSION = 2**63 - 1  # MLflow's SQL stores keep versions as 64-bit integers
_ANY = object()  # promote(expected=_ANY): no compare-and-set


class ChampionMovedError(RegistryError):
    """The champion alias moved while this run ran, so the run did not move it again; the message says how."""


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as listed: what `hmrec registry list` shows."""

    version: int
    created: datetime
    run_id: str | None
    store_fingerprint: str | None
    map_at_12: float | None
    champion: bool

    def describe(self) -> str:
        score = f"MAP@12 {self.map_at_12:.4f}" if self.map_at_12 is not None else "MAP@12 -"
        return (
            f"version {self.version:>3}  created {self.created:%Y-%m-%d %H:%M:%S} UTC  "
            f"store {(self.store_fingerprint or '-')[:16]}  {score}" + ("  champion" if self.champion else "")
        )


class Registry:
    """Versions of one registered model in an MLflow model registry.

    Over 12 methods on purpose: ten public ones (register, promote, list, load) and the private steps of those
    (upload, check, download, verify), all one job on one MLflow client and its naming conventions."""

    def __init__(self, client: MlflowClient, workdir: Path, name: str = MODEL_NAME, read_in_place: bool = True):
        """`read_in_place=False` copies even a local version into `WORKDIR/registry-cache` before use."""
        self.client = client
        self.workdir = Path(workdir).resolve()
        self.name = name
        self.read_in_place = read_in_place

    @classmethod
    def for_workdir(cls, workdir: str | Path) -> Registry:
        """The registry in the workdir's tracking store (or the server `MLFLOW_TRACKING_URI` names); a store that
        cannot be read (a damaged mlflow.db, a server that does not answer) is a RegistryError of one line."""
        try:
            client = client_for(workdir)
            client.search_registered_models(max_results=1)  # opens the store now, not in the middle of a command
        except (sqlite3.DatabaseError, sqlalchemy.exc.SQLAlchemyError, MlflowException) as error:
            raise RegistryError(unreadable_store(workdir, error)) from None
        return cls(client, Path(workdir))

    # -- writing -------------------------------------------------------------------------------------

    def register(self, bundle_dir: str | Path, run_id: str | None = None) -> int:
        """Upload a finished bundle as artifacts of `run_id` (a new run if None), then create the version.

        The bundle must already hold its manifest (`write_manifest`) and match it. Until the last step
        no version exists, so a failure part-way leaves none behind. Returns the version number.
        """
        bundle_dir = Path(bundle_dir)
        manifest = verify_bundle(bundle_dir, advice="the bundle changed after write_manifest; write the manifest last")
        own_run = run_id is None
        if own_run:
            run_id = self.client.create_run(experiment_id(self.client, self.workdir), run_name="register",
                                            tags=owner_tags()).info.run_id
        try:
            version = self._upload_and_create(bundle_dir, manifest, run_id)
        except BaseException:
            if own_run:
                self.client.set_terminated(run_id, status="FAILED")
            raise
        if own_run:
            self.client.set_terminated(run_id)
        log.info("registered %s version %d from %s (run %s)", self.name, version, bundle_dir, run_id)
        return version

    def promote(self, version: int, expected: int | None | object = _ANY) -> None:
        """Point `champion` at `version` after verifying it; one DB transaction, so the alias never dangles.

        With `expected` (the champion's version when the caller started, None for none), the alias moves only if
        it still points there: it is read again just before it is set, else ChampionMovedError. MLflow has no
        atomic compare-and-set on an alias, so a promotion landing between that read and the set still wins;
        the window is one request long instead of a whole training run (docs/reliability.md).
        """
        self.load(int(version))
        if expected is not _ANY:
            now = self.champion_version()
            if now != expected:
                raise ChampionMovedError(
                    f"champion moved from version {expected} to {now} while this run ran, so version {int(version)} "
                    f"was registered but not promoted: compare them (`hmrec registry list`) and run "
                    f"`hmrec registry promote {int(version)}` to promote it anyway")
        self.client.set_registered_model_alias(self.name, CHAMPION, str(int(version)))
        log.info("%s version %d is now %s", self.name, int(version), CHAMPION)

    def set_alias(self, alias: str, version: int) -> None:
        """Point `alias` (e.g. `challenger`, an experiment's variant) at `version` after verifying it; `champion`
        moves only through `promote`."""
        if alias == CHAMPION:
            raise RegistryError(f"the {CHAMPION} alias moves only by promotion: run `hmrec registry promote {version}`")
        self.load(int(version))
        self.client.set_registered_model_alias(self.name, alias, str(int(version)))
        log.info("%s version %d is now %s", self.name, int(version), alias)

    def alias_version(self, alias: str) -> int | None:
        """The version `alias` points at, or None when it is not set."""
        try:
            return int(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as error:
            if error.error_code in _MISSING:
                return None
            raise

    # -- reading -------------------------------------------------------------------------------------

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first, with the champion marked."""
        found = self.client.search_model_versions(f"name='{self.name}'")
        champion = self.champion_version()
        return sorted((self._info(mv, champion) for mv in found), key=lambda info: info.version)

    def describe_all(self) -> list[str]:
        """One line per version (number, created, store fingerprint, MAP@12, `champion`)."""
        lines = [info.describe() for info in self.versions()]
        return lines or [f"no version of {self.name} is registered yet: {self._train_hint()}"]

    def manifest_digests(self) -> set[str]:
        """The manifest checksum recorded on every registered version."""
        found = self.client.search_model_versions(f"name='{self.name}'")
        return {digest for mv in found if (digest := (mv.tags or {}).get(TAG_MANIFEST_SHA))}

    def orphan_uploads(self) -> list[Path]:
        """Bundle uploads in a local artifact store whose run ended KILLED or FAILED without a version (a kill
        or failure between upload and registration); the run and its other artifacts stay."""
        with_version = {mv.run_id for mv in self.client.search_model_versions(f"name='{self.name}'")}
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        ended = [run for status in ("KILLED", "FAILED") for run in self.client.search_runs(
            experiments, filter_string=f"attributes.status = '{status}'", max_results=1000)]
        uploads = [local_path(run.info.artifact_uri) for run in ended if run.info.run_id not in with_version]
        return [path / BUNDLE_ARTIFACT for path in uploads if path is not None and (path / BUNDLE_ARTIFACT).is_dir()]

    def champion_version(self) -> int | None:
        return self.alias_version(CHAMPION)

    def manifest(self, version: int | str) -> dict:
        """The manifest of a version (or alias), read without checking the other files."""
        mv = self._model_version(version)
        uri = self._source(mv)
        local = local_path(uri)
        if local is not None:
            return read_manifest(local)
        with tempfile.TemporaryDirectory() as scratch:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri.rstrip('/')}/{MANIFEST}", dst_path=scratch, tracking_uri=self.client.tracking_uri
            )
            return read_manifest(Path(path).parent)

    def load(self, version_or_alias: int | str = CHAMPION) -> Path:
        """Local path of a verified bundle: in place for a local artifact store, else a downloaded copy.

        Checks the manifest against the checksum recorded when the version was created and every file
        against the manifest; any difference is a RegistryError naming the file.
        """
        return self.load_version(version_or_alias)[1]

    def load_version(self, version_or_alias: int | str = CHAMPION) -> tuple[int, Path]:
        """Like `load`, also returning the version number the alias pointed at when it was resolved."""
        mv = self._model_version(version_or_alias)
        if mv.status != "READY":
            raise RegistryError(f"version {mv.version} is {mv.status}, not READY: wait for it or re-register it")
        uri = self._source(mv)
        local = local_path(uri) if self.read_in_place else None
        path = local if local is not None else self._download(mv, uri)
        self._check_manifest_digest(mv, path)
        verify_bundle(path, advice=REREGISTER)
        log.info("loaded %s version %s from %s", self.name, mv.version, path)
        return int(mv.version), path

    # -- internals -----------------------------------------------------------------------------------

    def _upload_and_create(self, bundle_dir: Path, manifest: dict, run_id: str) -> int:
        if self.client.list_artifacts(run_id, BUNDLE_ARTIFACT):
            raise RegistryError(
                f"run {run_id} already holds a registered bundle; uploading another would change that "
                "version's files: register each bundle from its own run"
            )
        self.client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
        self._check_upload(run_id, bundle_dir)
        self._ensure_model()
        source = f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/{BUNDLE_ARTIFACT}"
        tags = {TAG_MANIFEST_SHA: sha256_file(bundle_dir / MANIFEST), TAG_FINGERPRINT: manifest["store_fingerprint"]}
        score = map_at_12(manifest)
        if score is not None:
            tags[TAG_MAP12] = repr(score)
        mv = self.client.create_model_version(self.name, source=source, run_id=run_id, tags=tags)
        return int(mv.version)

    def _check_upload(self, run_id: str, bundle_dir: Path) -> None:
        """Every bundle file (and the manifest) is in the artifact store with its size, before any version."""
        expected = {rel: (bundle_dir / rel).stat().st_size for rel in [*bundle_files(bundle_dir), MANIFEST]}
        stored = dict(walk_artifacts(self.client, run_id, BUNDLE_ARTIFACT))
        stored = {path.removeprefix(f"{BUNDLE_ARTIFACT}/"): size for path, size in stored.items()}
        bad = sorted(rel for rel, size in expected.items() if stored.get(rel) != size)
        if bad:
            raise RegistryError(
                f"upload of {bundle_dir} to run {run_id} is incomplete: {len(bad)} file(s) missing or of the "
                f"wrong size (e.g. {bad[0]}); no version was created: register it again"
            )

    def _ensure_model(self) -> None:
        try:
            self.client.create_registered_model(self.name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _model_version(self, version_or_alias: int | str):
        key = str(version_or_alias)
        if key.isdigit() and int(key) > MAX_VERSION:
            raise RegistryError(f"version {key[:30]} does not exist (versions are at most {MAX_VERSION}); "
                                "`hmrec registry list` shows the versions")
        try:
            if key.isdigit():
                return self.client.get_model_version(self.name, key)
            return self.client.get_model_version_by_alias(self.name, key)
        except MlflowException as error:
            if error.error_code not in _MISSING:
                raise
            if not key.isdigit():
                message = self._no_champion() if key == CHAMPION else f"alias {key!r} is not set on {self.name}"
                raise RegistryError(message) from error
            raise RegistryError(f"version {key} does not exist; `hmrec registry list` shows the versions") from error

    def _train_hint(self) -> str:
        return f"run `hmrec pipeline --raw DIR --workdir {self.workdir} --promote` to train and register one"

    def _no_champion(self) -> str:
        """The fix for a missing champion: promote a registered version, or train one if there is none."""
        registered = [str(info.version) for info in self.versions()]
        if not registered:
            return f"no version is registered yet: {self._train_hint()}"
        return f"no version is promoted yet: run `hmrec registry promote VERSION` (registered: {', '.join(registered)})"

    def _source(self, mv) -> str:
        return self.client.get_model_version_download_uri(self.name, mv.version)

    def _download(self, mv, uri: str) -> Path:
        """Copy a remote version into the cache once; a cached copy that no longer verifies is fetched again."""
        target = self.workdir / CACHE_DIR / f"v{mv.version}"
        if target.is_dir():
            try:
                verify_bundle(target)
                return target
            except RegistryError as error:
                log.warning("cached copy of version %s is damaged (%s); downloading it again", mv.version, error)
                shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".v{mv.version}-", dir=target.parent))
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(staging), tracking_uri=self.client.tracking_uri
            )
            Path(path).rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _check_manifest_digest(self, mv, path: Path) -> None:
        recorded = (mv.tags or {}).get(TAG_MANIFEST_SHA)
        if recorded is None:
            raise RegistryError(f"version {mv.version} has no {TAG_MANIFEST_SHA} tag: it was not made by "
                                "Registry.register and cannot be verified; re-register it")
        actual = sha256_file(path / MANIFEST)
        if actual != recorded:
            raise RegistryError(
                f"model file {MANIFEST} of version {mv.version} does not match the checksum recorded at registration "
                f"(expected {recorded[:12]}..., got {actual[:12]}...) in {path}: {REREGISTER}"
            )

    def _info(self, mv, champion: int | None) -> VersionInfo:
        tags = mv.tags or {}
        score = tags.get(TAG_MAP12)
        return VersionInfo(
            version=int(mv.version),
            created=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
            run_id=mv.run_id,
            store_fingerprint=tags.get(TAG_FINGERPRINT),
            map_at_12=float(score) if score is not None else None,
            champion=int(mv.version) == champion,
        )
