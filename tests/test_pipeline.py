"""The whole pipeline on the tiny sample: every stage runs, the report and registry hold what they promise."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.data import Query
from hmrec.pipeline import AP_FILE
from hmrec.recommenders.base import load_recommender
from hmrec.registry.versions import Registry
from hmrec.sample.generate import generate
from hmrec.store.tables import Store

METHODS = {"popularity", "age_popularity", "repurchase", "als", "trending", "two_tower", "other_colours", "bought_together",
           "tifu_knn", "ease", "final"}
METRICS = {"map@12", "recall@12", "recall@100", "ndcg@12"}


def test_pipeline_prints_the_path_of_metrics_json(pipeline_run):
    workdir, printed = pipeline_run.workdir, pipeline_run.printed
    assert printed.endswith("metrics.json")
    metrics = json.loads(open(printed).read())
    assert metrics == json.loads((workdir / "reports" / "latest" / "metrics.json").read_text())


def test_evaluate_writes_its_report_under_the_reports_folder(pipeline_run, tmp_path):
    """`hmrec evaluate` scores the champion on the workdir's store and writes REPORTS/<run-id>/ and REPORTS/latest/
    (by default ml/reports), leaving the pipeline's own reports alone."""
    before = sorted(p.name for p in (pipeline_run.workdir / "reports").iterdir())
    reports = tmp_path / "ml" / "reports"
    result = CliRunner().invoke(app, ["evaluate", "--workdir", str(pipeline_run.workdir), "--reports", str(reports)])
    assert result.exit_code == 0, result.output
    printed = Path(result.output.strip().splitlines()[-1])
    assert printed.parent.parent == reports and printed.name == "metrics.json"
    assert (printed.parent / "report.md").is_file()
    assert json.loads(printed.read_text()) == json.loads((reports / "latest" / "metrics.json").read_text())
    assert "final" in json.loads(printed.read_text())["methods"]
    assert set(json.loads(printed.read_text())["methods"]) <= METHODS  # the champion and its sources
    assert sorted(p.name for p in (pipeline_run.workdir / "reports").iterdir()) == before


def test_metrics_json_has_every_method_with_the_agreed_shape(pipeline_run):
    workdir = pipeline_run.workdir
    metrics = json.loads((workdir / "reports" / "latest" / "metrics.json").read_text())
    store = Store(workdir / "store")
    assert metrics["test_window"] == [store.cutoff.isoformat(), store.test_end.isoformat()]
    assert store.test_end - store.cutoff == timedelta(days=6)
    buyers = store.test_transactions().select("customer_idx").unique().collect().height
    assert metrics["customers"] == buyers
    assert set(metrics["methods"]) == METHODS
    for name, values in metrics["methods"].items():
        assert set(values) == METRICS, name
        assert all(0.0 <= v <= 1.0 for v in values.values()), (name, values)
        assert values["recall@100"] >= values["recall@12"], name


def test_report_has_plots_and_every_section(pipeline_run):
    workdir = pipeline_run.workdir
    report_dir = workdir / "reports" / "latest"
    report = (report_dir / "report.md").read_text()
    for method in METHODS:
        assert method in report
    assert "andidate recall" in report and "importance" in report.lower()
    assert "## Ranker settings chosen on validation" in report
    assert "Label windows: 3 of 7 day(s)" in report and "(1 behind the settings window, 2 after it)" in report
    assert set(pl.read_parquet(report_dir / AP_FILE).columns) == METHODS  # bench/quality.py's bootstrap reads it
    pngs = list(report_dir.glob("*.png"))
    assert len(pngs) >= 3
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_the_ranker_settings_chosen_are_mlflow_params(pipeline_run):
    from hmrec.registry.tracking import client_for

    client = client_for(pipeline_run.workdir)
    runs = client.search_runs([client.get_experiment_by_name("hmrec").experiment_id])
    params = next(run.data.params for run in runs if "ranker.label_days" in run.data.params)
    assert params["ranker.label_days"] == "7" and params["ranker.label_windows"] == "3"
    assert params["ranker.near_windows"] == "2"
    assert params["ranker.objective"] in ("lambdarank", "binary", "xendcg") and int(params["ranker.trees"]) >= 1


