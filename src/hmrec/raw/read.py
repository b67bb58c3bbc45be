"""Opening the raw CSV files lazily: presence, encoding, header, stray columns, broken quotes, a truncated last line."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hmrec.raw.bytecheck import ByteReport, EncodingProblem, check_bytes, write_repaired
from hmrec.raw.schema import FileSpec

log = logging.getLogger(__name__)

LINE = "_line"  # 0-based data row number, added while scanning; the file line is LINE + 2
_INDEX_COLUMN = re.compile(r"^(|Unnamed: \d+)$")  # what pandas writes for an unnamed index
_TAIL_BYTES = 1 << 20
SHOWN_REPEATS = 10  # a warning repeated for many columns or values is shown this many times, then counted
SHOWN_CHARS = 40  # an example value in a message is cut to this many characters, escaped
BROKEN_FATAL_SHARE = 0.5  # at least this share of lines with unbalanced quotes: the file is not this CSV format


class RawDataError(ValueError):
    """A raw file cannot be used at all; the message is one line naming the file, column, count and examples."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value from a file as a message shows it: escaped (repr) and cut, so no file content is ever replayed."""
    text = str(value)
    return repr(text[:limit]) + (f"... ({len(text):,} chars)" if len(text) > limit else "")


@dataclass
class RawFile:
    """One raw CSV, opened: every declared column as a String (null where empty or absent), plus LINE."""

    spec: FileSpec
    path: Path
    frame: pl.LazyFrame
    file_columns: list[str] = field(default_factory=list)  # the header, with placeholders for ignored columns
    truncated_line: int | None = None  # LINE of a last row cut off mid-line, if any
    broken_lines: list[int] = field(default_factory=list)  # LINEs of rows with unbalanced quotes
    index_column: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int | None = None  # data rows in the bytes the byte check read; rows appended later are not scanned
    source: dict = field(default_factory=dict)  # the manifest's record of those bytes: size and sha256

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
        if self.rows is not None:
            scan = scan.head(self.rows)  # the file may have grown since it was checked and hashed
        return scan.select(pl.col(LINE), *[
            pl.col(c) if c in present else pl.lit(None, dtype=dtypes.get(c, pl.String)).alias(c)
            for c in self.spec.columns
        ])


def open_raw(raw_dir: Path, spec: FileSpec, scratch: Path | None = None, report: ByteReport | None = None) -> RawFile:
    """Check the file's bytes, then its header's required columns, then scan it lazily as strings.

    Rows with unbalanced quotes are rewritten into a copy under `scratch` (one field holding the row's text)
    so that the rest parses and those rows reach the quarantine; without `scratch` they are fatal. `report`
    is the file's checked_bytes(), when the caller ran it already (e.g. beside other work).
    """
    path = Path(raw_dir) / spec.name
    if not path.is_file():
        raise RawDataError(f"{spec.name}: file is missing from {raw_dir}; expected the three H&M CSV files there")
    report = report or checked_bytes(path, spec.name)
    original, cr_note = report, None
    if _cr_only(path):
        if scratch is None:
            raise RawDataError(f"{spec.name}: lines end with CR alone (classic Mac OS); convert them first, e.g. "
                               f"`tr '\\r' '\\n' < {spec.name} > fixed.csv`")
        path = write_lf(path, original.size, Path(scratch) / f"{spec.name}.lf")
        report = checked_bytes(path, spec.name)
        cr_note = f"{spec.name}: lines ending with CR alone read as line breaks"
    header = _read_header(path)
    if not header:
        raise RawDataError(f"{spec.name}: the file is empty (0 rows, not even a header line)")
    _refuse_bad_header(spec, header, report)
    missing = [name for name in spec.required if name not in header]
    if missing:
        found = ", ".join(shown(name) for name in header[:6])
        raise RawDataError(
            f"{spec.name}: required column {missing[0]!r} is missing from the header "
            f"({len(missing)} required column(s) missing; found {len(header)} columns, e.g. {found})"
        )
    if not _has_data_row(path):
        raise RawDataError(f"{spec.name}: the table is empty (a header line and 0 data rows)")
    raw = RawFile(spec, path, pl.LazyFrame(), rows=report.data_rows, source=original.source())
    if cr_note:
        log.warning(cr_note)
        raw.notes.append(cr_note)
    raw.file_columns = _internal_names(header, raw)
    absent = [c for c in spec.columns if c not in raw.file_columns]
    if absent:
        log.warning("%s: optional column(s) %s absent; read as empty", spec.name, ", ".join(absent))
        raw.notes.append(f"{spec.name}: optional column(s) {', '.join(absent)} absent, read as empty")
    if not report.ends_with_newline and (_ends_mid_line(path, len(header)) or _last_line_broken(report)):
        raw.truncated_line = report.lines - 2
        note = f"{spec.name}: the file ends mid-line; its last row (line {report.lines:,}) is set aside"
        log.warning(note)
        raw.notes.append(note)
    if report.broken:
        _set_aside_broken(raw, report, len(header), scratch)
    raw.frame = raw.scan()
    return raw


def checked_bytes(path: Path, name: str) -> ByteReport | None:
    """check_bytes() with its findings as a RawDataError naming the file; None for a missing file."""
    if not path.is_file():
        return None
    try:
        return check_bytes(path)
    except EncodingProblem as problem:
        raise RawDataError(f"{name}: {problem}") from None
    except OSError as error:
        raise RawDataError(f"{name}: cannot be read ({error.strerror or error}); check its permissions, "
                           f"e.g. `chmod u+r {path}`") from None


