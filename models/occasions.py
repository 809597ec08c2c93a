"""Occasions (work, party, date, wedding, everyday, vacation, sport) as item attributes: the one
table the kiosk's outfits (``app/kiosk.py``) and the occasion benchmarks read.

An occasion names the attribute values that suit it — style tags (the synthetic catalog's
``styles``), product-type words (matched as whole words in ``product_type``, so ``"dress"``
matches "cocktail dress" and RTR's "dress", ``"gown"`` matches "gown" and "ballgown") and
categories — each with a weight in (0, 1], and the values that do not suit it (``avoid``).
:func:`occasion_scores` turns the table into one score per item of a catalog frame, in [-1, 1]:
the best matching weight of the item's styles, product type and category, minus the best
matching ``avoid`` weight. A catalog without a column simply contributes nothing from it.

The scores are a prior, not a filter: the kiosk adds ``OCCASION_STRENGTH`` × the spread of a
slot's compatibility scores × the item's occasion score before ranking, so an outfit for a
wedding leans to gowns, heels and blazers without dropping a well-matched item that has no
occasion signal at all.

``RENTED_FOR`` maps Rent the Runway's ``rented_for`` values onto these occasions (its
"formal affair" is the wedding's dress code); ``benchmarks/kiosk_occasion_rtr.py`` measures the
table on them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.schema import ItemCols

__all__ = [
    "OCCASIONS",
    "OCCASION_STRENGTH",
    "RENTED_FOR",
    "Occasion",
    "all_occasion_scores",
    "occasion_scores",
    "parse_occasion",
]


@dataclass(frozen=True)
class Occasion:
    """What suits an occasion: weights per style tag, product-type word and category, and the
    values to avoid (same kinds, any of them)."""

    label: str
    styles: Mapping[str, float] = field(default_factory=dict)
    product_types: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)
    avoid: Mapping[str, float] = field(default_factory=dict)


OCCASIONS: Final[dict[str, Occasion]] = {
    "work": Occasion(
        "Work",
        styles={"business": 1.0, "classic": 0.7, "minimalist": 0.6},
        product_types={
            "blazer": 1.0, "shirt": 0.8, "blouse": 0.8, "trousers": 0.9, "chinos": 0.6,
            "loafers": 0.9, "trench coat": 0.7, "wool coat": 0.6, "tote bag": 0.8, "belt": 0.6,
            "tie": 0.7, "sheath": 1.0, "shift": 0.8, "shirt dress": 0.8, "shirtdress": 0.8,
            "pencil": 0.8, "suit": 1.0, "pants": 0.6,
        },
        avoid={
            "sport": 0.8, "streetwear": 0.4, "swimwear": 1.0, "hoodie": 0.8, "joggers": 0.8,
            "shorts": 0.6, "running shoes": 1.0, "cap": 0.6, "bikini": 1.0, "gown": 0.8,
        },
    ),
    "party": Occasion(
        "Party",
        styles={"party": 1.0, "streetwear": 0.4, "boho": 0.3},
        product_types={
            "cocktail dress": 1.0, "heels": 1.0, "crossbody bag": 0.7, "necklace": 0.8,
            "leather jacket": 0.7, "jumpsuit": 0.7, "mini": 0.9, "romper": 0.6, "sequin": 1.0,
            "clutch": 1.0, "blouse": 0.4, "skirt": 0.5, "dress": 0.6,
        },
        avoid={
            "sport": 0.8, "business": 0.3, "running shoes": 1.0, "socks": 1.0, "pyjamas": 1.0,
            "rain jacket": 0.8, "beanie": 0.6, "down jacket": 0.6,
        },
    ),
    "date": Occasion(
        "Date",
        styles={"party": 0.8, "classic": 0.6, "minimalist": 0.4, "boho": 0.5},
        product_types={
            "cocktail dress": 0.8, "summer dress": 0.6, "maxi dress": 0.6, "dress": 0.7,
            "ankle boots": 0.7, "heels": 0.8, "blouse": 0.7, "skirt": 0.6, "necklace": 0.7,
            "leather jacket": 0.6, "mini": 0.6, "midi": 0.6, "jeans": 0.4,
        },
        avoid={"sport": 0.8, "running shoes": 1.0, "hoodie": 0.6, "pyjamas": 1.0, "gown": 0.5},
    ),
    "wedding": Occasion(
        "Wedding",
        styles={"party": 0.8, "classic": 0.8},
        product_types={
            "gown": 1.0, "ballgown": 1.0, "cocktail dress": 0.9, "maxi": 0.8, "maxi dress": 0.8,
            "midi": 0.7, "heels": 1.0, "blazer": 0.6, "necklace": 0.8, "tie": 0.8,
            "crossbody bag": 0.5, "clutch": 0.9, "suit": 0.8, "dress": 0.6,
        },
        avoid={
            "sport": 1.0, "streetwear": 0.8, "casual": 0.3, "jeans": 1.0, "hoodie": 1.0,
            "sneakers": 0.8, "running shoes": 1.0, "t-shirt": 0.8, "shorts": 1.0, "cap": 1.0,
            "beanie": 0.8, "joggers": 1.0, "leggings": 0.8, "down jacket": 0.6, "parka": 0.6,
        },
    ),
    "everyday": Occasion(
        "Everyday",
        styles={"casual": 1.0, "minimalist": 0.7, "streetwear": 0.6, "classic": 0.4},
        product_types={
            "t-shirt": 1.0, "jeans": 1.0, "sneakers": 1.0, "hoodie": 0.7, "sweater": 0.7,
            "denim jacket": 0.8, "tote bag": 0.7, "cardigan": 0.6, "tee": 1.0, "top": 0.6,
            "shift": 0.5, "sweatshirt": 0.7,
        },
        avoid={"gown": 1.0, "ballgown": 1.0, "cocktail dress": 0.8, "heels": 0.4, "tie": 0.6},
    ),
    "vacation": Occasion(
        "Vacation",
        styles={"boho": 1.0, "casual": 0.7},
        categories={"swimwear": 0.9},
        product_types={
            "summer dress": 1.0, "maxi dress": 0.9, "maxi": 0.8, "sandals": 1.0, "shorts": 0.9,
            "sunglasses": 1.0, "tank top": 0.8, "cap": 0.6, "linen": 0.6, "kaftan": 1.0,
            "caftan": 1.0, "romper": 0.8, "tote bag": 0.5,
        },
        avoid={
            "business": 0.6, "tie": 1.0, "wool coat": 0.8, "down jacket": 0.8, "gloves": 0.8,
            "gown": 0.6, "blazer": 0.5,
        },
    ),
    "sport": Occasion(
        "Sport",
        styles={"sport": 1.0, "streetwear": 0.3},
        product_types={
            "running shoes": 1.0, "leggings": 1.0, "joggers": 0.9, "hoodie": 0.7,
            "tank top": 0.8, "sneakers": 0.8, "cap": 0.7, "rain jacket": 0.6, "swimsuit": 0.7,
            "socks": 0.5, "legging": 1.0, "sweatshirt": 0.7,
        },
        avoid={
            "party": 0.8, "business": 0.8, "heels": 1.0, "loafers": 0.8, "tie": 1.0,
            "cocktail dress": 1.0, "gown": 1.0, "blazer": 0.8, "wool coat": 0.8, "necklace": 0.6,
        },
    ),
}  # fmt: skip

#: Rent the Runway's ``rented_for`` values → occasions ("other" and missing → none).
RENTED_FOR: Final[dict[str, str]] = {
    "work": "work",
    "party": "party",
    "date": "date",
    "wedding": "wedding",
    "formal affair": "wedding",
    "everyday": "everyday",
    "vacation": "vacation",
}

#: The occasion prior's weight, in units of the spread (standard deviation) of a slot's scores.
OCCASION_STRENGTH: Final = 1.0


def parse_occasion(raw: str | None) -> str | None:
    """An occasion's key from what a caller typed (case, spaces and ``-`` ignored), None for
    none; ``ValueError`` naming the known ones otherwise."""
    if raw is None:
        return None
    key = raw.strip().lower().replace("-", " ")
    if not key:
        return None
    if key not in OCCASIONS:
        raise ValueError(f"occasion: must be one of {', '.join(OCCASIONS)}, got {raw!r}")
    return key


def _words(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z-]){re.escape(text)}(?![a-z-])")


def _best(values: list[str], weights: Mapping[str, float]) -> float:
    """The largest weight whose key is one of ``values`` or a whole-word part of one."""
    best = 0.0
    for key, weight in weights.items():
        if weight <= best:
            continue
        pattern = _words(key)
        if any(v == key or pattern.search(v) for v in values):
            best = weight
    return best


def _cell_values(cell: Any) -> list[str]:
    if cell is None:
        return []
    if isinstance(cell, str):
        return [cell.strip().lower()] if cell.strip() else []
    if isinstance(cell, list | tuple | np.ndarray):
        return [str(v).strip().lower() for v in cell if isinstance(v, str) and v.strip()]
    return []


def _factorized(frame: pd.DataFrame, column: str) -> tuple[npt.NDArray[np.intp], list[list[str]]]:
    """Per row a code, and per code the cell's normalised values (string or list cells)."""
    cells = frame[column].tolist()
    if any(isinstance(v, list | tuple | np.ndarray) for v in cells):
        lists = (list | tuple | np.ndarray,)
        cells = ["\x1f".join(map(str, v)) if isinstance(v, lists) else v for v in cells]
    codes, uniques = pd.factorize(pd.Series(cells, dtype=object), use_na_sentinel=True)
    values = [_cell_values(str(u).split("\x1f")) for u in uniques]
    return codes, values


