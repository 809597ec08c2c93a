"""A deterministic synthetic fashion retailer: catalog, stock, customers and interactions.

This is the demo and benchmark load of Lookbook. It looks like a retailer — outfits in baskets,
seasons, sizes, returns of the wrong size — but it is made up: accuracy claims are measured on the
real data in ``../shared/data``, never on this.

:func:`generate` writes the project's own format (see ``docs/data-format.md``) into a folder:

``items.parquet``         one row per item; readable names, categories, product types, styles,
                          colours, materials, patterns, seasons, price and price band, launch date,
                          sizes offered and a short description.
``stock.parquet``         one row per (item, store, size) carried: ``online`` (every item) and
                          ``store-001`` .. (a subset of the catalog each); ``quantity`` 0 means
                          out of stock there.
``customers.parquet``     one row per customer: age band, consent, signup date.
``interactions.parquet``  impressions, clicks, views, wishlists, add-to-carts, purchases and
                          returns. Written in row groups of one block of customers
                          (:data:`BLOCK_CUSTOMERS`, in customer-id order); rows are sorted by
                          timestamp *within* each block, not globally.
``latent_customers.parquet``  the hidden truth behind each customer (style mix, colour palette,
                          price band, true size per category) — for checking models on synthetic
                          data. Not part of the data format; loaders ignore it.
``synthetic.json``        the parameters and the report returned by :func:`generate`.

How the data is made (every step vectorised with numpy, one block of customers at a time):

* **Catalog.** Product types (t-shirt, shirt, jeans, trench coat, down jacket, sneakers, belt, …)
  carry a category, a size scale, plausible materials, styles, seasons and a base price. Materials
  move seasons (linen → spring/summer, wool and cashmere → autumn/winter) and colours (denim is
  blue, leather black or brown); price = base × price band × material × noise. Launch dates
  spread over the period, seasonal items shortly before or during their season. Popularity is
  long-tailed (log-normal).
* **Customers** have latent tastes: a primary and a secondary style, a colour palette (neutrals
  plus an accent family), a price band, preferred channels, a home store and a true size per
  category (correlated through one body-size factor). Activity is heavy-tailed; some customers
  churn.
* **Sessions** fall on days weighted by retail traffic (weekends, Black Friday, Christmas, sales).
  A purchasing session buys an outfit — a template such as top+bottom+shoes or
  dress+shoes+accessory, drawn with season-dependent weights (outerwear in winter, swimwear in
  summer) — in one of the customer's styles. Each item is drawn by popularity among the items of
  that category and style that are in season and already launched, and accepted more often when
  its colour is in the customer's palette, its price band is the customer's and it is new.
  Online sessions also browse (views, clicks, recommendation impressions, abandoned carts).
* **Sizes and returns.** A purchase is usually in the customer's true size, sometimes one off, and
  always a size the item offers; a wrong size is usually returned a few days later as
  ``too_small`` / ``too_large``; a few right-size purchases come back for other reasons.

Same arguments → byte-identical Parquet files (``synthetic.json`` differs only in ``seconds``).
Every random stream is a numpy ``Generator`` seeded from ``SeedSequence(seed, spawn_key=...)``:
one stream for the catalog, one for stock, one per block of :data:`BLOCK_CUSTOMERS` customers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from .loaders import AGE_BANDS as _LOADER_AGE_BANDS
from .schema import (
    ONLINE_STORE,
    PRICE_BANDS,
    SEASONS,
    Category,
    Channel,
    CustomerCols,
    InteractionCols,
    InteractionType,
    ItemCols,
    ReturnReason,
    StockCols,
)

logger = logging.getLogger("lookbook.data")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BLOCK_CUSTOMERS: Final = 50_000
"""Customers generated (and interaction rows sorted) together; also one Parquet row group."""

AGE_BANDS: Final = _LOADER_AGE_BANDS[1:]  # synthetic customers are adults
LATENT_FILE: Final = "latent_customers.parquet"
REPORT_FILE: Final = "synthetic.json"

_SEED_CATALOG: Final = 1
_SEED_STOCK: Final = 2
_SEED_BLOCK: Final = 3
_SECONDS_PER_DAY: Final = 86_400
_EPOCH: Final = date(1970, 1, 1)

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

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

# Behaviour constants.
_P_BUY_ONLINE: Final = 0.45  # an online/app session ends in a purchase
_BROWSE_MEAN: Final = 1.2  # Poisson mean of browsed (not bought) items per online session
_P_REC_BROWSE: Final = 0.25  # a browsed item was shown by a recommendation
_P_CLICK_REC: Final = 0.35
_P_CLICK_ORGANIC: Final = 0.5
_P_WISH: Final = 0.04
_P_CART_BROWSE: Final = 0.10
_P_REC_PURCHASE: Final = 0.12
_P_VIEW_PURCHASE: Final = 0.85
_P_CART_PURCHASE: Final = 0.9
_P_WISH_PURCHASE: Final = 0.03
_SIZE_OFFSETS: Final = np.array([-2, -1, 0, 1, 2])
_SIZE_OFFSET_P: Final = np.array([0.02, 0.10, 0.78, 0.08, 0.02])
_P_SIZE_RETURN: Final = np.array([0.03, 0.55, 0.8])  # by |bought - true| = 0, 1, >=2
_P_OTHER_RETURN_ONLINE: Final = 0.07
_P_OTHER_RETURN_STORE: Final = 0.025
_OTHER_REASONS: Final = (
    ReturnReason.NOT_AS_DESCRIBED,
    ReturnReason.QUALITY,
    ReturnReason.CHANGED_MIND,
    ReturnReason.OTHER,
)
_OTHER_REASON_P: Final = np.array([0.3, 0.25, 0.35, 0.1])
_REASONS: Final = (ReturnReason.TOO_SMALL, ReturnReason.TOO_LARGE, *_OTHER_REASONS)
_APPROX_RETURN_RATE: Final = 0.17
_P_OFF_SEASON: Final = 0.1
_MAX_ROUNDS: Final = 30
_CHANNELS: Final = (Channel.ONLINE, Channel.APP, Channel.STORE)
_CHANNEL_ALPHA: Final = np.array([2.0, 1.4, 1.0])
_HOURS_ONLINE: Final = np.array(
    [1, .6, .4, .3, .3, .4, .8, 1.5, 2.2, 2.5, 2.6, 2.8, 3.2, 3.2, 2.8, 2.7, 2.8, 3.2, 3.8, 4.5,
     5, 4.6, 3.5, 2]
)  # fmt: skip
_HOURS_STORE: Final = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 4, 4, 4, 4, 4.5, 5, 4.5, 2.5, 0, 0, 0, 0], dtype=np.float64
)
# Event kinds of one item "slot", in the order they happen, and their offset after the slot time.
_KINDS: Final = (
    InteractionType.IMPRESSION,
    InteractionType.CLICK,
    InteractionType.VIEW,
    InteractionType.WISHLIST,
    InteractionType.ADD_TO_CART,
    InteractionType.PURCHASE,
    InteractionType.RETURN,
)
_K_IMP, _K_CLICK, _K_VIEW, _K_WISH, _K_CART, _K_BUY, _K_RET = range(7)
_KIND_OFFSET: Final = np.array([0, 2, 5, 25, 40, 0, 0], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _choice(rng: np.random.Generator, p: npt.ArrayLike, size: int) -> IntArray:
    """``size`` draws of indices with probabilities ``p`` (normalised)."""
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _choice_rows(rng: np.random.Generator, weights: FloatArray) -> IntArray:
    """One index per row of ``weights`` (rows need not be normalised)."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cdf[:, -1]
    out = (cdf <= u[:, None]).sum(axis=1)
    return np.minimum(out, weights.shape[1] - 1).astype(np.int64)


