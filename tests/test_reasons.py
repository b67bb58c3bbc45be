"""Reasons come from what each proposing source declares, never from the letters of its name."""

from __future__ import annotations

import numpy as np
import pytest
import serving_support as s

from hmrec.recommenders.base import Reason
from hmrec.serving.model import load_model
from hmrec.serving.reasons import explain


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return load_model(s.write_handmade_bundle(tmp_path_factory.mktemp("reasons") / "bundle"), 1).catalogue


def test_a_purchase_is_named_first(catalogue):
    assert explain(2, ["two_tower"], {"two_tower": Reason.STYLE}, np.array([2]), catalogue) == "you bought this before"


def test_other_colour_names_the_bought_sibling(catalogue):
    # articles 0 and 1 are two colours of product 108775 ("Strap top")
    reason = explain(1, ["colours"], {"colours": Reason.OTHER_COLOUR}, np.array([4, 0]), catalogue)
    assert reason == "other colour of Strap top you bought"


def test_bought_with_names_the_latest_partner_bought(catalogue):
    def bought_with(article_idx: int) -> np.ndarray:
        return np.array([2, 4]) if article_idx == 7 else np.array([], dtype=np.int64)

    reason = explain(7, ["pairs"], {"pairs": Reason.BOUGHT_WITH}, np.array([2, 4, 9]), catalogue, bought_with)
    assert reason == "often bought with Runner"  # 4, bought after 2


def test_a_declared_reason_wins_over_the_name(catalogue):
    assert explain(7, ["cooc_peer_trend"], {"cooc_peer_trend": Reason.POPULAR}, np.array([]), catalogue) \
        == "popular right now"
    assert explain(7, ["age_popularity"], {"age_popularity": Reason.AGE}, np.array([]), catalogue) \
        == "popular with your age group"
    assert explain(7, ["popular_thing"], {}, np.array([]), catalogue) == "similar to your style"  # undeclared


def test_other_colour_without_a_sibling_falls_to_the_next_declared_reason(catalogue):
    reasons = {"colours": Reason.OTHER_COLOUR, "two_tower": Reason.STYLE}
    assert explain(9, ["colours", "two_tower"], reasons, np.array([4]), catalogue) == "similar to your style"
