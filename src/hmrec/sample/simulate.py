"""The synthetic sample's shopping: one week at a time, trips, baskets and the articles in them, vectorised."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import numpy as np
import polars as pl

from hmrec.sample import catalog as cat
from hmrec.sample.world import PRICE_DIVISOR, Catalogue, Population, segment_style

DISCOUNT = 0.6
REDRAWS = 3  # once_per_customer: times an item already bought is drawn again from the market before it is dropped


@dataclass(frozen=True)
class Behaviour:
    """The knobs that set how the sample behaves; the defaults put the small sample in the real data's bands."""

    basket_p: float = 0.53  # geometric basket size: mean 1/p items ...
    big_basket_p: float = 0.15  # ... except for a share of big hauls
    big_basket_share: float = 0.15
    p_duplicate: float = 0.05  # an item is the previous one again (identical rows)
    p_sibling: float = 0.07  # an item is another colour of the previous one
    p_history: float = 0.16  # an item comes from the customer's own past, right after a purchase ...
    history_days: float = 45.0  # ... less so as the last purchase grows old (e-folding days)
    p_same_article: float = 0.6  # a past item: the same article again, else another colour of it
    history_len: int = 12  # past purchases remembered per customer
    noise_sd: float = 0.3  # week-to-week popularity shifts (log scale) ...
    noise_memory: float = 0.7  # ... that persist from one week to the next
    life_sharpness: float = 0.6  # 1: sales fall fast after the peak; lower: a longer tail
    season_amplitude: float = 0.7  # log-scale swing of summer and winter articles over the year
    volume_amplitude: float = 0.2  # overall sales swing over the year
    wake_p: float = 0.05  # a dormant customer starts a shopping spell this week ...
    sleep_p: float = 0.5  # ... and a spell ends after a week with this chance
    dormant_factor: float = 0.03  # shopping rate while dormant, relative to a spell
    max_trips: int = 2  # trips a week at most: heavy shoppers buy on more weeks, not in ever bigger weeks
    once_per_customer: bool = False  # an article at most once per customer (media: nobody buys a film twice)

    def mean_basket(self) -> float:
        return self.big_basket_share / self.big_basket_p + (1 - self.big_basket_share) / self.basket_p

    def spell_rates(self) -> tuple[float, float]:
        """Rate multipliers (in a spell, dormant) that keep each customer's mean rate unchanged."""
        engaged = self.wake_p / (self.wake_p + self.sleep_p)
        spell = 1.0 / (engaged + self.dormant_factor * (1 - engaged))
        return spell, self.dormant_factor * spell


def season_factor(season: np.ndarray, day_of_year: float, amplitude: float) -> np.ndarray:
    """Sales multiplier: summer articles peak mid-July, winter ones mid-January, the rest are flat."""
    summer = np.exp(amplitude * np.cos(2 * np.pi * (day_of_year - 196) / 365.25))
    winter = np.exp(amplitude * np.cos(2 * np.pi * (day_of_year - 15) / 365.25))
    return np.select([season == cat.SUMMER, season == cat.WINTER], [summer, winter], 1.0)


def _clipped_mean(rate: np.ndarray, max_trips: int) -> np.ndarray:
    """E[min(N, max_trips)] for N ~ Poisson(rate): the sum over k < max_trips of P(N > k)."""
    term = np.exp(-rate)  # P(N = k), from k = 0
    cdf = np.zeros_like(rate)
    total = np.zeros_like(rate)
    for k in range(max_trips):
        cdf += term
        total += 1 - cdf
        term = term * rate / (k + 1)
    return total


def life_cycle(age: np.ndarray, life: np.ndarray, sharpness: float) -> np.ndarray:
    """Sales multiplier by days since launch: rises to 1 at `life` days, then fades (gamma-shaped)."""
    x = np.maximum(age, 0.5) / life
    return (x * np.exp(1 - x)) ** sharpness


@dataclass
class _Market:
    """This week's live articles grouped by taste cell, with per-style running sums of their weight."""

    live: np.ndarray  # (m,) article rows, cell after cell
    cells: np.ndarray  # (c,) the cells present
    start: np.ndarray  # (c,) first position of each cell in `live`
    end: np.ndarray  # (c,) one past its last position
    running: np.ndarray  # (styles, m + 1) running sums of weight x the style's colour taste, from 0
    position: np.ndarray  # (articles,) each article row's position in `live`, -1 for one not on sale

    @cached_property
    def mass(self) -> np.ndarray:
        """(styles, c): each cell's total weight x colour taste for each style."""
        return self.running[:, self.end] - self.running[:, self.start]


