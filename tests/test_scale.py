"""The Ray engine on a real local Ray cluster: the same store, the same errors, work spread over worker processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from raw_helpers import TRANSACTIONS, write_raw
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.data import Query
from hmrec.pipeline import load_train_data
from hmrec.raw.read import RawDataError
from hmrec.recommenders.als import ALSConfig, ALSRecommender
from hmrec.recommenders.base import save_recommender
from hmrec.scale.blocks import line_blocks
from hmrec.scale.engine import LocalEngine, RayEngine
from hmrec.scale.etl import RayIndexer
from hmrec.scale.features import RayFeatures
from hmrec.scale.scoring import Scorer, ScoringInputs
from hmrec.store import build, tables

FIXTURE = Path(__file__).parent / "fixtures" / "hm-real-head10k"


def table_hashes(store: Path) -> dict[str, str]:
    """sha256 of each table's rows sorted on every column: equal when two stores hold the same rows."""
    reader = tables.Store(store)
    names = sorted({p.name.removesuffix(".parquet") for p in store.iterdir() if p.name != tables.QUARANTINE
                    and (p.suffix == ".parquet" or p.is_dir())})
    frames = {name: reader.read(name) for name in names}
    frames.update({f"{tables.QUARANTINE}/{p.name}": pl.read_parquet(p)
                   for p in sorted((store / tables.QUARANTINE).glob("*.parquet"))})
    return {name: hashlib.sha256(frame.sort(frame.columns, nulls_last=True).write_csv().encode()).hexdigest()
            for name, frame in frames.items()}


def build_both(raw: Path, out: Path, block_bytes: int) -> tuple[dict, dict, RayIndexer, RayFeatures]:
    local = build.build_store(raw, out / "local")
    indexer, features = RayIndexer(block_bytes), RayFeatures(partitions=4)
    on_ray = build.build_store(raw, out / "ray", indexer=indexer, features=features, partitions=4)
    return local, on_ray, indexer, features


def partitioned_like(ray_store: Path, local_store: Path, n: int) -> None:
    """The Ray store's transactions: n files by customer, each customer in one, read back row for row as local's."""
    on_ray, local = tables.Store(ray_store), tables.Store(local_store)
    files = on_ray.partitions(tables.TRANSACTIONS)
    assert len(files) == n and on_ray.manifest["partitions"] == {tables.TRANSACTIONS: n}
    for k, path in enumerate(files):
        customers = pl.read_parquet(path, columns=["customer_idx"])["customer_idx"]
        assert (customers % n == k).all(), path
    assert_frame_equal(on_ray.read(tables.TRANSACTIONS), local.read(tables.TRANSACTIONS))  # the order too


def same_manifest(local: dict, on_ray: dict) -> None:
    for key in ("rows", "schemas", "sources", "cutoff", "test_window", "quality", "normalisations", "fingerprint"):
        assert on_ray[key] == local[key], key


def test_blocks_end_at_row_breaks_outside_quotes(tmp_path):
    rows = [f'{n},"line one\nline two, {n}",x' for n in range(40)]
    path = tmp_path / "quoted.csv"
    path.write_bytes(("a,b,c\n" + "\n".join(rows) + "\n").encode())
    header, ranges = line_blocks(path, block_bytes=50)
    data = path.read_bytes()
    assert header == b"a,b,c\n"
    assert len(ranges) > 5 and ranges[0][0] == len(header) and ranges[-1][1] == len(data)
    assert all(end == next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:], strict=False))
    blocks = [pl.read_csv(header + data[start:end])["a"].to_list() for start, end in ranges]
    assert [n for block in blocks for n in block] == list(range(40))


def test_blocks_of_a_file_whose_lines_close_their_quotes_need_no_quote_count(tmp_path):
    rows = [f'{n},"one, {n}",x' for n in range(40)]
    path = tmp_path / "balanced.csv"
    path.write_bytes(("a,b,c\n" + "\n".join(rows) + "\n").encode())
    assert line_blocks(path, block_bytes=50, quotes_balanced=True) == line_blocks(path, block_bytes=50)


