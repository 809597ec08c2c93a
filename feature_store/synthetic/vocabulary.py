"""The synthetic retailer's vocabulary: categories, styles, colours, materials, sizes, product types, outfit templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import numpy.typing as npt

from ..loaders import AGE_BANDS as _LOADER_AGE_BANDS
from ..schema import (
    SEASONS,
    Category,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BLOCK_CUSTOMERS: Final = 50_000
"""Customers generated (and interaction rows sorted) together; also one Parquet row group."""

AGE_BANDS: Final = _LOADER_AGE_BANDS[1:]  # synthetic customers are adults
LATENT_FILE: Final = "latent_customers.parquet"
LATENT_ITEMS_FILE: Final = "latent_items.parquet"
REPORT_FILE: Final = "synthetic.json"

_SEED_CATALOG: Final = 1
_SEED_STOCK: Final = 2
_SEED_BLOCK: Final = 3
_SEED_FIT: Final = 4  # its own stream, so the items' fit offsets change no other draw
_EPOCH: Final = date(1970, 1, 1)


CATEGORIES: Final = (
    Category.TOP,
    Category.BOTTOM,
    Category.DRESS,
    Category.OUTERWEAR,
    Category.SHOES,
    Category.ACCESSORY,
    Category.UNDERWEAR,
    Category.SWIMWEAR,
)
_CAT = {c: i for i, c in enumerate(CATEGORIES)}
_CATEGORY_SHARE: Final = (0.27, 0.17, 0.11, 0.11, 0.13, 0.14, 0.04, 0.03)

STYLES: Final = (
    "casual",
    "business",
    "sport",
    "party",
    "classic",
    "boho",
    "streetwear",
    "minimalist",
)
_STYLE = {s: i for i, s in enumerate(STYLES)}
# Population share of primary styles, by age band (rows) — younger customers lean street/sport/party.
_STYLE_BY_AGE: Final = np.array(
    [
        [0.26, 0.05, 0.16, 0.14, 0.05, 0.09, 0.19, 0.06],
        [0.27, 0.13, 0.13, 0.10, 0.09, 0.08, 0.11, 0.09],
        [0.27, 0.18, 0.11, 0.07, 0.14, 0.07, 0.06, 0.10],
        [0.28, 0.18, 0.10, 0.05, 0.20, 0.07, 0.03, 0.09],
        [0.30, 0.14, 0.09, 0.04, 0.27, 0.06, 0.02, 0.08],
        [0.32, 0.08, 0.09, 0.03, 0.34, 0.06, 0.01, 0.07],
    ]
)
_AGE_SHARE: Final = (0.17, 0.28, 0.22, 0.16, 0.11, 0.06)

COLOURS: Final = (
    "black",
    "white",
    "navy",
    "grey",
    "beige",
    "cream",
    "brown",
    "camel",
    "khaki",
    "olive",
    "green",
    "blue",
    "light blue",
    "red",
    "burgundy",
    "pink",
    "yellow",
    "orange",
    "purple",
)
_COL = {c: i for i, c in enumerate(COLOURS)}
_NEUTRALS: Final = ("black", "white", "navy", "grey", "beige", "cream")
_ACCENT_FAMILIES: Final = (
    ("brown", "camel", "khaki", "olive", "cream"),  # earth
    ("blue", "light blue", "green", "purple", "grey"),  # cool
    ("red", "burgundy", "pink", "orange", "yellow"),  # warm
)
_COLOUR_BASE: Final = np.array(
    [14, 10, 9, 8, 7, 4, 5, 3, 3, 3, 3, 6, 4, 4, 3, 4, 2, 1.5, 1.5], dtype=np.float64
)
_WINTER_COLOURS: Final = ("black", "navy", "grey", "burgundy", "camel", "brown", "olive")
_SUMMER_COLOURS: Final = ("white", "light blue", "yellow", "pink", "orange", "beige", "cream")
_MATERIAL_COLOURS: Final[dict[str, dict[str, float]]] = {
    "denim": {"blue": 5, "light blue": 3, "black": 2, "grey": 1, "white": 0.5},
    "leather": {"black": 5, "brown": 4, "camel": 2, "burgundy": 1, "beige": 1, "white": 1},
    "suede": {"brown": 4, "camel": 3, "black": 2, "beige": 2, "olive": 1, "burgundy": 1},
    "linen": {
        "white": 4,
        "beige": 3,
        "cream": 2,
        "light blue": 2,
        "olive": 1,
        "navy": 1,
        "khaki": 1,
    },
    "metal": {"yellow": 3, "grey": 3, "white": 1, "black": 1},
}

MATERIALS: Final = (
    "cotton",
    "linen",
    "wool",
    "cashmere",
    "denim",
    "leather",
    "suede",
    "polyester",
    "nylon",
    "silk",
    "viscose",
    "canvas",
    "acetate",
    "metal",
)
_MAT = {m: i for i, m in enumerate(MATERIALS)}
_MATERIAL_PRICE: Final = {"cashmere": 2.2, "silk": 1.6, "leather": 1.3, "suede": 1.3, "wool": 1.2}

PATTERNS: Final = (
    "solid",
    "striped",
    "checked",
    "floral",
    "printed",
    "polka dot",
    "animal print",
)
_PAT = {p: i for i, p in enumerate(PATTERNS)}
_PATTERN_BY_CATEGORY: Final[dict[Category, tuple[float, ...]]] = {
    Category.TOP: (55, 15, 5, 8, 12, 3, 2),
    Category.BOTTOM: (82, 4, 8, 3, 3, 0, 0),
    Category.DRESS: (45, 6, 3, 25, 15, 6, 3),
    Category.OUTERWEAR: (86, 1, 10, 0, 1, 0, 2),
    Category.SHOES: (88, 0, 0, 1, 3, 0, 8),
    Category.ACCESSORY: (74, 5, 6, 4, 6, 1, 4),
    Category.UNDERWEAR: (70, 12, 3, 5, 8, 2, 0),
    Category.SWIMWEAR: (50, 12, 0, 14, 16, 5, 3),
}

_PRICE_BAND_SHARE: Final = (0.32, 0.40, 0.21, 0.07)
_PRICE_BAND_FACTOR: Final = np.array([0.55, 1.0, 1.9, 4.2])

# Size scales: labels in size order.
SIZE_SCALES: Final[dict[str, tuple[str, ...]]] = {
    "letter": ("XS", "S", "M", "L", "XL", "XXL"),
    "waist": ("26", "27", "28", "29", "30", "31", "32", "33", "34", "36", "38"),
    "eu_bottom": ("34", "36", "38", "40", "42", "44", "46"),
    "shoe": tuple(str(s) for s in range(36, 47)),
    "sml": ("S", "M", "L"),
    "one": ("ONE SIZE",),
}
_SCALE_NAMES: Final = tuple(SIZE_SCALES)
_SCALE = {s: i for i, s in enumerate(_SCALE_NAMES)}
# Offered size range per scale: (choices for the lowest index, choices for the highest index).
_SCALE_RANGE: Final[dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] = {
    "letter": ((0, 0, 1), (4, 5, 5)),
    "waist": ((0, 1, 2), (8, 9, 10)),
    "eu_bottom": ((0, 1), (5, 6)),
    "shoe": ((0, 1, 2, 3), (7, 8, 9, 10)),
    "sml": ((0,), (2,)),
    "one": ((0,), (0,)),
}
# Each (category, scale) that carries a size has its own latent "true size" per customer.
TRUE_SIZE_SLOTS: Final = (
    ("top", "letter"),
    ("bottom", "waist"),
    ("bottom", "eu_bottom"),
    ("bottom", "letter"),
    ("dress", "letter"),
    ("outerwear", "letter"),
    ("shoes", "shoe"),
    ("accessory", "sml"),
    ("underwear", "letter"),
    ("swimwear", "letter"),
)
_SLOT = {s: i for i, s in enumerate(TRUE_SIZE_SLOTS)}
LATENT_SIZE_COLUMNS: Final = (
    "size_top",
    "size_bottom_waist",
    "size_bottom_eu",
    "size_bottom_letter",
    "size_dress",
    "size_outerwear",
    "size_shoes",
    "size_accessory",
    "size_underwear",
    "size_swimwear",
)

_ALL_SEASONS: Final = SEASONS
_SEASON = {s: i for i, s in enumerate(SEASONS)}
_FIT_WORDS: Final[dict[Category, tuple[str, ...]]] = {
    Category.TOP: ("Relaxed-fit", "Slim-fit", "Oversized", "Regular-fit", "Cropped"),
    Category.BOTTOM: ("Slim", "Straight-leg", "Wide-leg", "High-waisted", "Tapered"),
    Category.DRESS: ("Midi", "Mini", "Maxi-length", "Wrap", "A-line"),
    Category.OUTERWEAR: ("Double-breasted", "Hooded", "Belted", "Lightweight", "Tailored"),
    Category.SHOES: ("Chunky", "Classic", "Low-profile", "Pointed-toe", "Cushioned"),
    Category.ACCESSORY: ("Classic", "Minimalist", "Statement", "Everyday", "Refined"),
    Category.UNDERWEAR: ("Soft", "Seamless", "Breathable", "Stretch", "Classic"),
    Category.SWIMWEAR: ("High-waisted", "Sporty", "Classic", "Ruched", "Reversible"),
}


@dataclass(frozen=True)
class _ProductType:
    name: str
    category: Category
    scale: str
    weight: float
    materials: dict[str, float]
    styles: tuple[str, ...]
    seasons: tuple[str, ...]
    price: float  # mid-band base price, EUR


def _pt(
    name: str,
    category: Category,
    scale: str,
    weight: float,
    materials: dict[str, float],
    styles: tuple[str, ...],
    seasons: tuple[str, ...],
    price: float,
) -> _ProductType:
    return _ProductType(name, category, scale, weight, materials, styles, seasons, price)


_C, _B, _D, _O = Category.TOP, Category.BOTTOM, Category.DRESS, Category.OUTERWEAR
_S, _A, _U, _W = Category.SHOES, Category.ACCESSORY, Category.UNDERWEAR, Category.SWIMWEAR
_SPR, _SUM, _AUT, _WIN = "spring", "summer", "autumn", "winter"

PRODUCT_TYPES: Final = (
    # tops
    _pt("t-shirt", _C, "letter", 10, {"cotton": 6, "linen": 1, "polyester": 1},
        ("casual", "sport", "streetwear", "minimalist"), _ALL_SEASONS, 19),
    _pt("shirt", _C, "letter", 7, {"cotton": 6, "linen": 3, "silk": 1},
        ("business", "classic", "casual", "minimalist"), _ALL_SEASONS, 39),
    _pt("blouse", _C, "letter", 6, {"viscose": 3, "silk": 2, "polyester": 2, "linen": 1},
        ("business", "party", "boho", "classic"), _ALL_SEASONS, 39),
    _pt("sweater", _C, "letter", 6, {"wool": 4, "cashmere": 2, "cotton": 2},
        ("casual", "classic", "minimalist"), (_AUT, _WIN), 49),
    _pt("cardigan", _C, "letter", 3, {"wool": 3, "cashmere": 1, "cotton": 2},
        ("classic", "boho", "casual"), (_SPR, _AUT, _WIN), 49),
    _pt("hoodie", _C, "letter", 4, {"cotton": 4, "polyester": 1},
        ("casual", "sport", "streetwear"), (_SPR, _AUT, _WIN), 45),
    _pt("tank top", _C, "letter", 3, {"cotton": 3, "linen": 1, "polyester": 1},
        ("sport", "casual", "boho"), (_SPR, _SUM), 15),
    _pt("polo shirt", _C, "letter", 2, {"cotton": 1},
        ("casual", "classic", "sport"), (_SPR, _SUM, _AUT), 29),
    # bottoms
    _pt("jeans", _B, "waist", 8, {"denim": 1},
        ("casual", "streetwear", "classic", "minimalist"), _ALL_SEASONS, 59),
    _pt("chinos", _B, "waist", 4, {"cotton": 1},
        ("business", "casual", "classic"), (_SPR, _SUM, _AUT), 49),
    _pt("trousers", _B, "eu_bottom", 5, {"wool": 2, "polyester": 2, "linen": 1, "viscose": 1},
        ("business", "classic", "minimalist"), _ALL_SEASONS, 55),
    _pt("skirt", _B, "eu_bottom", 4,
        {"cotton": 2, "denim": 1, "polyester": 2, "leather": 0.5, "linen": 1},
        ("party", "boho", "business", "casual"), _ALL_SEASONS, 39),
    _pt("shorts", _B, "eu_bottom", 3, {"cotton": 2, "linen": 1, "denim": 1},
        ("casual", "sport", "boho"), (_SUM,), 29),
    _pt("joggers", _B, "letter", 2, {"cotton": 1, "polyester": 1},
        ("sport", "casual", "streetwear"), _ALL_SEASONS, 35),
    _pt("leggings", _B, "letter", 2, {"polyester": 1, "cotton": 1},
        ("sport", "casual"), _ALL_SEASONS, 25),
    # dresses and other full-body pieces
    _pt("summer dress", _D, "letter", 4, {"cotton": 2, "linen": 2, "viscose": 2},
        ("boho", "casual"), (_SPR, _SUM), 45),
    _pt("cocktail dress", _D, "letter", 3, {"polyester": 2, "silk": 1, "viscose": 1},
        ("party",), _ALL_SEASONS, 79),
    _pt("shirt dress", _D, "letter", 2, {"cotton": 2, "linen": 1},
        ("business", "casual", "classic"), (_SPR, _SUM, _AUT), 55),
    _pt("knit dress", _D, "letter", 2, {"wool": 2, "cashmere": 0.3, "viscose": 1},
        ("classic", "minimalist", "casual"), (_AUT, _WIN), 65),
    _pt("maxi dress", _D, "letter", 2, {"viscose": 2, "cotton": 1, "silk": 0.5},
        ("boho", "party"), (_SPR, _SUM), 59),
    _pt("jumpsuit", _D, "letter", 1.5, {"cotton": 1, "viscose": 1, "polyester": 1},
        ("casual", "party", "streetwear"), _ALL_SEASONS, 59),
    # outerwear
    _pt("trench coat", _O, "letter", 2, {"cotton": 3, "polyester": 1},
        ("classic", "business", "minimalist"), (_AUT, _SPR), 129),
    _pt("down jacket", _O, "letter", 2.5, {"nylon": 1},
        ("casual", "sport", "streetwear"), (_WIN,), 149),
    _pt("wool coat", _O, "letter", 2.5, {"wool": 3, "cashmere": 1},
        ("classic", "business", "minimalist"), (_AUT, _WIN), 169),
    _pt("parka", _O, "letter", 1.5, {"cotton": 1, "nylon": 1},
        ("casual", "streetwear"), (_AUT, _WIN), 139),
    _pt("denim jacket", _O, "letter", 1.5, {"denim": 1},
        ("casual", "streetwear", "boho"), (_SPR, _SUM, _AUT), 69),
    _pt("leather jacket", _O, "letter", 1, {"leather": 1},
        ("streetwear", "party", "casual"), (_AUT, _SPR), 199),
    _pt("blazer", _O, "letter", 2, {"wool": 2, "linen": 1, "polyester": 1},
        ("business", "classic", "party"), _ALL_SEASONS, 99),
    _pt("rain jacket", _O, "letter", 1, {"nylon": 1, "polyester": 1},
        ("sport", "casual"), (_SPR, _AUT), 79),
    # shoes
    _pt("sneakers", _S, "shoe", 5, {"leather": 2, "canvas": 1, "polyester": 1},
        ("casual", "sport", "streetwear", "minimalist"), _ALL_SEASONS, 79),
    _pt("boots", _S, "shoe", 2.5, {"leather": 2, "suede": 1},
        ("casual", "classic", "streetwear"), (_AUT, _WIN), 129),
    _pt("ankle boots", _S, "shoe", 2, {"leather": 2, "suede": 1},
        ("classic", "party", "boho"), (_SPR, _AUT, _WIN), 109),
    _pt("loafers", _S, "shoe", 1.5, {"leather": 2, "suede": 1},
        ("business", "classic", "minimalist"), (_SPR, _SUM, _AUT), 89),
    _pt("heels", _S, "shoe", 1.5, {"leather": 2, "suede": 1},
        ("party", "business"), _ALL_SEASONS, 89),
    _pt("sandals", _S, "shoe", 2, {"leather": 2, "canvas": 1},
        ("casual", "boho"), (_SUM,), 49),
    _pt("running shoes", _S, "shoe", 1.5, {"polyester": 1},
        ("sport",), _ALL_SEASONS, 99),
    # accessories
    _pt("belt", _A, "sml", 2, {"leather": 1},
        ("business", "classic", "casual", "minimalist"), _ALL_SEASONS, 29),
    _pt("scarf", _A, "one", 2, {"wool": 2, "cashmere": 1, "viscose": 1},
        ("classic", "boho", "casual"), (_AUT, _WIN), 29),
    _pt("tote bag", _A, "one", 2, {"leather": 1, "canvas": 1},
        ("casual", "business", "minimalist"), _ALL_SEASONS, 59),
    _pt("crossbody bag", _A, "one", 1.5, {"leather": 2, "polyester": 1},
        ("party", "casual", "streetwear"), _ALL_SEASONS, 69),
    _pt("beanie", _A, "one", 1.5, {"wool": 1, "cashmere": 0.3},
        ("casual", "streetwear", "sport"), (_AUT, _WIN), 19),
    _pt("cap", _A, "one", 1, {"cotton": 1},
        ("sport", "streetwear", "casual"), (_SPR, _SUM), 19),
    _pt("sunglasses", _A, "one", 1.5, {"acetate": 1},
        ("casual", "party", "boho"), (_SPR, _SUM), 39),
    _pt("tie", _A, "one", 0.8, {"silk": 1},
        ("business", "classic"), _ALL_SEASONS, 35),
    _pt("gloves", _A, "sml", 1, {"wool": 1, "leather": 1},
        ("classic", "casual"), (_WIN,), 29),
    _pt("necklace", _A, "one", 1, {"metal": 1},
        ("party", "boho", "classic"), _ALL_SEASONS, 25),
    # underwear, nightwear and socks
    _pt("socks", _U, "one", 1.5, {"cotton": 1},
        ("casual", "sport", "minimalist"), _ALL_SEASONS, 9),
    _pt("briefs", _U, "letter", 1, {"cotton": 1},
        ("casual", "minimalist"), _ALL_SEASONS, 12),
    _pt("pyjamas", _U, "letter", 0.7, {"cotton": 1, "silk": 0.2},
        ("casual", "classic"), _ALL_SEASONS, 35),
    # swimwear
    _pt("swimsuit", _W, "letter", 1, {"polyester": 1},
        ("sport", "classic", "boho"), (_SUM,), 39),
    _pt("bikini", _W, "letter", 1, {"polyester": 1},
        ("boho", "party", "casual"), (_SUM,), 35),
    _pt("swim shorts", _W, "letter", 1, {"polyester": 1},
        ("casual", "sport"), (_SUM,), 29),
)  # fmt: skip

# Outfit templates (categories bought together) and their weight per season
# (spring, summer, autumn, winter — the order of schema.SEASONS).
_TEMPLATES: Final = (
    ((_C, _B, _S), (12, 10, 12, 10)),
    ((_C, _B), (10, 10, 10, 8)),
    ((_D, _S, _A), (6, 9, 5, 3)),
    ((_D, _S), (5, 7, 4, 2)),
    ((_O, _C, _B), (4, 0.5, 7, 9)),
    ((_O, _A), (2, 0.3, 5, 8)),
    ((_O,), (3, 0.5, 6, 8)),
    ((_O, _S), (2, 0.1, 3, 4)),
    ((_O, _C, _B, _S), (2, 0.2, 4, 5)),
    ((_C,), (12, 14, 12, 10)),
    ((_C, _C), (3, 4, 3, 3)),
    ((_B,), (6, 6, 6, 5)),
    ((_S,), (6, 6, 6, 5)),
    ((_A,), (5, 5, 5, 5)),
    ((_D,), (6, 9, 5, 3)),
    ((_C, _B, _S, _A), (5, 5, 5, 4)),
    ((_W, _A), (1, 6, 0.3, 0.2)),
    ((_W,), (1, 5, 0.3, 0.2)),
    ((_U,), (3, 3, 3, 3)),
)
_MAX_TEMPLATE: Final = max(len(t) for t, _ in _TEMPLATES)
