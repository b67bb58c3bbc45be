"""The sample's worlds (fashion, grocery, media): their knobs, the article columns that carry signal, their bands."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from hmrec.raw.schema import ARTICLE_CODE_COLUMNS, ARTICLE_COLUMNS
from hmrec.sample import vocabulary as vocab
from hmrec.sample.simulate import Behaviour
from hmrec.sample.world import Shape

UNKNOWN = "Unknown"
ALWAYS_KEPT = ("article_id", "product_code", "prod_name")  # ids and a readable name, in every world


@dataclass(frozen=True)
class Band:
    """A profile figure's range in a world (either end may be open), and why it is there."""

    key: str  # a key of evaluation.profile.profile()'s result
    low: float | None
    high: float | None
    why: str

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class World:
    """One kind of shop: how its catalogue and customers behave, and what its files look like."""

    name: str
    about: str
    shape: Shape = field(default_factory=Shape)
    behaviour: Behaviour = field(default_factory=Behaviour)
    signal_columns: tuple[str, ...] = ARTICLE_COLUMNS  # the rest of articles.csv says "Unknown" (codes: -1)
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> fashion name -> this world's name
    customers_factor: float = 1.0  # of the scale's customers
    articles_factor: float = 1.0  # of the scale's articles
    bands: tuple[Band, ...] = ()


def relabel(frame: pl.DataFrame, world: World) -> pl.DataFrame:
    """articles.csv in the world's words: its own names in the signal columns, "Unknown" / -1 in the others."""
    renamed = [pl.col(column).replace_strict(mapping, default=pl.col(column)) for column, mapping in
               world.names.items()]
    frame = frame.with_columns(renamed) if renamed else frame
    blank = [
        (pl.lit(-1, dtype=frame.schema[c]) if c in ARTICLE_CODE_COLUMNS else pl.lit(UNKNOWN)).alias(c)
        for c in ARTICLE_COLUMNS if c not in world.signal_columns and c not in ALWAYS_KEPT
    ]
    frame = frame.with_columns(blank) if blank else frame
    if "product_type_name" in world.names:  # "Jade T-shirt" -> "Jade Oat milk"
        first_word = pl.col("prod_name").str.split(" ").list.first()
        frame = frame.with_columns(pl.concat_str(first_word, pl.lit(" "), pl.col("product_type_name"))
                                   .alias("prod_name"))
    return frame


# The bands the fashion sample meets at small and at full size (issue 2 and issue 11): the real H&M data's
# figures (docs/hm-data.md) with room for a synthetic sample.
FASHION_BANDS = (
    Band("buyers_with_prior_60d", 0.50, 0.75, "real 63%"),
    Band("articles_sold_prior_7d", 0.65, 0.90, "real 78%"),
    Band("top12_prior_week_coverage", 0.01, 0.05, "real 2.35%"),
    Band("map12_popularity", 0.004, 0.015, "real 0.005-0.008; a tenth of the catalogue concentrates a little more"),
    Band("repurchase_over_popularity", 2.0, None, "real ~3x (0.020-0.023 against 0.005-0.008)"),
    Band("purchases_per_buyer_mean", 3.0, 4.2, "real 3.48"),
    Band("purchases_per_buyer_median", 2.0, 2.0, "real 2"),
)
GROCERY_BANDS = (
    Band("repeat_share", 0.60, 0.95, "most of a buyer's week is what they bought before"),
    Band("purchases_per_buyer_mean", 10.0, 30.0, "10-30 lines a week"),
    Band("buyers_with_prior_60d", 0.75, None, "households come back"),
    Band("articles_sold_prior_60d", 0.95, None, "staples keep selling"),
    Band("new_article_share", None, 0.05, "tastes that last months: few new articles"),
    Band("repurchase_over_popularity", 3.0, None, "a buyer's own list beats the bestsellers by far"),
)
MEDIA_BANDS = (
    Band("repeat_share", 0.0, 0.0, "an article at most once per customer"),
    Band("top12_prior_week_coverage", 0.05, 0.30, "strong popularity"),
    Band("map12_popularity", 0.02, None, "strong popularity"),
    Band("new_article_share", 0.30, None, "fast-decaying novelty: much of the week was not on sale 4 weeks ago"),
    Band("repurchase_over_popularity", None, 1.0, "nothing is bought again: own history only fills with popularity"),
)

FASHION = World(
    name="fashion",
    about="the H&M-like sample: colours of products, short life cycles, seasons, some repeat buying",
    bands=FASHION_BANDS,
)
GROCERY = World(
    name="grocery",
    about="households restocking staples: big weekly baskets, mostly what they bought before, long-lived products",
    shape=Shape(appeal_sd=0.6, hit_mass=0.05, colours_p=0.6, basic_share=1.0, basic_life=(400.0, 1200.0),
                launch_before=730, on_sale_share=0.2, taste_sd=0.8, colour_taste_sd=0.8),
    behaviour=Behaviour(basket_p=0.1, big_basket_p=0.05, big_basket_share=0.25, p_duplicate=0.08, p_sibling=0.03,
                        p_history=0.85, history_days=3650.0, p_same_article=0.95, history_len=48,
                        noise_sd=0.1, life_sharpness=0.2, season_amplitude=0.1, volume_amplitude=0.05,
                        wake_p=0.4, sleep_p=0.1, dormant_factor=0.2),
    signal_columns=("product_type_no", "product_type_name", "department_no", "department_name", "section_no",
                    "section_name", "colour_group_code", "colour_group_name"),
    names={"product_type_name": vocab.GROCERY_TYPES, "department_name": vocab.GROCERY_DEPARTMENTS,
           "section_name": vocab.GROCERY_AISLES, "colour_group_name": vocab.GROCERY_BRANDS},
    customers_factor=0.1,
    articles_factor=0.5,
    bands=GROCERY_BANDS,
)
MEDIA = World(
    name="media",
    about="films, series, music and books: never bought twice, strong hits and genre taste, novelty that fades fast",
    shape=Shape(appeal_sd=1.0, hit_mass=0.5, colours_p=1.0, basic_share=0.05, life_days=10.0, life_sd=0.6,
                taste_sd=1.0, colour_taste_sd=0.0, twist_sd=0.8),
    behaviour=Behaviour(basket_p=0.6, p_duplicate=0.0, p_sibling=0.0, p_history=0.0, life_sharpness=1.0,
                        season_amplitude=0.0, volume_amplitude=0.1, once_per_customer=True),
    signal_columns=("product_type_no", "product_type_name", "section_no", "section_name", "index_group_no",
                    "index_group_name"),
    names={"product_type_name": vocab.MEDIA_GENRES, "section_name": vocab.MEDIA_COLLECTIONS,
           "index_group_name": vocab.MEDIA_KINDS},
    bands=MEDIA_BANDS,
)
WORLDS: dict[str, World] = {world.name: world for world in (FASHION, GROCERY, MEDIA)}
