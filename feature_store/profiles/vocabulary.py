"""Names and codes shared by the profile modules: tiers, stages, facets, event-type codes."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..schema import (
    Channel,
    InteractionType,
    ItemCols,
    ReturnReason,
)
from ..timeutils import SECONDS_PER_DAY

Array = npt.NDArray[Any]

YEAR_DAYS: Final = 365.25
FORMAT: Final = "lookbook.profiles/1"
STATE_VERSION: Final = 1

STAGES: Final = ("prospect", "new", "active", "cooling", "sleeping", "churned")
TIERS: Final = (
    "high_value",
    "potential",
    "active_low_spend",
    "sleeping_high_value",
    "new_low_value",
    "at_risk",
    "lapsing_regular",
    "lost",
    "prospect",
)
PROSPECT: Final = "prospect"
# (R high, F high, M high) -> tier
TIER_OF_RFM: Final[dict[tuple[bool, bool, bool], str]] = {
    (True, True, True): "high_value",
    (True, False, True): "potential",
    (True, True, False): "active_low_spend",
    (False, True, True): "sleeping_high_value",
    (True, False, False): "new_low_value",
    (False, False, True): "at_risk",
    (False, True, False): "lapsing_regular",
    (False, False, False): "lost",
}
_TIER_LOOKUP: Final = np.array(
    [
        TIERS.index(TIER_OF_RFM[(r, f, m)])
        for r in (False, True)
        for f in (False, True)
        for m in (False, True)
    ],
    dtype=np.int8,
)  # index r*4 + f*2 + m
FACETS: Final = ("style", "colour", "material", "price_band")
FACET_COLUMNS: Final[dict[str, str]] = {
    "style": ItemCols.STYLES,
    "colour": ItemCols.COLOUR,
    "material": ItemCols.MATERIAL,
    "price_band": ItemCols.PRICE_BAND,
}
CONSENT_POLICIES: Final = ("rfm_only", "exclude", "full")
DEFAULT_EVENT_WEIGHTS: Final[dict[str, float]] = {
    InteractionType.IMPRESSION.value: 0.0,
    InteractionType.VIEW.value: 0.1,
    InteractionType.CLICK.value: 0.2,
    InteractionType.WISHLIST.value: 0.5,
    InteractionType.ADD_TO_CART.value: 0.5,
    InteractionType.PURCHASE.value: 1.0,
    InteractionType.RETURN.value: -0.5,
}

_KINDS: Final = tuple(InteractionType)
_KIND_CODE: Final = {k.value: i for i, k in enumerate(_KINDS)}
K_PURCHASE: Final = _KIND_CODE[InteractionType.PURCHASE.value]
K_RETURN: Final = _KIND_CODE[InteractionType.RETURN.value]
K_VIEW: Final = _KIND_CODE[InteractionType.VIEW.value]
K_CLICK: Final = _KIND_CODE[InteractionType.CLICK.value]
K_CART: Final = _KIND_CODE[InteractionType.ADD_TO_CART.value]
K_WISH: Final = _KIND_CODE[InteractionType.WISHLIST.value]
_REASONS: Final = tuple(ReturnReason)
_REASON_CODE: Final = {r.value: i for i, r in enumerate(_REASONS)}
R_TOO_SMALL: Final = _REASON_CODE[ReturnReason.TOO_SMALL.value]
R_TOO_LARGE: Final = _REASON_CODE[ReturnReason.TOO_LARGE.value]
_ONLINE_CHANNELS: Final = (Channel.ONLINE.value, Channel.APP.value)


def half_life_seconds(days: float | None) -> float | None:
    """A half-life in days as seconds, the unit of event ages (None: no decay)."""
    return None if days is None else days * SECONDS_PER_DAY
