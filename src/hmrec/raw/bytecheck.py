"""One byte-level pass over a raw file before parsing: UTF-8 only, no binary content, lines with unbalanced quotes."""

from __future__ import annotations

import codecs
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHUNK = 32 << 20
QUOTE, NEWLINE = ord('"'), ord("\n")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
ICONV_HINT = "convert it to UTF-8 first, e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`"


class EncodingProblem(ValueError):
    """The file is not UTF-8 text; the message says where (byte offset and line) and what to run."""


@dataclass
class ByteReport:
    """What the pass found: line count, whether the file ends with a newline, and the unbalanced-quote lines."""

    lines: int | None = None  # lines in the file, the header and an unfinished last line included; counted
    # (another pass) only when something needs it: a broken line, or a file not ending with a newline
    ends_with_newline: bool = True
    broken: list[tuple[int, int, int]] = field(default_factory=list)  # (file line, start byte, end byte)
    size: int = 0  # the bytes checked: the file's size when the pass began (a file appended to meanwhile is cut there)
    sha256: str = ""  # of those bytes, hashed in the same pass
    newlines: int = 0

    @property
    def data_rows(self) -> int:
        """Rows after the header in the bytes checked (an unfinished last line counts)."""
        return max(self.newlines + (0 if self.ends_with_newline else 1) - 1, 0)

    def source(self) -> dict:
        """What the manifest records of the file: exactly the bytes that were checked and parsed."""
        return {"bytes": self.size, "sha256": self.sha256}


@dataclass
class _State:
    path: Path
    offset: int = 0  # file position of the current chunk
    lines: int = 0  # newlines before `counted_to`: counted only when a line number is needed (it costs a pass)
    counted_to: int = 0
    carry_quotes: int = 0  # quotes on the unfinished line at the end of the previous chunk
    line_start: int = 0  # file position where that unfinished line starts
    report: ByteReport = field(default_factory=ByteReport)

    def lines_before(self, position: int) -> int:
        """Newlines before `position` (>= counted_to), counting only the bytes not counted yet."""
        if position > self.counted_to:
            with self.path.open("rb") as handle:
                handle.seek(self.counted_to)
                while self.counted_to < position:
                    block = handle.read(min(CHUNK, position - self.counted_to))
                    self.lines += block.count(b"\n")
                    self.counted_to += len(block)
        return self.lines


