"""Precomputed answers on the tiny pipeline's champion: in the bundle, checksummed, equal to the online path's, and
served by lookup only where the batch can answer (issue 24)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import polars as pl
import pytest
import serving_support as s
from fastapi.testclient import TestClient

from hmrec.registry.model_bundle import ANSWERS, read_answers
from hmrec.registry.versions import Registry
from hmrec.scale.precompute import ACTIVE_DAYS, ANSWER_K, chosen_customers
from hmrec.serving.app import create_app
from hmrec.serving.settings import Settings


@pytest.fixture(scope="module")
def bundle(pipeline_run):
    return Registry.for_workdir(pipeline_run.workdir).load("champion")


@pytest.fixture(scope="module")
def client(pipeline_run, tmp_path_factory):
    events = tmp_path_factory.mktemp("precomputed") / "events.sqlite"
    settings = Settings(workdir=pipeline_run.workdir, events_path=events, events_token=s.EVENTS_TOKEN)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        yield client


def active_ids(bundle, n: int) -> list[str]:
    answers = read_answers(bundle)
    customers = pl.read_parquet(bundle / "customers.parquet")
    picks = np.linspace(0, len(answers.customer_idx) - 1, n).astype(int)
    return [customers["customer_id"][int(answers.customer_idx[i])] for i in picks]


def test_the_bundle_holds_the_active_customers_answers_checksummed(bundle):
    answers = read_answers(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    history = pl.scan_parquet(bundle / "history.parquet")
    data_end = history.select(pl.col("t_dat").max()).collect().item()
    expected = chosen_customers(history, data_end, "active", ACTIVE_DAYS)
    assert 0 < len(expected) < pl.read_parquet(bundle / "customers.parquet").height
    assert np.array_equal(answers.customer_idx, expected)
    assert answers.k == ANSWER_K and answers.items.shape == (len(expected), ANSWER_K)
    assert isinstance(answers.items.base, np.memmap)  # a view of the map: shared by the worker processes, not
    assert not answers.items.flags.owndata  # copied into each
    assert {f"{ANSWERS}/{name}.npy" for name in ("customer_idx", "items", "scores", "sources")} <= set(manifest["files"])
    assert (answers.sources[answers.items >= 0] > 0).all()  # every answer names a source


def test_precomputed_and_online_answers_are_the_same(client, bundle):
    service = client.app.state.answering.recommendations
    model = client.app.state.holder.model
    for customer_id in active_ids(bundle, 25):
        for k in (12, ANSWER_K):
            looked_up = service.precomputed(model, customer_id, k)
            online = service.answer_many(model, [(customer_id, k)])[0]
            assert looked_up["path"] == "precomputed" and online["path"] == "online"
            assert [it["article_id"] for it in looked_up["items"]] == [it["article_id"] for it in online["items"]]
            assert [(it["sources"], it["reason"]) for it in looked_up["items"]] == \
                [(it["sources"], it["reason"]) for it in online["items"]]
            for a, b in zip(looked_up["items"], online["items"], strict=True):
                assert (a["score"] is None and b["score"] is None) or math.isclose(a["score"], b["score"],
                                                                                   rel_tol=1e-5, abs_tol=1e-5)
            strip = ("items", "path")
            assert {key: v for key, v in looked_up.items() if key not in strip} == \
                {key: v for key, v in online.items() if key not in strip}


def recommend(client, customer_id: str, **body) -> dict:
    response = client.post("/recommendations", json={"customer_id": customer_id, **body})
    assert response.status_code == 200, response.text
    return response.json()


def path_count(client, path: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'hmrec_recommendation_paths_total{{path="{path}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_the_service_answers_by_lookup_only_where_the_batch_can(client, bundle):
    first, second = active_ids(bundle, 2)
    before = {path: path_count(client, path) for path in ("precomputed", "online")}
    assert recommend(client, first, k=ANSWER_K)["path"] == "precomputed"
    assert recommend(client, first, k=12, include_purchased=True)["path"] == "online"
    assert recommend(client, "never-seen-customer")["path"] == "online"
    assert path_count(client, "precomputed") == before["precomputed"] + 1
    assert path_count(client, "online") == before["online"] + 2

    # a live purchase changes the history and the clock: that customer goes online, the just-bought left out
    top = recommend(client, second, k=12)
    assert top["path"] == "precomputed"
    bought = top["items"][0]["article_id"]
    assert client.post("/events/purchases", json={"customer_id": second, "article_id": bought}).status_code == 201
    after = recommend(client, second, k=12)
    assert after["path"] == "online" and bought not in [it["article_id"] for it in after["items"]]


def test_precompute_registers_a_copy_of_a_version_with_its_answers(tmp_path):
    from typer.testing import CliRunner

    from hmrec.cli import app

    workdir = s.handmade_workdir(tmp_path)
    result = CliRunner().invoke(app, ["precompute", "--workdir", str(workdir), "--alias", "champion",
                                      "--precompute", "all", "--promote"])
    assert result.exit_code == 0, result.output
    registry = Registry.for_workdir(workdir)
    assert result.output.strip().splitlines()[-1] == "2" and registry.champion_version() == 2
    assert registry.manifest(2)["precomputed_from"] == 1 and read_answers(registry.load(1)) is None
    answers = read_answers(registry.load(2))
    buyers = pl.read_parquet(registry.load(2) / "history.parquet")["customer_idx"].unique().sort().to_numpy()
    assert np.array_equal(answers.customer_idx, buyers)
    with TestClient(create_app(Settings(workdir=workdir, events_path=tmp_path / "events.sqlite"))) as client:
        assert recommend(client, s.OCCASIONAL)["path"] == "precomputed"


def test_precompute_refuses_an_unknown_choice(tmp_path):
    from typer.testing import CliRunner

    from hmrec.cli import app

    result = CliRunner().invoke(app, ["precompute", "--workdir", str(tmp_path), "--precompute", "some"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: --precompute 'some' is not one of active, all, none"


def _als_scoring(tiny_store, folder):
    """An ALS model of the tiny store saved in `folder`, every third customer, and what scores them with sources."""
    from hmrec.pipeline import load_train_data
    from hmrec.recommenders.als import ALSConfig, ALSRecommender
    from hmrec.recommenders.base import save_recommender
    from hmrec.scale.scoring import ScoringInputs
    from hmrec.store.tables import CUSTOMERS, TRANSACTIONS

    data = load_train_data(tiny_store)
    model = ALSRecommender(ALSConfig(factors=16, iterations=5)).fit(data)
    save_recommender(model, folder)
    customer_idx = np.arange(0, data.customers.height, 3, dtype=np.int32)
    inputs = ScoringInputs(folder, tiny_store.table_path(CUSTOMERS), tiny_store.table_path(TRANSACTIONS),
                           tiny_store.cutoff, k=20, sources=True)
    return data, model, customer_idx, inputs


def test_the_ray_engine_precomputes_what_this_process_does(ray_cluster, tiny_store, tmp_path):
    from hmrec.data import Query
    from hmrec.scale.engine import LocalEngine, RayEngine

    data, model, customer_idx, inputs = _als_scoring(tiny_store, tmp_path / "model")
    here, on_ray = LocalEngine().score(inputs, customer_idx), RayEngine(scoring_rows=200).score(inputs, customer_idx)
    explained = model.explain(Query.for_customers(customer_idx, data.customers, data.transactions, tiny_store.cutoff),
                              20)
    assert here.source_names == on_ray.source_names == ("als",)
    assert [[a for a in row if a >= 0] for row in here.recs.items.tolist()] == [[a for a, _, _ in e] for e in explained]
    assert ((here.sources == 1) == (here.recs.items >= 0)).all()
    np.testing.assert_array_equal(on_ray.recs.items, here.recs.items)
    np.testing.assert_array_equal(on_ray.sources, here.sources)
    np.testing.assert_allclose(on_ray.recs.scores, here.recs.scores, rtol=1e-6)


def test_this_machine_scores_in_blocks_and_processes_what_one_call_does(tiny_store, tmp_path):
    from hmrec.scale.scoring import score_here

    _, _, customer_idx, inputs = _als_scoring(tiny_store, tmp_path / "model")
    whole = score_here(inputs, customer_idx, rows=len(customer_idx), processes=1)
    assert whole.pids == {os.getpid()} and whole.source_names == ("als",)
    for blocks in (score_here(inputs, customer_idx, rows=50, processes=1),  # this process, in blocks
                   score_here(inputs, customer_idx, rows=50, processes=2)):  # two processes of this machine
        assert blocks.source_names == whole.source_names
        np.testing.assert_array_equal(blocks.recs.items, whole.recs.items)
        np.testing.assert_array_equal(blocks.sources, whole.sources)
        np.testing.assert_allclose(blocks.recs.scores, whole.recs.scores, rtol=1e-6)
    assert len(blocks.pids) == 2 and os.getpid() not in blocks.pids


def test_the_table_declines_what_the_batch_cannot_answer(client, bundle):
    from datetime import timedelta

    table = client.app.state.holder.model.answers
    customer_idx = int(table.answers.customer_idx[0])
    assert len(table.ranked(customer_idx, table.k, table.as_of)) == table.k  # every row holds k answers here
    assert table.ranked(customer_idx, table.k + 1, table.as_of) is None  # k beyond what was stored
    assert table.ranked(customer_idx, 12, table.as_of + timedelta(days=1)) is None  # another service day
    held = set(table.answers.customer_idx.tolist())
    absent = next(i for i in range(len(held) + 1) if i not in held)
    assert table.ranked(absent, 12, table.as_of) is None  # a customer the table does not hold


def test_a_history_the_service_cuts_shorter_goes_online(pipeline_run, bundle, tmp_path):
    settings = Settings(workdir=pipeline_run.workdir, events_path=tmp_path / "events.sqlite", history_limit=1)
    with TestClient(create_app(settings)) as client:
        model = client.app.state.holder.model
        longer = next(c for c in active_ids(bundle, 25)
                      if len(range(*model.histories.rows(model.find_customer(c)).indices(10**9))) > 1)
        assert recommend(client, longer)["path"] == "online"