def _segment_starts(counts: IntArray) -> IntArray:
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _rank_in_segment(counts: IntArray) -> IntArray:
    """0, 1, .. within each segment of a flat array made by ``np.repeat(..., counts)``."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(_segment_starts(counts), counts)


def _strings(values: list[str] | tuple[str, ...]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _take(dictionary: pa.Array, indices: IntArray, mask: BoolArray | None = None) -> pa.Array:
    """``dictionary[indices]`` as a plain string array; ``mask`` True → null."""
    idx = pa.array(indices, type=pa.int64(), mask=mask)
    return pc.take(dictionary, idx)


def _join(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _season_of_month(month: IntArray) -> IntArray:
    """Meteorological seasons of the northern hemisphere, as indices into ``schema.SEASONS``."""
    lookup = np.array([3, 3, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3], dtype=np.int64)  # Jan..Dec
    return lookup[month - 1]


def _calendar(days: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(year, month 1..12, day of month, weekday 0=Monday) of epoch day numbers."""
    d64 = days.astype("datetime64[D]")
    years = d64.astype("datetime64[Y]")
    months = d64.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = (months - years).astype(np.int64) + 1
    dom = (d64 - months).astype(np.int64) + 1
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return year, month, dom, weekday


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


@dataclass
class _Catalog:
    n: int
    ids: pa.Array
    category: IntArray
    styles: BoolArray  # (n, len(STYLES))
    seasons: BoolArray  # (n, 4)
    colour: IntArray
    band: IntArray
    price: FloatArray
    launch: IntArray  # epoch day
    scale: IntArray
    size_lo: IntArray
    size_hi: IntArray
    slot: IntArray  # true-size slot, -1 for one-size items
    popularity: FloatArray
    table: pa.Table


def _allocate(total: int, shares: tuple[float, ...]) -> IntArray:
    """Largest-remainder split of ``total`` by ``shares`` (every share gets >= 1 when possible)."""
    raw = np.asarray(shares, dtype=np.float64) / sum(shares) * total
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    if total >= len(shares):
        for i in np.flatnonzero(counts == 0):
            j = int(np.argmax(counts))
            counts[j] -= 1
            counts[i] += 1
    return counts


def _make_catalog(n_items: int, seed: int, start_day: int, end_day: int) -> _Catalog:
    rng = _rng(seed, _SEED_CATALOG)
    n = n_items
    cat_counts = _allocate(n, _CATEGORY_SHARE)
    category = np.repeat(np.arange(len(CATEGORIES), dtype=np.int64), cat_counts)

    # Product type within category, by weight.
    ptype = np.empty(n, dtype=np.int64)
    for ci, cat in enumerate(CATEGORIES):
        members = [i for i, t in enumerate(PRODUCT_TYPES) if t.category == cat]
        weights = np.array([PRODUCT_TYPES[i].weight for i in members])
        rows = np.flatnonzero(category == ci)
        ptype[rows] = np.asarray(members)[_choice(rng, weights, len(rows))]
    perm = rng.permutation(n)  # shuffle so ids do not follow categories
    category, ptype = category[perm], ptype[perm]

    n_types = len(PRODUCT_TYPES)
    n_styles, n_mat = len(STYLES), len(MATERIALS)
    type_mat = np.zeros((n_types, n_mat))
    type_style = np.zeros((n_types, n_styles), dtype=bool)
    type_season = np.zeros((n_types, 4), dtype=bool)
    for ti, t in enumerate(PRODUCT_TYPES):
        for m, w in t.materials.items():
            type_mat[ti, _MAT[m]] = w
        for s in t.styles:
            type_style[ti, _STYLE[s]] = True
        for z in t.seasons:
            type_season[ti, _SEASON[z]] = True

    material = _choice_rows(rng, type_mat[ptype])

    # Styles: one or two of the type's styles.
    style_w = type_style[ptype].astype(np.float64) * rng.random((n, n_styles))
    first = np.argmax(style_w, axis=1)
    styles = np.zeros((n, n_styles), dtype=bool)
    styles[np.arange(n), first] = True
    style_w[np.arange(n), first] = 0.0
    second = np.argmax(style_w, axis=1)
    add_second = (style_w[np.arange(n), second] > 0) & (rng.random(n) < 0.45)
    styles[np.flatnonzero(add_second), second[add_second]] = True

    # Seasons: the type's, moved by the material.
    seasons = type_season[ptype].copy()
    warm = np.array([True, True, False, False])
    cold = ~warm
    for mats, keep in ((("linen",), warm), (("wool", "cashmere"), cold)):
        made_of = np.isin(material, [_MAT[m] for m in mats])
        narrowed = seasons[made_of] & keep
        empty = ~narrowed.any(axis=1)
        narrowed[empty] = keep & np.array([False, True, False, True])  # summer / winter
        seasons[made_of] = narrowed

    # Colours: base weights × material palette × season palette.
    n_col = len(COLOURS)
    col_w = np.tile(_COLOUR_BASE, (n, 1))
    for mat, palette in _MATERIAL_COLOURS.items():
        made_of = material == _MAT[mat]
        if made_of.any():
            material_w = np.zeros(n_col)
            for c, v in palette.items():
                material_w[_COL[c]] = v
            col_w[made_of] = material_w
    only_cold = ~seasons[:, 0] & ~seasons[:, 1]
    only_warm = ~seasons[:, 2] & ~seasons[:, 3]
    for season_rows, boost in ((only_cold, _WINTER_COLOURS), (only_warm, _SUMMER_COLOURS)):
        boosted = np.array([_COL[c] for c in boost], dtype=np.int64)
        col_w[np.ix_(np.flatnonzero(season_rows), boosted)] *= 2.5
    colour = _choice_rows(rng, col_w)

    # Patterns by category; boho likes florals; denim, leather, metal stay plain.
    pat_w = np.array([_PATTERN_BY_CATEGORY[CATEGORIES[c]] for c in category], dtype=np.float64)
    pat_w[styles[:, _STYLE["boho"]], _PAT["floral"]] *= 3.0
    plain = np.isin(material, [_MAT[m] for m in ("denim", "leather", "suede", "metal")])
    pat_w[plain, 1:] *= 0.05
    pattern = _choice_rows(rng, pat_w)

    # Price band and price.
    band = _choice(rng, _PRICE_BAND_SHARE, n)
    mat_factor = np.ones(n_mat)
    for m, f in _MATERIAL_PRICE.items():
        mat_factor[_MAT[m]] = f
    base = np.array([t.price for t in PRODUCT_TYPES])[ptype]
    raw = base * _PRICE_BAND_FACTOR[band] * mat_factor[material] * rng.lognormal(0.0, 0.12, n)
    price = np.where(raw >= 10, np.round(raw) - 0.01, np.round(raw * 2) / 2 - 0.01)
    price = np.maximum(price, 2.99)

    # Launch dates: a back catalogue before the period, the rest spread over it; seasonal items
    # land shortly before or during one of their seasons.
    launch = np.empty(n, dtype=np.int64)
    back = rng.random(n) < 0.25
    launch[back] = rng.integers(start_day - 540, start_day, int(back.sum()))
    rest = np.flatnonzero(~back)
    cand = rng.integers(start_day, end_day + 1, len(rest))
    seasonal = ~seasons[rest].all(axis=1)
    for _ in range(8):
        _, month, _, _ = _calendar(cand + 45)
        ok = seasons[rest, _season_of_month(month)] | ~seasonal
        if ok.all():
            break
        redo = np.flatnonzero(~ok)
        cand[redo] = rng.integers(start_day, end_day + 1, len(redo))
    launch[rest] = cand

    # Sizes offered: a contiguous range of the type's scale.
    scale = np.array([_SCALE[t.scale] for t in PRODUCT_TYPES])[ptype]
    size_lo = np.zeros(n, dtype=np.int64)
    size_hi = np.zeros(n, dtype=np.int64)
    for si, sname in enumerate(_SCALE_NAMES):
        rows = np.flatnonzero(scale == si)
        los, his = _SCALE_RANGE[sname]
        size_lo[rows] = np.asarray(los)[rng.integers(0, len(los), len(rows))]
        size_hi[rows] = np.asarray(his)[rng.integers(0, len(his), len(rows))]
    slot_of = np.full((len(CATEGORIES), len(_SCALE_NAMES)), -1, dtype=np.int64)
    for (cname, sname), k in _SLOT.items():
        slot_of[_CAT[Category(cname)], _SCALE[sname]] = k
    slot = slot_of[category, scale]

    popularity = rng.lognormal(0.0, 1.3, n)

    width = max(6, len(str(n)))
    ids = pa.array([f"I{i:0{width}d}" for i in range(1, n + 1)], type=pa.string())
    table = _items_table(
        ids,
        category,
        ptype,
        styles,
        colour,
        material,
        pattern,
        seasons,
        price,
        band,
        launch,
        scale,
        size_lo,
        size_hi,
        rng,
    )
    return _Catalog(
        n=n,
        ids=ids,
        category=category,
        styles=styles,
        seasons=seasons,
        colour=colour,
        band=band,
        price=price,
        launch=launch,
        scale=scale,
        size_lo=size_lo,
        size_hi=size_hi,
        slot=slot,
        popularity=popularity,
        table=table,
    )


