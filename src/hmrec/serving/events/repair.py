"""Start-up repair of a corrupt SQLite events file: the readable events salvaged into a fresh file whose ids continue
above the highest one seen, the damaged file kept beside it. Run by `hmrec serve` before any worker opens the file."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from hmrec.serving.events import sqlite_path
from hmrec.serving.events.sqlite import SqliteEventStore

log = logging.getLogger(__name__)
CHUNK = 64  # events read per query when salvaging: a damaged page loses its own rows, not its neighbours'
_COLUMNS = "id, t_dat, customer_id, article_id, price, sales_channel_id, received_at"


def damage(path: Path) -> str | None:
    """Why the events file at `path` cannot be used (SQLite's integrity check, or the error opening it); None when
    it is sound or does not exist yet."""
    if not path.exists():
        return None
    try:
        with _read_only(path) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                return "; ".join(problems)
            connection.execute("SELECT COUNT(*) FROM purchases").fetchone()
    except sqlite3.Error as error:
        return f"{type(error).__name__}: {error}"
    return None


def repair_before_serving(target: str | Path) -> None:
    """Called once by `hmrec serve` before any worker starts: repair the SQLite events file if damaged (a PostgreSQL
    store is left to its server)."""
    path = sqlite_path(target)
    if path is not None:
        repair_if_damaged(path)


def repair_if_damaged(path: Path) -> Path | None:
    """If the events file is damaged: salvage it (see module doc) and return where the damaged file now lies."""
    why = damage(path)
    if why is None:
        return None
    rows, highest = _salvage(path)
    kept = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    fresh = path.with_name(f"{path.name}.salvaged")
    for leftover in _family(fresh):
        leftover.unlink(missing_ok=True)
    SqliteEventStore(fresh).close()  # the schema
    with sqlite3.connect(fresh, isolation_level=None) as connection:
        connection.execute("BEGIN")
        connection.executemany(f"INSERT INTO purchases ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)", rows)
        # AUTOINCREMENT continues above the sequence: ids the workers have already seen are never given out again
        connection.execute("DELETE FROM sqlite_sequence WHERE name = 'purchases'")
        connection.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('purchases', ?)", (highest,))
        connection.execute("COMMIT")
    connection.close()
    for part, target in zip(_family(path), _family(kept), strict=True):
        if part.exists():
            part.rename(target)
    fresh.rename(path)
    log.error("the events file %s was damaged (%s): kept it as %s and salvaged %d readable events into a fresh %s "
              "(new event ids continue above %d)", path, why, kept, len(rows), path, highest)
    return kept


def _family(path: Path) -> list[Path]:
    """The database file and SQLite's write-ahead log and shared-memory files beside it."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path.absolute()}?mode=ro", uri=True, isolation_level=None, timeout=5)


def _salvage(path: Path) -> tuple[list[tuple], int]:
    """The events readable in the damaged file (all at once, else CHUNK ids at a time) and the highest id it ever gave
    out."""
    rows: list[tuple] = []
    try:
        connection = _read_only(path)
    except sqlite3.Error:
        return rows, 0
    with connection:
        highest = max(_first_int(connection, "SELECT seq FROM sqlite_sequence WHERE name = 'purchases'"),
                      _first_int(connection, "SELECT MAX(id) FROM purchases"))
        try:
            rows = connection.execute(f"SELECT {_COLUMNS} FROM purchases ORDER BY id").fetchall()
        except sqlite3.Error:
            rows = []
        for start in range(1, highest + 1, CHUNK) if not rows else ():
            try:
                rows += connection.execute(f"SELECT {_COLUMNS} FROM purchases WHERE id BETWEEN ? AND ? ORDER BY id",
                                           (start, start + CHUNK - 1)).fetchall()
            except sqlite3.Error:
                continue
    connection.close()
    return rows, max([highest, *(row[0] for row in rows)])


def _first_int(connection: sqlite3.Connection, query: str) -> int:
    try:
        row = connection.execute(query).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row and row[0] is not None else 0
