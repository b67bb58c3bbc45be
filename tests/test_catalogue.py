"""Adding a source is one module and one catalogue entry: the toy `new_arrivals` (tests/toy_source.py) goes through
the validation's grid, the ranker, the report and the service with no other edit."""

from __future__ import annotations

import json

import polars as pl
import pytest
from fastapi.testclient import TestClient
from pipeline_settings import CHEAP
from toy_source import NewArrivalsConfig, NewArrivalsRecommender

from hmrec.candidates import sources
from hmrec.candidates.sources import Grid, Source
from hmrec.pipeline import PipelineConfig, run_pipeline
from hmrec.registry.versions import Registry
from hmrec.serving.app import create_app
from hmrec.serving.model import load_model
from hmrec.serving.settings import Settings
from hmrec.store.tables import TRANSACTIONS, Store

TOY = Source("new_arrivals", NewArrivalsRecommender, NewArrivalsConfig, candidates=8, report_rank=8,
             grids=(Grid("window_days", (7, 14)),))
SLOW = ("two_tower", "als")  # left out to keep the test's run short; they need no edit to be left out either


@pytest.fixture(scope="module")
def toy_run(tiny_raw, tmp_path_factory):
    """The tiny pipeline with the toy source added to the catalogue (and the slow sources left out)."""
    workdir = tmp_path_factory.mktemp("toy") / "work"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sources, "CATALOGUE", (*(e for e in sources.CATALOGUE if e.name not in SLOW), TOY))
        metrics_path = run_pipeline(PipelineConfig(workdir=workdir, raw=tiny_raw, promote=True, seed=3, **CHEAP))
    return workdir, json.loads(metrics_path.read_text()), (metrics_path.parent / "report.md").read_text()


def test_an_added_source_is_chosen_ranked_and_reported(toy_run):
    _, metrics, report = toy_run
    assert "new_arrivals" in metrics["methods"] and "final" in metrics["methods"]
    assert not set(SLOW) & set(metrics["methods"])
    assert "| new_arrivals.window_days | " in report  # its grid was tried on validation
    assert "| new_arrivals | " in report.split("## Candidate recall")[1]  # its candidates were counted
    assert metrics["methods"]["new_arrivals"]["recall@100"] >= 0


def test_an_added_source_is_served(toy_run):
    workdir, _, _ = toy_run
    version, bundle = Registry.for_workdir(workdir).load_version("champion")
    model = load_model(bundle, version)
    assert "new_arrivals" in model.recommender.parts() and "new_arrivals" in model.recommender.reasons()
    store = Store(workdir / "store")
    buyer = store.read(TRANSACTIONS)["customer_idx"].mode()[0]  # the most frequent buyer: answered by `final`
    customer_id = model.customers.filter(pl.col("customer_idx") == buyer)["customer_id"][0]
    with TestClient(create_app(Settings(workdir=workdir, events_path=workdir / "events.sqlite"))) as client:
        response = client.post("/recommendations", json={"customer_id": customer_id, "k": 12})
    assert response.status_code == 200, response.text
    assert response.json()["strategy"] == "personalized" and len(response.json()["items"]) == 12