def _list_array(mask: BoolArray, labels: tuple[str, ...]) -> pa.Array:
    """A list<string> column from a boolean membership matrix (columns in ``labels`` order)."""
    _, cols = np.nonzero(mask)
    offsets = np.zeros(mask.shape[0] + 1, dtype=np.int32)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), _take(_strings(labels), cols))


def _items_table(
    ids: pa.Array,
    category: IntArray,
    ptype: IntArray,
    styles: BoolArray,
    colour: IntArray,
    material: IntArray,
    pattern: IntArray,
    seasons: BoolArray,
    price: FloatArray,
    band: IntArray,
    launch: IntArray,
    scale: IntArray,
    size_lo: IntArray,
    size_hi: IntArray,
    rng: np.random.Generator,
) -> pa.Table:
    n = len(category)
    fit = rng.integers(0, 5, n)
    names: list[str] = []
    descriptions: list[str] = []
    for i in range(n):
        t = PRODUCT_TYPES[int(ptype[i])]
        col = COLOURS[int(colour[i])]
        mat = MATERIALS[int(material[i])]
        pat = PATTERNS[int(pattern[i])]
        pat_word = "" if pat == "solid" else f"{pat} "
        mat_word = "" if len(t.materials) == 1 else f"{mat} "
        name = f"{col} {pat_word}{mat_word}{t.name}"
        names.append(name[0].upper() + name[1:])
        item_styles = [s for s, on in zip(STYLES, styles[i], strict=True) if on]
        item_seasons = [z for z, on in zip(SEASONS, seasons[i], strict=True) if on]
        season_text = "all year round" if len(item_seasons) == 4 else _join(item_seasons)
        pattern_text = "" if pat == "solid" else f" with a {pat} pattern"
        descriptions.append(
            f"{_FIT_WORDS[t.category][int(fit[i])]} {t.name} in {col} {mat}{pattern_text}. "
            f"A {_join(item_styles)} piece for {season_text}."
        )
    # Sizes offered: labels of scale[lo..hi].
    scale_base = np.zeros(len(_SCALE_NAMES), dtype=np.int64)
    np.cumsum([len(SIZE_SCALES[s]) for s in _SCALE_NAMES[:-1]], out=scale_base[1:])
    all_labels = tuple(label for s in _SCALE_NAMES for label in SIZE_SCALES[s])
    counts = size_hi - size_lo + 1
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = np.repeat(scale_base[scale] + size_lo, counts) + _rank_in_segment(counts)
    sizes = pa.ListArray.from_arrays(pa.array(offsets), _take(_strings(all_labels), values))
    cat_names = _strings(tuple(c.value for c in CATEGORIES))
    columns: dict[str, pa.Array] = {
        ItemCols.ID: ids,
        ItemCols.NAME: pa.array(names, type=pa.string()),
        ItemCols.CATEGORY: _take(cat_names, category),
        ItemCols.PRODUCT_TYPE: _take(_strings(tuple(t.name for t in PRODUCT_TYPES)), ptype),
        ItemCols.STYLES: _list_array(styles, STYLES),
        ItemCols.COLOUR: _take(_strings(COLOURS), colour),
        ItemCols.MATERIAL: _take(_strings(MATERIALS), material),
        ItemCols.PATTERN: _take(_strings(PATTERNS), pattern),
        ItemCols.SEASONS: _list_array(seasons, SEASONS),
        ItemCols.PRICE: pa.array(price, type=pa.float64()),
        ItemCols.PRICE_BAND: _take(_strings(PRICE_BANDS), band),
        ItemCols.LAUNCH_DATE: pa.array(launch.astype(np.int32), type=pa.int32()).cast(pa.date32()),
        ItemCols.SIZES: sizes,
        ItemCols.DESCRIPTION: pa.array(descriptions, type=pa.string()),
    }
    return pa.table({c: columns[c] for c in ItemCols.ALL})


