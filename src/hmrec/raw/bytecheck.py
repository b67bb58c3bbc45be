"""One byte-level pass over a raw file before parsing: UTF-8 only, no binary content, lines with unbalanced quotes."""

from __future__ import annotations

import codecs
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

    lines: int = 0  # lines in the file, the header included, a last line without a newline counted
    ends_with_newline: bool = True
    broken: list[tuple[int, int, int]] = field(default_factory=list)  # (file line, start byte, end byte)


@dataclass
class _State:
    offset: int = 0  # file position of the current chunk
    lines: int = 0  # complete lines before the current chunk
    carry_quotes: int = 0  # quotes on the unfinished line at the end of the previous chunk
    line_start: int = 0  # file position where that unfinished line starts
    report: ByteReport = field(default_factory=ByteReport)


def check_bytes(path: Path) -> ByteReport:
    """Read the file once in large chunks; raise EncodingProblem on UTF-16, NUL bytes or invalid UTF-8.

    Every check is a C-speed bytes method; numpy counts quotes per line only in chunks that hold quotes.
    A quoted field may not span lines (the H&M exports have none), so a line with an odd number of quotes is
    broken: an unclosed, stray or truncated quote.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    state = _State()
    with Path(path).open("rb") as handle:
        first = handle.read(CHUNK)
        if first.startswith(UTF16_BOMS):
            raise EncodingProblem(f"the file is UTF-16 (it starts with the byte-order mark {first[:2].hex(' ')}); "
                                  f"save it as UTF-8, e.g. `iconv -f utf-16 -t utf-8 in.csv > out.csv`")
        chunk, last = first, b""
        while chunk:
            _check_text(chunk, decoder, state)
            _count_quotes(chunk, state)
            state.offset += len(chunk)
            last = chunk
            chunk = handle.read(CHUNK)
    _finish(decoder, state, last)
    return state.report


def _check_text(chunk: bytes, decoder: codecs.IncrementalDecoder, state: _State) -> None:
    nul = chunk.find(b"\x00")
    if nul >= 0:
        raise EncodingProblem(f"byte {state.offset + nul:,} (line {_line_at(chunk, nul, state):,}) is a NUL byte: "
                              f"this is a binary file or UTF-16 text, not a UTF-8 CSV; {ICONV_HINT}")
    if chunk.isascii() and not decoder.getstate()[0]:
        return
    pending = decoder.getstate()[0]
    try:
        decoder.decode(chunk)
    except UnicodeDecodeError as error:
        at = error.start - len(pending)  # negative: the character began in the previous chunk
        raise EncodingProblem(
            f"byte {state.offset + at:,} (line {_line_at(chunk, max(at, 0), state):,}) is not UTF-8 "
            f"(0x{(pending + chunk)[error.start]:02x}; Latin-1 or cp1252?); {ICONV_HINT}"
        ) from None


def _line_at(chunk: bytes, position: int, state: _State) -> int:
    return state.lines + chunk.count(b"\n", 0, position) + 1


def _count_quotes(chunk: bytes, state: _State) -> None:
    """Advance the line count; record lines whose quote count is odd."""
    if not chunk.count(b'"'):
        newlines = chunk.count(b"\n")
        if newlines:
            _close_carried_line(state, state.offset + chunk.index(b"\n"))
            state.line_start = state.offset + chunk.rindex(b"\n") + 1
            state.lines += newlines
        return
    array = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(array == NEWLINE)
    quotes_before = np.searchsorted(np.flatnonzero(array == QUOTE), ends)  # quotes before each newline
    per_line = np.diff(np.concatenate([[0], quotes_before]))
    if ends.size:
        per_line[0] += state.carry_quotes
        starts = np.concatenate([[state.line_start - state.offset], ends[:-1] + 1])
        for i in np.flatnonzero(per_line % 2):
            state.report.broken.append((state.lines + int(i) + 1, state.offset + int(starts[i]),
                                        state.offset + int(ends[i])))
        state.carry_quotes = chunk.count(b'"', int(ends[-1]) + 1)
        state.line_start = state.offset + int(ends[-1]) + 1
        state.lines += int(ends.size)
    else:
        state.carry_quotes += chunk.count(b'"')


def _close_carried_line(state: _State, end: int) -> None:
    if state.carry_quotes % 2:
        state.report.broken.append((state.lines + 1, state.line_start, end))
    state.carry_quotes = 0


def _finish(decoder: codecs.IncrementalDecoder, state: _State, last: bytes) -> None:
    report = state.report
    report.ends_with_newline = not last or last.endswith(b"\n")
    report.lines = state.lines + (0 if report.ends_with_newline else 1)
    if not report.ends_with_newline:
        _close_carried_line(state, state.offset)
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
        _copy(source, target, end=None, position=position)
    return out


def _copy(source, target, end: int | None, position: int) -> None:
    source.seek(position)
    while end is None or position < end:
        block = source.read(CHUNK if end is None else min(CHUNK, end - position))
        if not block:
            return
        target.write(block)
        position += len(block)
