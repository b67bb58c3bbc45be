"""The engine as a strategy: both kinds answer the same protocol, the local one here, and nobody else asks which."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import numpy as np
import pytest

from hmrec.data import Query
from hmrec.pipeline import load_train_data
from hmrec.recommenders.base import save_recommender
from hmrec.recommenders.popularity import PopularityRecommender
from hmrec.scale.engine import ENGINES, Engine, LocalEngine, RayEngine, engine_from_options
from hmrec.scale.scoring import ScoringInputs
from hmrec.scale.train import RayTrainer
from hmrec.store import tables

SRC = Path(__file__).resolve().parents[1] / "src" / "hmrec"
METHODS = ("session", "build_store", "trainer", "score", "scorer")
# Asking an engine which kind it is: a flag, its name compared or read, its type checked.
KIND_CHECK = re.compile(r"\bis_ray\b|engine\.name\b|[=!]=\s*[\"'](local|ray)[\"']|isinstance\([^)]*Engine\b")


def engine_branches(text: str) -> list[str]:
    """The lines of `text` that ask an engine which kind it is."""
    return [line.strip() for line in text.splitlines() if KIND_CHECK.search(line)]


@pytest.mark.parametrize("engine", [LocalEngine(), RayEngine()], ids=lambda e: e.name)
def test_both_engines_answer_the_protocol_with_its_signatures(engine):
    protocol = {name for name, member in vars(Engine).items() if inspect.isfunction(member) and name[0] != "_"}
    assert protocol == set(METHODS)
    for name in METHODS:
        assert inspect.signature(getattr(type(engine), name)) == inspect.signature(getattr(Engine, name)), name
    assert engine.name in ENGINES


def test_engine_options_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("HMREC_ENGINE", "ray")
    assert engine_from_options() == RayEngine()
    monkeypatch.setenv("HMREC_RAY_ADDRESS", "head:6379")
    assert engine_from_options() == RayEngine(address="head:6379")
    assert engine_from_options("ray", "auto") == RayEngine(address="auto")
    assert engine_from_options("local", "auto") == LocalEngine()
    with pytest.raises(ValueError, match="engine 'spark' is not one of local, ray; pass --engine or set HMREC_ENGINE"):
        engine_from_options("spark")


def test_the_local_engine_runs_every_stage_in_this_process(tiny_store, tmp_path):
    engine = LocalEngine()
    data = load_train_data(tiny_store)
    model = PopularityRecommender().fit(data)
    save_recommender(model, tmp_path / "model")
    customer_idx = np.arange(0, data.customers.height, 7, dtype=np.int32)
    inputs = ScoringInputs(tmp_path / "model", tiny_store.table_path(tables.CUSTOMERS),
                           tiny_store.table_path(tables.TRANSACTIONS), tiny_store.cutoff, k=12)
    with engine.session():
        scored = engine.score(inputs, customer_idx)
    query = Query.for_customers(customer_idx, data.customers, data.transactions, tiny_store.cutoff)
    np.testing.assert_array_equal(scored.recs.items, model.recommend(query, 12).items)
    assert scored.pids == {os.getpid()}
    assert engine.scorer(model, tiny_store, tmp_path / "unused") is model
    assert not (tmp_path / "unused").exists()
    assert engine.trainer() is None  # the two-tower keeps its one-process loop


def test_the_ray_engine_gives_its_trainer_its_workers_and_session():
    engine = RayEngine(address="auto", train_workers=3)
    trainer = engine.trainer()
    assert isinstance(trainer, RayTrainer)
    assert trainer.workers == 3 and trainer.session == engine.session


def test_the_kind_check_finds_each_way_of_asking():
    planted = ('if config.engine.is_ray:\nif engine.name == "ray":\nname != "local"\n'
               "isinstance(engine, RayEngine)\nmanifest = config.engine.build_store(raw, store)\n")
    assert engine_branches(planted) == planted.splitlines()[:4]


def test_no_module_outside_scale_asks_the_engine_which_kind_it_is():
    modules = [path for path in SRC.rglob("*.py") if "scale" not in path.relative_to(SRC).parts]
    assert len(modules) > 50 and SRC / "pipeline.py" in modules and SRC / "cli.py" in modules
    found = {str(path.relative_to(SRC)): lines for path in modules if (lines := engine_branches(path.read_text()))}
    assert found == {}
