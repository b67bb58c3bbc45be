"""Hypothesis-made malformed CSV files through the ETL: every example is a clean build or a one-line refusal.

The promise checked for each example: either the store is built and, per file, kept + quarantined rows = the
data lines written, or a RawDataError whose message is one line, with nothing at the output path. A few
examples go through the real `hmrec etl` process: exit 1, the error is the last stderr line, no traceback.
Examples are derandomized, so CI sees the same files every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from raw_helpers import write_raw

from hmrec.raw import bytecheck, schema
from hmrec.raw.read import RawDataError
from hmrec.store.build import build_store
from hmrec.store.tables import Store

# HMREC_FUZZ_EXAMPLES raises the count for a longer run (docs/reliability.md's table); CI keeps the default.
FUZZ = settings(max_examples=int(os.environ.get("HMREC_FUZZ_EXAMPLES", "120")), deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HMREC = Path(sys.executable).with_name("hmrec")

HOSTILE_BYTES = [b"\xe9", b"\xff\xfe", b"\x00", b'"', b"\r", b"\n", b",", b"\xc3", "é".encode(), b"\x1b[31m"]
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "inf", "-inf", "1e300", "-0", "", "abc", "0x1F", "1,5", "99999999999999999999"]),
)
DATES = st.one_of(st.dates().map(str), st.sampled_from(["2031-01-01", "9999-12-31", "2020-02-30", "20200901", ""]))


def _base(folder: Path) -> dict[str, bytes]:
    """A valid dataset with 40 transactions over 10 days; returns each file's bytes."""
    rows = [f"2020-09-{1 + d:02d},c{1 + i % 3},{'0663713001' if i % 2 else '0541518023'},0.05,{1 + i % 2}"
            for d in range(10) for i in range(4)]
    write_raw(folder, transactions=rows)
    return {name: (folder / name).read_bytes() for name in schema.RAW_FILES}


@st.composite
def damage(draw) -> tuple[str, str, object]:
    """One kind of damage to one file: (file, kind, parameters)."""
    kind = draw(st.sampled_from(["insert", "truncate", "fields", "price", "date", "reencode", "quotes"]))
    name = draw(st.sampled_from(schema.RAW_FILES)) if kind not in ("price", "date") else schema.TRANSACTIONS_FILE
    if kind == "insert":
        payload = draw(st.one_of(st.sampled_from(HOSTILE_BYTES), st.binary(min_size=1, max_size=40)))
        return name, kind, (draw(st.floats(0, 1)), payload)
    if kind in ("truncate", "quotes"):
        return name, kind, draw(st.lists(st.floats(0, 1), min_size=1, max_size=3))
    if kind == "fields":
        return name, kind, (draw(st.floats(0, 1)), draw(st.integers(-3, 3)))
    if kind == "price":
        return name, kind, draw(st.lists(st.tuples(st.integers(1, 40), NUMBERS), min_size=1, max_size=4))
    if kind == "date":
        return name, kind, draw(st.lists(st.tuples(st.integers(1, 40), DATES), min_size=1, max_size=4))
    return name, kind, draw(st.sampled_from(["utf-16", "utf-16-le", "latin-1-names", "cp1252-names"]))


def _apply(data: bytes, kind: str, params) -> bytes:
    """The damaged bytes of one file."""
    if kind == "insert":
        where, payload = params
        at = int(where * len(data))
        return data[:at] + payload + data[at:]
    if kind == "truncate":
        return data[: max(1, int(min(params) * len(data)))]
    if kind == "quotes":
        for where in params:
            at = int(where * len(data))
            data = data[:at] + b'"' + data[at:]
        return data
    lines = data.split(b"\n")
    if kind == "fields":
        where, change = params
        row = 1 + int(where * (len(lines) - 2))
        fields = lines[row].split(b",")
        lines[row] = b",".join(fields + [b"x"] * change if change >= 0 else fields[:change])
        return b"\n".join(lines)
    if kind in ("price", "date"):
        column = 3 if kind == "price" else 0
        for row, value in params:
            fields = lines[row].split(b",")
            fields[column] = value.encode("utf-8", errors="replace")
            lines[row] = b",".join(fields)
        return b"\n".join(lines)
    text = data.decode()
    if params.startswith(("latin-1", "cp1252")):
        return text.replace("c2", "Malmö\u2019s" if params.startswith("cp") else "Malmö").encode(params[:-6])
    return text.encode(params)


def _data_lines(data: bytes) -> int:
    """Data rows as the ETL counts them: every line after the header, an unfinished last line included."""
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return lines - 1


