"""What a write that found the disk full looks like through each library, and what is not one (hmrec.workdir)."""

from __future__ import annotations

import errno
import resource
import sqlite3

import polars as pl
import pytest
import sqlalchemy

from hmrec.workdir import disk_full_reason


def raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as error:
            raise outer from error
    except Exception as error:
        return error


@pytest.mark.parametrize(("error", "reason"), [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EFBIG, "File too large"), "File too large"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded"),
    (pl.exceptions.ComputeError("failed to write: No space left on device (os error 28)"), "No space left on device"),
    (sqlalchemy.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full")),
     "No space left on device"),
    (raised_from(RuntimeError("the bundle was not written"), OSError(errno.ENOSPC, "No space left on device")),
     "No space left on device"),
])
def test_a_full_disk_is_recognised_through_each_library(error, reason, tmp_path):
    assert disk_full_reason(error, tmp_path) == reason


def test_other_errors_and_unexplained_write_failures_on_a_roomy_disk_are_not_a_full_disk(tmp_path):
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY  # this test's own premise
    assert disk_full_reason(OSError(errno.EACCES, "Permission denied"), tmp_path) is None
    assert disk_full_reason(ValueError("bad value"), tmp_path) is None
    # numpy's short write and SQLite's I/O error name no cause: with room on the disk and no file size limit, they
    # stay what they are
    assert disk_full_reason(OSError("800000 requested and 100000 written"), tmp_path) is None
    assert disk_full_reason(sqlite3.OperationalError("disk I/O error"), tmp_path / "not" / "made") is None
