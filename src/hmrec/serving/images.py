"""A product picture drawn as SVG from the article's colour and product type (or group), for data without photos."""

from __future__ import annotations

from xml.sax.saxutils import escape

# Perceived colour masters and colour groups of the H&M data -> a representative hex colour.
COLOURS = {
    "black": "#1f1f1f", "white": "#f4f4f0", "off white": "#ece8dc", "grey": "#8e8e8e", "dark grey": "#555555",
    "light grey": "#c4c4c4", "blue": "#2f5fb3", "dark blue": "#1e2f5c", "light blue": "#9cc3e6",
    "beige": "#d9c6a5", "dark beige": "#b09a74", "light beige": "#ece0c8", "pink": "#e58fb0",
    "light pink": "#f6c9d8", "dark pink": "#b8406f", "red": "#c8323a", "dark red": "#7c1d25",
    "light red": "#ee8d8d", "green": "#3f8a4c", "dark green": "#24513a", "light green": "#a9d6a0",
    "khaki green": "#7b7a4a", "greenish khaki": "#8a8a55", "yellow": "#eccb3b", "dark yellow": "#c9a227",
    "light yellow": "#f7e8a0", "orange": "#e8823a", "dark orange": "#b85a1f", "light orange": "#f5b98a",
    "brown": "#7a4e2d", "yellowish brown": "#a2763a", "mole": "#6d625a", "lilac purple": "#a58ac8",
    "purple": "#6c3d91", "dark purple": "#432561", "light purple": "#cbb6e6", "turquoise": "#2fb5ad",
    "dark turquoise": "#1d7b76", "light turquoise": "#98e0d9", "gold": "#c9a43f", "silver": "#c0c0c8",
    "bronze/copper": "#a8683c", "metal": "#9a9ca3", "bluish green": "#3d8f88", "transparent": "#e8eef2",
    "unknown": "#b8b8b8", "other": "#b8b8b8", "undefined": "#b8b8b8",
}
DEFAULT_COLOUR = "#b8b8b8"

# A simple silhouette per product group, drawn in a 100 x 120 box.
SHAPES = {
    "upper": "M30 20 L42 14 Q50 22 58 14 L70 20 L86 40 L76 48 L70 40 L70 104 L30 104 L30 40 L24 48 L14 40 Z",
    "lower": "M30 14 L70 14 L74 106 L56 106 L50 46 L44 106 L26 106 Z",
    "full": "M38 12 L62 12 L60 34 L76 106 L24 106 L40 34 Z",
    "shoes": "M16 70 L48 70 L56 80 L86 86 Q90 96 82 98 L16 98 Z",
    "bag": "M22 44 L78 44 L82 104 L18 104 Z M36 44 Q36 20 50 20 Q64 20 64 44 L58 44 Q58 28 50 28 Q42 28 42 44 Z",
    "accessory": "M50 20 A34 34 0 1 0 50.1 20 Z M50 38 A16 16 0 1 1 49.9 38 Z",
    "underwear": "M20 40 L80 40 L74 64 Q50 90 26 64 Z",
    "swim": "M28 20 L40 20 L50 48 L60 20 L72 20 L70 70 Q50 84 30 70 Z",
    "socks": "M40 14 L60 14 L60 74 L82 88 Q86 102 70 102 L40 88 Z",
    "other": "M25 25 L75 25 L75 95 L25 95 Z",
    # shapes for product types that their group's silhouette would misdraw
    "long_sleeves": "M30 20 L42 14 Q50 22 58 14 L70 20 L90 96 L80 98 L70 52 L70 104 L30 104 L30 52 L20 98 L10 96 Z",
    "vest": "M36 14 L42 14 Q50 32 58 14 L64 14 L66 36 L70 42 L70 104 L30 104 L30 42 L34 36 Z",
    "leggings": "M34 14 L66 14 L63 106 L54 106 L50 42 L46 106 L37 106 Z",
    "shorts": "M28 14 L72 14 L76 64 L54 64 L50 40 L46 64 L24 64 Z",
    "skirt": "M34 22 L66 22 L82 94 L18 94 Z",
    "jumpsuit": "M36 12 L64 12 L64 50 L70 106 L54 106 L50 64 L46 106 L30 106 L36 50 Z",
    "two_piece": "M32 14 L68 14 L72 52 L28 52 Z M32 58 L68 58 L72 106 L54 106 L50 76 L46 106 L28 106 Z",
    "pyjamas": "M30 12 L42 8 Q50 14 58 8 L70 12 L84 48 L76 52 L68 30 L68 56 L32 56 L32 30 L24 52 L16 48 Z "
               "M32 60 L68 60 L70 110 L54 110 L50 78 L46 110 L30 110 Z",
    "bra": "M18 40 Q30 30 50 50 Q70 30 82 40 L82 56 Q66 70 50 58 Q34 70 18 56 Z",
    "boots": "M36 20 L58 20 L58 76 L84 84 Q90 96 82 98 L36 98 Z",
    "sandals": "M14 88 L86 88 Q90 96 82 98 L18 98 Q10 96 14 88 Z M30 88 L38 70 L44 70 L36 88 Z "
               "M58 88 L64 70 L70 70 L66 88 Z",
    "earrings": "M34 22 A5 5 0 1 0 34.1 22 Z M34 32 Q42 52 34 74 Q26 52 34 32 Z "
                "M66 22 A5 5 0 1 0 66.1 22 Z M66 32 Q74 52 66 74 Q58 52 66 32 Z",
    "sunglasses": "M12 48 L46 48 L44 70 Q30 80 14 70 Z M54 48 L88 48 L86 70 Q70 80 56 70 Z "
                  "M44 50 L56 50 L56 55 L44 55 Z",
    "hat": "M22 80 Q22 30 50 30 Q78 30 78 80 Z M18 82 L82 82 L82 94 L18 94 Z",
    "belt": "M8 54 L92 54 L92 66 L8 66 Z M40 48 L56 48 L56 72 L40 72 Z",
    "scarf": "M30 14 L70 14 L70 34 L58 34 L58 106 L42 106 L42 34 L30 34 Z",
    "hairband": "M20 72 Q20 24 50 24 Q80 24 80 72 L72 72 Q72 32 50 32 Q28 32 28 72 Z",
}
GROUP_SHAPES = {
    "garment upper body": "upper", "garment lower body": "lower", "garment full body": "full",
    "shoes": "shoes", "bags": "bag", "accessories": "accessory", "underwear": "underwear",
    "swimwear": "swim", "nightwear": "full", "socks & tights": "socks", "underwear/nightwear": "underwear",
    "cosmetic": "other", "items": "other", "furniture": "other", "garment and shoe care": "other",
    "stationery": "other", "interior textile": "other", "fun": "accessory", "unknown": "other",
}