def _kept(store: Store, name: str) -> int:
    if name == schema.CUSTOMERS_FILE:
        return store.read("customers").filter(pl.col("known")).height
    return store.manifest["rows"]["articles" if name == schema.ARTICLES_FILE else "transactions"]


def _check_promise(raw: Path, out: Path) -> str:
    """Build once; assert the promise; return 'built' or 'refused'."""
    try:
        build_store(raw, out)
    except RawDataError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message and len(message) < 600, message
        assert message.startswith(schema.RAW_FILES), message
        assert not out.exists(), "a refused build left something at the output path"
        left = sorted(p.name for p in out.parent.iterdir())
        assert left == sorted([raw.name, f"{out.name}.lock"]), "a temporary folder was left behind"
        return "refused"
    store = Store(out)
    for name in schema.RAW_FILES:
        written = _data_lines((raw / name).read_bytes())
        kept, quarantined = _kept(store, name), store.quarantine(name).height
        assert kept + quarantined == written, f"{name}: kept {kept} + quarantined {quarantined} != {written} rows"
    return "built"


@FUZZ
@given(hurt=damage())
def test_malformed_files_are_built_or_refused_in_one_line(hurt):
    name, kind, params = hurt
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw"
        files = _base(raw)
        (raw / name).write_bytes(_apply(files[name], kind, params))
        event(f"{kind}: {_check_promise(raw, Path(folder) / 'store')}")


def _slow_broken_lines(data: bytes) -> list[int]:
    """The obviously-correct answer: every line (the unfinished last one too) with an odd number of quotes."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines = lines[:-1]
    return [i + 1 for i, line in enumerate(lines) if line.count(b'"') % 2]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(data=st.lists(st.sampled_from([b"a", b",", b'"', b"\n", b"\r", "é".encode()]), max_size=80).map(b"".join),
       chunk=st.integers(1, 9))
def test_byte_check_agrees_with_a_slow_loop_at_any_chunk_size(data, chunk):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.csv"
        path.write_bytes(data)
        saved, bytecheck.CHUNK = bytecheck.CHUNK, chunk
        try:
            report = bytecheck.check_bytes(path)
        finally:
            bytecheck.CHUNK = saved
    assert [line for line, _, _ in report.broken] == _slow_broken_lines(data)
    for line, start, end in report.broken:
        assert data[start:end] == data.split(b"\n")[line - 1]


# --- the real command: exit code, last stderr line, no traceback ------------------------------------------------


def _run_etl(raw: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([str(HMREC), "etl", "--raw", str(raw), "--store", str(out)], capture_output=True,
                          text=True, errors="replace", env=env, timeout=120, check=False)


@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(hurt=damage())
def test_the_command_answers_in_one_last_line(hurt):
    name, kind, params = hurt
    with tempfile.TemporaryDirectory() as folder:
        raw, out = Path(folder) / "raw", Path(folder) / "store"
        files = _base(raw)
        (raw / name).write_bytes(_apply(files[name], kind, params))
        result = _run_etl(raw, out)
        assert "Traceback" not in result.stderr
        if result.returncode == 0:
            assert json.loads((out / "manifest.json").read_text())["rows"]["transactions"] > 0
        else:
            assert result.returncode == 1 and not out.exists()
            assert result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr


def test_the_command_refuses_hostile_files_in_one_last_line(tmp_path):
    """The issue's cases through the real process: UTF-16, binary after the header, a store path that is a file."""
    cases = {
        "utf16": (schema.CUSTOMERS_FILE, lambda b: b.decode().encode("utf-16"), "store"),
        "binary": (schema.ARTICLES_FILE, lambda b: b.split(b"\n")[0] + b"\n" + bytes(range(256)) * 50, "store"),
        "store-is-a-file": (schema.CUSTOMERS_FILE, lambda b: b, "file"),
    }
    for case, (name, spoil, target) in cases.items():
        raw = tmp_path / case / "raw"
        files = _base(raw)
        (raw / name).write_bytes(spoil(files[name]))
        out = tmp_path / case / target
        if target == "file":
            out.write_text("keep me")
        result = _run_etl(raw, out)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 1 and "Traceback" not in result.stderr, (case, result.stderr[-2000:])
        assert last.startswith(("error: customers.csv", "error: articles.csv", "error: --store")), (case, last)
        assert (out.read_text() == "keep me") if target == "file" else not out.exists()
        assert len(result.stderr.splitlines()) < 10 and "\x00" not in result.stderr
