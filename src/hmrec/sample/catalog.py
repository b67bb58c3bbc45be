"""The synthetic sample's fixed vocabulary: H&M-like index groups, sections, product types, colours, patterns."""

from __future__ import annotations

# (index_group_no, index_group_name)
INDEX_GROUPS = ((1, "Ladieswear"), (2, "Divided"), (3, "Menswear"), (4, "Baby/Children"), (26, "Sport"))

# (index_code, index_name, position in INDEX_GROUPS, share of products)
INDEXES = (
    ("A", "Ladieswear", 0, 0.25),
    ("B", "Lingeries/Tights", 0, 0.09),
    ("C", "Ladies Accessories", 0, 0.06),
    ("D", "Divided", 1, 0.14),
    ("F", "Menswear", 2, 0.12),
    ("G", "Baby Sizes 50-98", 3, 0.08),
    ("H", "Children Sizes 92-140", 3, 0.08),
    ("I", "Children Sizes 134-170", 3, 0.06),
    ("J", "Children Accessories, Swimwear", 3, 0.04),
    ("S", "Sport", 4, 0.04),
)

# (section_no, section_name, position in INDEXES)
SECTIONS = (
    (16, "Womens Everyday Basics", 0), (15, "Womens Everyday Collection", 0), (18, "Womens Trend", 0),
    (11, "Womens Tailoring", 0), (14, "Womens Casual", 0), (19, "Womens Premium", 0),
    (61, "Womens Lingerie", 1), (62, "Womens Nightwear, Socks & Tigh", 1), (63, "Womens Swimwear", 1),
    (64, "Womens Small accessories", 2), (65, "Womens Big accessories", 2), (66, "Womens Shoes", 2),
    (53, "Divided Collection", 3), (52, "Divided Projects", 3), (50, "Divided Basics", 3),
    (51, "Divided Accessories", 3), (56, "Ladies Denim", 3),
    (21, "Contemporary Casual", 4), (20, "Contemporary Smart", 4), (22, "Contemporary Street", 4),
    (25, "Men Accessories", 4), (26, "Men Underwear", 4), (23, "Men Suits & Tailoring", 4),
    (44, "Baby Essentials & Complements", 5), (41, "Baby Boy", 5), (42, "Baby Girl", 5),
    (46, "Kids Girl", 6), (45, "Kids Boy", 6), (43, "Kids Outerwear", 6),
    (72, "Young Girl", 7), (76, "Young Boy", 7), (79, "Girls Underwear & Basics", 7),
    (77, "Kids Accessories, Swimwear & D", 8), (78, "Kids & Baby Shoes", 8),
    (5, "Ladies H&M Sport", 9), (8, "Men H&M Sport", 9),
)

# (garment_group_no, garment_group_name)
GARMENT_GROUPS = (
    (1002, "Jersey Basic"), (1005, "Jersey Fancy"), (1003, "Knitwear"), (1007, "Outdoor"), (1008, "Dressed"),
    (1009, "Trousers"), (1010, "Blouses"), (1011, "Shirts"), (1012, "Skirt"), (1013, "Dresses Ladies"),
    (1014, "Shorts"), (1016, "Trousers Denim"), (1017, "Under-, Nightwear"), (1018, "Swimwear"),
    (1019, "Accessories"), (1020, "Shoes"), (1021, "Socks and Tights"), (1023, "Special Offers"),
    (1025, "Woven/Jersey/Knitted mix Baby"), (1001, "Unknown"),
)

# Season tags: 0 all year, 1 summer, 2 winter.
ALL_YEAR, SUMMER, WINTER = 0, 1, 2