def test_ray_store_equals_local_on_the_tiny_sample(ray_cluster, tiny_raw, tmp_path):
    size = (tiny_raw / "transactions_train.csv").stat().st_size
    local, on_ray, indexer, features = build_both(tiny_raw, tmp_path, block_bytes=size // 6)
    same_manifest(local, on_ray)
    assert table_hashes(tmp_path / "ray") == table_hashes(tmp_path / "local")
    assert set(table_hashes(tmp_path / "ray")) >= {tables.TRANSACTIONS, tables.USER_FEATURES, tables.ITEM_FEATURES}
    partitioned_like(tmp_path / "ray", tmp_path / "local", 4)
    assert len(indexer.pids) >= 2 and len(features.pids) >= 2, (indexer.pids, features.pids)


def test_ray_store_equals_local_on_a_real_export(ray_cluster, tmp_path):
    local, on_ray, _, _ = build_both(FIXTURE, tmp_path, block_bytes=200_000)
    same_manifest(local, on_ray)
    assert on_ray["quality"]["transactions.id_without_leading_zero"] == 10_000
    assert table_hashes(tmp_path / "ray") == table_hashes(tmp_path / "local")
    partitioned_like(tmp_path / "ray", tmp_path / "local", 4)


def test_ray_quarantines_the_same_rows_with_the_same_reasons(ray_cluster, tmp_path):
    rows = [*TRANSACTIONS, "2020-09-09,c1,0663713001,-0.05,2", "2020-13-01,c2,0663713001,0.05,2",
            "2020-09-09,zz,0663713001,0.05,2", "2020-09-09,c1,0999999999,0.05,9"]
    raw = write_raw(tmp_path / "raw", transactions=rows)
    local, on_ray, _, _ = build_both(raw, tmp_path, block_bytes=64)
    same_manifest(local, on_ray)
    quarantine = pl.read_parquet(tmp_path / "ray" / tables.QUARANTINE / "transactions_train.parquet")
    assert quarantine.sort("line").select("line", "reason").rows() == pl.read_parquet(
        tmp_path / "local" / tables.QUARANTINE / "transactions_train.parquet").sort("line").select(
        "line", "reason").rows()
    assert quarantine.height == 3


@pytest.mark.parametrize("bad_rows", [
    ["2020-09-09,c1,0663713001,0.05,2,extra"],  # more fields than the header
    [f"09/0{d}/2020,c1,0663713001,0.05,2" for d in range(1, 9)],  # a date format the file is not in
])
def test_ray_stops_with_the_local_engines_one_line_error(ray_cluster, tmp_path, bad_rows):
    raw = write_raw(tmp_path / "raw", transactions=[*bad_rows, *TRANSACTIONS[:2]])
    with pytest.raises(RawDataError) as local:
        build.build_store(raw, tmp_path / "local")
    with pytest.raises(RawDataError) as on_ray:
        build.build_store(raw, tmp_path / "ray", indexer=RayIndexer(64))
    assert str(on_ray.value) == str(local.value)


def test_ray_batch_scoring_gives_the_local_top_12(ray_cluster, tiny_store, tmp_path):
    data = load_train_data(tiny_store)
    model = ALSRecommender(ALSConfig(factors=16, iterations=5)).fit(data)
    save_recommender(model, tmp_path / "model")
    customer_idx = np.arange(data.customers.height, dtype=np.int32)[::-1].copy()
    query = Query.for_customers(customer_idx, data.customers, data.transactions, tiny_store.cutoff)
    expected = model.recommend(query, 12)
    assert len(tiny_store.partitions(tables.TRANSACTIONS)) == 3  # each actor reads the partitions it scores
    inputs = ScoringInputs(tmp_path / "model", tiny_store.table_path(tables.CUSTOMERS),
                           tiny_store.table_path(tables.TRANSACTIONS), tiny_store.cutoff, k=12)
    on_ray = RayEngine(scoring_rows=len(customer_idx) // 8).score(inputs, customer_idx)
    assert (expected.items >= 0).all()  # every customer got 12 answers, so equality says something
    np.testing.assert_array_equal(LocalEngine().score(inputs, customer_idx).recs.items, expected.items)  # all parts
    scorer = Scorer(inputs)
    assert (scorer.history(np.array([1, 4], dtype=np.int32))["customer_idx"] % 3 == 1).all()  # partition 1 alone
    assert scorer.score(np.empty(0, dtype=np.int32)).items.shape == (0, 12)
    np.testing.assert_array_equal(on_ray.recs.items, expected.items)
    np.testing.assert_allclose(on_ray.recs.scores, expected.scores, rtol=1e-6)
    assert len(on_ray.pids) >= 2 and os.getpid() not in on_ray.pids, on_ray.pids
    # what `hmrec evaluate --engine ray` asks: the same query, answered through the saved model on Ray
    on_engine = RayEngine(scoring_rows=500).scorer(model, tiny_store, tmp_path / "eval")
    assert on_engine is not model
    np.testing.assert_array_equal(on_engine.recommend(query, 12).items, expected.items)


def test_cli_etl_on_ray(ray_cluster, tiny_raw, tmp_path):
    result = CliRunner().invoke(app, ["etl", "--raw", str(tiny_raw), "--store", str(tmp_path / "store"),
                                      "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert f"built {tmp_path / 'store'}: customers 2,000, articles 1,000, transactions " in result.output
    # one partition per CPU of the cluster (the tiny file is far below partition_bytes)
    assert tables.Store(tmp_path / "store").manifest["partitions"] == {tables.TRANSACTIONS: 2}


def test_cli_refuses_an_unknown_engine(tmp_path):
    result = CliRunner().invoke(app, ["etl", "--raw", str(tmp_path), "--store", str(tmp_path / "s"), "--engine", "x"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: engine 'x' is not one of local, ray; pass --engine or set HMREC_ENGINE"


def test_the_local_engine_never_imports_ray(tiny_raw, tmp_path):
    code = ("import sys; from hmrec.scale.engine import engine_from_options; "
            f"engine_from_options().build_store({str(tiny_raw)!r}, {str(tmp_path / 'store')!r}); "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    env = {**os.environ, "HMREC_ENGINE": "local"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert (tmp_path / "store" / tables.MANIFEST).is_file()


ORPHAN_SCRIPT = '''
import multiprocessing, os, sys, time
from pathlib import Path

from hmrec.scale.scoring import die_with_parent


def child(parent, ready):
    die_with_parent(parent)
    Path(ready).touch()
    time.sleep(300)


if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(), sys.argv[1]))
    process.start()
    print(process.pid, flush=True)
    time.sleep(300)
'''


def gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


def test_a_scoring_process_dies_with_its_killed_parent(tmp_path):
    """A killed pipeline leaves no scoring process behind (each held ~2 GB, blocked on answering for ever)."""
    import time

    script, ready = tmp_path / "parent.py", tmp_path / "ready"
    script.write_text(ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(ready)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists() and not gone(child)
    parent.kill()
    parent.wait()
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert gone(child), "the child outlived its killed parent"
    finally:
        if not gone(child):
            os.kill(child, 9)
