"""The shop's drawings: every product type of the sample has one that fits it, and look-alikes are drawn apart."""

from __future__ import annotations

from hmrec.sample.catalog import PRODUCT_TYPES
from hmrec.serving.images import SHAPES, TYPE_SHAPES, article_svg, shape_name


def test_every_product_type_of_the_sample_has_its_own_drawing():
    without = [name for _, name, *_ in PRODUCT_TYPES if name.lower() not in TYPE_SHAPES]
    assert without == [], f"product types drawn only by their group's silhouette: {without}"
    assert set(TYPE_SHAPES.values()) <= set(SHAPES)


def test_look_alikes_are_drawn_apart():
    pairs = [(("Garment Lower body", "Skirt"), ("Garment Lower body", "Trousers")),
             (("Garment Upper body", "Vest top"), ("Garment Upper body", "T-shirt")),
             (("Nightwear", "Pyjama set"), ("Garment Full body", "Dress")),
             (("Accessories", "Sunglasses"), ("Accessories", "Earring")),
             (("Accessories", "Sunglasses"), ("Accessories", "Hat/beanie"))]
    for a, b in pairs:
        assert shape_name(*a) != shape_name(*b), (a, b)
    assert SHAPES["skirt"] in article_svg("Black", "Black", "Garment Lower body", "Skirt")


def test_a_type_the_table_lacks_is_drawn_by_its_group():
    assert shape_name("Shoes", "Ballerinas") == "shoes"
    assert shape_name(None, None) == "other"
