"""Typed data contracts for items, stock, customers and interactions.

Everything that enters Lookbook is one of four tables. Column names are defined once here; loaders,
the synthetic generator, the trainer and the service all refer to these constants.

``items``        one row per sellable item (colour variant): metadata, price, sizes offered.
``stock``        one row per (item, store, size): units on hand. ``store_id == "online"`` is the web shop.
``customers``    one row per customer: demographics and consent.
``interactions`` one row per event: who did what to which item, when, where, in which size, and which
                 recommendation (id and position) it came from.

External ids are strings everywhere. Dense integer indices exist only inside a model bundle and are
made in one place, :mod:`feature_store.ids`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator


class Category(StrEnum):
    """Top-level garment category, the "slot" an item fills in an outfit."""

    TOP = "top"
    BOTTOM = "bottom"
    DRESS = "dress"  # dresses, jumpsuits and other full-body pieces
    OUTERWEAR = "outerwear"
    SHOES = "shoes"
    ACCESSORY = "accessory"
    UNDERWEAR = "underwear"
    SWIMWEAR = "swimwear"
    OTHER = "other"


class InteractionType(StrEnum):
    IMPRESSION = "impression"
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    WISHLIST = "wishlist"
    PURCHASE = "purchase"
    RETURN = "return"


class Channel(StrEnum):
    ONLINE = "online"
    APP = "app"
    STORE = "store"
    KIOSK = "kiosk"


class ReturnReason(StrEnum):
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    NOT_AS_DESCRIBED = "not_as_described"
    QUALITY = "quality"
    CHANGED_MIND = "changed_mind"
    OTHER = "other"


SIZE_RETURN_REASONS: Final = frozenset({ReturnReason.TOO_SMALL, ReturnReason.TOO_LARGE})

PRICE_BANDS: Final = ("budget", "mid", "premium", "luxury")
SEASONS: Final = ("spring", "summer", "autumn", "winter")
ONLINE_STORE: Final = "online"

# Implicit-feedback confidence of each interaction type (used to build the user x item matrix).
# Returns are negative: a returned purchase should weigh less than a kept one.
INTERACTION_WEIGHTS: Final[dict[InteractionType, float]] = {
    InteractionType.IMPRESSION: 0.0,
    InteractionType.VIEW: 0.5,
    InteractionType.CLICK: 1.0,
    InteractionType.WISHLIST: 2.0,
    InteractionType.ADD_TO_CART: 3.0,
    InteractionType.PURCHASE: 5.0,
    InteractionType.RETURN: -4.0,
}


class ItemCols:
    """Columns of the ``items`` table (list columns are ``|``-separated in CSV)."""

    ID: Final = "item_id"
    NAME: Final = "name"
    CATEGORY: Final = "category"
    PRODUCT_TYPE: Final = "product_type"
    STYLES: Final = "styles"  # list[str]
    COLOUR: Final = "colour"
    MATERIAL: Final = "material"
    PATTERN: Final = "pattern"
    SEASONS: Final = "seasons"  # list[str]
    PRICE: Final = "price"
    PRICE_BAND: Final = "price_band"
    LAUNCH_DATE: Final = "launch_date"
    SIZES: Final = "sizes"  # list[str], sizes offered, in size order
    DESCRIPTION: Final = "description"
    #: Optional, not in :data:`ALL`: the product an item is a variant (colour, print) of, e.g. H&M's
    #: ``productCode``. Loaders add it to the items frame only when the source has it.
    PRODUCT_CODE: Final = "product_code"

    REQUIRED: Final = (ID, NAME, CATEGORY, PRICE)
    LIST_COLUMNS: Final = (STYLES, SEASONS, SIZES)
    ALL: Final = (
        ID,
        NAME,
        CATEGORY,
        PRODUCT_TYPE,
        STYLES,
        COLOUR,
        MATERIAL,
        PATTERN,
        SEASONS,
        PRICE,
        PRICE_BAND,
        LAUNCH_DATE,
        SIZES,
        DESCRIPTION,
    )
    #: Columns a frame carries only when its source has them (see :data:`PRODUCT_CODE`).
    OPTIONAL: Final = (PRODUCT_CODE,)


class StockCols:
    """Columns of the ``stock`` table."""

    ITEM_ID: Final = "item_id"
    STORE_ID: Final = "store_id"
    SIZE: Final = "size"
    QUANTITY: Final = "quantity"

    REQUIRED: Final = (ITEM_ID, STORE_ID, SIZE, QUANTITY)
    ALL: Final = REQUIRED


class CustomerCols:
    """Columns of the ``customers`` table."""

    ID: Final = "customer_id"
    AGE_BAND: Final = "age_band"
    CONSENT_PERSONALIZATION: Final = "consent_personalization"
    SIGNUP_DATE: Final = "signup_date"

    REQUIRED: Final = (ID,)
    ALL: Final = (ID, AGE_BAND, CONSENT_PERSONALIZATION, SIGNUP_DATE)


class InteractionCols:
    """Columns of the ``interactions`` table."""

    CUSTOMER_ID: Final = "customer_id"
    ITEM_ID: Final = "item_id"
    TYPE: Final = "type"
    TIMESTAMP: Final = "timestamp"  # timezone-aware UTC
    CHANNEL: Final = "channel"
    SIZE: Final = "size"
    PRICE: Final = "price"
    STORE_ID: Final = "store_id"
    RETURN_REASON: Final = "return_reason"
    RECOMMENDATION_ID: Final = "recommendation_id"
    POSITION: Final = "position"

    REQUIRED: Final = (CUSTOMER_ID, ITEM_ID, TYPE, TIMESTAMP)
    ALL: Final = (
        CUSTOMER_ID,
        ITEM_ID,
        TYPE,
        TIMESTAMP,
        CHANNEL,
        SIZE,
        PRICE,
        STORE_ID,
        RETURN_REASON,
        RECOMMENDATION_ID,
        POSITION,
    )


#: The window of event times Lookbook accepts (``POST /v1/events``) and reads back from the event
#: log: not before :data:`EARLIEST_EVENT_TIME` and at most :data:`MAX_EVENT_LEAD` after the clock of
#: the process checking (clock skew between a storefront and the service, a local time sent as UTC).
#: Anything outside is an implausible event time: refused at the door, skipped when read back.
EARLIEST_EVENT_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
MAX_EVENT_LEAD: Final = timedelta(hours=24)


def check_event_time(moment: datetime, now: datetime | None = None) -> datetime:
    """``moment`` in UTC when it lies in the accepted window of event times, else ``ValueError``."""
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+05:00 has no UTC datetime
        raise ValueError(f"event time {moment.isoformat()} is out of range") from exc
    if moment < EARLIEST_EVENT_TIME:
        raise ValueError(
            f"event time {moment.isoformat()} is before {EARLIEST_EVENT_TIME.isoformat()}"
        )
    latest = (now if now is not None else datetime.now(UTC)) + MAX_EVENT_LEAD
    if moment > latest:
        raise ValueError(
            f"event time {moment.isoformat()} is more than "
            f"{MAX_EVENT_LEAD.total_seconds() / 3600:g} h in the future"
        )
    return moment


#: The id alphabet: every external id that enters through the service (customer, item, store,
#: recommendation and session ids, in events, paths, query strings and bodies) is 1 to
#: :data:`ID_MAX_LENGTH` printable ASCII letters, digits and ``. _ : @ + -``. No slash (an id must
#: fit one path segment, or it could be recorded and never erased), no whitespace or control
#: characters, no unicode (no right-to-left overrides, no look-alikes). H&M, Rent the Runway and the
#: synthetic retailer's ids all fit; the offline loaders do not enforce it (such an id can be
#: trained on, but the service can neither record nor address it).
ID_PATTERN: Final = r"^[A-Za-z0-9._:@+\-]+$"
ID_MAX_LENGTH: Final = 128

ExternalId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN
    ),
]
#: A shorter id (stores, recommendation ids) in the same alphabet.
ShortId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=ID_PATTERN)
]


class Interaction(BaseModel):
    """One interaction event, as accepted by ``POST /v1/events`` and stored in the event log.

    Validation happens here, once, for the API, the event log and the loaders of event files.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    customer_id: ExternalId
    item_id: ExternalId
    type: InteractionType
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    channel: Channel = Channel.ONLINE
    size: Annotated[str, StringConstraints(max_length=32)] | None = None
    price: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    store_id: ShortId | None = None
    return_reason: ReturnReason | None = None
    recommendation_id: ShortId | None = None
    position: Annotated[int, Field(ge=0, le=10_000)] | None = None

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return check_event_time(value)

    def to_record(self) -> dict[str, object]:
        """A flat JSON-ready dict (enum values as strings, timestamp as ISO 8601)."""
        return {
            InteractionCols.CUSTOMER_ID: self.customer_id,
            InteractionCols.ITEM_ID: self.item_id,
            InteractionCols.TYPE: self.type.value,
            InteractionCols.TIMESTAMP: self.timestamp.isoformat(),
            InteractionCols.CHANNEL: self.channel.value,
            InteractionCols.SIZE: self.size,
            InteractionCols.PRICE: self.price,
            InteractionCols.STORE_ID: self.store_id,
            InteractionCols.RETURN_REASON: (
                self.return_reason.value if self.return_reason is not None else None
            ),
            InteractionCols.RECOMMENDATION_ID: self.recommendation_id,
            InteractionCols.POSITION: self.position,
        }