def test_the_run_is_registered_promoted_and_loads_with_checksums(pipeline_run):
    workdir = pipeline_run.workdir
    registry = Registry.for_workdir(workdir)
    assert registry.champion_version() == 1
    bundle = registry.load("champion")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["store_fingerprint"] == Store(workdir / "store").fingerprint
    for name in ("articles.parquet", "customers.parquet", "history.parquet", "final/ranker.txt",
                 "cold_start/recommender.json"):
        assert name in manifest["files"], name
    assert (manifest["final"], manifest["cold_start"]) == ("final", "age_popularity")


def test_the_served_cold_start_scores_what_the_report_shows(pipeline_run):
    """The bundle's cold start, scored on the held-out week, gives the report's age_popularity figures."""
    from hmrec.evaluation.runner import evaluate_methods, ground_truth
    from hmrec.serving.model import load_model
    from hmrec.store.tables import ARTICLES, CUSTOMERS

    workdir = pipeline_run.workdir
    model = load_model(Registry.for_workdir(workdir).load("champion"), version=1)
    store = Store(workdir / "store")
    customer_idx, relevant = ground_truth(store.test_transactions().collect())
    query = Query.for_customers(customer_idx, store.read(CUSTOMERS), store.train_transactions().collect(),
                                as_of=store.cutoff)
    served = evaluate_methods({"age_popularity": model.cold_start}, query, relevant).methods["age_popularity"]
    reported = json.loads((workdir / "reports" / "latest" / "metrics.json").read_text())["methods"]["age_popularity"]
    assert served.metrics == reported
    assert model.catalogue.find(int(store.read(ARTICLES)["article_id"][0])) == 0


def test_the_registered_model_answers_a_live_customer_from_history_alone(pipeline_run):
    """A customer the store never saw, with two purchases, gets a full personalised list from the bundle."""
    import polars as pl

    workdir = pipeline_run.workdir
    bundle = Registry.for_workdir(workdir).load("champion")
    final = load_recommender(bundle / "final")
    history = pl.read_parquet(bundle / "history.parquet")
    as_of = history["t_dat"].max() + timedelta(days=1)
    bought = history["article_idx"].head(2).to_list()
    profile = pl.DataFrame({"customer_idx": [-1], "age": [30], "age_bucket": [1]}).cast(
        {"customer_idx": pl.Int32, "age": pl.Int16, "age_bucket": pl.Int8}
    )
    live_history = pl.DataFrame(
        {"row": [0, 0], "t_dat": [as_of - timedelta(days=1)] * 2, "article_idx": bought,
         "price": [0.03, 0.02], "sales_channel_id": [2, 2]}
    ).cast({"row": pl.UInt32, "t_dat": pl.Date, "article_idx": pl.Int32, "price": pl.Float32,
            "sales_channel_id": pl.Int8})
    with_history = final.recommend(Query(profile, live_history, as_of), k=12)
    without = final.recommend(Query(profile, live_history.clear(), as_of), k=12)
    assert (with_history.items >= 0).all() and (without.items >= 0).all()
    assert len(set(with_history.items[0])) == 12
    assert not np.array_equal(with_history.items, without.items)


def test_pipeline_without_raw_files_fails_with_a_clear_message(tmp_path):
    result = CliRunner().invoke(app, ["pipeline", "--raw", str(tmp_path / "nothing"), "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    assert "customers.csv" in result.output or "nothing" in result.output
    assert not (tmp_path / "store").exists()


def test_store_cutoff_is_independent_of_the_sample_dates(tmp_path):
    """--test-days moves the window; nothing depends on the sample's own calendar."""
    generate("tiny", seed=5, out=tmp_path / "raw")
    result = CliRunner().invoke(
        app, ["etl", "--raw", str(tmp_path / "raw"), "--store", str(tmp_path / "store"), "--test-days", "14"]
    )
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "store")
    assert store.test_end - store.cutoff == timedelta(days=13)
    assert isinstance(store.cutoff, date)
