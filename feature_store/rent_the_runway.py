"""The Rent the Runway dataset adapter: ``cleandata.parquet`` as a :class:`Dataset`.

    from feature_store.rent_the_runway import is_rent_the_runway, load_rtr

    if is_rent_the_runway(path):
        dataset = load_rtr(path)  # a folder holding cleandata.parquet, or the file itself

Each rental is a purchase dated by its review date, in the customer's RTR size; items carry RTR's
category as product type and a Lookbook category mapped from it.

    from feature_store.rent_the_runway import load_rtr_fit

    rentals = load_rtr_fit(path)  # one row per rental with its fit verdict, for size-fit models

:func:`load_rtr_fit` gives each rental's fit verdict (``small`` / ``fit`` / ``large``: the size was
too small, fitted, was too large), the RTR size, the item's RTR category, the review date and the
customer's body measurements as given with that review (height, weight, bust, cup, body type, age).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from feature_store.dataset import Dataset
from feature_store.schema import CustomerCols, InteractionCols, InteractionType, ItemCols

__all__ = ["BODY_COLUMNS", "RTR_FILE", "FitCols", "is_rent_the_runway", "load_rtr", "load_rtr_fit"]

RTR_FILE = "cleandata.parquet"
_RTR_CATEGORY = {
    "dress": "dress",
    "gown": "dress",
    "sheath": "dress",
    "shift": "dress",
    "jumpsuit": "dress",
    "romper": "dress",
    "maxi": "dress",
    "midi": "dress",
    "mini": "dress",
    "frock": "dress",
    "caftan": "dress",
    "kaftan": "dress",
    "ballgown": "dress",
    "shirtdress": "dress",
    "top": "top",
    "blouse": "top",
    "shirt": "top",
    "sweater": "top",
    "tee": "top",
    "tank": "top",
    "cami": "top",
    "sweatshirt": "top",
    "turtleneck": "top",
    "pullover": "top",
    "knit": "top",
    "tunic": "top",
    "skirt": "bottom",
    "pants": "bottom",
    "jeans": "bottom",
    "culottes": "bottom",
    "trousers": "bottom",
    "leggings": "bottom",
    "trouser": "bottom",
    "pant": "bottom",
    "skirts": "bottom",
    "legging": "bottom",
    "jacket": "outerwear",
    "coat": "outerwear",
    "blazer": "outerwear",
    "vest": "outerwear",
    "cardigan": "outerwear",
    "parka": "outerwear",
    "trench": "outerwear",
    "bomber": "outerwear",
    "peacoat": "outerwear",
    "poncho": "outerwear",
    "cape": "outerwear",
    "overcoat": "outerwear",
}


class FitCols:
    """Columns of :func:`load_rtr_fit`'s frame."""

    CUSTOMER_ID: Final = "customer_id"
    ITEM_ID: Final = "item_id"
    FIT: Final = "fit"  # small / fit / large
    SIZE: Final = "size"  # RTR's standardised size (0-58)
    PRODUCT_TYPE: Final = "product_type"  # RTR's category (dress, gown, sheath, …)
    CATEGORY: Final = "category"  # the Lookbook category mapped from it
    DATE: Final = "review_date"  # timezone-aware UTC
    HEIGHT: Final = "height_in"
    WEIGHT: Final = "weight_lbs"
    BUST: Final = "bust_size_num"
    CUP: Final = "cup"  # cup letters as a number: aa 0, a 1, b 2, … (NaN unknown)
    AGE: Final = "age"  # NaN where implausible (< 15 or > 90)
    BODY_TYPE: Final = "body_type"
    RENTED_FOR: Final = "rented_for"


