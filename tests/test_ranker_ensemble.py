"""The ranker's bagged ensemble (ranking/ensemble.py): the mean of its members' scores, saved and loaded member by
member, a bundle of one booster still read, and members kept only where they beat one booster on validation."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from test_ranker import N_PER_SOURCE, make_sources, planted_world

from hmrec.data import Query
from hmrec.evaluation.selection import ranker_settings_section
from hmrec.ranking.ensemble import Ensemble, bagged_members
from hmrec.ranking.ranker import FinalConfig, FinalRecommender
from hmrec.ranking.search import Lines, Trial


def planted_lines(seed: int, rows: int = 60, per_row: int = 20) -> Lines:
    """Rows of candidate lines whose label is 1 where a noisy first feature is high."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows * per_row, 3)).astype(np.float32)
    label = (matrix[:, 0] + 0.5 * rng.normal(size=rows * per_row) > 1.0).astype(np.int8)
    return Lines(matrix, label, np.repeat(np.arange(rows), per_row))


@pytest.fixture(scope="module")
def members():
    names = ["signal", "noise_a", "noise_b"]
    base = {"metric": "map", "eval_at": [12], "num_threads": 1, "seed": 3, "deterministic": True,
            "force_row_wise": True, "verbosity": -1, "min_data_in_group": 1}
    return bagged_members(Trial(min_data_in_leaf=5), planted_lines(0), planted_lines(1), names, base, 30, 10, 3)


def test_bagged_members_differ_and_each_learns_the_signal(members):
    assert len(members) == 3
    matrix = planted_lines(2).matrix
    scores = [m.predict(matrix) for m in members]
    assert not np.allclose(scores[0], scores[1])  # other draws of buyers and features
    assert all(np.corrcoef(s, matrix[:, 0])[0, 1] > 0.5 for s in scores)


def test_an_ensemble_scores_the_mean_of_its_members(members):
    matrix = planted_lines(2).matrix
    expected = np.mean([m.predict(matrix) for m in members], axis=0)
    np.testing.assert_allclose(Ensemble(members).predict(matrix), expected, rtol=1e-12)
    assert Ensemble(members).num_trees() == sum(m.num_trees() for m in members)
    gain = Ensemble(members).feature_importance("gain")
    np.testing.assert_allclose(gain, np.sum([m.feature_importance("gain") for m in members], axis=0))
    with pytest.raises(ValueError, match="at least one booster"):
        Ensemble([])


def test_members_are_saved_and_loaded_in_order(members, tmp_path):
    Ensemble(members).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker-2.txt", "ranker-3.txt", "ranker.txt"]
    matrix = planted_lines(2).matrix
    loaded = Ensemble.load(tmp_path)
    assert len(loaded.boosters) == 3
    np.testing.assert_allclose(loaded.predict(matrix), Ensemble(members).predict(matrix), rtol=1e-12)


def test_a_bundle_of_one_booster_loads_as_an_ensemble_of_one(members, tmp_path):
    members[0].save_model(str(tmp_path / "ranker.txt"))  # what every bundle before ensembles holds
    loaded = Ensemble.load(tmp_path)
    assert len(loaded.boosters) == 1 and isinstance(loaded.boosters[0], lgb.Booster)


def test_the_ranker_keeps_bagged_refits_only_where_validation_prefers_them():
    data, held_out = planted_world(seed=4)
    query = Query.for_customers(np.array(sorted(held_out), dtype=np.int32), data.customers, data.transactions,
                                as_of=data.cutoff)
    final = FinalRecommender(make_sources(), FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1, members=3,
                                                         num_boost_round=60)).fit(data)
    params = final.state_.params
    kept = 3 if params["valid_map12_3"] > params["valid_map12_one"] else 1
    assert params["members"] == kept == len(final.booster_.boosters)
    assert params["trees"] == final.booster_.num_trees()
    section = ranker_settings_section(final)  # the report says both figures and how many boosters answer
    assert f"members {kept}, valid_map12_one {params['valid_map12_one']:.4f}, " \
           f"valid_map12_3 {params['valid_map12_3']:.4f};" in section
    refits = bagged_members(Trial(min_data_in_leaf=5), planted_lines(0), planted_lines(1), ["a", "b", "c"],
                            {"metric": "map", "eval_at": [12], "num_threads": 1, "verbosity": -1,
                             "min_data_in_group": 1}, 4, 10, 2)
    assert all(0 < refit.num_trees() <= 4 for refit in refits)  # at most the trees asked for (the booster's)
    alone = FinalRecommender(make_sources(), FinalConfig(n_per_source=N_PER_SOURCE, num_threads=1, members=1,
                                                         num_boost_round=60)).fit(data)
    assert alone.state_.params["members"] == 1 and "valid_map12_one" not in alone.state_.params
    # the searched booster is the ensemble's first member: the same trees with or without the others
    assert alone.booster_.boosters[0].model_to_string() == final.booster_.boosters[0].model_to_string()
    scores = final._scored(query)[1]
    matrix_scores = alone._scored(query)[1]
    assert scores.shape == matrix_scores.shape and not np.allclose(scores, matrix_scores)