def check_bytes(path: Path) -> ByteReport:
    """Read the file once in large chunks; raise EncodingProblem on UTF-16, NUL bytes or invalid UTF-8.

    Every check is a C-speed bytes method (no per-line Python); numpy counts quotes per line only in chunks that
    hold quotes. A quoted field may not span lines (the H&M exports have none), so a line with an odd number of
    quotes is broken: an unclosed, stray or truncated quote.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    state = _State(Path(path))
    digest = hashlib.sha256()
    # reused: a fresh 32 MB bytes object per read costs more than the checks
    buffer = bytearray(max(1, min(CHUNK, state.path.stat().st_size)))
    last = b""
    with state.path.open("rb") as handle:
        # rows appended from now on are not read; a size of 0 may be a file that does not know its size (/proc)
        left = os.fstat(handle.fileno()).st_size or None
        while (left is None or left > 0) and (size := handle.readinto(buffer)):
            size = size if left is None else min(size, left)
            left = None if left is None else left - size
            chunk = buffer if size == len(buffer) else buffer[:size]
            digest.update(chunk)
            state.report.size += size
            state.report.newlines += chunk.count(b"\n")
            if state.offset == 0 and chunk.startswith(UTF16_BOMS):
                raise EncodingProblem(f"the file is UTF-16 (it starts with the byte-order mark {chunk[:2].hex(' ')}); "
                                      f"save it as UTF-8, e.g. `iconv -f utf-16 -t utf-8 in.csv > out.csv`")
            _check_text(chunk, decoder, state)
            _track_quotes(chunk, state)
            state.offset += size
            last = bytes(chunk[-1:])
    state.report.sha256 = digest.hexdigest()
    _finish(decoder, state, last)
    return state.report


def _check_text(chunk: bytearray, decoder: codecs.IncrementalDecoder, state: _State) -> None:
    nul = chunk.find(b"\x00")
    if nul >= 0:
        raise EncodingProblem(f"byte {state.offset + nul:,} (line {_line_at(nul, state):,}) is a NUL byte: "
                              f"this is a binary file or UTF-16 text, not a UTF-8 CSV; {ICONV_HINT}")
    pending = decoder.getstate()[0]
    if chunk.isascii() and not pending:
        return
    try:
        decoder.decode(chunk)
    except UnicodeDecodeError as error:
        at = error.start - len(pending)  # negative: the character began in the previous chunk
        at_line = max(at, 0)
        field_no = chunk.count(b",", chunk.rfind(b"\n", 0, at_line) + 1, at_line) + 1  # ignores quoting: a hint
        raise EncodingProblem(
            f"byte {state.offset + at:,} (line {_line_at(at_line, state):,}, field {field_no}) is not UTF-8 "
            f"(0x{(pending + chunk)[error.start]:02x}; Latin-1 or cp1252?); {ICONV_HINT}"
        ) from None


def _line_at(position: int, state: _State) -> int:
    return state.lines_before(state.offset + position) + 1


def _track_quotes(chunk: bytearray, state: _State) -> None:
    """Record the lines whose quote count is odd; a chunk without quotes costs two memchr calls."""
    if b'"' not in chunk:
        last_newline = chunk.rfind(b"\n")
        if last_newline >= 0:
            if state.carry_quotes % 2:
                _broken(state, state.line_start, state.offset + chunk.index(b"\n"))
            state.carry_quotes = 0
            state.line_start = state.offset + last_newline + 1
        return
    array = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(array == NEWLINE)
    if not ends.size:
        state.carry_quotes += chunk.count(b'"')
        return
    per_line = np.diff(np.searchsorted(np.flatnonzero(array == QUOTE), ends), prepend=0)  # quotes on each line
    per_line[0] += state.carry_quotes
    starts = np.concatenate([[state.line_start - state.offset], ends[:-1] + 1])
    for i in np.flatnonzero(per_line % 2):
        _broken(state, state.offset + int(starts[i]), state.offset + int(ends[i]))
    state.carry_quotes = chunk.count(b'"', int(ends[-1]) + 1)
    state.line_start = state.offset + int(ends[-1]) + 1


def _broken(state: _State, start: int, end: int) -> None:
    state.report.broken.append((state.lines_before(start) + 1, start, end))


def _finish(decoder: codecs.IncrementalDecoder, state: _State, last: bytes) -> None:
    report = state.report
    report.ends_with_newline = not last or last.endswith(b"\n")
    if not report.ends_with_newline and state.carry_quotes % 2:
        _broken(state, state.line_start, state.offset)
    if report.broken or not report.ends_with_newline:
        report.lines = state.lines_before(state.offset) + (0 if report.ends_with_newline else 1)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise EncodingProblem(f"the file ends inside a multi-byte UTF-8 character (byte {state.offset - 1:,}, "
                              f"line {report.lines:,}): it was cut off or is not UTF-8; {ICONV_HINT}") from None


def write_repaired(path: Path, report: ByteReport, n_columns: int, out: Path) -> Path:
    """A copy of the file where each broken line is one quoted field holding its text, then empty fields.

    The row keeps its place (so line numbers stay right) and its text reaches the quarantine intact.
    """
    with Path(path).open("rb") as source, out.open("wb") as target:
        position = 0
        for _, start, end in report.broken:
            _copy(source, target, end=start, position=position)
            source.seek(start)
            text = source.read(end - start)
            cr = text.endswith(b"\r")
            text = text[:-1] if cr else text
            target.write(b'"' + text.replace(b'"', b'""') + b'"' + b"," * (n_columns - 1) + (b"\r" if cr else b""))
            position = end
        _copy(source, target, end=report.size, position=position)
    return out


def _copy(source, target, end: int | None, position: int) -> None:
    source.seek(position)
    while end is None or position < end:
        block = source.read(CHUNK if end is None else min(CHUNK, end - position))
        if not block:
            return
        target.write(block)
        position += len(block)