def occasion_scores(frame: pd.DataFrame, occasion: str) -> npt.NDArray[np.float32]:
    """One score per row of the catalog ``frame`` for ``occasion`` (a key of :data:`OCCASIONS`):
    the best weight among the item's styles, product type and category that suit it, minus the
    best weight among them that it should avoid, in [-1, 1]."""
    return all_occasion_scores(frame, [occasion])[occasion]


def all_occasion_scores(
    frame: pd.DataFrame, occasions: Sequence[str] | None = None
) -> dict[str, npt.NDArray[np.float32]]:
    """:func:`occasion_scores` of several occasions (default: all) at once: each column is
    factorized once and each distinct value scored once per occasion."""
    names = list(OCCASIONS) if occasions is None else list(occasions)
    n = len(frame)
    columns = [
        (c, _factorized(frame, c))
        for c in (ItemCols.STYLES, ItemCols.PRODUCT_TYPE, ItemCols.CATEGORY)
        if c in frame.columns and n
    ]
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name in names:
        spec = OCCASIONS[name]
        wanted = {
            ItemCols.STYLES: spec.styles,
            ItemCols.PRODUCT_TYPE: spec.product_types,
            ItemCols.CATEGORY: spec.categories,
        }
        good = np.zeros(n, dtype=np.float32)
        bad = np.zeros(n, dtype=np.float32)
        for column, (codes, values) in columns:
            per_good = np.array([_best(v, wanted[column]) for v in values] + [0.0], np.float32)
            per_bad = np.array([_best(v, spec.avoid) for v in values] + [0.0], np.float32)
            at = np.where(codes >= 0, codes, len(values))
            good = np.maximum(good, per_good[at])
            bad = np.maximum(bad, per_bad[at])
        out[name] = np.clip(good - bad, -1.0, 1.0).astype(np.float32)
    return out


def occasion_bonus(
    scores: npt.NDArray[np.floating[Any]], occasion_of_items: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The occasion's additive bonus for candidates with ``scores`` (any scale) and their
    :func:`occasion_scores`: ``OCCASION_STRENGTH`` × the spread (standard deviation) of the
    scores × the occasion score, so the prior weighs the same whatever the ranking's scale. The
    kiosk and the occasion benchmark rank by ``scores + occasion_bonus(scores, …)``."""
    spread = float(np.std(scores)) if len(scores) > 1 else 1.0
    return (OCCASION_STRENGTH * max(spread, 1e-3) * occasion_of_items).astype(np.float32)