# --------------------------------------------------------------------------------------------
# Stock
# --------------------------------------------------------------------------------------------


def _store_ids(stores: int) -> pa.Array:
    width = max(3, len(str(stores)))
    return pa.array(
        [ONLINE_STORE, *(f"store-{i:0{width}d}" for i in range(1, stores + 1))], type=pa.string()
    )


def _make_stock(cat: _Catalog, stores: int, seed: int, end_day: int) -> pa.Table:
    """Units on hand at ``end_date`` per (item, store, size): online carries every item, each
    physical store a subset; middle sizes are deeper; older items are mostly sold through."""
    rng = _rng(seed, _SEED_STOCK)
    n = cat.n
    age = np.maximum(end_day - cat.launch, 0)
    carry_rate = np.concatenate([[1.0], rng.uniform(0.2, 0.5, stores)])
    if stores:
        carry_rate[1] = 0.7  # the flagship
    recency = np.where(age < 365, 1.0, 0.35)
    carried = rng.random((n, stores + 1)) < carry_rate[None, :] * recency[:, None]
    carried[:, 0] = True
    pair_item, pair_store = np.nonzero(carried)
    counts = cat.size_hi[pair_item] - cat.size_lo[pair_item] + 1
    row_item = np.repeat(pair_item, counts)
    row_store = np.repeat(pair_store, counts)
    size_idx = np.repeat(cat.size_lo[pair_item], counts) + _rank_in_segment(counts)
    scale_len = np.array([len(SIZE_SCALES[s]) for s in _SCALE_NAMES])[cat.scale[row_item]]
    centre = (scale_len - 1) / 2.0
    curve = np.exp(-(((size_idx - centre) / np.maximum(scale_len / 3.0, 1.0)) ** 2))
    depth = np.where(row_store == 0, 30.0, 4.0)
    fresh = 0.25 + 0.75 * np.exp(-age[row_item] / 200.0)
    mean = depth * curve * fresh * cat.popularity[row_item] ** 0.3
    quantity = rng.poisson(mean)
    quantity[rng.random(len(quantity)) < 0.08] = 0  # sold out in that store
    scale_base = np.zeros(len(_SCALE_NAMES), dtype=np.int64)
    np.cumsum([len(SIZE_SCALES[s]) for s in _SCALE_NAMES[:-1]], out=scale_base[1:])
    all_labels = tuple(label for s in _SCALE_NAMES for label in SIZE_SCALES[s])
    return pa.table(
        {
            StockCols.ITEM_ID: pc.take(cat.ids, pa.array(row_item)),
            StockCols.STORE_ID: _take(_store_ids(stores), row_store),
            StockCols.SIZE: _take(_strings(all_labels), scale_base[cat.scale[row_item]] + size_idx),
            StockCols.QUANTITY: pa.array(quantity.astype(np.int64)),
        }
    )


# --------------------------------------------------------------------------------------------
# Item pools: items by (category, style, season), each sorted by launch date, so that "launched
# by day d" is a prefix and a popularity-weighted draw is one searchsorted.
# --------------------------------------------------------------------------------------------


@dataclass
class _Pools:
    entry_item: IntArray
    comp: IntArray  # key * span + (launch - base), sorted
    start: IntArray  # first entry of each key; start[key + 1] is one past its last
    cum0: FloatArray  # cumulative popularity with a leading 0
    base: int
    span: int
    key_b: int
    key_c: int
    key_d: int


def _make_pools(cat: _Catalog, end_day: int) -> _Pools:
    n_c, n_s, n_z = len(CATEGORIES), len(STYLES), 4
    key_b = n_c * n_s * n_z
    key_c = key_b + n_c * n_z
    key_d = key_c + n_c * n_s
    n_keys = key_d + n_c
    items_a, s_a, z_a = np.nonzero(cat.styles[:, :, None] & cat.seasons[:, None, :])
    items_b, z_b = np.nonzero(cat.seasons)
    items_c, s_c = np.nonzero(cat.styles)
    items_d = np.arange(cat.n, dtype=np.int64)
    c = cat.category
    entry_item = np.concatenate([items_a, items_b, items_c, items_d]).astype(np.int64)
    entry_key = np.concatenate(
        [
            (c[items_a] * n_s + s_a) * n_z + z_a,
            key_b + c[items_b] * n_z + z_b,
            key_c + c[items_c] * n_s + s_c,
            key_d + c[items_d],
        ]
    ).astype(np.int64)
    base = int(cat.launch.min())
    span = end_day - base + 2
    comp = entry_key * span + (cat.launch[entry_item] - base)
    order = np.lexsort((entry_item, comp))
    entry_item, comp, entry_key = entry_item[order], comp[order], entry_key[order]
    start = np.searchsorted(entry_key, np.arange(n_keys + 1), side="left").astype(np.int64)
    cum0 = np.concatenate([[0.0], np.cumsum(cat.popularity[entry_item])])
    return _Pools(entry_item, comp, start, cum0, base, span, key_b, key_c, key_d)


