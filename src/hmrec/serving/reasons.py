"""A short human reason for a recommended article, from the reasons its proposing sources declare."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from hmrec.raw.schema import format_article_id
from hmrec.recommenders.base import Reason
from hmrec.serving.model import Catalogue

BOUGHT_BEFORE = "you bought this before"
WORDS = {Reason.STYLE: "similar to your style", Reason.AGE: "popular with your age group",
         Reason.POPULAR: "popular right now"}


def explain(article_idx: int, sources: Sequence[str], reasons: Mapping[str, Reason],
            history_items: Sequence[int] | np.ndarray, catalogue: Catalogue,
            bought_with: Callable[[int], np.ndarray] | None = None) -> str:
    """Reason for one article. sources: the names that proposed it; reasons: each name's declared Reason
    (`Recommender.reasons()`); history_items: the customer's purchases (article_idx), oldest first;
    bought_with(a): the articles whose purchase proposes `a`."""
    if article_idx in history_items:
        return BOUGHT_BEFORE
    declared = {reasons[source] for source in sources if source in reasons}
    if Reason.OTHER_COLOUR in declared:
        sibling = _same_product(article_idx, history_items, catalogue)
        if sibling is not None:
            return f"other colour of {_name(sibling, catalogue)} you bought"
    if Reason.BOUGHT_WITH in declared and bought_with is not None:
        partner = _latest_partner(article_idx, history_items, bought_with)
        if partner is not None:
            return f"often bought with {_name(partner, catalogue)}"
    for reason in (Reason.STYLE, Reason.AGE, Reason.POPULAR):
        if reason in declared:
            return WORDS[reason]
    return WORDS[Reason.STYLE]


def word(reason: Reason) -> str:
    """The words for a reason that needs no purchase to point at (cold-start answers)."""
    return WORDS.get(reason, WORDS[Reason.STYLE])


def _latest_partner(article_idx: int, history_items: Sequence[int] | np.ndarray,
                    bought_with: Callable[[int], np.ndarray]) -> int | None:
    """The customer's most recent purchase that is often bought with `article_idx`."""
    paired = set(bought_with(article_idx).tolist())  # `in` an ndarray is a numpy call per purchase
    for item in history_items[::-1]:
        if item in paired:
            return int(item)
    return None


def _same_product(article_idx: int, history_items: Sequence[int] | np.ndarray, catalogue: Catalogue) -> int | None:
    code = catalogue.product_codes[article_idx]
    for item in history_items[::-1]:
        if catalogue.product_codes[int(item)] == code:
            return int(item)
    return None


def _name(article_idx: int, catalogue: Catalogue) -> str:
    name = catalogue.text["prod_name"][article_idx]
    return name or f"article {format_article_id(catalogue.article_ids[article_idx])}"
