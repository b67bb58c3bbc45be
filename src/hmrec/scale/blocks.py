"""Cutting a CSV file into byte ranges that end at line breaks outside quoted fields."""

from __future__ import annotations

from pathlib import Path

_READ = 16 << 20
_QUOTE, _NEWLINE = ord('"'), ord("\n")


def line_blocks(path: Path, block_bytes: int, quotes_balanced: bool = False) -> tuple[bytes, list[tuple[int, int]]]:
    """The header line and [start, end) byte ranges of about `block_bytes` covering every data row once.

    A quote count carried from the start of the file tells whether a cut point is inside a quoted field
    (whose value may hold a line break), so every range ends right after a real end of a row. With
    `quotes_balanced` (every line is known to close its quotes, as the ETL's byte check found) a line break is
    never inside a quoted field, so each range ends at the first line break after its target, with no counting.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.readline()
        ranges, start, quoted = [], len(header), False
        while start < size:
            target = min(start + block_bytes, size)
            if quotes_balanced:
                end = _line_end(handle, target, size)
            else:
                quoted ^= _odd_quotes(handle, start, target)
                end, quoted = _row_end(handle, target, size, quoted)
            ranges.append((start, end))
            start = end
    return header, ranges


def _line_end(handle, position: int, size: int) -> int:
    """The position just after the first line break at or after `position` (the file's size if none)."""
    handle.seek(position)
    while position < size:
        chunk = handle.read(1 << 16)
        found = chunk.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(chunk)
    return size


def _odd_quotes(handle, start: int, end: int) -> bool:
    """True when [start, end) holds an odd number of quote characters."""
    handle.seek(start)
    count, left = 0, end - start
    while left > 0:
        chunk = handle.read(min(_READ, left))
        count += chunk.count(b'"')
        left -= len(chunk)
    return count % 2 == 1


def _row_end(handle, position: int, size: int, quoted: bool) -> tuple[int, bool]:
    """The position just after the first line break at or after `position` that is outside quotes."""
    handle.seek(position)
    while position < size:
        chunk = handle.read(1 << 16)
        for offset, byte in enumerate(chunk):
            if byte == _QUOTE:
                quoted = not quoted
            elif byte == _NEWLINE and not quoted:
                return position + offset + 1, quoted
        position += len(chunk)
    return size, quoted


def copy_range(path: Path, header: bytes, start: int, end: int, out: Path) -> None:
    """Write the header and bytes [start, end) of `path` to `out`: a CSV file of its own."""
    with path.open("rb") as source, out.open("wb") as target:
        target.write(header)
        source.seek(start)
        left = end - start
        while left > 0:
            chunk = source.read(min(_READ, left))
            target.write(chunk)
            left -= len(chunk)
