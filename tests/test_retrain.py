"""The retrain's gate: known figures decide as stated, a model on other ids is scored through its own maps, and on
a real store the better version is promoted, the worse one made the challenger, each decision recorded in MLflow."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import serving_support as s
from typer.testing import CliRunner

from hmrec.cli import app
from hmrec.data import TrainData
from hmrec.evaluation.idmapped import IdMapped, IdMaps
from hmrec.pipeline import held_out_query, load_train_data
from hmrec.raw.read import RawDataError
from hmrec.recommenders.popularity import AgePopularityRecommender, PopularityRecommender
from hmrec.registry.model_bundle import load_final, write_bundle
from hmrec.registry.tracking import client_for
from hmrec.registry.versions import Registry
from hmrec.retrain import RetrainConfig, Scores, gate, held_out_scores, judge, with_live_events
from hmrec.serving.events import Purchase, open_event_store
from hmrec.store.tables import ARTICLES, CUSTOMERS, Store


def test_the_gate_promotes_within_the_tolerance_and_says_where_a_version_fell_short():
    champion = Scores(0.0500, 0.0400, 100, 80)
    assert gate(Scores(0.0500, 0.0400, 100, 80), champion, 0.001).promote
    assert gate(Scores(0.0491, 0.0391, 100, 80), champion, 0.001).promote  # worse, but by less than the tolerance
    refused = gate(Scores(0.0480, 0.0400, 100, 80), champion, 0.001)
    assert (refused.promote, refused.reason) == (
        False, "MAP@12 on all held-out purchases 0.0480 < the champion's 0.0500 - 0.001")
    # better overall but worse where no impression of the champion led the purchase: refused
    assert (gate(Scores(0.0600, 0.0350, 100, 80), champion, 0.001).reason ==
            "MAP@12 on purchases not attributed to an impression 0.0350 < the champion's 0.0400 - 0.001")


def test_held_out_scores_by_hand():
    top = np.array([[1, 2] + [-1] * 10, [3, 4] + [-1] * 10])
    relevant = [np.array([2, 9]), np.array([3])]
    # buyer 0: a hit at rank 2 of 2 bought -> (1/2) / 2 = 0.25; buyer 1: a hit at rank 1 -> 1.0
    assert held_out_scores(top, relevant, [np.empty(0), np.empty(0)]) == Scores(0.625, 0.625, 2, 2)
    # article 3 credited to an impression: buyer 1 leaves the second mean; buyer 0 keeps 0.25
    assert held_out_scores(top, relevant, [np.empty(0), np.array([3])]) == Scores(0.625, 0.25, 2, 1)


@pytest.fixture(scope="module")
def gated(pipeline_run, tmp_path_factory) -> tuple[Path, int, int]:
    """A workdir on the tiny pipeline's store: version 1 its pipeline's bundle, version 2 (the champion) global
    popularity written with other ids, as a model of another store would be (deliberately worse)."""
    root = tmp_path_factory.mktemp("retrain")
    workdir = root / "work"
    shutil.copytree(pipeline_run.workdir / "store", workdir / "store")
    store = Store(workdir / "store")
    good = s.register(workdir, next((pipeline_run.workdir / "bundles").iterdir()), promote=False)
    worse = s.register(workdir, popularity_bundle(store, root / "older"))
    return workdir, good, worse


def popularity_bundle(store: Store, directory: Path) -> Path:
    """Global popularity on the store's data, every customer and article numbered in reverse order."""
    data = load_train_data(store)
    n_c, n_a = data.customers.height, data.articles.height
    flip_c = (n_c - 1 - pl.col("customer_idx")).cast(pl.Int32).alias("customer_idx")
    flip_a = (n_a - 1 - pl.col("article_idx")).cast(pl.Int32).alias("article_idx")
    flipped = TrainData(data.transactions.with_columns(flip_c, flip_a),
                        data.customers.with_columns(flip_c).sort("customer_idx"),
                        data.articles.with_columns(flip_a).sort("article_idx"), data.cutoff)
    return write_bundle(directory, articles=flipped.articles, customers=flipped.customers,
                        transactions=flipped.transactions, final=PopularityRecommender().fit(flipped),
                        cold_start=AgePopularityRecommender().fit(flipped), data_end=data.cutoff - timedelta(days=1),
                        store_fingerprint="an-older-store")


