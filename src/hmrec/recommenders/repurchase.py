"""The customer's own past purchases, time-decayed (or the newest lines alike) and ranked, topped up with their age
bucket's bestsellers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from hmrec.data import Query, Recs, TrainData
from hmrec.data.files import read_config, write_config
from hmrec.recommenders.base import Reason, Recommender, load_recommender, save_recommender
from hmrec.recommenders.popularity import AgePopularityRecommender, fill_with
from hmrec.store.arrays import decay, group_max, group_sum, newest_lines, pair_key, split_key

FILL_DIR = "fill"


@dataclass
class RepurchaseConfig:
    # only purchases this many days before as_of count (None: all history); stale purchases crowd out
    # the bestsellers that serve customers back after a long absence better
    window_days: int | None = 91
    half_life_days: float = 14.0  # a purchase this many days old weighs half as much as one bought yesterday
    # a window in lines instead: the customer's this many newest purchase lines count alike, however long ago, the
    # rest not at all (half_life_days unused; None: the decay by days); a household restocks from its last baskets
    window_lines: int | None = None


def decayed_purchases(query: Query, config: RepurchaseConfig, k: int) -> Recs:
    """Each row's purchases summed with weight 0.5 ** (age_days / half_life), or with `window_lines` each of the
    row's newest lines 1 (`newest_lines`: a share on the day the window ends in); the k best first (ties broken by
    the most recent purchase, then article_idx)."""
    recent = query.arrays().within(config.window_days)
    if config.window_lines is None:
        weight = decay(recent.days, config.half_life_days)
    else:  # the newest lines alike
        share = newest_lines(recent.row, recent.days, config.window_lines)
        inside = share > 0
        recent, weight = recent.take(inside), share[inside]
    keys = pair_key(recent.row, recent.article_idx)
    distinct, score = group_sum(keys, weight)
    _, newest = group_max(keys, -recent.days)  # minus the fewest days before as_of, per distinct key
    rows, items = split_key(distinct)
    score = score.astype(np.float32)
    order = np.lexsort((items, -newest, -score, rows))
    return Recs.from_sorted(rows[order], items[order], score[order], len(query), k)


class RepurchaseRecommender(Recommender):
    """What the customer bought before, most weight on recent buys; the fill completes every list."""

    name = "repurchase"
    reason = Reason.BOUGHT_BEFORE

    def __init__(self, config: RepurchaseConfig | None = None, fill: Recommender | None = None):
        self.config = config or RepurchaseConfig()
        self.fill = fill if fill is not None else AgePopularityRecommender()

    def fit(self, data: TrainData) -> Self:
        self.fill.fit(data)
        return self

    def recommend(self, query: Query, k: int) -> Recs:
        own = decayed_purchases(query, self.config, k)
        return fill_with(own, self.fill.recommend(query, k), k)

    def save(self, directory: Path) -> None:
        write_config(directory, self.config)
        save_recommender(self.fill, directory / FILL_DIR)

    @classmethod
    def load(cls, directory: Path) -> Self:
        return cls(read_config(directory, RepurchaseConfig), fill=load_recommender(directory / FILL_DIR))
