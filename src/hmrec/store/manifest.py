"""The store's manifest.json: what was built from which files, with which cutoff, and what the data's quality was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hmrec.store.split import Split

FORMAT_VERSION = 1


def fingerprint(sources: Mapping[str, Mapping], split: Split, test_days: int) -> str:
    """sha256 over the sources' checksums, the cutoff and test_days: the same data split the same way."""
    parts = [f"{name}:{info['sha256']}" for name, info in sorted(sources.items())]
    parts += [f"cutoff:{split.cutoff.isoformat()}", f"test_days:{test_days}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def schema_of(frame: pl.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.schema.items()}


def build_manifest(
    *,
    tables: Mapping[str, pl.DataFrame],
    sources: Mapping[str, Mapping],
    split: Split,
    test_days: int,
    quality: Mapping[str, int],
    normalisations: list[str],
    build_seconds: float,
    partitions: Mapping[str, int] | None = None,
) -> dict:
    return {
        "format": FORMAT_VERSION,
        "rows": {name: frame.height for name, frame in tables.items()},
        "schemas": {name: schema_of(frame) for name, frame in tables.items()},
        "sources": dict(sources),
        "test_days": test_days,
        "cutoff": split.cutoff.isoformat(),
        "test_window": [split.cutoff.isoformat(), split.last.isoformat()],
        "data_range": [split.first.isoformat(), split.last.isoformat()],
        "quality": dict(quality),
        "normalisations": list(normalisations),
        "build_seconds": round(build_seconds, 2),
        "partitions": dict(partitions or {}),  # table -> N files by customer_idx % N (tables.write_partitioned)
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(sources, split, test_days),
    }


def write_manifest(manifest: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(manifest, indent=2) + "\n")
