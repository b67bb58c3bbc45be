"""One writer at a time: an advisory lock file (fcntl.flock) naming its holder, released by the OS when it dies; and
what a writer says when the disk fills up under it."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import resource
import shlex
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"  # W/.lock: the workdir's writers (pipeline, evaluate --refit, registry promote)


class LockedError(RuntimeError):
    """Another process holds the lock; the message is one line naming its PID and command."""


_held: dict[Path, list[int]] = {}  # lock path -> [fd, depth]: this process already holds it (nested writers)
_guard = threading.Lock()


def store_lock_path(store_dir: str | Path) -> Path:
    """`<store>.lock`, beside the store folder (inside it would be replaced with the store)."""
    store_dir = Path(store_dir)
    return store_dir.parent / f"{store_dir.name}.lock"


def this_command() -> str:
    """How this process was started, as a shell would show it (`hmrec pipeline --raw r --workdir w`)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return shlex.join([name, *sys.argv[1:]])[:500]


def holder(path: Path) -> str:
    """'process PID (`command`)' as the lock file records it; what is known when it is being rewritten."""
    try:
        pid, _, command = path.read_text(errors="replace").partition(" ")
    except OSError:
        return "another process"
    if not pid.strip().isdigit():
        return "another process (starting)"
    return f"process {pid.strip()} (`{command.strip()}`)"


@contextmanager
def exclusive(path: str | Path, wait: bool = False, command: str | None = None) -> Iterator[bool]:
    """Hold the lock file `path` for the block; yields True when this call took it (False: already held here).

    Without `wait`, a lock held by another process raises LockedError at once; with it, the call blocks until
    the holder ends (the OS releases a dead holder's lock). The file keeps `PID command` of the holder.
    """
    path = Path(path).absolute()
    with _guard:
        if path in _held:
            _held[path][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield False
        finally:
            with _guard:
                _held[path][1] -= 1
        return
    fd = _acquire(path, wait)
    with _guard:
        _held[path] = [fd, 1]
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command or this_command()}\n".encode(), 0)
        yield True
    finally:
        with _guard:
            del _held[path]
        os.ftruncate(fd, 0)  # the holder's name goes with it: a later reader sees no stale PID
        os.close(fd)  # releases the flock


def _acquire(path: Path, wait: bool) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        if not wait:
            os.close(fd)
            raise LockedError(f"{path.parent} is in use: {holder(path)} holds {path}; wait for it to finish, "
                              f"or pass --wait to queue behind it") from None
    except BaseException:
        os.close(fd)
        raise
    log.warning("waiting for %s, which holds %s", holder(path), path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


FULL = {errno.ENOSPC: "No space left on device", errno.EFBIG: "File too large", errno.EDQUOT: "Disk quota exceeded"}
# Failed writes that name no cause: numpy's short write and SQLite's I/O error (SQLite says "database or disk is
# full" only for ENOSPC; a file size limit reaches it as an I/O error).
_UNEXPLAINED_WRITE = re.compile(r"\d+ requested and \d+ written|disk I/O error")


def disk_full_reason(error: BaseException, where: str | Path) -> str | None:
    """The OS's words when `error` is a write that found the disk full (or a file size or quota limit), else None.

    The error or one it was raised from says so: an errno, Polars' "(os error 28)", SQLite's "database or disk is
    full". A failed write that names no cause counts where `where`'s disk has under 1 MiB free, or where this
    process may write files of limited size (`ulimit -f`)."""
    unexplained = False
    for seen in _raised_from(error):
        if isinstance(seen, OSError) and seen.errno in FULL:
            return FULL[seen.errno]
        text = str(seen)
        if "database or disk is full" in text:
            return FULL[errno.ENOSPC]
        found = next((words for code, words in FULL.items() if f"os error {code})" in text or words in text), None)
        if found:
            return found
        unexplained = unexplained or bool(_UNEXPLAINED_WRITE.search(text))
    if not unexplained:
        return None
    existing = next(p for p in [Path(where).absolute(), *Path(where).absolute().parents] if p.exists())
    if shutil.disk_usage(existing).free < 1 << 20:
        return FULL[errno.ENOSPC]
    if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
        return FULL[errno.EFBIG]
    return None


def _raised_from(error: BaseException) -> Iterator[BaseException]:
    """The error, then the ones it was raised from (SQLAlchemy keeps the driver's as `orig`), each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo and len(seen) < 20:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (getattr(current, "orig", None), current.__context__, current.__cause__)
                 if isinstance(e, BaseException)]
