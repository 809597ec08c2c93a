"""The in-memory form of a retailer's data: four pandas tables with the columns of :mod:`.schema`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from .errors import DataFormatError
from .schema import CustomerCols, InteractionCols, ItemCols, StockCols


@dataclass
class Dataset:
    """A retailer's catalog, stock, customers and interactions.

    Conventions (guaranteed by every loader):

    * id columns hold strings (``customer_id`` / ``item_id`` may be pandas ``category`` dtype);
    * ``interactions.timestamp`` is ``datetime64[ns, UTC]``;
    * ``interactions.type`` holds :class:`~feature_store.schema.InteractionType` values as strings;
    * list columns of ``items`` (styles, seasons, sizes) hold Python lists of strings;
    * every interaction's ``item_id`` is in ``items`` (loaders drop or reject orphans and say so).
    """

    items: pd.DataFrame
    interactions: pd.DataFrame
    customers: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({CustomerCols.ID: pd.Series([], dtype="string")})
    )
    stock: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {c: pd.Series([], dtype="string") for c in StockCols.ALL}
        ).astype({StockCols.QUANTITY: "int64"})
    )
    source: str = "unknown"

    def __post_init__(self) -> None:
        for name, frame, required in (
            ("items", self.items, ItemCols.REQUIRED),
            ("interactions", self.interactions, InteractionCols.REQUIRED),
            ("customers", self.customers, CustomerCols.REQUIRED),
            ("stock", self.stock, StockCols.REQUIRED),
        ):
            missing = [c for c in required if c not in frame.columns]
            if missing:
                raise DataFormatError(
                    f"{name} table lacks required columns {missing}", file=name, column=missing[0]
                )

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def fingerprint(self) -> str:
        """A short content hash of the data, recorded in bundle manifests."""
        digest = hashlib.sha256()
        for frame in (self.items, self.interactions, self.customers):
            hashed = pd.util.hash_pandas_object(
                frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}),
                index=False,
            )
            digest.update(hashed.to_numpy().tobytes())
        return digest.hexdigest()[:16]
