"""Model bundles and the MLflow model registry, on a real SQLite store: round trip, corruption, atomic promotion."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.registry.checksums import MANIFEST, RegistryError, verify_bundle, write_manifest
from hmrec.registry.tracking import client_for
from hmrec.registry.versions import CACHE_DIR, MODEL_NAME, Registry

FINGERPRINT = "fp-0123456789abcdef"


def make_bundle(directory: Path, ranker_text: str = "tree=0\nleaf=0.5\n", map12: float = 0.0312) -> Path:
    """A small bundle shaped like the pipeline's: tables, history and a final/ folder with a nested source."""
    directory.mkdir(parents=True)
    pl.DataFrame({"article_idx": [0, 1, 2], "article_id": [108775015, 108775044, 110065001]}).write_parquet(
        directory / "articles.parquet")
    pl.DataFrame({"customer_idx": [0, 1], "age": [24, 51]}).write_parquet(directory / "customers.parquet")
    pl.DataFrame({"customer_idx": [0, 0, 1], "article_idx": [2, 1, 0]}).write_parquet(directory / "history.parquet")
    (directory / "final" / "sources" / "popularity").mkdir(parents=True)
    (directory / "final" / "ranker.txt").write_text(ranker_text)
    (directory / "final" / "config.json").write_text(json.dumps({"k": 12}))
    (directory / "final" / "sources" / "popularity" / "table.json").write_text("[2, 0, 1]")
    write_manifest(directory, store_fingerprint=FINGERPRINT,
                   extra={"metrics": {"final": {"map@12": map12}}, "data_end": date(2020, 9, 22)})
    return directory


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module", autouse=True)
def no_env_override():
    """Tests use their own SQLite stores even where MLFLOW_TRACKING_URI names a shared server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory, no_env_override) -> tuple[Path, MlflowClient]:
    """One SQLite tracking store for the module (creating one costs ~2 s); each test uses its own model name."""
    workdir = tmp_path_factory.mktemp("work")
    return workdir, client_for(workdir)


@pytest.fixture
def registry(store, request) -> Registry:
    workdir, client = store
    return Registry(client, workdir, name=f"model-{request.node.name}".replace("[", "-").replace("]", ""))


# -- manifests, without MLflow ------------------------------------------------------------------------


def test_manifest_lists_the_sha256_of_every_file_and_the_extra_info(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["files"] == {
        rel: hashlib.sha256(data).hexdigest() for rel, data in tree(bundle).items() if rel != MANIFEST
    }
    assert "final/sources/popularity/table.json" in manifest["files"]
    assert manifest["store_fingerprint"] == FINGERPRINT
    assert manifest["data_end"] == "2020-09-22"
    assert manifest["metrics"] == {"final": {"map@12": 0.0312}}
    assert verify_bundle(bundle) == manifest


def test_verify_names_a_changed_file(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    flip_byte(bundle / "final" / "ranker.txt")
    with pytest.raises(RegistryError, match=r"model file final/ranker.txt does not match its checksum in "
                                            r"manifest.json \(expected [0-9a-f]{12}\.\.\., got [0-9a-f]{12}"):
        verify_bundle(bundle)


def test_verify_names_a_removed_and_an_added_file(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / "final" / "config.json").unlink()
    with pytest.raises(RegistryError, match="model file final/config.json listed in manifest.json is missing"):
        verify_bundle(bundle)
    other = make_bundle(tmp_path / "c")
    (other / "final" / "extra.bin").write_bytes(b"\x00")
    with pytest.raises(RegistryError, match="model file final/extra.bin .* is not listed in manifest.json"):
        verify_bundle(other)


def test_a_missing_or_truncated_manifest_means_an_incomplete_bundle(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    text = (bundle / MANIFEST).read_text()
    (bundle / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(RegistryError, match="manifest.json is not valid JSON .* the manifest is incomplete"):
        verify_bundle(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(RegistryError, match="manifest.json is missing: the bundle is incomplete"):
        verify_bundle(bundle)


def test_every_reader_of_a_bundle_refuses_an_old_format_in_one_line_naming_the_rebuild(tmp_path):
    from hmrec.registry.model_bundle import BundleError, bundle_paths, load_final, read_bundle, read_manifest

    bundle = make_bundle(tmp_path / "bundle")
    assert read_manifest(bundle)["format"] == 2
    assert bundle_paths(bundle).data_end == date(2020, 9, 22)
    manifest = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**manifest, "format": 1}))
    expected = (f"{bundle / MANIFEST} is a bundle of format 1, this release reads format 2: rebuild it with "
                "`hmrec pipeline --raw DIR --workdir WORKDIR --promote`")
    for reader in (read_manifest, bundle_paths, load_final, read_bundle):
        with pytest.raises(BundleError) as refused:
            reader(bundle)
        assert str(refused.value) == expected, reader.__name__


def test_manifest_refuses_reserved_extra_keys_and_links(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(ValueError, match=r"extra keys \['files'\] are reserved"):
        write_manifest(bundle, store_fingerprint="x", extra={"files": {}})
    (bundle / "link.parquet").symlink_to(bundle / "articles.parquet")
    with pytest.raises(RegistryError, match="1 links or special files .*link.parquet"):
        write_manifest(bundle, store_fingerprint="x", extra={})


# -- the registry -------------------------------------------------------------------------------------


def test_a_bundle_keeps_each_customers_latest_purchases_in_the_stores_order_within_a_day():
    import numpy as np

    from hmrec.registry.model_bundle import latest_purchases

    rng = np.random.default_rng(0)
    n = 300_000  # large enough for a parallel sort, whose unstable order differed from run to run
    customers, days = rng.integers(0, 5_000, n).astype(np.int32), rng.integers(0, 30, n)
    transactions = pl.DataFrame({"customer_idx": customers, "t_dat": (np.datetime64("2020-01-01") + days)
                                 .astype("datetime64[D]"), "article_idx": np.arange(n, dtype=np.int32)})
    order = np.lexsort((days, customers))  # stable: a day's purchases in the table's order
    sorted_customers = customers[order]
    last = np.r_[np.flatnonzero(sorted_customers[1:] != sorted_customers[:-1]), n - 1]  # each customer's newest
    newer = np.repeat(last, np.diff(np.r_[-1, last])) - np.arange(n)  # the customer's purchases after this one
    expected = order[newer < 3]
    assert latest_purchases(transactions, None)["article_idx"].to_list() == order.tolist()
    assert latest_purchases(transactions, 3)["article_idx"].to_list() == expected.tolist()


def test_register_list_show_promote_load_round_trip(registry, tmp_path):
    bundle = make_bundle(tmp_path / "b")
    assert registry.versions() == []
    assert registry.register(bundle) == 1
    [line] = registry.describe_all()
    assert line.startswith("version   1  created ") and f"store {FINGERPRINT[:16]}" in line
    assert "MAP@12 0.0312" in line and "champion" not in line
    assert registry.manifest(1) == json.loads((bundle / MANIFEST).read_text())
    assert registry.champion_version() is None

    registry.promote(1)
    assert registry.champion_version() == 1
    assert registry.describe_all()[0].endswith("  champion")
    loaded = registry.load()
    assert tree(loaded) == tree(bundle)
    assert registry.load_version("champion") == (1, loaded)
    assert registry.load(1) == loaded


def test_a_corrupted_artifact_is_refused_at_load_and_promotion(registry, tmp_path):
    version = registry.register(make_bundle(tmp_path / "b"))
    stored = registry.load(version)
    flip_byte(stored / "final" / "ranker.txt")
    with pytest.raises(RegistryError, match="model file final/ranker.txt does not match its checksum"):
        registry.load(version)
    with pytest.raises(RegistryError, match="final/ranker.txt .* the version is corrupted; re-register it"):
        registry.promote(version)
    assert registry.champion_version() is None


def test_a_removed_or_added_artifact_is_refused(registry, tmp_path):
    first = registry.load(registry.register(make_bundle(tmp_path / "b")))
    (first / "history.parquet").unlink()
    with pytest.raises(RegistryError, match="model file history.parquet listed in manifest.json is missing"):
        registry.load(1)
    second = registry.load(registry.register(make_bundle(tmp_path / "c")))
    (second / "final" / "sources" / "notes.txt").write_text("added later")
    with pytest.raises(RegistryError, match="model file final/sources/notes.txt .* is not listed"):
        registry.load(2)


def test_a_rewritten_manifest_is_refused_by_the_checksum_recorded_at_registration(registry, tmp_path):
    stored = registry.load(registry.register(make_bundle(tmp_path / "b")))
    (stored / "final" / "ranker.txt").write_text("tree=0\nleaf=9.9\n")
    write_manifest(stored, store_fingerprint=FINGERPRINT, extra={})
    assert verify_bundle(stored)  # self-consistent again, but not what was registered
    with pytest.raises(RegistryError, match="model file manifest.json of version 1 does not match the checksum "
                                            "recorded at registration"):
        registry.load(1)


def test_promotion_is_atomic_and_a_bad_version_leaves_the_champion_in_place(registry, store, tmp_path):
    for name in ("a", "b", "c"):
        registry.register(make_bundle(tmp_path / name))
    registry.promote(1)
    flip_byte(registry.load(2) / "articles.parquet")
    with pytest.raises(RegistryError, match="articles.parquet does not match"):
        registry.promote(2)
    assert registry.champion_version() == 1

    # A second reader on its own connection never sees the alias missing while it moves back and forth.
    reader = Registry(MlflowClient(tracking_uri=registry.client.tracking_uri), store[0], name=registry.name)
    seen, stop = set(), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(reader.champion_version())

    watcher = threading.Thread(target=watch)
    watcher.start()
    for _ in range(5):
        registry.promote(3)
        registry.promote(1)
    stop.set()
    watcher.join()
    assert seen <= {1, 3} and 1 in seen
    assert registry.champion_version() == 1


def test_a_bundle_changed_after_its_manifest_is_not_registered(registry, tmp_path):
    bundle = make_bundle(tmp_path / "b")
    flip_byte(bundle / "customers.parquet")
    with pytest.raises(RegistryError, match="customers.parquet does not match .* write the manifest last"):
        registry.register(bundle)
    assert registry.versions() == []


def test_a_failure_part_way_through_the_upload_leaves_no_version(registry, tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    client = registry.client
    real_log_artifact = client.log_artifact

    def upload_one_file_then_fail(run_id, local_dir, artifact_path=None):
        real_log_artifact(run_id, str(Path(local_dir) / "articles.parquet"), artifact_path)
        raise OSError("No space left on device")

    def failed_runs() -> set[str]:
        runs = client.search_runs([client.get_experiment_by_name("hmrec").experiment_id],
                                  filter_string="attributes.status = 'FAILED'")
        return {run.info.run_id for run in runs}

    before = failed_runs()
    monkeypatch.setattr(client, "log_artifacts", upload_one_file_then_fail)
    with pytest.raises(OSError, match="No space left"):
        registry.register(bundle)
    assert registry.versions() == []
    [run_id] = failed_runs() - before
    assert [a.path for a in client.list_artifacts(run_id, "bundle")] == ["bundle/articles.parquet"]

    def silently_skip_the_ranker(run_id, local_dir, artifact_path=None):
        for rel, _ in tree(Path(local_dir)).items():
            if rel != "final/ranker.txt":
                sub = str(Path(artifact_path, rel).parent.as_posix())
                real_log_artifact(run_id, str(Path(local_dir) / rel), sub)

    monkeypatch.setattr(client, "log_artifacts", silently_skip_the_ranker)
    with pytest.raises(RegistryError, match=r"upload .* incomplete: 1 file\(s\) missing .*final/ranker.txt.*"
                                            "no version was created"):
        registry.register(bundle)
    assert registry.versions() == []

    monkeypatch.undo()
    assert registry.register(bundle) == 1


def test_a_run_registers_one_bundle_only(registry, store, tmp_path):
    client = registry.client
    run_id = client.create_run(client.get_experiment_by_name("hmrec").experiment_id).info.run_id
    assert registry.register(make_bundle(tmp_path / "b"), run_id=run_id) == 1
    assert client.get_model_version(registry.name, "1").run_id == run_id
    with pytest.raises(RegistryError, match=f"run {run_id} already holds a registered bundle"):
        registry.register(make_bundle(tmp_path / "c"), run_id=run_id)
    assert [v.version for v in registry.versions()] == [1]


def test_errors_say_what_to_do(registry, tmp_path):
    train = f"run `hmrec pipeline --raw DIR --workdir {registry.workdir} --promote` to train and register one"
    assert registry.describe_all() == [f"no version of {registry.name} is registered yet: {train}"]
    with pytest.raises(RegistryError) as error:
        registry.load()
    assert str(error.value) == f"no version is registered yet: {train}"
    registry.register(make_bundle(tmp_path / "b"))
    with pytest.raises(RegistryError, match=r"no version is promoted yet: run `hmrec registry promote VERSION` "
                       r"\(registered: 1\)"):
        registry.load()
    with pytest.raises(RegistryError, match="version 7 does not exist; `hmrec registry list` shows the versions"):
        registry.manifest(7)
    with pytest.raises(RegistryError, match="version 7 does not exist"):
        registry.promote(7)
    assert registry.champion_version() is None


def test_a_copied_version_is_cached_and_a_damaged_copy_fetched_again(store, tmp_path):
    workdir, client = store
    registry = Registry(client, workdir, name="model-copied", read_in_place=False)
    bundle = make_bundle(tmp_path / "b")
    registry.register(bundle)
    copy = registry.load(1)
    assert copy == workdir / CACHE_DIR / "v1" and tree(copy) == tree(bundle)
    flip_byte(copy / "final" / "ranker.txt")
    assert tree(registry.load(1)) == tree(bundle)
    in_place = Registry(client, workdir, name="model-copied").load(1)
    flip_byte(in_place / "final" / "ranker.txt")
    assert tree(registry.load(1)) == tree(bundle)  # the verified copy does not depend on the source any more
    shutil.rmtree(copy)
    with pytest.raises(RegistryError, match="final/ranker.txt does not match"):
        registry.load(1)


def test_cli_lists_shows_and_promotes_versions_of_hmrec_recommender(store, tmp_path):
    workdir = store[0]  # no other test of this module uses the default model name
    registry = Registry.for_workdir(workdir)
    assert registry.name == MODEL_NAME
    registry.register(make_bundle(tmp_path / "b", map12=0.02))
    registry.register(make_bundle(tmp_path / "c", map12=0.03))
    runner = CliRunner()

    promoted = runner.invoke(app, ["registry", "promote", "2", "--workdir", str(workdir)])
    assert promoted.exit_code == 0 and "version 2 is now champion" in promoted.output
    listed = runner.invoke(app, ["registry", "list", "--workdir", str(workdir)])
    lines = listed.output.strip().splitlines()
    assert len(lines) == 2 and "MAP@12 0.0200" in lines[0] and lines[1].endswith("MAP@12 0.0300  champion")
    shown = runner.invoke(app, ["registry", "show", "1", "--json", "--workdir", str(workdir)])
    assert shown.exit_code == 0 and json.loads(shown.output)["metrics"] == {"final": {"map@12": 0.02}}
    summary = runner.invoke(app, ["registry", "show", "1", "--workdir", str(workdir)]).output.splitlines()
    assert summary[0] == f"{MODEL_NAME} version 1  (aliases: none)" and "  final      0.0200" in summary
    missing = runner.invoke(app, ["registry", "show", "9", "--workdir", str(workdir)])
    assert missing.exit_code == 1 and "version 9 does not exist" in missing.output
    assert (workdir / "mlflow.db").is_file() and (workdir / "mlartifacts").is_dir()
