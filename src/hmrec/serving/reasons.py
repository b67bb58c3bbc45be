"""A short human reason for a recommended article, derived from the candidate sources that proposed it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hmrec.serving.bundle import Catalogue

COLD_REASON_AGE = "popular with your age group"
COLD_REASON_GLOBAL = "popular right now"


def explain(article_idx: int, sources: Sequence[str], history_items: np.ndarray, catalogue: Catalogue,
            partners: Callable[[int], np.ndarray] | None = None) -> str:
    """Reason for one article; `history_items` are the customer's purchases (article_idx), oldest first;
    `partners(a)` gives the articles that `a` is often bought with, when the model keeps those pairs."""
    names = [source.lower() for source in sources]
    if article_idx in history_items:
        return "you bought this before"
    if _has(names, "colour", "color"):
        sibling = _same_product(article_idx, history_items, catalogue)
        if sibling is not None:
            return f"other colour of {_name(sibling, catalogue)} you bought"
    if _has(names, "together", "pair", "cooc"):
        partner = _latest_partner(article_idx, history_items, partners)
        if partner is not None:
            return f"often bought with {_name(partner, catalogue)}"
    if _has(names, "two_tower", "als", "tower", "peer"):
        return "similar to your style"
    if _has(names, "age"):
        return COLD_REASON_AGE
    if _has(names, "popular", "trend"):
        return COLD_REASON_GLOBAL
    return "similar to your style"


def _has(names: list[str], *keys: str) -> bool:
    return any(key in name for name in names for key in keys)


def _latest_partner(article_idx: int, history_items: np.ndarray,
                    partners: Callable[[int], np.ndarray] | None) -> int | None:
    """The customer's most recent purchase that is often bought with `article_idx`."""
    if partners is None:
        return None
    paired = partners(article_idx)
    for item in history_items[::-1]:
        if item in paired:
            return int(item)
    return None


def _same_product(article_idx: int, history_items: np.ndarray, catalogue: Catalogue) -> int | None:
    code = catalogue.product_codes[article_idx]
    for item in history_items[::-1]:
        if catalogue.product_codes[int(item)] == code:
            return int(item)
    return None


def _name(article_idx: int, catalogue: Catalogue) -> str:
    return catalogue.text["prod_name"][article_idx] or f"article {catalogue.article_ids[article_idx]:010d}"
