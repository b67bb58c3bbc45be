"""Model bundle manifests: the sha256 of every file, written last, and a check that names the bad file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2  # 2: issue 19, the served model read only through registry/model_bundle.py
RESERVED_KEYS = ("format", "created", "store_fingerprint", "files")
REREGISTER = "the version is corrupted; re-register it"
_CHUNK = 1 << 20


class RegistryError(Exception):
    """A bundle or model version that cannot be registered, promoted or loaded; the message says what to do."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(bundle_dir: Path) -> list[str]:
    """Relative POSIX paths of every file of the bundle except the manifest, sorted.

    Links and special files are refused: a checksum of a link's target says nothing about what a copy
    in the artifact store will hold.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise RegistryError(f"model bundle {bundle_dir} does not exist or is not a folder")
    files, odd = [], []
    for path in sorted(bundle_dir.rglob("*")):
        rel = path.relative_to(bundle_dir).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            odd.append(rel)
        elif path.is_file() and rel != MANIFEST:
            files.append(rel)
    if odd:
        raise RegistryError(
            f"model bundle {bundle_dir} holds {len(odd)} links or special files (e.g. {odd[0]}); "
            "a bundle must hold plain files only: copy the target in instead"
        )
    return files


def checksums(bundle_dir: Path) -> dict[str, str]:
    """sha256 of every file of the bundle except the manifest, keyed by relative path."""
    return {rel: sha256_file(Path(bundle_dir) / rel) for rel in bundle_files(bundle_dir)}


def write_manifest(bundle_dir: Path, *, store_fingerprint: str, extra: dict[str, Any] | None = None) -> dict:
    """Write `manifest.json` into a finished bundle and return it; call it after the last file is written.

    The manifest holds `format`, `created` (UTC, ISO 8601), `store_fingerprint`, the keys of `extra`
    (e.g. `metrics`, `data_end`) and `files` (relative path -> sha256). It is written to a temporary
    name and renamed, so a reader sees either no manifest or a complete one.
    """
    bundle_dir = Path(bundle_dir)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"write_manifest: extra keys {clash} are reserved for the manifest itself ({RESERVED_KEYS})")
    manifest = {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "store_fingerprint": store_fingerprint,
        **extra,
        "files": checksums(bundle_dir),
    }
    text = json.dumps(manifest, indent=2, default=_json_default)
    staging = bundle_dir / f".{MANIFEST}.partial"
    staging.write_text(text)
    os.replace(staging, bundle_dir / MANIFEST)
    log.info("wrote %s: %d files", bundle_dir / MANIFEST, len(manifest["files"]))
    return json.loads(text)


def read_manifest(bundle_dir: Path, advice: str = REREGISTER) -> dict:
    """The bundle's manifest; a missing, unreadable or incomplete one is a RegistryError."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise RegistryError(f"{path} is missing: the bundle is incomplete (the manifest is written last); {advice}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RegistryError(f"{path} is not valid JSON ({error}): the manifest is incomplete; {advice}") from error
    missing = [key for key in RESERVED_KEYS if key not in manifest]
    if missing or not isinstance(manifest.get("files"), dict):
        raise RegistryError(f"{path} lacks {missing or ['a files table']}: the manifest is incomplete; {advice}")
    return manifest


def map_at_12(manifest: dict) -> float | None:
    """MAP@12 from a manifest's `metrics`: `{"map@12": x}` or per method `{"final": {"map@12": x}}`."""
    metrics = manifest.get("metrics") or {}
    for table in (metrics, metrics.get("final") if isinstance(metrics.get("final"), dict) else {}):
        for key in ("map@12", "map_at_12", "MAP@12"):
            if isinstance(table.get(key), (int, float)):
                return float(table[key])
    return None


def verify_bundle(bundle_dir: Path, advice: str = REREGISTER) -> dict:
    """Recompute every checksum; a missing, unlisted or changed file is a RegistryError naming it.

    Returns the manifest when every file matches. `advice` ends each message with what to do.
    """
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir, advice)
    expected: dict[str, str] = manifest["files"]
    present = bundle_files(bundle_dir)
    missing = sorted(set(expected) - set(present))
    if missing:
        raise RegistryError(
            f"model file {missing[0]} listed in {MANIFEST} is missing from {bundle_dir} "
            f"({len(missing)} file(s) missing): {advice}"
        )
    unlisted = sorted(set(present) - set(expected))
    if unlisted:
        raise RegistryError(
            f"model file {unlisted[0]} in {bundle_dir} is not listed in {MANIFEST} "
            f"({len(unlisted)} unlisted file(s)): {advice}"
        )
    for rel in present:
        actual = sha256_file(bundle_dir / rel)
        if actual != expected[rel]:
            raise RegistryError(
                f"model file {rel} does not match its checksum in {MANIFEST} "
                f"(expected {expected[rel][:12]}..., got {actual[:12]}...) in {bundle_dir}: {advice}"
            )
    return manifest


def _json_default(value: Any) -> Any:
    """Dates as ISO strings, NumPy scalars as Python numbers; anything else is a caller's mistake."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"manifest value {value!r} of type {type(value).__name__} is not JSON serialisable")
