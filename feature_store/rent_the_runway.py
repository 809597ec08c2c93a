"""The Rent the Runway dataset adapter: ``cleandata.parquet`` as a :class:`Dataset`.

    from feature_store.rent_the_runway import is_rent_the_runway, load_rtr

    if is_rent_the_runway(path):
        dataset = load_rtr(path)  # a folder holding cleandata.parquet, or the file itself

Each rental is a purchase dated by its review date, in the customer's RTR size; items carry RTR's
category as product type and a Lookbook category mapped from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from feature_store.dataset import Dataset
from feature_store.schema import CustomerCols, InteractionCols, InteractionType, ItemCols

__all__ = ["RTR_FILE", "is_rent_the_runway", "load_rtr"]

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