#: Numeric body measurements of :func:`load_rtr_fit` (NaN where not given).
BODY_COLUMNS: Final = (FitCols.HEIGHT, FitCols.WEIGHT, FitCols.BUST, FitCols.CUP, FitCols.AGE)
_CUPS: Final = ("aa", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
FIT_VERDICTS: Final = ("small", "fit", "large")


def load_rtr_fit(path: Path) -> pd.DataFrame:
    """Every rental of Rent the Runway with its fit verdict (:class:`FitCols`), in file order.

    Rows without a verdict, size, customer, item or review date are dropped; ids are strings;
    body measurements are floats with NaN where not given (an implausible age is NaN)."""
    file = path / RTR_FILE if path.is_dir() else path
    raw = pd.read_parquet(file)
    raw = raw.dropna(subset=["user_id", "item_id", "review_date", "fit", "size"])
    raw = raw[raw["fit"].astype(str).isin(FIT_VERDICTS)].reset_index(drop=True)

    def number(column: str) -> np.ndarray:
        if column not in raw.columns:
            return np.full(len(raw), np.nan)
        return pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=np.float64)

    def text(column: str) -> pd.Series:
        if column not in raw.columns:
            return pd.Series(pd.NA, index=raw.index, dtype="string")
        values = raw[column].astype("string").str.strip().str.lower()
        return values.where(values.notna() & (values != ""), pd.NA)

    cup = text("bust_size_letter").map(
        lambda c: float(_CUPS.index(c)) if isinstance(c, str) and c in _CUPS else np.nan
    )
    age = number("age")
    product_type = raw["category"].astype(str)
    return pd.DataFrame(
        {
            FitCols.CUSTOMER_ID: raw["user_id"].astype("int64").astype(str),
            FitCols.ITEM_ID: raw["item_id"].astype("int64").astype(str),
            FitCols.FIT: raw["fit"].astype(str),
            FitCols.SIZE: raw["size"].astype("int64"),
            FitCols.PRODUCT_TYPE: product_type,
            FitCols.CATEGORY: product_type.str.lower().map(_RTR_CATEGORY).fillna("other"),
            FitCols.DATE: pd.to_datetime(raw["review_date"], utc=True),
            FitCols.HEIGHT: number("height_in"),
            FitCols.WEIGHT: number("weight_lbs"),
            FitCols.BUST: number("bust_size_num"),
            FitCols.CUP: cup.to_numpy(dtype=np.float64),
            FitCols.AGE: np.where((age >= 15) & (age <= 90), age, np.nan),
            FitCols.BODY_TYPE: text("body_type").astype(object),
            FitCols.RENTED_FOR: text("rented_for").astype(object),
        }
    )


def load_rtr(path: Path) -> Dataset:
    """Rent the Runway (``cleandata.parquet``) as a :class:`Dataset`: each rental is a purchase
    dated by its review date, with the RTR size; items carry RTR's category as product type.

    Only item metadata that does not depend on time is kept (no popularity-derived attributes).
    """
    file = path / RTR_FILE if path.is_dir() else path
    raw = pd.read_parquet(file, columns=["user_id", "item_id", "category", "size", "review_date"])
    raw = raw.dropna(subset=["user_id", "item_id", "review_date"])
    category = raw.groupby("item_id")["category"].agg(lambda s: str(s.mode().iloc[0]))
    items = pd.DataFrame(
        {
            ItemCols.ID: category.index.astype(str),
            ItemCols.NAME: [f"RTR {c} {i}" for i, c in zip(category.index, category, strict=True)],
            ItemCols.CATEGORY: [_RTR_CATEGORY.get(str(c).lower(), "other") for c in category],
            ItemCols.PRODUCT_TYPE: category.astype(str).to_numpy(),
            ItemCols.PRICE: np.nan,
        }
    )
    interactions = pd.DataFrame(
        {
            InteractionCols.CUSTOMER_ID: raw["user_id"].astype("int64").astype(str).to_numpy(),
            InteractionCols.ITEM_ID: raw["item_id"].astype("int64").astype(str).to_numpy(),
            InteractionCols.TYPE: InteractionType.PURCHASE.value,
            InteractionCols.TIMESTAMP: pd.to_datetime(raw["review_date"], utc=True).to_numpy(),
            InteractionCols.SIZE: raw["size"].astype("Int64").astype(str).to_numpy(),
        }
    )
    interactions[InteractionCols.TIMESTAMP] = pd.to_datetime(
        interactions[InteractionCols.TIMESTAMP], utc=True
    )
    customers = pd.DataFrame(
        {CustomerCols.ID: pd.unique(interactions[InteractionCols.CUSTOMER_ID])}
    )
    return Dataset(
        items=items, interactions=interactions, customers=customers, source=f"rtr:{path}"
    )


def is_rent_the_runway(path: Path) -> bool:
    """Whether ``path`` is Rent the Runway's ``cleandata.parquet`` or a folder holding it."""
    return (path / RTR_FILE).is_file() or path.name == RTR_FILE
