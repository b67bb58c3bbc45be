"""Opening the raw CSV files lazily: presence, header, stray columns, a truncated last line; the fatal error type."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hmrec.raw.schema import FileSpec

log = logging.getLogger(__name__)

LINE = "_line"  # 0-based data row number, added while scanning; the file line is LINE + 2
_INDEX_COLUMN = re.compile(r"^(|Unnamed: \d+)$")  # what pandas writes for an unnamed index
_TAIL_BYTES = 1 << 20


class RawDataError(ValueError):
    """A raw file cannot be used at all; the message is one line naming the file, column, count and examples."""


@dataclass
class RawFile:
    """One raw CSV, opened: every declared column as a String (null where empty or absent), plus LINE."""

    spec: FileSpec
    path: Path
    frame: pl.LazyFrame
    file_columns: list[str] = field(default_factory=list)  # the header, with placeholders for ignored columns
    truncated_line: int | None = None  # LINE of a last row cut off mid-line, if any
    index_column: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def scan(self, dtypes: dict[str, pl.DataType] | None = None) -> pl.LazyFrame:
        """LINE and every declared column; String unless `dtypes` says otherwise (then unparseable -> null)."""
        dtypes = dtypes or {}
        present = set(self.file_columns)
        scan = pl.scan_csv(
            self.path, new_columns=self.file_columns, infer_schema=False, row_index_name=LINE, encoding="utf8",
            schema_overrides={c: t for c, t in dtypes.items() if c in present}, ignore_errors=bool(dtypes),
        )
        return scan.select(pl.col(LINE), *[
            pl.col(c) if c in present else pl.lit(None, dtype=dtypes.get(c, pl.String)).alias(c)
            for c in self.spec.columns
        ])


def open_raw(raw_dir: Path, spec: FileSpec) -> RawFile:
    """Check the file exists and its header has the required columns, then scan it lazily as strings."""
    path = Path(raw_dir) / spec.name
    if not path.is_file():
        raise RawDataError(f"{spec.name}: file is missing from {raw_dir}; expected the three H&M CSV files there")
    header = _read_header(path)
    if not header:
        raise RawDataError(f"{spec.name}: the file is empty (0 rows, not even a header line)")
    missing = [name for name in spec.required if name not in header]
    if missing:
        found = ", ".join(repr(name) for name in header[:6])
        raise RawDataError(
            f"{spec.name}: required column {missing[0]!r} is missing from the header "
            f"({len(missing)} required column(s) missing; found {len(header)} columns, e.g. {found})"
        )
    if not _has_data_row(path):
        raise RawDataError(f"{spec.name}: the table is empty (a header line and 0 data rows)")
    raw = RawFile(spec, path, pl.LazyFrame())
    raw.file_columns = _internal_names(header, raw)
    absent = [c for c in spec.columns if c not in raw.file_columns]
    if absent:
        log.warning("%s: optional column(s) %s absent; read as empty", spec.name, ", ".join(absent))
        raw.notes.append(f"{spec.name}: optional column(s) {', '.join(absent)} absent, read as empty")
    raw.frame = raw.scan()
    if _ends_mid_line(path, len(header)):
        raw.truncated_line = raw.frame.select(pl.len()).collect().item() - 1
        note = f"{spec.name}: the file ends mid-line; its last row (line {raw.truncated_line + 2:,}) is set aside"
        log.warning(note)
        raw.notes.append(note)
    return raw


@contextmanager
def parse_errors(raw: RawFile) -> Iterator[None]:
    """Turn the CSV reader's own failure (a row with more fields than the header) into a RawDataError."""
    try:
        yield
    except pl.exceptions.ComputeError as error:
        count, examples = _ragged_rows(raw.path, len(raw.file_columns))
        if not count:
            raise
        shown = "; ".join(f"line {line}: {text[:80]!r}" for line, text in examples)
        raise RawDataError(
            f"{raw.name}: {count:,} row(s) have more fields than the header's {len(raw.file_columns)} "
            f"(an unquoted comma?), e.g. {shown}"
        ) from error


def _ragged_rows(path: Path, n_columns: int) -> tuple[int, list[tuple[int, str]]]:
    """Rows with more fields than the header, and two examples; one pass, only run after a parse failure."""
    count, examples = 0, []
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            if len(fields) > n_columns:
                count += 1
                if len(examples) < 2:
                    examples.append((line, ",".join(fields)))
    return count, examples


def _read_header(path: Path) -> list[str]:
    """The header's column names; a UTF-8 byte-order mark and a CRLF ending are allowed."""
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


def _has_data_row(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.readline()
        return any(line.strip() for line in handle)


def _internal_names(header: list[str], raw: RawFile) -> list[str]:
    """Declared columns keep their names; an unnamed index column and unknown columns get placeholders."""
    names: list[str] = []
    for position, name in enumerate(header):
        if name in raw.spec.columns and name not in names:
            names.append(name)
            continue
        names.append(f"_ignored_{position}")
        if position == 0 and _INDEX_COLUMN.match(name):
            raw.index_column = True
            log.warning("%s: ignoring an unnamed leading index column (header %r)", raw.name, name)
            raw.notes.append(f"{raw.name}: ignored an unnamed leading index column (header {name!r})")
        else:
            raw.ignored_columns.append(name)
            log.warning("%s: ignoring column %r, which is not part of the format", raw.name, name)
            raw.notes.append(f"{raw.name}: ignored column {name!r}, which is not part of the format")
    return names


def _ends_mid_line(path: Path, n_columns: int) -> bool:
    """True when the file lacks a final newline and its last line has fewer fields than the header."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if not tail or tail.endswith(b"\n"):
        return False
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace").rstrip("\r")
    fields = next(csv.reader([last]), [])
    return len(fields) < n_columns
