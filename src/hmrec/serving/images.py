"""A product picture drawn as SVG from the article's colour and product group, for data without photos."""

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
}
GROUP_SHAPES = {
    "garment upper body": "upper", "garment lower body": "lower", "garment full body": "full",
    "shoes": "shoes", "bags": "bag", "accessories": "accessory", "underwear": "underwear",
    "swimwear": "swim", "nightwear": "full", "socks & tights": "socks", "underwear/nightwear": "underwear",
    "cosmetic": "other", "items": "other", "furniture": "other", "garment and shoe care": "other",
    "stationery": "other", "interior textile": "other", "fun": "accessory", "unknown": "other",
}


def colour_hex(perceived: str | None, group: str | None) -> str:
    """The colour group's hex if known (more precise), else the perceived colour master's, else grey."""
    for name in (group, perceived):
        if name and name.strip().lower() in COLOURS:
            return COLOURS[name.strip().lower()]
    return DEFAULT_COLOUR


def article_svg(perceived: str | None, colour_group: str | None, product_group: str | None,
                product_type: str | None) -> str:
    fill = colour_hex(perceived, colour_group)
    shape = SHAPES[GROUP_SHAPES.get((product_group or "unknown").strip().lower(), "other")]
    label = escape(product_type or product_group or "")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 120" width="300" height="360">'
        '<rect width="100" height="120" fill="#f3f1ee"/>'
        f'<path d="{shape}" fill="{fill}" stroke="#00000033" stroke-width="1.2" fill-rule="evenodd"/>'
        f'<text x="50" y="116" font-family="sans-serif" font-size="6" text-anchor="middle" fill="#666">{label}</text>'
        "</svg>"
    )