def _refuse_bad_header(spec: FileSpec, header: list[str], report: ByteReport) -> None:
    if report.broken and report.broken[0][0] == 1:
        raise RawDataError(f"{spec.name}: the header line has an unbalanced quote (found {len(header)} columns, "
                           f"e.g. {', '.join(shown(h) for h in header[:2])}); fix the first line")
    seen: set[str] = set()
    for position, name in enumerate(header):
        if name in seen and name in spec.columns:
            raise RawDataError(
                f"{spec.name}: column {name!r} is duplicated in the header (columns {header.index(name) + 1} and "
                f"{position + 1} of {len(header)}); remove or rename one of them"
            )
        seen.add(name)


def _last_line_broken(report: ByteReport) -> bool:
    return bool(report.broken) and report.broken[-1][0] == report.lines


def _set_aside_broken(raw: RawFile, report: ByteReport, n_columns: int, scratch: Path | None) -> None:
    """Rows with unbalanced quotes go to the quarantine; most of the file broken, or no scratch folder: fatal."""
    rows = max(report.lines - 1, 1)
    examples = "; ".join(f"line {line:,}: {shown(_line_text(raw.path, start, end))}"
                         for line, start, end in report.broken[:2])
    if scratch is None or len(report.broken) >= BROKEN_FATAL_SHARE * rows:
        raise RawDataError(
            f"{raw.name}: {len(report.broken):,} of {rows:,} rows have an unbalanced quote (a quoted field opened "
            f"and not closed on its line), e.g. {examples}; is this the right file?"
        )
    raw.path = write_repaired(raw.path, report, n_columns, Path(scratch) / raw.name)
    raw.broken_lines = [line - 2 for line, _, _ in report.broken]
    note = f"{raw.name}: {len(report.broken):,} rows with an unbalanced quote set aside, e.g. {examples}"
    log.warning(note)
    raw.notes.append(note)


def _line_text(path: Path, start: int, end: int) -> str:
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(min(end - start, 4 * SHOWN_CHARS)).decode("utf-8", errors="replace")


@contextmanager
def parse_errors(raw: RawFile) -> Iterator[None]:
    """Turn the CSV reader's own failure (a row with more fields than the header) into a RawDataError."""
    try:
        yield
    except pl.exceptions.PolarsError as error:
        try:
            count, examples = _ragged_rows(raw.path, len(raw.file_columns))
        except (csv.Error, UnicodeDecodeError):
            count, examples = 0, []
        if not count:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RawDataError(f"{raw.name}: the CSV reader failed: {shown(first, 120)}") from None
        listed = "; ".join(f"line {line}: {shown(text, 60)}" for line, text in examples)
        raise RawDataError(
            f"{raw.name}: {count:,} row(s) have more fields than the header's {len(raw.file_columns)} "
            f"(an unquoted comma?), e.g. {listed}"
        ) from None


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
        try:
            return next(csv.reader(handle), [])
        except csv.Error as error:
            raise RawDataError(f"{path.name}: the header line cannot be read as CSV ({error})") from None


def _cr_only(path: Path) -> bool:
    """The file's line breaks are CR alone: its first 64 KiB hold a CR and no LF."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    return b"\r" in head and b"\n" not in head


def write_lf(path: Path, size: int, out: Path) -> Path:
    """A copy of the first `size` bytes of `path` with every CR a LF (a CR-only file; the header's row too)."""
    with path.open("rb") as source, out.open("wb") as target:
        while size > 0 and (block := source.read(min(_TAIL_BYTES * 32, size))):
            size -= len(block)
            target.write(block.replace(b"\r", b"\n"))
    return out


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
            log.warning("%s: ignoring an unnamed leading index column (header %s)", raw.name, shown(name))
            raw.notes.append(f"{raw.name}: ignored an unnamed leading index column (header {shown(name)})")
        else:
            raw.ignored_columns.append(name)
    warn_each(raw, [f"ignored column {shown(name)}, which is not part of the format" for name in raw.ignored_columns],
                  "ignored columns")
    return names


def warn_each(raw: RawFile, messages: list[str], what: str) -> None:
    """Log and note each message, the first SHOWN_REPEATS of them, then one line for the rest ('and 9,990 more')."""
    for message in messages[:SHOWN_REPEATS]:
        log.warning("%s: %s", raw.name, message)
        raw.notes.append(f"{raw.name}: {message}")
    if len(messages) > SHOWN_REPEATS:
        rest = f"and {len(messages) - SHOWN_REPEATS:,} more {what} ({len(messages):,} in all)"
        log.warning("%s: %s", raw.name, rest)
        raw.notes.append(f"{raw.name}: {rest}")


def _ends_mid_line(path: Path, n_columns: int) -> bool:
    """True when the file lacks a final newline and its last line has fewer fields than the header."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if not tail:  # the caller asks only for a file that does not end with a line break
        return False
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace").rstrip("\r")
    try:
        fields = next(csv.reader([last]), [])
    except csv.Error:  # e.g. a field over the csv module's limit: a line that long was cut, not finished
        return True
    return len(fields) < n_columns