# The product types of the sample (and of the H&M data) whose group silhouette does not fit them; other types are
# drawn by their group's.
TYPE_SHAPES = {
    "t-shirt": "upper", "top": "upper", "shirt": "upper", "blouse": "upper",
    "sweater": "long_sleeves", "hoodie": "long_sleeves", "jacket": "long_sleeves", "coat": "long_sleeves",
    "cardigan": "long_sleeves", "blazer": "long_sleeves", "vest top": "vest",
    "trousers": "lower", "jeans": "lower", "leggings/tights": "leggings", "shorts": "shorts", "skirt": "skirt",
    "dress": "full", "jumpsuit/playsuit": "jumpsuit", "garment set": "two_piece",
    "underwear bottom": "underwear", "bra": "bra", "underwear tights": "leggings", "socks": "socks",
    "pyjama set": "pyjamas", "swimwear bottom": "underwear", "bikini top": "bra", "swimsuit": "swim",
    "boots": "boots", "sneakers": "shoes", "sandals": "sandals",
    "earring": "earrings", "hat/beanie": "hat", "bag": "bag", "belt": "belt", "scarf": "scarf",
    "sunglasses": "sunglasses", "hair/alice band": "hairband",
}


def shape_name(product_group: str | None, product_type: str | None) -> str:
    """The drawing of a product type, else of its group, else a plain box."""
    kind = (product_type or "").strip().lower()
    return TYPE_SHAPES.get(kind) or GROUP_SHAPES.get((product_group or "unknown").strip().lower(), "other")


def colour_hex(perceived: str | None, group: str | None) -> str:
    """The colour group's hex if known (more precise), else the perceived colour master's, else grey."""
    for name in (group, perceived):
        if name and name.strip().lower() in COLOURS:
            return COLOURS[name.strip().lower()]
    return DEFAULT_COLOUR


def article_svg(perceived: str | None, colour_group: str | None, product_group: str | None,
                product_type: str | None) -> str:
    fill = colour_hex(perceived, colour_group)
    shape = SHAPES[shape_name(product_group, product_type)]
    label = escape(product_type or product_group or "")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 120" width="300" height="360">'
        '<rect width="100" height="120" fill="#f3f1ee"/>'
        f'<path d="{shape}" fill="{fill}" stroke="#00000033" stroke-width="1.2" fill-rule="evenodd"/>'
        f'<text x="50" y="116" font-family="sans-serif" font-size="6" text-anchor="middle" fill="#666">{label}</text>'
        "</svg>"
    )