# (product_type_no, product_type_name, product_group_name, garment group no, season, typical price, menswear ok,
#  womenswear ok)
PRODUCT_TYPES = (
    (255, "T-shirt", "Garment Upper body", 1002, ALL_YEAR, 9.99, True, True),
    (253, "Vest top", "Garment Upper body", 1002, SUMMER, 7.99, True, True),
    (254, "Top", "Garment Upper body", 1005, ALL_YEAR, 12.99, False, True),
    (252, "Sweater", "Garment Upper body", 1003, WINTER, 24.99, True, True),
    (245, "Shirt", "Garment Upper body", 1011, ALL_YEAR, 24.99, True, True),
    (258, "Blouse", "Garment Upper body", 1010, ALL_YEAR, 24.99, False, True),
    (308, "Hoodie", "Garment Upper body", 1005, WINTER, 24.99, True, True),
    (264, "Jacket", "Garment Upper body", 1007, ALL_YEAR, 49.99, True, True),
    (262, "Coat", "Garment Upper body", 1007, WINTER, 79.99, True, True),
    (267, "Cardigan", "Garment Upper body", 1003, WINTER, 24.99, False, True),
    (247, "Blazer", "Garment Upper body", 1008, ALL_YEAR, 49.99, True, True),
    (272, "Trousers", "Garment Lower body", 1009, ALL_YEAR, 29.99, True, True),
    (273, "Leggings/Tights", "Garment Lower body", 1002, ALL_YEAR, 12.99, False, True),
    (274, "Shorts", "Garment Lower body", 1014, SUMMER, 14.99, True, True),
    (275, "Skirt", "Garment Lower body", 1012, SUMMER, 19.99, False, True),
    (276, "Jeans", "Garment Lower body", 1016, ALL_YEAR, 34.99, True, True),
    (265, "Dress", "Garment Full body", 1013, SUMMER, 29.99, False, True),
    (296, "Jumpsuit/Playsuit", "Garment Full body", 1013, SUMMER, 29.99, False, True),
    (268, "Garment Set", "Garment Full body", 1025, ALL_YEAR, 19.99, True, True),
    (286, "Underwear bottom", "Underwear", 1017, ALL_YEAR, 5.99, True, True),
    (306, "Bra", "Underwear", 1017, ALL_YEAR, 19.99, False, True),
    (304, "Underwear Tights", "Socks & Tights", 1021, WINTER, 7.99, False, True),
    (302, "Socks", "Socks & Tights", 1021, ALL_YEAR, 4.99, True, True),
    (298, "Pyjama set", "Nightwear", 1017, WINTER, 19.99, True, True),
    (59, "Swimwear bottom", "Swimwear", 1018, SUMMER, 9.99, True, True),
    (57, "Bikini top", "Swimwear", 1018, SUMMER, 14.99, False, True),
    (58, "Swimsuit", "Swimwear", 1018, SUMMER, 24.99, False, True),
    (87, "Boots", "Shoes", 1020, WINTER, 49.99, True, True),
    (88, "Sneakers", "Shoes", 1020, ALL_YEAR, 29.99, True, True),
    (93, "Sandals", "Shoes", 1020, SUMMER, 19.99, True, True),
    (71, "Earring", "Accessories", 1019, ALL_YEAR, 6.99, False, True),
    (72, "Hat/beanie", "Accessories", 1019, WINTER, 9.99, True, True),
    (66, "Bag", "Accessories", 1019, ALL_YEAR, 19.99, True, True),
    (67, "Belt", "Accessories", 1019, ALL_YEAR, 9.99, True, True),
    (83, "Scarf", "Accessories", 1019, WINTER, 14.99, True, True),
    (78, "Sunglasses", "Accessories", 1019, SUMMER, 9.99, True, True),
    (80, "Hair/alice band", "Accessories", 1019, ALL_YEAR, 4.99, False, True),
)

# (colour_group_code, colour_group_name, perceived value position, perceived master position, share)
PERCEIVED_VALUES = ((1, "Dusty Light"), (2, "Light"), (3, "Bright"), (4, "Dark"), (5, "Medium Dusty"),
                    (6, "Undefined"), (7, "Medium"), (-1, "Unknown"))