def test_a_model_on_other_ids_answers_in_the_stores_ids(gated):
    workdir, _, worse = gated
    store = Store(workdir / "store")
    query, _ = held_out_query(store, load_train_data(store))
    bundle = Registry.for_workdir(workdir).load(worse)
    own = pl.read_parquet(bundle / "articles.parquet")
    maps = IdMaps(store.read(CUSTOMERS), store.read(ARTICLES), pl.read_parquet(bundle / "customers.parquet"), own)
    final = load_final(bundle)
    mapped = IdMapped(final, maps).recommend(query, 12)
    # global popularity: one list for everyone, in the bundle's numbering; by article id, the store's numbering
    ids = own["article_id"].to_numpy()[final.ranking["article_idx"].to_numpy()[:12]]
    by_id = dict(zip(store.read(ARTICLES)["article_id"].to_list(), store.read(ARTICLES)["article_idx"].to_list(),
                     strict=True))
    assert (mapped.items == np.array([by_id[int(a)] for a in ids])).all()


def test_the_better_version_is_promoted_the_worse_made_challenger_and_evaluate_still_works(gated, tmp_path):
    workdir, good, worse = gated
    registry = Registry.for_workdir(workdir)
    config = RetrainConfig(workdir=workdir, raw=tmp_path)
    promoted = judge(config, good, champion=worse)
    assert (promoted.promoted, promoted.alias, registry.champion_version()) == (True, "champion", good)
    assert promoted.scores["candidate"].map12 > promoted.scores["champion"].map12 + config.tolerance
    refused = judge(config, worse, champion=good)
    assert (refused.promoted, refused.alias) == (False, "challenger")
    assert refused.reason.startswith("MAP@12 on all held-out purchases ")
    assert (registry.champion_version(), registry.alias_version("challenger")) == (good, worse)
    # the same figures both ways round: the same code scored both on the same window
    assert refused.scores == {"candidate": promoted.scores["champion"], "champion": promoted.scores["candidate"]}
    client = client_for(workdir)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"attributes.run_name = 'retrain-v{worse}'")
    assert [r.data.tags["retrain.decision"] for r in runs] == ["refused"]
    assert runs[0].data.metrics["champion/map12"] == pytest.approx(refused.scores["champion"].map12)
    # a champion trained on another store (as after a retrain that did not promote) is still evaluated
    registry.promote(worse)
    try:
        result = CliRunner().invoke(app, ["evaluate", "--workdir", str(workdir), "--reports", str(tmp_path / "r")])
        assert result.exit_code == 0, result.output
        metrics = json.loads(Path(result.output.strip().splitlines()[-1]).read_text())
        assert metrics["methods"]["final"]["map@12"] == pytest.approx(refused.scores["candidate"].map12)
    finally:
        registry.promote(good)


def test_live_events_are_appended_to_the_training_data(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "customers.csv").write_text("customer_id\n")
    (raw / "articles.csv").write_text("article_id\n")
    (raw / "transactions_train.csv").write_text("t_dat,customer_id,article_id,price,sales_channel_id\n"
                                                "2020-09-01,c1,0108775015,0.01,2")  # no newline at the end
    events = str(tmp_path / "events.sqlite")
    assert with_live_events(raw, events, tmp_path / "first") == (raw, 0)  # no event stored: the raw folder as it is
    store = open_event_store(events)
    store.add(Purchase("c2", 108775044, s.DATA_END, 0.02, 2))
    store.close()
    merged, n = with_live_events(raw, events, tmp_path / "second")
    assert n == 1 and (merged / "customers.csv").resolve() == (raw / "customers.csv").resolve()
    assert (merged / "transactions_train.csv").read_text().splitlines()[1:] == [
        "2020-09-01,c1,0108775015,0.01,2", f"{s.DATA_END.isoformat()},c2,0108775044,0.02,2"]
    (raw / "transactions_train.csv").write_text("customer_id,t_dat\n")
    with pytest.raises(RawDataError, match="the live events cannot be appended"):
        with_live_events(raw, events, tmp_path / "third")
