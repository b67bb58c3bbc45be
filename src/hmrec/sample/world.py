"""The synthetic sample's world: a catalogue of product families and a population of customers with tastes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from hmrec.raw.schema import ARTICLE_COLUMNS
from hmrec.sample import catalog as cat

# Real prices are in an undisclosed currency unit; dividing a shelf price like 29.99 by this gives their scale.
PRICE_DIVISOR = 590.0
PRICE_TIERS = (0.54, 0.9, 1.45)  # cheap, regular, premium multipliers of a product type's typical price

# Which product groups each index sells; indexes not listed sell garments, shoes, accessories, underwear, swimwear.
GARMENTS = ("Garment Upper body", "Garment Lower body", "Garment Full body")
INDEX_PRODUCT_GROUPS = {
    "B": ("Underwear", "Socks & Tights", "Nightwear", "Swimwear"),
    "C": ("Accessories", "Shoes"),
    "J": ("Accessories", "Swimwear", "Shoes", "Socks & Tights"),
}
MENS_INDEX_GROUP = 2  # position of Menswear in catalog.INDEX_GROUPS

# Taste clusters ("styles"): preference over the five index groups (Ladieswear, Divided, Menswear, Baby/Children,
# Sport). Which style a customer has depends on age (STYLE_BY_AGE), so age carries signal a model can learn.
STYLE_INDEX_GROUP_PREF = np.array([
    [1.0, 0.3, 0.05, 0.15, 0.1],   # everyday basics
    [0.4, 1.0, 0.05, 0.02, 0.2],   # young trend
    [1.0, 0.1, 0.1, 0.1, 0.05],    # classic
    [0.5, 0.1, 0.1, 1.0, 0.05],    # parent
    [0.05, 0.1, 1.0, 0.1, 0.2],    # menswear
    [0.3, 0.4, 0.3, 0.05, 1.0],    # sporty
    [1.0, 0.4, 0.02, 0.05, 0.05],  # lingerie and accessories
    [0.6, 0.3, 0.2, 0.6, 0.1],     # colourful family
])
N_STYLES = STYLE_INDEX_GROUP_PREF.shape[0]
AGE_BAND_EDGES = (25, 40, 55)  # bands: <25, 25-39, 40-54, 55+
STYLE_BY_AGE = np.array([
    [0.12, 0.55, 0.03, 0.02, 0.10, 0.12, 0.04, 0.02],
    [0.25, 0.10, 0.15, 0.22, 0.10, 0.06, 0.08, 0.04],
    [0.18, 0.02, 0.35, 0.20, 0.10, 0.04, 0.04, 0.07],
    [0.20, 0.01, 0.50, 0.06, 0.12, 0.02, 0.04, 0.05],
])
PRICE_PREF_BY_AGE = np.array([[1.6, 1.0, 0.4], [1.0, 1.0, 0.7], [0.7, 1.0, 1.0], [0.6, 1.0, 1.3]])
N_TWISTS = 16  # personal variations inside each style and age band
N_SEGMENTS = N_STYLES * len(PRICE_PREF_BY_AGE) * N_TWISTS  # segment = (style * n_bands + band) * N_TWISTS + twist


@dataclass(frozen=True)
class Shape:
    """How a world's catalogue behaves; the defaults are the fashion sample's.

    Demand has two parts. A broad part: every product's appeal is lognormal, so its share of a week shrinks as the
    catalogue grows. A hit part that does not: the products launched in the same weeks, in a random order, get
    Zipf weights with an exponent above 1 whose total is `hit_mass` times the broad part's, so the bestsellers'
    share of any week (the top-12 coverage band, popularity's MAP) is the same at 10k and at 105k articles.
    """

    appeal_sd: float = 0.1  # log-scale spread of product appeal ...
    colour_appeal_sd: float = 0.1  # ... and of a colour around its product
    hit_mass: float = 0.15
    hit_exponent: float = 1.05
    hit_cohort_days: int = 28
    colours_p: float = 0.45  # geometric colours per product: mean ~2.2 like the real 105k articles in 47k products
    basic_share: float = 0.12  # long-lived basics ...
    basic_life: tuple[float, float] = (60.0, 200.0)  # ... whose days to peak sales are uniform in this range
    life_days: float = 35.0  # median days to peak sales of the others (lognormal)
    life_sd: float = 0.5
    launch_before: int = 120  # products launch from this many days before the data's first day
    on_sale_share: float = 0.5  # articles whose price drops late in their life
    # Each style's taste for product types and colours, and each twist's taste for types and sections: how much a
    # customer's history tells about their next purchase.
    taste_sd: float = 0.5
    colour_taste_sd: float = 0.5
    twist_sd: float = 0.5
    section_twist_sd: float = 1.2  # strong favourite sections: personal, yet flat over the whole population


@dataclass
class Catalogue:
    """Articles sorted by article_id (product families are contiguous), with their hidden behaviour traits."""

    frame: pl.DataFrame  # the articles.csv columns
    article_id: np.ndarray  # (n,) int64
    product: np.ndarray  # (n,) product number, 0..n_products-1
    product_start: np.ndarray  # (n_products,) first article of each product
    product_size: np.ndarray  # (n_products,) number of colours
    launch: np.ndarray  # (n,) launch day, counted from the first day of the data (may be negative)
    life: np.ndarray  # (n,) days from launch to peak sales (see simulate.life_cycle)
    appeal: np.ndarray  # (n,) heavy-tailed base popularity
    season: np.ndarray  # (n,) catalog.ALL_YEAR / SUMMER / WINTER
    on_sale_after: np.ndarray  # (n,) days after launch when the price drops; inf if never
    units: np.ndarray  # (n,) shelf price in currency units
    cell: np.ndarray  # (n,) the article's taste cell (section x product type x price tier)
    cell_taste: np.ndarray  # (N_SEGMENTS, n_cells) each customer segment's taste for each cell ...
    colour_taste: np.ndarray  # (N_STYLES, n) ... times its style's taste for the article's colour


@dataclass
class Population:
    """Customers sorted by customer_id, with their hidden activity and taste."""

    frame: pl.DataFrame  # the customers.csv columns
    ids: pl.Series  # customer_id strings
    segment: np.ndarray  # (n,) row of Catalogue.cell_taste, see _taste
    rate: np.ndarray  # (n,) expected shopping trips per week while active
    join: np.ndarray  # (n,) first active day
    leave: np.ndarray  # (n,) last active day
    online: np.ndarray  # (n,) probability that a trip is online


def segment_style(segment: np.ndarray) -> np.ndarray:
    return segment // (len(PRICE_PREF_BY_AGE) * N_TWISTS)


def hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random 64-lowercase-hex ids, sorted (bytes sort like the strings), as an (n,) 'S64' array."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    raw = np.frombuffer(rng.bytes(32 * n), dtype=np.uint8).reshape(n, 32)
    chars = np.empty((n, 64), dtype=np.uint8)
    chars[:, 0::2] = digits[raw >> 4]
    chars[:, 1::2] = digits[raw & 15]
    return np.sort(chars.view("S64").ravel())


def _pick(rng: np.random.Generator, shares: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(shares), size=n, p=shares / shares.sum())


def _family_sizes(rng: np.random.Generator, n_articles: int, colours_p: float) -> np.ndarray:
    """Colours per product (geometric with parameter colours_p, at most 12), summing to n_articles."""
    sizes = np.minimum(rng.geometric(colours_p, size=n_articles), 12)
    n_products = int(np.searchsorted(np.cumsum(sizes), n_articles)) + 1
    sizes = sizes[:n_products]
    sizes[-1] -= sizes.sum() - n_articles
    return sizes


def _products(rng: np.random.Generator, n_products: int, days: int, shape: Shape) -> dict[str, np.ndarray]:
    """Product-level traits: index, section, type, price tier, launch day, life, appeal, product code."""
    index = _pick(rng, np.array([i[3] for i in cat.INDEXES]), n_products)
    ptype = np.empty(n_products, dtype=np.int64)
    section = np.empty(n_products, dtype=np.int64)
    for pos, (code, _, group, _) in enumerate(cat.INDEXES):
        rows = np.flatnonzero(index == pos)
        ptype[rows] = rng.choice(_allowed_types(code, group), size=rows.size)
        sections = [s for s, row in enumerate(cat.SECTIONS) if row[2] == pos]
        section[rows] = rng.choice(sections, size=rows.size)
    # Launches spread over the whole span (and a few months before it); codes grow with launch like the real ones.
    launch = np.sort(rng.integers(-shape.launch_before, days, size=n_products))
    basic = rng.random(n_products) < shape.basic_share
    life = np.where(basic, rng.uniform(*shape.basic_life, n_products),
                    rng.lognormal(np.log(shape.life_days), shape.life_sd, n_products))
    return {
        "index": index, "ptype": ptype, "section": section, "launch": launch, "life": life,
        "appeal": _appeal(rng, launch, shape), "tier": _pick(rng, np.array([3, 5, 2.0]), n_products),
        "code": np.sort(rng.choice(np.arange(108775, 959462), size=n_products, replace=False)),
    }


def _appeal(rng: np.random.Generator, launch: np.ndarray, shape: Shape) -> np.ndarray:
    """Broad lognormal appeal (mean ~1) plus hits: inside each cohort of products launched within hit_cohort_days,
    Zipf weights over a random order that sum to hit_mass x the cohort's size, so every month has its bestsellers.
    `launch` is sorted."""
    n = launch.size
    broad = rng.lognormal(0.0, shape.appeal_sd, n)
    cohort = (launch - launch[0]) // shape.hit_cohort_days
    order = np.lexsort((rng.random(n), cohort))  # cohort by cohort, in a random order inside each
    rank = np.empty(n)
    rank[order] = np.arange(n) - np.searchsorted(cohort, cohort[order]) + 1
    zipf = rank ** -shape.hit_exponent
    size, total = np.bincount(cohort), np.bincount(cohort, weights=zipf)
    return broad + shape.hit_mass * size[cohort] * zipf / total[cohort]


def _allowed_types(index_code: str, index_group: int) -> np.ndarray:
    groups = INDEX_PRODUCT_GROUPS.get(index_code, GARMENTS + ("Shoes", "Accessories", "Underwear", "Swimwear"))
    mens = index_group == MENS_INDEX_GROUP
    return np.array([t for t, row in enumerate(cat.PRODUCT_TYPES) if row[2] in groups and (row[6] if mens else row[7])])


def _lookup(table: tuple, field: int, rows: np.ndarray) -> np.ndarray:
    return np.array([row[field] for row in table])[rows]


def build_catalogue(rng: np.random.Generator, n_articles: int, days: int, shape: Shape = Shape()) -> Catalogue:
    """Products in several colours, each with a place in the hierarchy, a launch, a life cycle and a price."""
    sizes = _family_sizes(rng, n_articles, shape.colours_p)
    prod = _products(rng, sizes.size, days, shape)
    product = np.repeat(np.arange(sizes.size), sizes)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    within = np.arange(n_articles) - start[product]
    gaps = rng.geometric(0.6, size=n_articles)
    variant = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[start] - gaps[start], sizes)
    colour = _pick(rng, np.array([c[4] for c in cat.COLOURS]), n_articles)
    # Later colours of a product sometimes arrive weeks after the first.
    late = np.where((within > 0) & (rng.random(n_articles) < 0.3), rng.integers(7, 60, n_articles), 0)
    ptype = prod["ptype"][product]
    typical = _lookup(cat.PRODUCT_TYPES, 5, ptype)
    units = np.floor(typical * np.array(PRICE_TIERS)[prod["tier"][product]]) + 0.99
    life = prod["life"][product]
    frame = _article_frame(rng, prod, product, variant, colour)
    taste = _taste(rng, shape, prod["index"][product], prod["section"][product], ptype, colour, prod["tier"][product])
    return Catalogue(
        frame=frame, article_id=prod["code"][product] * 1000 + variant, product=product, product_start=start,
        product_size=sizes, launch=prod["launch"][product] + late, life=life,
        appeal=prod["appeal"][product] * rng.lognormal(0.0, shape.colour_appeal_sd, n_articles),
        season=_lookup(cat.PRODUCT_TYPES, 4, ptype),
        on_sale_after=np.where(rng.random(n_articles) < shape.on_sale_share, 1.5 * life, np.inf), units=units, **taste,
    )


def _taste(rng, shape: Shape, index: np.ndarray, section: np.ndarray, ptype: np.ndarray, colour: np.ndarray,
           tier: np.ndarray) -> dict[str, np.ndarray]:
    """Each segment's taste for each article, factorised so that sampling stays cheap at 105k articles:
    a cell part (section x product type x price tier: the style's index group and type preferences, the age
    band's price preference, a personal twist of favourite sections and types that only history reveals)
    times a colour part that depends on the style alone."""
    cells, cell = np.unique(np.stack([section, ptype, tier]), axis=1, return_inverse=True)
    c_section, c_type, c_tier = cells
    c_group = _lookup(cat.INDEXES, 2, _lookup(cat.SECTIONS, 2, c_section))
    type_pref = rng.lognormal(0.0, shape.taste_sd, (N_STYLES, len(cat.PRODUCT_TYPES)))
    colour_pref = rng.lognormal(0.0, shape.colour_taste_sd, (N_STYLES, len(cat.PERCEIVED_MASTERS)))
    style_part = STYLE_INDEX_GROUP_PREF[:, c_group] * type_pref[:, c_type]
    price_part = PRICE_PREF_BY_AGE[:, c_tier]
    twist_part = (
        rng.lognormal(0.0, shape.section_twist_sd, (N_TWISTS, len(cat.SECTIONS)))[:, c_section]
        * rng.lognormal(0.0, shape.twist_sd, (N_TWISTS, len(cat.PRODUCT_TYPES)))[:, c_type]
    )
    # segment = (style * n_bands + band) * N_TWISTS + twist
    taste = style_part[:, None, None, :] * price_part[None, :, None, :] * twist_part[None, None, :, :]
    return {
        "cell": cell.ravel(), "cell_taste": taste.reshape(N_SEGMENTS, -1),
        "colour_taste": colour_pref[:, _lookup(cat.COLOURS, 3, colour)],
    }


def _article_frame(rng, prod: dict, product: np.ndarray, variant: np.ndarray, colour: np.ndarray) -> pl.DataFrame:
    """The articles.csv columns, in order, as strings and integers."""
    n, n_products = product.size, prod["code"].size
    ptype, index, section = prod["ptype"][product], prod["index"][product], prod["section"][product]
    garment = _lookup(cat.PRODUCT_TYPES, 3, ptype)
    garment_name = dict(cat.GARMENT_GROUPS)
    garment_pos = np.searchsorted(np.array(sorted(garment_name)), garment)  # 0..19, for department numbers
    garment_names = np.array([garment_name[g] for g in garment])
    section_no = _lookup(cat.SECTIONS, 0, section)
    group = _lookup(cat.INDEXES, 2, index)
    appearance = _pick(rng, np.array([a[2] for a in cat.APPEARANCES]), n)
    value, master = _lookup(cat.COLOURS, 2, colour), _lookup(cat.COLOURS, 3, colour)
    type_names = _lookup(cat.PRODUCT_TYPES, 1, ptype)
    name = np.array(cat.NAME_WORDS)[rng.integers(len(cat.NAME_WORDS), size=n_products)][product]
    columns = {
        "article_id": [f"{a:010d}" for a in prod["code"][product] * 1000 + variant],
        "product_code": [f"{c:07d}" for c in prod["code"][product]],
        "prod_name": np.char.add(np.char.add(name.astype(str), " "), type_names.astype(str)),
        "product_type_no": _lookup(cat.PRODUCT_TYPES, 0, ptype),
        "product_type_name": type_names,
        "product_group_name": _lookup(cat.PRODUCT_TYPES, 2, ptype),
        "graphical_appearance_no": _lookup(cat.APPEARANCES, 0, appearance),
        "graphical_appearance_name": _lookup(cat.APPEARANCES, 1, appearance),
        "colour_group_code": _lookup(cat.COLOURS, 0, colour),
        "colour_group_name": _lookup(cat.COLOURS, 1, colour),
        "perceived_colour_value_id": _lookup(cat.PERCEIVED_VALUES, 0, value),
        "perceived_colour_value_name": _lookup(cat.PERCEIVED_VALUES, 1, value),
        "perceived_colour_master_id": _lookup(cat.PERCEIVED_MASTERS, 0, master),
        "perceived_colour_master_name": _lookup(cat.PERCEIVED_MASTERS, 1, master),
        "department_no": 1000 + section_no * 20 + garment_pos,
        "department_name": np.char.add(np.char.add(_lookup(cat.SECTIONS, 1, section).astype(str), " "), garment_names),
        "index_code": _lookup(cat.INDEXES, 0, index),
        "index_name": _lookup(cat.INDEXES, 1, index),
        "index_group_no": _lookup(cat.INDEX_GROUPS, 0, group),
        "index_group_name": _lookup(cat.INDEX_GROUPS, 1, group),
        "section_no": section_no,
        "section_name": _lookup(cat.SECTIONS, 1, section),
        "garment_group_no": garment,
        "garment_group_name": garment_names,
        "detail_desc": _descriptions(rng, type_names, product, n_products),
    }
    return pl.DataFrame({name: columns[name] for name in ARTICLE_COLUMNS})


def _descriptions(rng, type_names: np.ndarray, product: np.ndarray, n_products: int) -> pl.Series:
    """One text per product (shared by its colours), about 0.4% of them empty like the real file."""
    first = np.array([0] + list(np.flatnonzero(np.diff(product)) + 1))
    material = np.array(cat.MATERIALS)[rng.integers(len(cat.MATERIALS), size=n_products)]
    # Three different features per product: consecutive entries from a random start.
    pick = rng.integers(len(cat.FEATURES), size=n_products)[:, None] + np.arange(3)
    f1, f2, f3 = np.array(cat.FEATURES)[pick % len(cat.FEATURES)].T
    kind = np.char.lower(type_names[first].astype(str))
    long = rng.random(n_products) < 0.5
    text = [
        f"{m} {k} with {a}, {b} and {c}." if lg else f"{m} {k} with {a} and {b}."
        for m, k, a, b, c, lg in zip(material, kind, f1, f2, f3, long, strict=True)
    ]
    empty = rng.random(n_products) < 0.004
    return pl.Series("detail_desc", text).set(pl.Series(empty), None).gather(product)