PERCEIVED_MASTERS = (
    (5, "Black"), (2, "Blue"), (9, "White"), (12, "Grey"), (4, "Pink"), (11, "Beige"), (19, "Green"),
    (18, "Red"), (3, "Lilac Purple"), (20, "Brown"), (8, "Yellow"), (13, "Orange"), (6, "Turquoise"),
    (7, "Khaki green"), (15, "Mole"), (14, "Metal"), (17, "Yellowish Green"), (10, "Bluish Green"),
    (16, "Yellowish Brown"), (1, "undefined"),
)
COLOURS = (
    (9, "Black", 3, 0, 0.20), (10, "White", 1, 2, 0.09), (11, "Off White", 0, 2, 0.05),
    (73, "Dark Blue", 3, 1, 0.08), (72, "Blue", 6, 1, 0.04), (71, "Light Blue", 1, 1, 0.03),
    (13, "Beige", 0, 5, 0.04), (12, "Light Beige", 0, 5, 0.03), (7, "Grey", 6, 3, 0.03),
    (6, "Light Grey", 1, 3, 0.02), (8, "Dark Grey", 3, 3, 0.03), (52, "Pink", 4, 4, 0.03),
    (51, "Light Pink", 0, 4, 0.03), (53, "Dark Pink", 3, 4, 0.01), (42, "Red", 2, 7, 0.03),
    (43, "Dark Red", 3, 7, 0.02), (62, "Dark Green", 3, 6, 0.02), (19, "Greenish Khaki", 4, 13, 0.02),
    (23, "Dark Yellow", 4, 10, 0.01), (21, "Light Yellow", 1, 10, 0.01), (33, "Dark Orange", 2, 11, 0.01),
    (93, "Dark Turquoise", 3, 12, 0.01), (81, "Light Purple", 0, 8, 0.01), (17, "Yellowish Brown", 4, 18, 0.02),
    (5, "Gold", 6, 15, 0.01), (3, "Silver", 1, 15, 0.01), (1, "Other", 5, 19, 0.01), (15, "Mole", 4, 14, 0.01),
    (91, "Light Turquoise", 1, 9, 0.01), (63, "Light Green", 1, 16, 0.01), (-1, "Unknown", 7, 19, 0.002),
)

# (graphical_appearance_no, graphical_appearance_name, share)
APPEARANCES = (
    (1010016, "Solid", 0.46), (1010001, "All over pattern", 0.14), (1010010, "Melange", 0.05),
    (1010017, "Stripe", 0.05), (1010014, "Placement print", 0.04), (1010008, "Front print", 0.04),
    (1010004, "Check", 0.02), (1010023, "Denim", 0.03), (1010021, "Lace", 0.02), (1010026, "Other structure", 0.02),
    (1010007, "Embroidery", 0.02), (1010005, "Colour blocking", 0.01), (1010019, "Sequin", 0.01),
    (1010012, "Glittering/Metallic", 0.01), (1010002, "Dot", 0.01), (1010018, "Treatment", 0.01),
)

NAME_WORDS = (
    "Jade", "Luna", "Tilly", "Ellen", "Mia", "Nora", "Rosa", "Alva", "Vera", "Tove", "Ines", "Sally", "Billie",
    "Harry", "Otto", "Jack", "Leo", "Noah", "Ruben", "Sigge", "Pluto", "Mars", "Cosmo", "Ivy", "Daisy", "Bella",
    "OP", "Basic", "Perrie", "Mariah", "Timmy", "Pepper", "Skinny", "Slim", "Relaxed", "Wide", "Soft", "Cosy",
)
MATERIALS = ("Jersey", "Soft cotton jersey", "Fine-knit", "Woven", "Denim", "Sweatshirt fabric", "Lyocell",
             "Rib-knit", "Recycled polyester", "Satin", "Twill", "Linen-blend", "Faux leather", "Chunky-knit")
FEATURES = ("a round neckline", "narrow shoulder straps", "long sleeves", "a concealed zip", "side pockets",
            "an elasticated waist", "a V-neck", "dropped shoulders", "a wide leg", "a regular fit",
            "a lined hood", "press-studs at the front", "ribbing at the cuffs", "a tie belt", "flared legs")