class Simulator:
    """Walks the data's span a week at a time, remembering each customer's recent purchases.

    Over 12 methods on purpose: one method per step of a shopper's choice (trips, then past / other colour / first
    time / market, then remembering), all over the one ring buffer of recent purchases this class owns; split, the
    steps would pass that buffer and the market around instead."""

    def __init__(self, articles: Catalogue, people: Population, first_day: date, days: int,
                 transactions: int, rng: np.random.Generator, behaviour: Behaviour = Behaviour()):
        self.articles, self.people, self.first_day, self.days = articles, people, first_day, days
        self.rng, self.b = rng, behaviour
        n = people.ids.len()
        self.history = np.full((n, behaviour.history_len), -1, dtype=np.int32)  # ring buffer of article rows
        self.bought = np.zeros(n, dtype=np.int64)  # purchases so far (ring position)
        self.last_day = np.full(n, -1e9)
        self.noise = np.zeros(articles.article_id.size)
        self.engaged = rng.random(n) < behaviour.wake_p / (behaviour.wake_p + behaviour.sleep_p)
        self.rate = people.rate * self._calibrate(transactions)
        self.article_ids = pl.Series(articles.frame["article_id"])
        self.seen: set[int] = set()  # once_per_customer: customer * n_articles + article of every purchase so far
        self.market: _Market | None = None  # the latest week's, and its days [first, first + n_days)
        self.market_days = (0, 0)

    def _calibrate(self, transactions: int) -> float:
        """The factor on customers' rates that makes the expected number of rows `transactions`."""
        b = self.b
        weeks = (self.people.leave - self.people.join) / 7
        engaged = b.wake_p / (b.wake_p + b.sleep_p)
        spell, dormant = b.spell_rates()
        target_trips = transactions / b.mean_basket()
        factor = 1.0
        for _ in range(30):  # fixed point: the clipping at max_trips makes trips grow less than the factor
            trips = weeks @ (engaged * _clipped_mean(self.people.rate * factor * spell, b.max_trips)
                             + (1 - engaged) * _clipped_mean(self.people.rate * factor * dormant, b.max_trips))
            factor *= target_trips / max(trips, 1e-9)
        return factor

    def chunks(self, end: int | None = None) -> list[tuple[int, int]]:
        """(first day, number of days): the weeks of days [0, end) (default: all the days), aligned on the last
        one, the first one possibly shorter."""
        ends = list(range(self.days if end is None else end, 0, -7))
        return [(max(0, end - 7), end - max(0, end - 7)) for end in reversed(ends)]

    def week(self, first: int, n_days: int) -> pl.DataFrame:
        """The transactions of days [first, first + n_days), in the transactions_train.csv columns."""
        trip_customer, trip_day, trip_online = self._trips(first, n_days)
        big = self.rng.random(trip_customer.size) < self.b.big_basket_share
        size = self.rng.geometric(np.where(big, self.b.big_basket_p, self.b.basket_p))
        customer = np.repeat(trip_customer, size)
        day = np.repeat(trip_day, size)
        online = np.repeat(trip_online, size)
        position = np.arange(customer.size) - np.repeat(np.cumsum(size) - size, size)
        market = self.market = self._market(first, n_days)
        self.market_days = (first, n_days)
        article = self._choose(customer, day, position, market)
        if self.b.once_per_customer:
            keep = self._first_times(customer, article, market)
            customer, day, online, article = customer[keep], day[keep], online[keep], article[keep]
        day = np.clip(np.maximum(day, self.articles.launch[article]), first, first + n_days - 1)
        self.remember(customer, day, article)
        return self._frame(customer, day, article, online)

    def _trips(self, first: int, n_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        people = self.people
        mid = self.first_day + timedelta(days=first + n_days / 2)
        volume = 1 + self.b.volume_amplitude * np.cos(2 * np.pi * (mid.timetuple().tm_yday - 180) / 365.25)
        active = (people.join < first + n_days) & (people.leave > first)
        u = self.rng.random(self.engaged.size)
        self.engaged = np.where(self.engaged, u >= self.b.sleep_p, u < self.b.wake_p)
        spell, dormant = self.b.spell_rates()
        expected = np.where(active, self.rate * np.where(self.engaged, spell, dormant) * volume * n_days / 7, 0.0)
        trips = np.minimum(self.rng.poisson(expected), self.b.max_trips)
        customer = np.repeat(np.arange(trips.size), trips)
        day = first + self.rng.integers(0, n_days, size=customer.size)
        online = self.rng.random(customer.size) < people.online[customer]
        return customer, day, online

    def _choose(self, customer, day, position, market: _Market) -> np.ndarray:
        """Each item: again the previous one, another colour of it, one from the customer's past, or the market."""
        b, rng = self.b, self.rng
        u = rng.random(customer.size)
        follows = position > 0
        duplicate = follows & (u < b.p_duplicate)
        sibling = follows & ~duplicate & (u < b.p_duplicate + b.p_sibling)
        fresh = ~(duplicate | sibling)
        recent = np.exp(-(day - self.last_day[customer]) / b.history_days)
        from_past = fresh & (rng.random(customer.size) < b.p_history * recent)
        article = np.empty(customer.size, dtype=np.int64)
        article[from_past] = self._from_past(customer[from_past])
        article[fresh & ~from_past] = self._from_market(customer[fresh & ~from_past], market)
        # Follow-ups copy the basket's latest fresh item (position 0 is always fresh, so this stays in the basket).
        source = np.maximum.accumulate(np.where(fresh, np.arange(customer.size), 0))
        article[duplicate] = article[source[duplicate]]
        article[sibling] = self._other_colour(article[source[sibling]])
        return article

    def _from_past(self, customer: np.ndarray) -> np.ndarray:
        known = np.minimum(self.bought[customer], self.b.history_len)
        back = (self.rng.random(customer.size) * known).astype(np.int64)
        slot = (self.bought[customer] - 1 - back) % self.b.history_len
        article = self.history[customer, slot].astype(np.int64)
        switch = self.rng.random(customer.size) >= self.b.p_same_article
        article[switch] = self._other_colour(article[switch])
        return article

    def _other_colour(self, article: np.ndarray) -> np.ndarray:
        product = self.articles.product[article]
        size = self.articles.product_size[product]
        return self.articles.product_start[product] + (self.rng.random(article.size) * size).astype(np.int64)

    def _first_times(self, customer: np.ndarray, article: np.ndarray, market: _Market) -> np.ndarray:
        """Replace the items a customer already has (before or earlier this week) by spare draws from the market;
        a mask of the items to keep, which leaves out those still repeated after REDRAWS spares."""
        n_articles = self.articles.article_id.size
        for attempt in range(REDRAWS + 1):
            key = customer * n_articles + article
            repeat = np.fromiter((k in self.seen for k in key.tolist()), dtype=bool, count=key.size)
            _, first_row = np.unique(key, return_index=True)
            repeat |= ~np.isin(np.arange(key.size), first_row)
            if attempt == REDRAWS or not repeat.any():
                break
            if attempt == 0:  # one market draw for all the spares: its cost is per segment, not per item
                rows = np.flatnonzero(repeat)
                spare = np.zeros((customer.size, REDRAWS), dtype=np.int64)
                spare[rows] = self._from_market(np.repeat(customer[rows], REDRAWS), market).reshape(-1, REDRAWS)
            article[repeat] = spare[repeat, attempt]
        self.seen.update(key[~repeat].tolist())
        return ~repeat

    def _from_market(self, customer: np.ndarray, market: _Market) -> np.ndarray:
        """Sample by each customer segment's taste times this week's popularity of every live article:
        first a taste cell (segment taste x the cell's total), then an article inside it (style colour x weight)."""
        segment = self.people.segment[customer]
        chosen = self._pick_cells(segment, market)
        return self._pick_in_cells(segment_style(segment), chosen, market)

    def _market(self, first: int, n_days: int) -> _Market:
        a = self.articles
        live, weight = self._market_weights(first, n_days)
        by_cell = np.argsort(a.cell[live], kind="stable")
        live, weight = live[by_cell], weight[by_cell]
        cells, start = np.unique(a.cell[live], return_index=True)
        running = np.cumsum(a.colour_taste[:, live] * weight, axis=1)
        running = np.concatenate([np.zeros((running.shape[0], 1)), running], axis=1)
        position = np.full(a.article_id.size, -1, dtype=np.int64)
        position[live] = np.arange(live.size)
        return _Market(live, cells, start, np.r_[start[1:], live.size], running, position)

    def _pick_cells(self, segment: np.ndarray, market: _Market) -> np.ndarray:
        """Position in market.cells for each item, by its segment's taste x the cell's mass for its style."""
        mass = market.mass
        chosen = np.empty(segment.size, dtype=np.int64)
        order = np.argsort(segment, kind="stable")
        segments, starts = np.unique(segment[order], return_index=True)
        for seg, rows in zip(segments, np.split(order, starts[1:]), strict=True):
            cdf = np.cumsum(self.articles.cell_taste[seg, market.cells] * mass[segment_style(seg)])
            pick = np.searchsorted(cdf, self.rng.random(rows.size) * cdf[-1], side="right")
            chosen[rows] = np.minimum(pick, market.cells.size - 1)
        return chosen

    def _pick_in_cells(self, style: np.ndarray, chosen: np.ndarray, market: _Market) -> np.ndarray:
        """An article of each chosen cell, by weight x its style's colour taste (inverse of the running sums)."""
        start, end = market.start[chosen], market.end[chosen]
        low, high = market.running[style, start], market.running[style, end]
        target = low + self.rng.random(style.size) * (high - low)
        position = np.empty(style.size, dtype=np.int64)
        for s in np.unique(style):
            rows = np.flatnonzero(style == s)
            position[rows] = np.searchsorted(market.running[s], target[rows], side="right") - 1
        return market.live[np.clip(position, start, end - 1)]

    def _market_weights(self, first: int, n_days: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.articles, self.b
        shock = self.rng.normal(0.0, b.noise_sd, a.article_id.size)
        self.noise = b.noise_memory * self.noise + np.sqrt(1 - b.noise_memory**2) * shock
        age = first + n_days / 2 - a.launch
        live = np.flatnonzero((a.launch < first + n_days) & (age < 15 * a.life))
        mid = self.first_day + timedelta(days=first + n_days // 2)
        weight = (
            a.appeal[live] * life_cycle(age[live], a.life[live], b.life_sharpness) * np.exp(self.noise[live])
            * season_factor(a.season[live], mid.timetuple().tm_yday, b.season_amplitude)
        )
        return live, weight

    def remember(self, customer: np.ndarray, day: np.ndarray, article: np.ndarray) -> None:
        """Append the week's purchases to each buyer's ring of recent articles, oldest first."""
        order = np.lexsort((day, customer))
        customer, article, day = customer[order], article[order], day[order]
        starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]])
        counts = np.diff(np.r_[starts, customer.size])
        rank = np.arange(customer.size) - np.repeat(starts, counts)
        keep = rank >= np.repeat(counts, counts) - self.b.history_len
        slot = (self.bought[customer] + rank) % self.b.history_len
        self.history[customer[keep], slot[keep]] = article[keep]
        buyers = customer[starts]
        self.bought[buyers] += counts
        self.last_day[buyers] = np.maximum.reduceat(day, starts)

    def price(self, article: np.ndarray, day: np.ndarray | int) -> np.ndarray:
        """Each article's price on `day`, in the data's unit: the shelf price, discounted late in its life."""
        a = self.articles
        on_sale = (day - a.launch[article]) > a.on_sale_after[article]
        return np.round(a.units[article] * np.where(on_sale, DISCOUNT, 1.0), 2) / PRICE_DIVISOR

    def _frame(self, customer, day, article, online) -> pl.DataFrame:
        price = self.price(article, day)
        order = np.lexsort((customer, day))
        return pl.DataFrame({
            "t_dat": np.datetime64(self.first_day, "D") + day[order],
            "customer_id": self.people.ids.gather(customer[order]),
            "article_id": self.article_ids.gather(article[order]),
            "price": price[order],
            "sales_channel_id": np.where(online[order], 2, 1).astype(np.int8),
        })
