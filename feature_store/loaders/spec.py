"""The own format's tables and columns (names, kinds, which are required), and format names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ..schema import (
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

FORMATS: Final = ("own", "hm_kaggle", "hm_neo4j", "hm_ragrec")
ORPHAN_POLICIES: Final = ("error", "drop")
WRITE_FORMATS: Final = ("parquet", "csv")
LIST_SEPARATOR: Final = "|"
AGE_BANDS: Final = ("under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_EDGES: Final = (18, 25, 35, 45, 55, 65)

_NUMBER_RE: Final = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_INTEGER_RE: Final = r"^[-+]?\d+(\.0*)?$"
_ZONE_RE: Final = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"
_TRUE: Final = ("true", "t", "yes", "y", "1")
_FALSE: Final = ("false", "f", "no", "n", "0")
# Inside the range of pandas' datetime64[ns] (1677-09-21 .. 2262-04-11), with a day to spare.
_TS_MIN: Final = datetime(1677, 9, 23, tzinfo=UTC)
_TS_MAX: Final = datetime(2262, 4, 10, tzinfo=UTC)


@dataclass(frozen=True)
class _Col:
    """How one column is validated and converted."""

    name: str
    kind: str  # id | text | enum | list | float | int | bool | date | timestamp
    required: bool = False
    values: tuple[str, ...] = ()  # allowed values of an enum, or of a list's elements
    minimum: float | None = None


_ITEM_SPEC: Final = (
    _Col(ItemCols.ID, "id", required=True),
    _Col(ItemCols.NAME, "text", required=True),
    _Col(ItemCols.CATEGORY, "enum", required=True, values=tuple(c.value for c in Category)),
    _Col(ItemCols.PRODUCT_TYPE, "text"),
    _Col(ItemCols.STYLES, "list"),
    _Col(ItemCols.COLOUR, "text"),
    _Col(ItemCols.MATERIAL, "text"),
    _Col(ItemCols.PATTERN, "text"),
    _Col(ItemCols.SEASONS, "list", values=SEASONS),
    _Col(ItemCols.PRICE, "float", required=True, minimum=0.0),
    _Col(ItemCols.PRICE_BAND, "enum", values=PRICE_BANDS),
    _Col(ItemCols.LAUNCH_DATE, "date"),
    _Col(ItemCols.SIZES, "list"),
    _Col(ItemCols.DESCRIPTION, "text"),
)
_STOCK_SPEC: Final = (
    _Col(StockCols.ITEM_ID, "id", required=True),
    _Col(StockCols.STORE_ID, "id", required=True),
    _Col(StockCols.SIZE, "id", required=True),
    _Col(StockCols.QUANTITY, "int", required=True, minimum=0),
)
_CUSTOMER_SPEC: Final = (
    _Col(CustomerCols.ID, "id", required=True),
    _Col(CustomerCols.AGE_BAND, "text"),
    _Col(CustomerCols.CONSENT_PERSONALIZATION, "bool"),
    _Col(CustomerCols.SIGNUP_DATE, "date"),
)
_INTERACTION_SPEC: Final = (
    _Col(InteractionCols.CUSTOMER_ID, "id", required=True),
    _Col(InteractionCols.ITEM_ID, "id", required=True),
    _Col(
        InteractionCols.TYPE, "enum", required=True, values=tuple(t.value for t in InteractionType)
    ),
    _Col(InteractionCols.TIMESTAMP, "timestamp", required=True),
    _Col(InteractionCols.CHANNEL, "enum", values=tuple(c.value for c in Channel)),
    _Col(InteractionCols.SIZE, "text"),
    _Col(InteractionCols.PRICE, "float", minimum=0.0),
    _Col(InteractionCols.STORE_ID, "text"),
    _Col(InteractionCols.RETURN_REASON, "enum", values=tuple(r.value for r in ReturnReason)),
    _Col(InteractionCols.RECOMMENDATION_ID, "text"),
    _Col(InteractionCols.POSITION, "int", minimum=0),
)
#: Optional item columns: in the frame (and written back) only when the source has them.
_ITEM_OPTIONAL_SPEC: Final = (_Col(ItemCols.PRODUCT_CODE, "text"),)
_OPTIONAL_SPECS: Final[dict[str, tuple[_Col, ...]]] = {"items": _ITEM_OPTIONAL_SPEC}
_SPECS: Final = {
    "items": _ITEM_SPEC,
    "stock": _STOCK_SPEC,
    "customers": _CUSTOMER_SPEC,
    "interactions": _INTERACTION_SPEC,
}