def _pick_items(
    rng: np.random.Generator,
    cat: _Catalog,
    pools: _Pools,
    category: IntArray,
    style: IntArray,
    season: IntArray,
    day: IntArray,
    off_season: BoolArray,
    palette: IntArray,
    cust_band: IntArray,
    soft: BoolArray,
) -> IntArray:
    """One item per slot, or -1 when nothing of the category is launched by ``day``.

    Candidates are the launched items of (category, style, season), falling back to (category,
    season), (category, style) and (category); off-season slots skip the season. A candidate is
    drawn by popularity and accepted with a probability that rewards the customer's colours and
    price band and newness (square-rooted for ``soft`` slots — browsing is more exploratory).
    """
    n_s = len(STYLES)
    keys = np.stack(
        [
            (category * n_s + style) * 4 + season,
            pools.key_b + category * 4 + season,
            pools.key_c + category * n_s + style,
            pools.key_d + category,
        ]
    )
    lo = np.zeros(len(category), dtype=np.int64)
    hi = np.zeros(len(category), dtype=np.int64)
    found = np.zeros(len(category), dtype=bool)
    rel = np.clip(day - pools.base, -1, pools.span - 1)
    for level in range(4):
        k = keys[level]
        s = pools.start[k]
        e = np.searchsorted(pools.comp, k * pools.span + rel, side="right")
        usable = ~found & (e > s)
        if level < 2:
            usable &= ~off_season
        lo[usable], hi[usable] = s[usable], e[usable]
        found |= usable
    item = np.full(len(category), -1, dtype=np.int64)
    pending = np.flatnonzero(found)
    colour_bit = np.int64(1) << cat.colour
    neutral = np.isin(np.arange(len(COLOURS)), [_COL[c] for c in _NEUTRALS])
    band_factor = np.array([1.0, 0.35, 0.08, 0.02])
    for round_ in range(_MAX_ROUNDS):
        if len(pending) == 0:
            break
        a, b = lo[pending], hi[pending]
        target = pools.cum0[a] + rng.random(len(pending)) * (pools.cum0[b] - pools.cum0[a])
        j = np.clip(np.searchsorted(pools.cum0, target, side="right") - 1, a, b - 1)
        proposal = pools.entry_item[j]
        item[pending] = proposal
        if round_ == _MAX_ROUNDS - 1:
            break
        in_palette = (palette[pending] & colour_bit[proposal]) != 0
        colour_f = np.where(in_palette, 1.0, np.where(neutral[cat.colour[proposal]], 0.45, 0.12))
        band_f = band_factor[np.abs(cat.band[proposal] - cust_band[pending])]
        age = day[pending] - cat.launch[proposal]
        fresh_f = 0.35 + 0.65 * np.exp(-age / 200.0)
        accept = colour_f * band_f * fresh_f
        accept = np.where(soft[pending], np.sqrt(accept), accept)
        pending = pending[rng.random(len(pending)) >= accept]
    return item


# --------------------------------------------------------------------------------------------
# Calendar of traffic
# --------------------------------------------------------------------------------------------


@dataclass
class _Calendar:
    start_day: int
    end_day: int
    cdf: FloatArray  # cumulative traffic weight; cdf[i] = weight of days < start_day + i
    season: IntArray  # per day
    sale_p: FloatArray  # probability a purchase that day is discounted
    sale_rate: FloatArray


def _make_calendar(start_day: int, end_day: int) -> _Calendar:
    days = np.arange(start_day, end_day + 1, dtype=np.int64)
    _, month, dom, weekday = _calendar(days)
    w = np.ones(len(days))
    w *= np.where(weekday >= 5, 1.2, 1.0)
    christmas = ((month == 11) & (dom >= 20)) | ((month == 12) & (dom <= 23))
    w *= np.where(christmas, 1.5, 1.0)
    black_friday = (month == 11) & (weekday == 4) & (dom >= 23) & (dom <= 29)
    monday_after = (weekday == 0) & (((month == 11) & (dom >= 26)) | ((month == 12) & (dom <= 2)))
    w *= np.where(black_friday | monday_after, 3.0, 1.0)
    winter_sale = ((month == 12) & (dom >= 26)) | (month == 1)
    summer_sale = month == 7
    w *= np.where((winter_sale & (dom <= 10)) | (summer_sale & (dom <= 15)), 1.35, 1.0)
    w *= np.linspace(1.0, 1.2, len(days))  # the business grows
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    sale_p = np.where(winter_sale | summer_sale, 0.5, np.where(black_friday, 0.6, 0.0))
    sale_rate = np.where(black_friday, 0.8, 0.7)
    return _Calendar(start_day, end_day, cdf, _season_of_month(month), sale_p, sale_rate)


# --------------------------------------------------------------------------------------------
# Customers and their interactions, one block at a time
# --------------------------------------------------------------------------------------------


def _expected_basket() -> float:
    lengths = np.array([len(t) for t, _ in _TEMPLATES], dtype=np.float64)
    weights = np.array([w for _, w in _TEMPLATES], dtype=np.float64)
    per_season = (weights * lengths[:, None]).sum(axis=0) / weights.sum(axis=0)
    return float(per_season.mean())


def _expected_events_per_session(p_store: float) -> float:
    """Mean interactions of one session under the behaviour constants (used to hit the requested
    interactions per customer on average)."""
    basket = _expected_basket()
    browse_slots = _BROWSE_MEAN + (1 - _P_BUY_ONLINE)
    browse_events = _P_REC_BROWSE * (1 + _P_CLICK_REC * (2 + _P_WISH + _P_CART_BROWSE)) + (
        1 - _P_REC_BROWSE
    ) * (_P_CLICK_ORGANIC + 1 + _P_WISH + _P_CART_BROWSE)
    view = _P_REC_PURCHASE + (1 - _P_REC_PURCHASE) * _P_VIEW_PURCHASE
    buy_events = 2 * _P_REC_PURCHASE + view + _P_WISH_PURCHASE + _P_CART_PURCHASE + 1
    online = browse_slots * browse_events + _P_BUY_ONLINE * basket * (
        buy_events + _APPROX_RETURN_RATE
    )
    store = basket * (1 + _APPROX_RETURN_RATE / 2)
    return p_store * store + (1 - p_store) * online


@dataclass
class _Params:
    seed: int
    stores: int
    interactions_per_customer: float
    id_width: int


