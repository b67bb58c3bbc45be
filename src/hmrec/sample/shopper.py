"""What a sample world's shopper buys on a visit, as a probability: the rules the simulator draws baskets by
(simulate.py), written out, so that a simulated service can be shown to its customers and bought from
(bench/feedback.py) the same way whichever model showed an article.

A basket's fresh item comes from the customer's own past with chance p_history x recency (one of their remembered
purchases alike: the same article with chance p_same_article, else any colour of its product), else from the week's
market (a taste cell by the segment's taste x the cell's mass, then an article in the cell by its style's colour
taste x its weight). A visit fills Behaviour.mean_basket() items; each is taken as a fresh draw (the simulator's
follow-ups, the same article or another colour of the item before, are left out: they copy an item already drawn).
"""

from __future__ import annotations

import numpy as np

from hmrec.sample.simulate import Simulator
from hmrec.sample.world import segment_style


def purchase_probability(sim: Simulator, customer: np.ndarray, article: np.ndarray, day: int) -> np.ndarray:
    """Chance that a visit of `customer` on `day` buys `article` (element-wise over the pairs, rows of the world's
    population and catalogue), `day` counted from the data's first day and inside the simulator's latest week."""
    one_item = item_probability(sim, customer, article, day)
    return 1.0 - (1.0 - one_item) ** sim.b.mean_basket()


def item_probability(sim: Simulator, customer: np.ndarray, article: np.ndarray, day: int) -> np.ndarray:
    """Chance that one fresh item of a basket `customer` fills on `day` is `article` (element-wise)."""
    first, n_days = sim.market_days
    if sim.market is None or not first <= day < first + n_days:
        raise ValueError(f"day {day} is outside the simulator's latest week [{first}, {first + n_days}): "
                         "simulate the week that holds it first")
    customer, article = np.asarray(customer, dtype=np.int64), np.asarray(article, dtype=np.int64)
    from_past = sim.b.p_history * np.exp(-(day - sim.last_day[customer]) / sim.b.history_days)
    return from_past * _past_share(sim, customer, article) + (1 - from_past) * _market_share(sim, customer, article)


def _past_share(sim: Simulator, customer: np.ndarray, article: np.ndarray) -> np.ndarray:
    """Chance that an item drawn from the customer's remembered purchases is `article`."""
    ring = sim.history[customer]  # (pairs, history_len), -1 where nothing is remembered yet
    known = ring >= 0
    a = sim.articles
    same = (ring == article[:, None]) & known
    sibling = (a.product[np.where(known, ring, 0)] == a.product[article][:, None]) & known
    per_slot = sim.b.p_same_article * same + (1 - sim.b.p_same_article) * sibling / a.product_size[
        a.product[article]][:, None]
    n_known = known.sum(axis=1)
    return np.where(n_known > 0, per_slot.sum(axis=1) / np.maximum(n_known, 1), 0.0)


def _market_share(sim: Simulator, customer: np.ndarray, article: np.ndarray) -> np.ndarray:
    """Chance that an item drawn from this week's market is `article`: taste of its cell x its own weight (with its
    style's colour taste) over the segment's taste-weighted total; 0 for an article not on sale this week."""
    market, a = sim.market, sim.articles
    where = market.position[article]
    segment = sim.people.segment[customer]
    style = segment_style(segment)
    total = (a.cell_taste[segment][:, market.cells] * market.mass[style]).sum(axis=1)
    safe = np.maximum(where, 0)
    own = market.running[style, safe + 1] - market.running[style, safe]
    share = a.cell_taste[segment, a.cell[article]] * own / total
    return np.where(where >= 0, share, 0.0)
