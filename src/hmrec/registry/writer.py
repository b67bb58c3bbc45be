"""One writer per workdir: W/.lock held around every change to a workdir, and what killed writers left in it."""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hmrec.registry.checksums import MANIFEST, sha256_file
from hmrec.registry.location import missing_registry
from hmrec.registry.versions import BUNDLES_DIR, Registry
from hmrec.workdir import LOCK_FILE, exclusive

log = logging.getLogger(__name__)

T = TypeVar("T")


@contextmanager
def workdir_writer(workdir: str | Path, wait: bool = False) -> Iterator[None]:
    """Hold W/.lock for the block (hmrec.workdir.exclusive); the first holder in this process then removes
    what killed writers left in the workdir (remove_leftovers)."""
    with exclusive(Path(workdir) / LOCK_FILE, wait=wait) as first:
        if first:
            remove_leftovers(Path(workdir))
        yield


def writes_workdir(function: Callable[..., T]) -> Callable[..., T]:
    """Run `function(config, ...)` holding `config.workdir`'s W/.lock (workdir_writer, refusing when another
    process holds it); a caller that took the lock already, e.g. with --wait, keeps it."""
    @functools.wraps(function)
    def locked(config, *args, **kwargs) -> T:
        with workdir_writer(config.workdir):
            return function(config, *args, **kwargs)
    return locked


def remove_leftovers(workdir: Path) -> list[Path]:
    """Delete what a killed writer leaves behind in `workdir`, logging each: scoring and report staging folders,
    and bundles under W/bundles/ that no registered version was made from (same manifest checksum). Only call it
    holding W/.lock. (The store's build folders are the ETL's, cleaned under `<store>.lock`; the registry cache's
    download folders are the service's, which takes no lock.)"""
    patterns = (".scoring-*", ".retrain-raw-*", "reports/.latest-staging", "reports/.latest-old")
    found = [path for pattern in patterns for path in workdir.glob(pattern)]
    if missing_registry(workdir) is None:  # a new workdir has nothing registered to compare with, nor uploads
        registry = Registry.for_workdir(workdir)
        bundles = workdir / BUNDLES_DIR
        if bundles.is_dir() and any(bundles.iterdir()):
            registered = registry.manifest_digests()
            found += [b for b in sorted(bundles.iterdir())
                      if not (b / MANIFEST).is_file() or sha256_file(b / MANIFEST) not in registered]
        found += registry.orphan_uploads()
    for path in found:
        log.warning("removing %s, left by a writer that was killed or failed (no registered version uses it)", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found
