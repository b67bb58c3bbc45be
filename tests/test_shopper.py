"""The sample world's purchase probability (sample/shopper.py) against the simulator's own draws and hand-worked
cases."""

from datetime import date

import numpy as np
import pytest

from hmrec.sample.population import build_population
from hmrec.sample.shopper import _market_share, _past_share, item_probability, purchase_probability
from hmrec.sample.simulate import Behaviour, Simulator
from hmrec.sample.world import build_catalogue

DAYS = 70


@pytest.fixture()
def sim() -> Simulator:
    rng = np.random.default_rng(5)
    articles = build_catalogue(rng, 300, DAYS)
    people = build_population(rng, 40, DAYS)
    simulator = Simulator(articles, people, date(2020, 1, 1), DAYS, 3000, np.random.default_rng(6), Behaviour())
    for first, n_days in simulator.chunks():  # the market of the last week, everyone's history so far
        simulator.week(first, n_days)
    return simulator


def test_market_shares_are_a_distribution_over_the_weeks_articles(sim):
    live = np.zeros(sim.articles.article_id.size, dtype=bool)
    live[sim.market.live] = True
    everything = np.arange(live.size)
    for customer in range(5):
        share = _market_share(sim, np.full(live.size, customer), everything)
        assert share[live].sum() == pytest.approx(1.0)
        assert (share[~live] == 0).all() and (share[live] > 0).all()


def test_market_shares_match_the_simulators_draws(sim):
    n = 200_000
    customer = 3
    drawn = sim._from_market(np.full(n, customer), sim.market)
    frequency = np.bincount(drawn, minlength=sim.articles.article_id.size) / n
    share = _market_share(sim, np.full(frequency.size, customer), np.arange(frequency.size))
    common = share > 0.005
    assert common.sum() >= 10
    tolerance = 5 * np.sqrt(share[common] * (1 - share[common]) / n)
    assert (np.abs(frequency[common] - share[common]) < tolerance).all()


def test_past_share_by_hand(sim):
    a = sim.articles
    big = np.flatnonzero(a.product_size[a.product] >= 2)  # an article of a product in several colours ...
    first = int(big[0])
    sibling = int(a.product_start[a.product[first]] + (1 if a.product_start[a.product[first]] == first else 0))
    other = int(np.flatnonzero(a.product != a.product[first])[0])  # ... and one of another product
    sim.history[0] = -1
    sim.history[0, :3] = [first, first, other]
    size = a.product_size[a.product[first]]
    p = sim.b.p_same_article
    share = _past_share(sim, np.array([0, 0, 0, 0]), np.array([first, sibling, other, a.product_start[-1]]))
    # two of three remembered purchases are `first`: the same article, or one of its `size` colours
    assert share[0] == pytest.approx(2 / 3 * (p + (1 - p) / size))
    assert share[1] == pytest.approx(2 / 3 * (1 - p) / size)
    other_size = a.product_size[a.product[other]]
    assert share[2] == pytest.approx(1 / 3 * (p + (1 - p) / other_size))
    sim.history[1] = -1  # nothing remembered: nothing comes from the past
    assert _past_share(sim, np.array([1]), np.array([first]))[0] == 0


def test_visit_probability_mixes_past_and_market_by_recency(sim):
    first_day, n_days = sim.market_days
    day = first_day + n_days - 1
    customer, article = np.array([2, 2]), np.array([int(sim.market.live[0]), int(sim.market.live[1])])
    sim.last_day[2] = day  # bought today: the past's full chance
    q = item_probability(sim, customer, article, day)
    past, market = _past_share(sim, customer, article), _market_share(sim, customer, article)
    assert q == pytest.approx(sim.b.p_history * past + (1 - sim.b.p_history) * market)
    sim.last_day[2] = -1e9  # long ago: the market alone
    assert item_probability(sim, customer, article, day) == pytest.approx(market)
    visit = purchase_probability(sim, customer, article, day)
    assert visit == pytest.approx(1 - (1 - market) ** sim.b.mean_basket())
    with pytest.raises(ValueError, match="outside the simulator's latest week"):
        item_probability(sim, customer, article, first_day + n_days)