def _generate_block(
    block: int,
    first: int,
    n: int,
    cat: _Catalog,
    pools: _Pools,
    cal: _Calendar,
    params: _Params,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Customers ``first .. first + n - 1`` (0-based): their rows of customers, latent truth and
    interactions (sorted by timestamp, then customer, then event order)."""
    rng = _rng(params.seed, _SEED_BLOCK, block)
    start_day, end_day = cal.start_day, cal.end_day
    n_days = end_day - start_day + 1
    stores = params.stores

    # --- customers -----------------------------------------------------------------------
    age_band = _choice(rng, _AGE_SHARE, n)
    existing = rng.random(n) < 0.4
    signup = np.where(
        existing,
        rng.integers(start_day - 3 * 365, start_day, n),
        rng.integers(start_day, end_day + 1, n),
    )
    active_from = np.maximum(signup, start_day)
    churn = rng.random(n) < 0.3
    active_to = np.where(
        churn, active_from + (rng.random(n) * (end_day - active_from)).astype(np.int64), end_day
    )
    consent = rng.random(n) < 0.9
    primary = _choice_rows(rng, _STYLE_BY_AGE[age_band])
    sec_w = _STYLE_BY_AGE[age_band].copy() + 0.02
    sec_w[np.arange(n), primary] = 0.0
    secondary = _choice_rows(rng, sec_w)
    primary_share = rng.uniform(0.55, 0.9, n)
    neutrals = np.array([_COL[c] for c in _NEUTRALS])
    neutral_pick = np.argsort(rng.random((n, len(neutrals))), axis=1)[:, :2]
    family = rng.integers(0, len(_ACCENT_FAMILIES), n)
    fam_cols = np.array([[_COL[c] for c in f] for f in _ACCENT_FAMILIES])
    accent_pick = np.argsort(rng.random((n, fam_cols.shape[1])), axis=1)[:, :2]
    palette_cols = np.concatenate(
        [neutrals[neutral_pick], fam_cols[family[:, None], accent_pick]], axis=1
    )
    palette = np.bitwise_or.reduce(np.int64(1) << palette_cols, axis=1)
    cust_band = _choice(rng, _PRICE_BAND_SHARE, n)
    alpha = _CHANNEL_ALPHA.copy()
    if stores == 0:
        alpha[2] = 1e-9
    channel_p = rng.dirichlet(alpha, n)
    if stores == 0:
        channel_p[:, 2] = 0.0
        channel_p /= channel_p.sum(axis=1, keepdims=True)
    home_store = rng.integers(1, stores + 1, n) if stores else np.zeros(n, dtype=np.int64)

    # True sizes: one body factor, category-specific noise.
    body = rng.standard_normal(n)
    lower = 0.85 * body + 0.53 * rng.standard_normal(n)

    def letter(x: FloatArray, noise: float) -> IntArray:
        return np.clip(np.rint(2.1 + 1.1 * x + noise * rng.standard_normal(n)), 0, 5).astype(
            np.int64
        )

    true = np.zeros((n, len(TRUE_SIZE_SLOTS)), dtype=np.int64)
    top = letter(body, 0.25)
    true[:, _SLOT[("top", "letter")]] = top
    true[:, _SLOT[("outerwear", "letter")]] = np.minimum(top + (rng.random(n) < 0.12), 5)
    true[:, _SLOT[("dress", "letter")]] = letter(body, 0.35)
    true[:, _SLOT[("underwear", "letter")]] = top
    true[:, _SLOT[("swimwear", "letter")]] = letter(body, 0.3)
    true[:, _SLOT[("bottom", "letter")]] = letter(lower, 0.2)
    waist_values = np.array([float(v) for v in SIZE_SCALES["waist"]])
    waist = 30.5 + 3.2 * lower
    true[:, _SLOT[("bottom", "waist")]] = np.clip(
        np.searchsorted((waist_values[1:] + waist_values[:-1]) / 2, waist), 0, 10
    )
    true[:, _SLOT[("bottom", "eu_bottom")]] = np.clip(np.rint(2.6 + 1.5 * lower), 0, 6)
    true[:, _SLOT[("shoes", "shoe")]] = np.clip(
        np.rint(4.5 + 1.2 * body + 1.8 * rng.standard_normal(n)), 0, 10
    )
    true[:, _SLOT[("accessory", "sml")]] = np.array([0, 0, 1, 1, 2, 2])[top]

    # Activity: heavy-tailed, proportional to the time a customer is active.
    window = (active_to - active_from + 1).astype(np.float64)
    intensity = rng.lognormal(0.0, 1.0, n) * window
    intensity /= intensity.mean()
    p_store = float(_CHANNEL_ALPHA[2] / _CHANNEL_ALPHA.sum()) if stores else 0.0
    mean_sessions = params.interactions_per_customer / _expected_events_per_session(p_store)
    if mean_sessions >= 1.0:
        n_sessions = 1 + rng.poisson((mean_sessions - 1.0) * intensity)
    else:
        n_sessions = rng.poisson(mean_sessions * intensity)
    n_sessions = n_sessions.astype(np.int64)

    # --- sessions ------------------------------------------------------------------------
    sess_cust = np.repeat(np.arange(n, dtype=np.int64), n_sessions)
    n_sess = len(sess_cust)
    lo_cdf = cal.cdf[active_from[sess_cust] - start_day]
    hi_cdf = cal.cdf[active_to[sess_cust] - start_day + 1]
    u = lo_cdf + rng.random(n_sess) * (hi_cdf - lo_cdf)
    day_idx = np.clip(np.searchsorted(cal.cdf, u, side="right") - 1, 0, n_days - 1)
    day_idx = np.clip(day_idx, active_from[sess_cust] - start_day, active_to[sess_cust] - start_day)
    sess_day = start_day + day_idx
    sess_season = cal.season[day_idx]
    sess_channel = _choice_rows(rng, channel_p[sess_cust])
    in_store = sess_channel == 2
    at_home = rng.random(n_sess) < 0.85
    sess_store = np.where(
        in_store,
        np.where(at_home, home_store[sess_cust], rng.integers(1, max(stores, 1) + 1, n_sess)),
        0,
    )
    hours = np.where(
        in_store,
        _choice(rng, _HOURS_STORE, n_sess),
        _choice(rng, _HOURS_ONLINE, n_sess),
    )
    sess_start = sess_day * _SECONDS_PER_DAY + hours * 3600 + rng.integers(0, 3600, n_sess)
    sess_style = np.where(
        rng.random(n_sess) < primary_share[sess_cust], primary[sess_cust], secondary[sess_cust]
    )
    buys = in_store | (rng.random(n_sess) < _P_BUY_ONLINE)
    template_w = np.array([w for _, w in _TEMPLATES], dtype=np.float64)  # (templates, seasons)
    template = _choice_rows(rng, template_w.T[sess_season])
    template_len = np.array([len(t) for t, _ in _TEMPLATES], dtype=np.int64)
    template_cats = np.full((len(_TEMPLATES), _MAX_TEMPLATE), -1, dtype=np.int64)
    for ti, (cats, _) in enumerate(_TEMPLATES):
        template_cats[ti, : len(cats)] = [_CAT[c] for c in cats]
    n_buy = np.where(buys, template_len[template], 0)
    n_browse = np.where(in_store, 0, rng.poisson(_BROWSE_MEAN, n_sess) + (~buys).astype(np.int64))
    n_slots_s = n_buy + n_browse

    # --- item slots (browsed first, then the basket) ---------------------------------------
    slot_sess = np.repeat(np.arange(n_sess, dtype=np.int64), n_slots_s)
    rank = _rank_in_segment(n_slots_s)
    is_buy = rank >= n_browse[slot_sess]
    n_slots = len(slot_sess)
    season_cat_w = np.zeros((4, len(CATEGORIES)))
    for cats, w in _TEMPLATES:
        for c in cats:
            season_cat_w[:, _CAT[c]] += w
    slot_cat = np.where(
        is_buy,
        template_cats[template[slot_sess], np.maximum(rank - n_browse[slot_sess], 0)],
        _choice_rows(rng, season_cat_w[sess_season[slot_sess]]),
    )
    slot_cust = sess_cust[slot_sess]
    slot_day = sess_day[slot_sess]
    item = _pick_items(
        rng,
        cat,
        pools,
        slot_cat,
        sess_style[slot_sess],
        sess_season[slot_sess],
        slot_day,
        rng.random(n_slots) < _P_OFF_SEASON,
        palette[slot_cust],
        cust_band[slot_cust],
        ~is_buy,
    )
    keep = item >= 0
    slot_sess, is_buy, item = slot_sess[keep], is_buy[keep], item[keep]
    slot_cust, slot_day = slot_cust[keep], slot_day[keep]
    n_slots = len(item)
    slot_online = ~in_store[slot_sess]

    # Size: usually the true size, sometimes one off, always one the item offers.
    item_slot = cat.slot[item]
    sized = item_slot >= 0
    true_idx = np.where(sized, true[slot_cust, np.maximum(item_slot, 0)], 0)
    wish = true_idx + _SIZE_OFFSETS[_choice(rng, _SIZE_OFFSET_P, n_slots)]
    size_idx = np.where(sized, np.clip(wish, cat.size_lo[item], cat.size_hi[item]), 0)
    off = np.where(sized, size_idx - true_idx, 0)

    # Price paid: list price, discounted in sales for items older than two months.
    day_i = slot_day - start_day
    discounted = (rng.random(n_slots) < cal.sale_p[day_i]) & (slot_day - cat.launch[item] > 60)
    paid = np.round(cat.price[item] * np.where(discounted, cal.sale_rate[day_i], 1.0), 2)

    # Events of each slot.
    flags = np.zeros((n_slots, len(_KINDS)), dtype=bool)
    r = rng.random((n_slots, 8))
    buy_online = is_buy & slot_online
    browse = ~is_buy
    rec_b = browse & (r[:, 0] < _P_REC_BROWSE)
    rec_p = buy_online & (r[:, 0] < _P_REC_PURCHASE)
    from_rec = rec_b | rec_p
    clicked = np.where(rec_b, r[:, 1] < _P_CLICK_REC, browse & (r[:, 1] < _P_CLICK_ORGANIC))
    viewed = (browse & (~rec_b | clicked)) | rec_p | (buy_online & (r[:, 2] < _P_VIEW_PURCHASE))
    flags[:, _K_IMP] = from_rec
    flags[:, _K_CLICK] = clicked | rec_p
    flags[:, _K_VIEW] = viewed
    flags[:, _K_WISH] = (browse & viewed & (r[:, 3] < _P_WISH)) | (
        buy_online & (r[:, 3] < _P_WISH_PURCHASE)
    )
    flags[:, _K_CART] = (browse & viewed & (r[:, 4] < _P_CART_BROWSE)) | (
        buy_online & (r[:, 4] < _P_CART_PURCHASE)
    )
    flags[:, _K_BUY] = is_buy

    # Returns: a wrong size usually comes back with a size reason; some others for other reasons.
    p_size = _P_SIZE_RETURN[np.minimum(np.abs(off), 2)] * sized
    size_ret = is_buy & (r[:, 5] < p_size)
    p_other = np.where(slot_online, _P_OTHER_RETURN_ONLINE, _P_OTHER_RETURN_STORE)
    other_ret = is_buy & ~size_ret & (r[:, 6] < p_other)
    reason = np.where(
        off < 0,
        0,
        np.where(off > 0, 1, (r[:, 7] < 0.5).astype(np.int64)),  # right size: fit still varies
    )
    reason = np.where(other_ret, 2 + _choice(rng, _OTHER_REASON_P, n_slots), reason)
    returned = size_ret | other_ret
    delay = np.where(slot_online, 3 + rng.poisson(6, n_slots), 1 + rng.poisson(5, n_slots))

    # Timing: slots a minute or so apart, checkout after the last; stores check out at once.
    gaps = (rng.exponential(70.0, n_slots) + 5).astype(np.int64)
    slots_per_sess = np.bincount(slot_sess, minlength=n_sess).astype(np.int64)
    csum = np.cumsum(gaps)
    first_slot = _segment_starts(slots_per_sess)
    sess_base = np.zeros(n_sess, dtype=np.int64)
    has = slots_per_sess > 0
    sess_base[has] = csum[first_slot[has]] - gaps[first_slot[has]]
    slot_offset = csum - sess_base[slot_sess]
    last_offset = np.zeros(n_sess, dtype=np.int64)
    last_offset[has] = slot_offset[first_slot[has] + slots_per_sess[has] - 1]
    checkout = np.where(
        in_store,
        sess_start,
        sess_start + last_offset + 60 + rng.exponential(120.0, n_sess).astype(np.int64),
    )
    slot_time = sess_start[slot_sess] + np.where(slot_online, slot_offset, 0)
    buy_time = checkout[slot_sess]
    ret_hour = np.where(slot_online, rng.integers(0, 24, n_slots), rng.integers(10, 19, n_slots))
    ret_time = (
        (buy_time // _SECONDS_PER_DAY + delay) * _SECONDS_PER_DAY
        + ret_hour * 3600
        + rng.integers(0, 3600, n_slots)
    )
    end_ts = (end_day + 1) * _SECONDS_PER_DAY - 1
    flags[:, _K_RET] = returned & (ret_time <= end_ts)

    rec_ids = pa.array(
        [f"rec-{v:016x}" for v in rng.integers(0, 2**63 - 1, n_sess, dtype=np.int64)],
        type=pa.string(),
    )
    position = rng.integers(0, 12, n_slots)

    # --- expand to events ----------------------------------------------------------------
    ev_slot, ev_kind = np.nonzero(flags)
    ts = np.where(
        ev_kind == _K_BUY,
        buy_time[ev_slot],
        np.where(ev_kind == _K_RET, ret_time[ev_slot], slot_time[ev_slot] + _KIND_OFFSET[ev_kind]),
    )
    ts = np.where(ev_kind == _K_RET, ts, np.minimum(ts, end_ts))
    ev_cust = slot_cust[ev_slot]
    order = np.lexsort((ev_kind, ev_slot, ev_cust, ts))
    ev_slot, ev_kind, ts, ev_cust = ev_slot[order], ev_kind[order], ts[order], ev_cust[order]
    ev_sess = slot_sess[ev_slot]
    with_size = (ev_kind >= _K_CART) & (ev_kind <= _K_RET)
    with_rec = from_rec[ev_slot] & (ev_kind != _K_RET)
    is_return = ev_kind == _K_RET

    width = params.id_width
    cust_ids = pa.array(
        [f"C{i:0{width}d}" for i in range(first + 1, first + n + 1)], type=pa.string()
    )
    ev_item = item[ev_slot]
    scale_base = np.zeros(len(_SCALE_NAMES), dtype=np.int64)
    np.cumsum([len(SIZE_SCALES[s]) for s in _SCALE_NAMES[:-1]], out=scale_base[1:])
    all_labels = tuple(label for s in _SCALE_NAMES for label in SIZE_SCALES[s])
    interactions = pa.table(
        {
            InteractionCols.CUSTOMER_ID: pc.take(cust_ids, pa.array(ev_cust)),
            InteractionCols.ITEM_ID: pc.take(cat.ids, pa.array(ev_item)),
            InteractionCols.TYPE: _take(_strings(tuple(k.value for k in _KINDS)), ev_kind),
            InteractionCols.TIMESTAMP: pa.array(ts * 1_000_000, type=pa.timestamp("us", tz="UTC")),
            InteractionCols.CHANNEL: _take(
                _strings(tuple(c.value for c in _CHANNELS)), sess_channel[ev_sess]
            ),
            InteractionCols.SIZE: _take(
                _strings(all_labels),
                scale_base[cat.scale[ev_item]] + size_idx[ev_slot],
                ~with_size,
            ),
            InteractionCols.PRICE: pa.array(paid[ev_slot], type=pa.float64(), mask=~with_size),
            InteractionCols.STORE_ID: _take(_store_ids(stores), sess_store[ev_sess], ~with_size),
            InteractionCols.RETURN_REASON: _take(
                _strings(tuple(x.value for x in _REASONS)), reason[ev_slot], ~is_return
            ),
            InteractionCols.RECOMMENDATION_ID: _take(rec_ids, ev_sess, ~with_rec),
            InteractionCols.POSITION: pa.array(
                position[ev_slot].astype(np.int32), type=pa.int32(), mask=~with_rec
            ),
        }
    )

    customers = pa.table(
        {
            CustomerCols.ID: cust_ids,
            CustomerCols.AGE_BAND: _take(_strings(AGE_BANDS), age_band),
            CustomerCols.CONSENT_PERSONALIZATION: pa.array(consent, type=pa.bool_()),
            CustomerCols.SIGNUP_DATE: pa.array(signup.astype(np.int32), type=pa.int32()).cast(
                pa.date32()
            ),
        }
    )
    latent_cols: dict[str, pa.Array] = {
        "customer_id": cust_ids,
        "primary_style": _take(_strings(STYLES), primary),
        "secondary_style": _take(_strings(STYLES), secondary),
        "primary_style_share": pa.array(np.round(primary_share, 3)),
        "palette": _list_array(
            np.bitwise_and(palette[:, None] >> np.arange(len(COLOURS)), 1).astype(bool), COLOURS
        ),
        "price_band": _take(_strings(PRICE_BANDS), cust_band),
        "home_store": _take(_store_ids(stores), home_store),
    }
    for k, ((_, sname), col) in enumerate(zip(TRUE_SIZE_SLOTS, LATENT_SIZE_COLUMNS, strict=True)):
        latent_cols[col] = _take(_strings(SIZE_SCALES[sname]), true[:, k])
    return customers, pa.table(latent_cols), interactions


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


_FILES: Final = (
    "items.parquet",
    "stock.parquet",
    "customers.parquet",
    LATENT_FILE,
    "interactions.parquet",
)


def _write_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)


def generate(
    out_dir: Path,
    *,
    customers: int,
    items: int,
    seed: int = 42,
    stores: int = 8,
    interactions_per_customer: float = 10.0,
    end_date: date = date(2026, 10, 31),
    days: int = 730,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write a synthetic retailer in the own format into ``out_dir`` and return a small report.

    ``customers`` are ``C0000001`` .., ``items`` are ``I000001`` ..; ``stores`` physical stores
    (``store-001`` ..) besides ``online``; interactions fall in the ``days`` days ending on
    ``end_date`` (inclusive), about ``interactions_per_customer`` per customer on average
    (heavy-tailed). The same arguments always give byte-identical Parquet files.

    The report (also written to ``out_dir/synthetic.json`` with the parameters) holds the row
    counts of each table, interactions per type and the wall time in ``seconds``.
    """
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if items < len(CATEGORIES):
        raise ValueError(f"items must be >= {len(CATEGORIES)}, got {items}")
    if stores < 0:
        raise ValueError(f"stores must be >= 0, got {stores}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if not interactions_per_customer > 0:
        raise ValueError(f"interactions_per_customer must be > 0, got {interactions_per_customer}")

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    end_day = _day(end_date)
    start_day = end_day - days + 1

    cat = _make_catalog(items, seed, start_day, end_day)
    pools = _make_pools(cat, end_day)
    cal = _make_calendar(start_day, end_day)
    params = _Params(
        seed=seed,
        stores=stores,
        interactions_per_customer=float(interactions_per_customer),
        id_width=max(7, len(str(customers))),
    )

    tmp = {name: out_dir / f".{name}.tmp" for name in _FILES}
    _write_table(cat.table, tmp["items.parquet"])
    stock = _make_stock(cat, stores, seed, end_day)
    n_stock = stock.num_rows
    _write_table(stock, tmp["stock.parquet"])
    del stock

    type_counts = np.zeros(len(_KINDS), dtype=np.int64)
    kind_names = [k.value for k in _KINDS]
    n_interactions = 0
    writers: dict[str, pq.ParquetWriter] = {}
    progress = tqdm(
        total=customers, unit="customer", disable=not show_progress, desc="synthetic retailer"
    )
    try:
        for block, first in enumerate(range(0, customers, BLOCK_CUSTOMERS)):
            n = min(BLOCK_CUSTOMERS, customers - first)
            tables = _generate_block(block, first, n, cat, pools, cal, params)
            for name, table in zip(
                ("customers.parquet", LATENT_FILE, "interactions.parquet"), tables, strict=True
            ):
                if name not in writers:
                    writers[name] = pq.ParquetWriter(tmp[name], table.schema, compression="zstd")
                writers[name].write_table(table, row_group_size=max(table.num_rows, 1))
            inter = tables[2]
            n_interactions += inter.num_rows
            counts = pc.value_counts(inter.column(InteractionCols.TYPE))
            for entry in counts.to_pylist():
                type_counts[kind_names.index(entry["values"])] += entry["counts"]
            progress.update(n)
    finally:
        progress.close()
        for w in writers.values():
            w.close()
    for name, path in tmp.items():
        os.replace(path, out_dir / name)

    report: dict[str, Any] = {
        "items": items,
        "customers": customers,
        "interactions": n_interactions,
        "stock_rows": n_stock,
        "interactions_by_type": {
            k.value: int(type_counts[i]) for i, k in enumerate(_KINDS) if type_counts[i]
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    meta = {
        "generator": "feature_store.synthetic",
        "parameters": {
            "customers": customers,
            "items": items,
            "seed": seed,
            "stores": stores,
            "interactions_per_customer": interactions_per_customer,
            "end_date": end_date.isoformat(),
            "days": days,
        },
        "report": report,
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    logger.info(
        "synthetic retailer: %d items, %d customers, %d interactions, %d stock rows in %.1f s",
        items,
        customers,
        n_interactions,
        n_stock,
        report["seconds"],
    )
    return report
