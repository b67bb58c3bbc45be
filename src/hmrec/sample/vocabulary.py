"""Other worlds' words for the fashion vocabulary's names: grocery product types, aisles and brands; media genres."""

from __future__ import annotations

from hmrec.sample import catalog as cat

_GROCERY_TYPES = (
    "Milk", "Yoghurt", "Cheese", "Butter", "Eggs", "Bread", "Rolls", "Breakfast cereal", "Oat flakes", "Coffee",
    "Tea", "Juice", "Soft drink", "Water", "Beer", "Pasta", "Rice", "Flour", "Sugar", "Canned tomatoes",
    "Canned beans", "Soup", "Frozen pizza", "Frozen vegetables", "Ice cream", "Chicken", "Minced beef", "Sausages",
    "Fish fingers", "Bananas", "Apples", "Tomatoes", "Potatoes", "Onions", "Crisps", "Chocolate", "Biscuits",
)
_GROCERY_AISLES = (
    "Dairy", "Chilled", "Bakery", "Breakfast", "Hot drinks", "Cold drinks", "Alcohol", "Pasta & Rice", "Baking",
    "Tins & Jars", "Soups & Sauces", "World foods", "Frozen meals", "Frozen veg", "Ice cream & Desserts", "Poultry",
    "Beef & Pork", "Deli", "Fish", "Fruit", "Vegetables", "Salads", "Snacks", "Confectionery", "Biscuits & Cakes",
    "Baby food", "Pet food", "Household", "Cleaning", "Toiletries", "Health", "Organic", "Free-from", "Ready meals",
    "Spices", "Condiments",
)
_GROCERY_SHELVES = (
    "Everyday", "Premium", "Value", "Multipack", "Family size", "Single", "Organic", "Light", "Fresh", "Frozen",
    "Ambient", "Chilled", "Local", "Imported", "Seasonal", "Offers", "Large", "Small", "Kids", "Other",
)
_GROCERY_BRANDS = (
    "Own label", "Own label Value", "Own label Finest", "Arla", "Danone", "Nestle", "Unilever", "Kellogg's",
    "Heinz", "Barilla", "Uncle Ben's", "Coca-Cola", "Pepsi", "Tropicana", "Lavazza", "Twinings", "Mars", "Cadbury",
    "McVitie's", "Walkers", "Birds Eye", "Findus", "Quorn", "Ben & Jerry's", "Warburtons", "Hovis", "Kerrygold",
    "Lurpak", "Alpro", "Oatly", "Innocent",
)
_MEDIA_GENRES = (
    "Drama", "Comedy", "Thriller", "Crime", "Action", "Adventure", "Science fiction", "Fantasy", "Horror",
    "Romance", "Documentary", "Animation", "Family", "Musical", "Western", "War", "History", "Biography", "Sport",
    "Mystery", "Pop", "Rock", "Hip hop", "Jazz", "Classical", "Electronic", "Folk", "Country", "Soul", "Metal",
    "Poetry", "Essays", "Self-help", "Cookery", "Travel", "Children's", "Young adult",
)
_MEDIA_COLLECTIONS = (
    "New releases", "Award winners", "Classics", "Cult", "Indie", "Blockbusters", "Festival picks", "Critics' choice",
    "Staff picks", "Box sets", "Limited series", "Anthologies", "Live recordings", "Debuts", "Remastered",
    "Soundtracks", "Compilations", "B-sides", "Bestsellers", "Book club", "Short reads", "Audiobooks", "Graphic",
    "Translated", "Nordic", "French", "Korean", "Japanese", "Spanish", "German", "Italian", "British", "American",
    "Latin", "African", "Asian",
)
_MEDIA_KINDS = ("Films", "Series", "Music", "Books", "Podcasts")


def _rename(old: list[str], new: tuple[str, ...]) -> dict[str, str]:
    """Fashion name -> new name, position by position (zip's strict check: both lists have the same length)."""
    return dict(zip(old, new, strict=True))


_TYPE_NAMES = [row[1] for row in cat.PRODUCT_TYPES]
_SECTION_NAMES = [row[1] for row in cat.SECTIONS]
GROCERY_TYPES = _rename(_TYPE_NAMES, _GROCERY_TYPES)
GROCERY_AISLES = _rename(_SECTION_NAMES, _GROCERY_AISLES)
GROCERY_BRANDS = _rename([row[1] for row in cat.COLOURS], _GROCERY_BRANDS)
# department_name is "<section> <garment group>" in the fashion files
GROCERY_DEPARTMENTS = {
    f"{section} {garment}": f"{GROCERY_AISLES[section]} {shelf}"
    for section in _SECTION_NAMES
    for (_, garment), shelf in zip(cat.GARMENT_GROUPS, _GROCERY_SHELVES, strict=True)
}
MEDIA_GENRES = _rename(_TYPE_NAMES, _MEDIA_GENRES)
MEDIA_COLLECTIONS = _rename(_SECTION_NAMES, _MEDIA_COLLECTIONS)
MEDIA_KINDS = _rename([row[1] for row in cat.INDEX_GROUPS], _MEDIA_KINDS)
