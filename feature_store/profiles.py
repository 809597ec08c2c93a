"""Customer profiles: RFM tiers, lifecycle stages, size and style profiles, lifetime value.

Computed in batch by the trainer (:func:`compute_profiles`, columnar numpy/pandas, scales to
millions of customers) and kept current online by events (:meth:`CustomerProfiles.apply_event`,
:class:`LiveProfiles`).

Definitions (every day count and threshold lives in :class:`ProfileConfig`; ``now`` is always an
explicit argument, so evaluations on old data are correct):

**RFM.** *Recency* is the number of whole days since the last purchase; *frequency* the number of
orders, counted as distinct (UTC) purchase days; *monetary* the spend net of returns (purchase
prices minus refunded prices; the item's list price when an event carries none; never below 0).
Each is scored 1–5 against the customers who have purchased: the quintile edges (20/40/60/80 %
quantiles, linear interpolation) are kept in :class:`RfmThresholds`, and a customer's score is
1 + the number of edges their value strictly beats (for recency: is strictly more recent than).
Equal values therefore always get equal scores, and the online update scores with the same
edges. A score at or above ``r_high`` / ``f_high`` / ``m_high`` (default 4: the top two
quintiles) counts as high (↑):

===================  ===  ===  ===  ========================================================
tier                 R    F    M    meaning
===================  ===  ===  ===  ========================================================
high_value           ↑    ↑    ↑    recent, frequent, big spenders
potential            ↑    ↓    ↑    recent big spenders who have not bought often yet
active_low_spend     ↑    ↑    ↓    recent and frequent, but small baskets
sleeping_high_value  ↓    ↑    ↑    used to buy often and a lot, not recently
new_low_value        ↑    ↓    ↓    recent, one or two small orders (typically new customers)
at_risk              ↓    ↓    ↑    spent a lot in few orders, long ago
lapsing_regular      ↓    ↑    ↓    used to buy often but little, not recently
lost                 ↓    ↓    ↓    long ago, rarely, little
prospect             –    –    –    no purchase yet (no scores)
===================  ===  ===  ===  ========================================================

**Lifecycle stage** at ``now``: ``prospect`` (no purchase), ``new`` (first purchase ≤ ``new_days``
ago), ``active`` (last purchase ≤ ``active_days`` ago), ``cooling`` (up to ``sleeping_days``),
``sleeping`` (≥ ``sleeping_days``), ``churned`` (≥ ``churned_days``); checked in that order.

**Size profile** per category: the size the customer keeps. Every purchase in a size votes for
it; a return whose reason is ``too_small`` / ``too_large`` takes ``size_return_weight`` of that
vote back (1: purchases minus size returns) and votes ``size_shift_weight`` for the next larger
/ smaller size in the returned item's own size order (nothing when the item offers no such
size). Votes decay with half-life ``size_half_life_days``. (Rental fit verdicts are not returns:
on Rent the Runway ``size_return_weight = size_shift_weight = 0`` is what a validation split
picks — see ``benchmarks/customer_intelligence.py``.) The profile's size is the label with the
most votes (ties: the lower label in string order), with

    confidence = share × (1 − exp(−total / size_confidence_scale))

where ``share`` is the winner's share of the positive votes and ``total`` their sum: one kept
purchase gives 0.39, three consistent ones 0.78 (defaults), a split vote less.

**Affinities** to style, colour, material and price band: the sum over interactions of
``event_weights[type] × 0.5 ** (age_days / affinity_half_life_days)`` spread over the item's
values (an item with two styles gives each half), clipped at 0 and normalised to shares of the
facet total. Size-related returns weigh 0 (the piece was liked, it did not fit); other returns
weigh ``event_weights["return"]`` (negative by default).

**Lifetime value** (see :func:`lifetime_value`)::

    LTV = AOV × purchases_per_year × expected_remaining_lifetime_years
    AOV                 = monetary / frequency                 (net spend per order)
    purchases_per_year  = frequency / max(tenure_years, ltv_min_tenure_days / 365.25)
    expected lifetime   = (H / 365.25) × (1 − p) / p, capped at ltv_max_lifetime_years

where ``p`` is the churn risk (probability of no purchase in the next ``H`` days, from the churn
model) — the expected number of further ``H``-day periods a customer with per-period survival
``1 − p`` stays (geometric) — and ``ltv_default_lifetime_years`` when there is no churn risk.

**Consent.** ``consent_policy`` says what happens to customers whose ``consent_personalization``
is explicitly False: ``"rfm_only"`` (default) keeps RFM, stage, churn and LTV (CRM) but no size
or affinities (personalization); ``"exclude"`` leaves them out entirely; ``"full"`` profiles
everyone. Online, :meth:`CustomerProfiles.apply_event` never learns sizes or affinities for a
state whose ``consent`` is False, and :func:`revoke_personalization` clears them.

**Service wiring** (see :class:`LiveProfiles`): the batch :class:`CustomerProfiles` is loaded
from the bundle; per-customer online *state* (a JSON-ready dict, :func:`new_state`) lives in a
:class:`ProfileStateStore` (in-process dict or Redis JSON); events update the state with
:meth:`CustomerProfiles.apply_event`; reads render it with :meth:`CustomerProfiles.render`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from .dataset import Dataset
from .errors import BundleError, InvalidRequest
from .schema import (
    SIZE_RETURN_REASONS,
    Channel,
    CustomerCols,
    Interaction,
    InteractionCols,
    InteractionType,
    ItemCols,
    ReturnReason,
)

logger = logging.getLogger("lookbook.profiles")

Array = npt.NDArray[Any]

DAY: Final = 86_400.0
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


# --------------------------------------------------------------------------------------------
# Configuration and thresholds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileConfig:
    """Every day count, threshold and weight of the profiles (JSON round-trip: to/from_dict)."""

    new_days: int = 30
    active_days: int = 90
    sleeping_days: int = 180
    churned_days: int = 365
    r_high: int = 4
    f_high: int = 4
    m_high: int = 4
    affinity_half_life_days: float | None = 90.0
    size_half_life_days: float | None = 365.0
    size_return_weight: float = 1.0
    size_shift_weight: float = 1.0
    size_confidence_scale: float = 2.0
    size_keep: int = 3
    affinity_keep: int = 3
    top_affinities: int = 3
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    ltv_min_tenure_days: float = 90.0
    ltv_max_lifetime_years: float = 5.0
    ltv_default_lifetime_years: float = 1.0
    consent_policy: str = "rfm_only"

    def __post_init__(self) -> None:
        if not 0 < self.new_days <= self.active_days < self.sleeping_days < self.churned_days:
            raise ValueError(
                "need 0 < new_days <= active_days < sleeping_days < churned_days, got "
                f"{self.new_days}, {self.active_days}, {self.sleeping_days}, {self.churned_days}"
            )
        for name in ("r_high", "f_high", "m_high"):
            if not 1 <= getattr(self, name) <= 5:
                raise ValueError(f"{name} must be a score in 1..5, got {getattr(self, name)}")
        for name in ("affinity_half_life_days", "size_half_life_days"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None (no decay), got {value}")
        for name in ("size_keep", "affinity_keep", "top_affinities"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.size_confidence_scale > 0:
            raise ValueError("size_confidence_scale must be > 0")
        if self.size_shift_weight < 0 or self.size_return_weight < 0:
            raise ValueError("size_shift_weight and size_return_weight must be >= 0")
        unknown = set(self.event_weights) - set(_KIND_CODE)
        if unknown:
            raise ValueError(f"event_weights has unknown interaction types {sorted(unknown)}")
        if self.consent_policy not in CONSENT_POLICIES:
            raise ValueError(f"consent_policy must be one of {CONSENT_POLICIES}")
        if not (self.ltv_min_tenure_days > 0 and self.ltv_max_lifetime_years > 0):
            raise ValueError("ltv_min_tenure_days and ltv_max_lifetime_years must be > 0")
        if self.ltv_default_lifetime_years < 0:
            raise ValueError("ltv_default_lifetime_years must be >= 0")

    def kind_weights(self) -> npt.NDArray[np.float64]:
        """Affinity weight per interaction type code (declaration order of InteractionType)."""
        return np.array([float(self.event_weights.get(k.value, 0.0)) for k in _KINDS])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RfmThresholds:
    """Quintile edges (4 ascending values each) of recency days, frequency and monetary."""

    recency: tuple[float, ...] = ()
    frequency: tuple[float, ...] = ()
    monetary: tuple[float, ...] = ()

    @classmethod
    def fit(cls, recency: Array, frequency: Array, monetary: Array) -> RfmThresholds:
        """Edges at the 20/40/60/80 % quantiles of the given (purchasing) customers."""
        if len(recency) == 0:
            return cls()
        qs = (0.2, 0.4, 0.6, 0.8)

        def edges(values: Array) -> tuple[float, ...]:
            return tuple(float(v) for v in np.quantile(np.asarray(values, np.float64), qs))

        return cls(edges(recency), edges(frequency), edges(monetary))

    def scores(
        self, recency: Array, frequency: Array, monetary: Array
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8], npt.NDArray[np.int8]]:
        """R, F, M scores 1..5 (3 when there are no edges: nobody to compare with)."""
        return (
            _score(np.asarray(recency, np.float64), self.recency, higher_is_better=False),
            _score(np.asarray(frequency, np.float64), self.frequency, higher_is_better=True),
            _score(np.asarray(monetary, np.float64), self.monetary, higher_is_better=True),
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> RfmThresholds:
        return cls(
            tuple(float(v) for v in data.get("recency", ())),
            tuple(float(v) for v in data.get("frequency", ())),
            tuple(float(v) for v in data.get("monetary", ())),
        )


def _score(
    values: Array, edges: Sequence[float], *, higher_is_better: bool
) -> npt.NDArray[np.int8]:
    """1 + the number of edges the value strictly beats."""
    if not edges:
        return np.full(values.shape, 3, dtype=np.int8)
    e = np.asarray(edges, dtype=np.float64)
    if higher_is_better:
        beaten = np.searchsorted(e, values, side="left")  # edges < value
    else:
        beaten = len(e) - np.searchsorted(e, values, side="right")  # edges > value
    return (1 + beaten).astype(np.int8)


def tier_codes(
    r: npt.NDArray[np.int8], f: npt.NDArray[np.int8], m: npt.NDArray[np.int8], config: ProfileConfig
) -> npt.NDArray[np.int8]:
    """Index into :data:`TIERS` of each (R, F, M) score triple (purchasers)."""
    idx = (
        (r >= config.r_high).astype(np.int64) * 4
        + (f >= config.f_high).astype(np.int64) * 2
        + (m >= config.m_high).astype(np.int64)
    )
    return _TIER_LOOKUP[idx]


def stage_codes(
    first_purchase: Array, last_purchase: Array, now_s: float, config: ProfileConfig
) -> npt.NDArray[np.int8]:
    """Index into :data:`STAGES` at ``now_s`` (epoch seconds); NaN purchase times are prospects."""
    first = np.asarray(first_purchase, np.float64)
    last = np.asarray(last_purchase, np.float64)
    since_first = _whole_days(now_s - first)
    recency = _whole_days(now_s - last)
    out = np.full(first.shape, STAGES.index("churned"), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        out[recency < config.churned_days] = STAGES.index("sleeping")
        out[recency < config.sleeping_days] = STAGES.index("cooling")
        out[recency <= config.active_days] = STAGES.index("active")
        out[since_first <= config.new_days] = STAGES.index("new")
    out[np.isnan(last)] = STAGES.index("prospect")
    return out


def _whole_days(seconds: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Whole days elapsed (floor, at least 0); NaN stays NaN."""
    with np.errstate(invalid="ignore"):
        return np.maximum(np.floor(np.asarray(seconds, np.float64) / DAY), 0.0)


def stage_of(
    first_purchase: float | None, last_purchase: float | None, now_s: float, config: ProfileConfig
) -> str:
    """:func:`stage_codes` for one customer (epoch seconds; None: no purchase), as a name."""
    if first_purchase is None or last_purchase is None:
        return PROSPECT
    since_first = max(math.floor((now_s - first_purchase) / DAY), 0)
    recency = max(math.floor((now_s - last_purchase) / DAY), 0)
    if since_first <= config.new_days:
        return "new"
    if recency <= config.active_days:
        return "active"
    if recency < config.sleeping_days:
        return "cooling"
    if recency < config.churned_days:
        return "sleeping"
    return "churned"


def _score_one(value: float, edges: Sequence[float], *, higher_is_better: bool) -> int:
    if not edges:
        return 3
    if higher_is_better:
        return 1 + bisect.bisect_left(edges, value)
    return 1 + len(edges) - bisect.bisect_right(edges, value)


def _tier_one(r: int, f: int, m: int, config: ProfileConfig) -> str:
    return TIER_OF_RFM[(r >= config.r_high, f >= config.f_high, m >= config.m_high)]


def _lifetime_value_one(
    monetary: float,
    frequency: int,
    first_purchase: float | None,
    now_s: float,
    churn_risk: float | None,
    horizon_days: int | None,
    config: ProfileConfig,
) -> float:
    """:func:`lifetime_value` for one customer."""
    if frequency <= 0 or first_purchase is None:
        return 0.0
    aov = monetary / frequency
    tenure_years = max((now_s - first_purchase) / DAY, 0.0) / YEAR_DAYS
    per_year = frequency / max(tenure_years, config.ltv_min_tenure_days / YEAR_DAYS)
    if horizon_days is None or churn_risk is None or math.isnan(churn_risk):
        lifetime = config.ltv_default_lifetime_years
    else:
        p = min(max(churn_risk, 1e-6), 1.0)
        lifetime = min((horizon_days / YEAR_DAYS) * (1.0 - p) / p, config.ltv_max_lifetime_years)
    return max(aov * per_year * lifetime, 0.0)


def lifetime_value(
    monetary: Any,
    frequency: Any,
    first_purchase_s: Any,
    now_s: float,
    churn_risk: Any,
    horizon_days: float | None,
    config: ProfileConfig,
) -> npt.NDArray[np.float64]:
    """``AOV × purchases per year × expected remaining lifetime`` (formula in the module doc).

    Works on scalars or arrays; customers without orders (frequency 0) get 0. ``churn_risk`` NaN
    (or ``horizon_days`` None) means "no churn model": ``ltv_default_lifetime_years`` is used.
    """
    monetary_a = np.asarray(monetary, np.float64)
    freq = np.asarray(frequency, np.float64)
    first = np.asarray(first_purchase_s, np.float64)
    risk = np.asarray(churn_risk, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        aov = np.where(freq > 0, monetary_a / np.maximum(freq, 1.0), 0.0)
        tenure_years = np.maximum((now_s - first) / DAY, 0.0) / YEAR_DAYS
        years = np.maximum(np.nan_to_num(tenure_years), config.ltv_min_tenure_days / YEAR_DAYS)
        per_year = freq / years
        if horizon_days is None:
            lifetime = np.full(np.broadcast(risk, freq).shape, config.ltv_default_lifetime_years)
        else:
            p = np.clip(risk, 1e-6, 1.0)
            lifetime = np.minimum(
                (horizon_days / YEAR_DAYS) * (1.0 - p) / p, config.ltv_max_lifetime_years
            )
            lifetime = np.where(np.isnan(risk), config.ltv_default_lifetime_years, lifetime)
        ltv = np.where(freq > 0, aov * per_year * lifetime, 0.0)
    return np.asarray(np.maximum(ltv, 0.0), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Events and catalog in columnar form
# --------------------------------------------------------------------------------------------


def _epoch_seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(seconds: float | None) -> str | None:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return None
    return datetime.fromtimestamp(float(seconds), tz=UTC).isoformat()


def _codes(values: pd.Series | pd.Index, vocabulary: Mapping[str, int]) -> npt.NDArray[np.int32]:
    """Code of each value in ``vocabulary`` (-1 for null or unknown)."""
    codes, uniques = pd.factorize(values)
    lookup = np.array([vocabulary.get(str(u), -1) for u in uniques] + [-1], dtype=np.int32)
    return lookup[np.asarray(codes, dtype=np.int64)]  # code -1 (null) takes the trailing -1


@dataclass
class Catalog:
    """Item attributes as arrays aligned with ``items`` rows (what profiles need of them)."""

    item_ids: pd.Index
    price: npt.NDArray[np.float64]
    category: npt.NDArray[np.int16]  # index into ``categories``, -1 unknown
    categories: tuple[str, ...]
    size_ptr: npt.NDArray[np.int64]  # sizes of item i: size_flat[size_ptr[i]:size_ptr[i+1]]
    size_flat: npt.NDArray[np.int32]  # codes into ``size_labels``, in the item's size order
    size_labels: tuple[str, ...]
    facet_values: dict[str, tuple[str, ...]]
    facet_matrix: dict[str, sp.csr_matrix]  # items x values, rows sum to 1 (or 0)

    @classmethod
    def from_items(cls, items: pd.DataFrame, extra_size_labels: Iterable[str] = ()) -> Catalog:
        n = len(items)
        ids = pd.Index(items[ItemCols.ID].astype("str"))
        price = pd.to_numeric(items[ItemCols.PRICE], errors="coerce").to_numpy(np.float64)
        categories = tuple(sorted({str(c) for c in items[ItemCols.CATEGORY].dropna().unique()}))
        category = _codes(items[ItemCols.CATEGORY], {c: i for i, c in enumerate(categories)})
        sizes = (
            items[ItemCols.SIZES]
            if ItemCols.SIZES in items.columns
            else pd.Series([[] for _ in range(n)], dtype=object)
        )
        lengths = np.fromiter(
            (len(v) if isinstance(v, list | tuple | np.ndarray) else 0 for v in sizes),
            dtype=np.int64,
            count=n,
        )
        flat_labels = pd.Series(
            [str(x) for v in sizes if isinstance(v, list | tuple | np.ndarray) for x in v],
            dtype=object,
        )
        labels = tuple(sorted(set(flat_labels.unique()) | {str(x) for x in extra_size_labels}))
        label_code = {label: i for i, label in enumerate(labels)}
        size_flat = _codes(flat_labels, label_code) if len(flat_labels) else np.empty(0, np.int32)
        size_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=size_ptr[1:])
        facet_values: dict[str, tuple[str, ...]] = {}
        facet_matrix: dict[str, sp.csr_matrix] = {}
        for facet, column in FACET_COLUMNS.items():
            if column not in items.columns:
                facet_values[facet] = ()
                facet_matrix[facet] = sp.csr_matrix((n, 0), dtype=np.float64)
                continue
            col = items[column]
            if facet == "style":
                rows_l: list[int] = []
                vals_l: list[str] = []
                for row, value in enumerate(col):
                    if isinstance(value, list | tuple | np.ndarray):
                        for s in value:
                            rows_l.append(row)
                            vals_l.append(str(s))
                rows = np.asarray(rows_l, dtype=np.int64)
                vocab = tuple(sorted(set(vals_l)))
                codes = _codes(pd.Series(vals_l, dtype=object), {v: i for i, v in enumerate(vocab)})
            else:
                vocab = tuple(sorted({str(v) for v in col.dropna().unique()}))
                all_codes = _codes(col, {v: i for i, v in enumerate(vocab)})
                rows = np.flatnonzero(all_codes >= 0)
                codes = all_codes[rows]
            per_item = np.bincount(rows, minlength=n).astype(np.float64)
            weight = 1.0 / np.maximum(per_item[rows], 1.0)
            matrix = sp.csr_matrix((weight, (rows, codes)), shape=(n, len(vocab)))
            matrix.sum_duplicates()
            facet_values[facet] = vocab
            facet_matrix[facet] = matrix
        return cls(
            item_ids=ids,
            price=price,
            category=category.astype(np.int16),
            categories=categories,
            size_ptr=size_ptr,
            size_flat=size_flat.astype(np.int32),
            size_labels=labels,
            facet_values=facet_values,
            facet_matrix=facet_matrix,
        )

    def _size_keys(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(sorted ``item * n_labels + label`` keys, their index into ``size_flat``), cached."""
        cached = self.__dict__.get("_size_key_cache")
        if cached is None:
            n_labels = max(len(self.size_labels), 1)
            owner = np.repeat(
                np.arange(len(self.size_ptr) - 1, dtype=np.int64), np.diff(self.size_ptr)
            )
            keys = owner * n_labels + self.size_flat
            order = np.argsort(keys, kind="stable").astype(np.int64)
            cached = (keys[order], order)
            self.__dict__["_size_key_cache"] = cached
        return cached

    def size_position(self, item: Array, label: Array) -> npt.NDArray[np.int64]:
        """Position of ``label`` in the size list of ``item`` (-1 where not offered)."""
        item = np.asarray(item, np.int64)
        label = np.asarray(label, np.int64)
        sorted_keys, order = self._size_keys()
        if len(sorted_keys) == 0:
            return np.full(item.shape, -1, dtype=np.int64)
        want = item * max(len(self.size_labels), 1) + label
        at = np.minimum(np.searchsorted(sorted_keys, want), len(sorted_keys) - 1)
        found = (item >= 0) & (label >= 0) & (sorted_keys[at] == want)
        position = np.where(found, order[at] - self.size_ptr[np.maximum(item, 0)], -1)
        return position.astype(np.int64)

    def shifted_label(self, item: Array, label: Array, step: Array) -> npt.NDArray[np.int32]:
        """Label code ``step`` places along the item's size order from ``label`` (-1 if none)."""
        item = np.asarray(item, np.int64)
        pos = self.size_position(item, label)
        target = pos + np.asarray(step, np.int64)
        safe_item = np.maximum(item, 0)
        length = self.size_ptr[safe_item + 1] - self.size_ptr[safe_item]
        ok = (pos >= 0) & (target >= 0) & (target < length)
        flat_at = np.where(ok, self.size_ptr[safe_item] + target, 0)
        if len(self.size_flat) == 0:
            return np.full(item.shape, -1, dtype=np.int32)
        return np.where(ok, self.size_flat[flat_at], -1).astype(np.int32)


@dataclass
class EventTable:
    """All interactions as aligned numpy arrays, customers as codes into sorted ``customer_ids``.

    Built once per dataset (:meth:`from_dataset`) and reused for profiles at one date and for
    churn snapshots at many (``activity(as_of)`` only looks at events up to ``as_of``).
    """

    customer_ids: npt.NDArray[np.object_]  # sorted, unique: every customer of the dataset
    consent: npt.NDArray[np.bool_]  # per customer: False only where explicitly refused
    catalog: Catalog
    cust: npt.NDArray[np.int32]
    item: npt.NDArray[np.int32]  # row in catalog, -1 unknown
    kind: npt.NDArray[np.int8]  # InteractionType declaration order
    ts: npt.NDArray[np.int64]  # epoch seconds
    price: npt.NDArray[np.float64]  # price of the event, or the item's list price; NaN unknown
    size: npt.NDArray[np.int32]  # code into catalog.size_labels, -1 none
    reason: npt.NDArray[np.int8]  # ReturnReason declaration order, -1 none
    online: npt.NDArray[np.bool_]

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> EventTable:
        inter = dataset.interactions
        raw_ids = inter[InteractionCols.CUSTOMER_ID]
        if isinstance(raw_ids.dtype, pd.CategoricalDtype):
            inter_codes = raw_ids.cat.codes.to_numpy().astype(np.int64)
            inter_cats = pd.Index(raw_ids.cat.categories.astype("str"))
        else:
            codes_f, uniques = pd.factorize(raw_ids.astype("str"))
            inter_codes = np.asarray(codes_f, np.int64)
            inter_cats = pd.Index(pd.Series(uniques, dtype="str"))
        table_ids = pd.Index(dataset.customers[CustomerCols.ID].astype("str")).dropna().unique()
        universe = pd.Index(inter_cats.dropna().unique()).union(table_ids).sort_values()
        customer_ids = universe.to_numpy(dtype=object)
        position = np.append(universe.get_indexer(inter_cats), -1).astype(np.int64)
        cust = position[inter_codes]  # code -1 → trailing -1

        consent = np.ones(len(customer_ids), dtype=bool)
        consent_col = CustomerCols.CONSENT_PERSONALIZATION
        if consent_col in dataset.customers.columns and len(dataset.customers):
            flags = dataset.customers[consent_col].astype("boolean")
            refused = (~flags.fillna(True)).to_numpy(dtype=bool)
            if refused.any():
                rows = universe.get_indexer(
                    pd.Index(dataset.customers[CustomerCols.ID].astype("str"))[refused]
                )
                consent[rows[rows >= 0]] = False

        size_col = inter[InteractionCols.SIZE] if InteractionCols.SIZE in inter.columns else None
        event_labels: list[str] = []
        if size_col is not None:
            event_labels = [str(v) for v in pd.Series(size_col.dropna().unique()).tolist()]
        catalog = Catalog.from_items(dataset.items, event_labels)

        raw_items = inter[InteractionCols.ITEM_ID]
        if isinstance(raw_items.dtype, pd.CategoricalDtype) and pd.Index(
            raw_items.cat.categories.astype("str")
        ).equals(catalog.item_ids):
            item = raw_items.cat.codes.to_numpy().astype(np.int32)
        else:
            item = catalog.item_ids.get_indexer(pd.Index(raw_items.astype("str"))).astype(np.int32)

        kind = _codes(inter[InteractionCols.TYPE], _KIND_CODE).astype(np.int8)
        ts_ns = pd.to_datetime(inter[InteractionCols.TIMESTAMP], utc=True).to_numpy(
            dtype="datetime64[ns]"
        )
        ts = ts_ns.view(np.int64) // 1_000_000_000
        if InteractionCols.PRICE in inter.columns:
            price = pd.to_numeric(inter[InteractionCols.PRICE], errors="coerce").to_numpy(
                np.float64, na_value=np.nan
            )
        else:
            price = np.full(len(inter), np.nan)
        list_price = np.where(item >= 0, catalog.price[np.maximum(item, 0)], np.nan)
        price = np.where(np.isnan(price), list_price, price)
        if size_col is not None:
            size = _codes(size_col.astype("str"), {s: i for i, s in enumerate(catalog.size_labels)})
        else:
            size = np.full(len(inter), -1, dtype=np.int32)
        if InteractionCols.RETURN_REASON in inter.columns:
            reason = _codes(inter[InteractionCols.RETURN_REASON], _REASON_CODE).astype(np.int8)
        else:
            reason = np.full(len(inter), -1, dtype=np.int8)
        if InteractionCols.CHANNEL in inter.columns:
            online = inter[InteractionCols.CHANNEL].isin(_ONLINE_CHANNELS).to_numpy(dtype=bool)
        else:
            online = np.zeros(len(inter), dtype=bool)
        keep = (cust >= 0) & (kind >= 0)
        if not keep.all():
            logger.warning(
                "%d interactions without a customer id or with an unknown type are ignored",
                int((~keep).sum()),
            )
        return cls(
            customer_ids=customer_ids,
            consent=consent,
            catalog=catalog,
            cust=cust[keep].astype(np.int32),
            item=item[keep],
            kind=kind[keep],
            ts=ts[keep],
            price=price[keep],
            size=size[keep].astype(np.int32),
            reason=reason[keep],
            online=online[keep],
        )

    def until(self, as_of: datetime) -> EventTable:
        """The events dated at or before ``as_of`` (same customers and catalog)."""
        mask = self.ts <= _epoch_seconds(as_of)
        if mask.all():
            return self
        return replace(
            self,
            cust=self.cust[mask],
            item=self.item[mask],
            kind=self.kind[mask],
            ts=self.ts[mask],
            price=self.price[mask],
            size=self.size[mask],
            reason=self.reason[mask],
            online=self.online[mask],
        )

    def purchased_between(self, start: datetime, end: datetime) -> npt.NDArray[np.bool_]:
        """Per customer: a purchase dated in ``(start, end]``."""
        s, e = _epoch_seconds(start), _epoch_seconds(end)
        mask = (self.kind == K_PURCHASE) & (self.ts > s) & (self.ts <= e)
        out = np.zeros(self.n_customers, dtype=bool)
        out[self.cust[mask]] = True
        return out

    def activity(self, as_of: datetime) -> pd.DataFrame:
        """Per-customer RFM and behaviour aggregates from the events up to ``as_of``.

        Columns (one row per customer, in ``customer_ids`` order): ``customer_id``,
        ``first_purchase`` / ``last_purchase`` / ``last_seen`` (epoch seconds, NaN if none),
        ``frequency`` (orders = distinct purchase days), ``n_purchases`` (items), ``n_returns``,
        ``n_size_returns``, ``monetary`` (net), ``spend_90``, ``orders_30/90/180/365``,
        ``views_30/90`` (views + clicks), ``carts_30`` (carts + wishlists), ``events_30/90``,
        ``online_share`` (of purchases). Recency etc. are derived from these and ``as_of``.
        """
        ev = self.until(as_of)
        now_s = _epoch_seconds(as_of)
        n = self.n_customers
        cust = ev.cust.astype(np.int64)
        buy = ev.kind == K_PURCHASE
        ret = ev.kind == K_RETURN
        age = now_s - ev.ts.astype(np.float64)

        def count(mask: Array, weights: Array | None = None) -> npt.NDArray[np.float64]:
            w = None if weights is None else weights[mask]
            return np.bincount(cust[mask], weights=w, minlength=n).astype(np.float64)

        first = np.full(n, np.nan)
        last = np.full(n, np.nan)
        seen = np.full(n, np.nan)
        b_cust, b_ts = cust[buy], ev.ts[buy].astype(np.float64)
        if len(b_cust):
            frame = pd.DataFrame({"c": b_cust, "t": b_ts}).groupby("c", sort=False)["t"]
            lo, hi = frame.min(), frame.max()
            first[lo.index.to_numpy()] = lo.to_numpy()
            last[hi.index.to_numpy()] = hi.to_numpy()
        if len(cust):
            seen_s = pd.Series(ev.ts.astype(np.float64)).groupby(cust, sort=False).max()
            seen[seen_s.index.to_numpy()] = seen_s.to_numpy()
        # Orders: distinct (customer, day) pairs among purchases.
        day = ev.ts[buy] // int(DAY)
        pairs = np.unique(b_cust * (1 << 24) + (day - (day.min() if len(day) else 0)))
        pair_cust = pairs >> 24
        pair_day = (pairs & ((1 << 24) - 1)) + (day.min() if len(day) else 0)
        now_day = math.floor(now_s / DAY)
        out: dict[str, Any] = {"customer_id": self.customer_ids}
        out["first_purchase"] = first
        out["last_purchase"] = last
        out["last_seen"] = seen
        out["frequency"] = np.bincount(pair_cust, minlength=n).astype(np.float64)
        out["n_purchases"] = count(buy)
        out["n_returns"] = count(ret)
        size_ret = ret & ((ev.reason == R_TOO_SMALL) | (ev.reason == R_TOO_LARGE))
        out["n_size_returns"] = count(size_ret)
        paid = np.nan_to_num(ev.price)
        spend = count(buy, paid) - count(ret, paid)
        out["monetary"] = np.maximum(spend, 0.0)
        recent90 = age < 90 * DAY
        out["spend_90"] = np.maximum(count(buy & recent90, paid) - count(ret & recent90, paid), 0)
        for k in (30, 90, 180, 365):
            in_window = pair_day > now_day - k
            out[f"orders_{k}"] = np.bincount(pair_cust[in_window], minlength=n).astype(np.float64)
        looked = (ev.kind == K_VIEW) | (ev.kind == K_CLICK)
        carted = (ev.kind == K_CART) | (ev.kind == K_WISH)
        recent30 = age < 30 * DAY
        out["views_30"] = count(looked & recent30)
        out["views_90"] = count(looked & recent90)
        out["carts_30"] = count(carted & recent30)
        out["events_30"] = count(recent30)
        out["events_90"] = count(recent90)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["online_share"] = np.nan_to_num(count(buy & ev.online) / out["n_purchases"])
        return pd.DataFrame(out)


def customer_activity(dataset: Dataset, as_of: datetime) -> pd.DataFrame:
    """:meth:`EventTable.activity` of ``dataset`` (one-off convenience)."""
    return EventTable.from_dataset(dataset).activity(as_of)


@runtime_checkable
class ChurnScorer(Protocol):
    """What :func:`compute_profiles` needs of a churn model (``models.churn.ChurnModel``)."""

    @property
    def horizon_days(self) -> int: ...

    def predict_activity(self, activity: pd.DataFrame, as_of: datetime) -> npt.NDArray[np.float64]:
        """Probability of no purchase in the next ``horizon_days`` per row of ``activity``."""
        ...


# --------------------------------------------------------------------------------------------
# The batch store
# --------------------------------------------------------------------------------------------

# Per-customer columns of the store, and their dtypes.
_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "first_purchase": np.float64,
    "last_purchase": np.float64,
    "last_seen": np.float64,
    "frequency": np.int32,
    "monetary": np.float64,
    "n_purchases": np.int32,
    "n_returns": np.int32,
    "r_score": np.int8,
    "f_score": np.int8,
    "m_score": np.int8,
    "tier": np.int8,
    "stage": np.int8,
    "churn_risk": np.float32,
    "ltv": np.float64,
    "consent": np.bool_,
    "decay_as_of": np.float64,
    **{f"aff_total_{facet}": np.float64 for facet in FACETS},
}


@dataclass(frozen=True)
class _Snapshot:
    """One immutable version of the store's arrays (replaced as a whole on erase)."""

    ids: npt.NDArray[np.object_]  # sorted
    cols: dict[str, Array]
    size_row: npt.NDArray[np.int32]  # sorted; rows of one customer are contiguous
    size_cat: npt.NDArray[np.int16]
    size_label: npt.NDArray[np.int32]
    size_vote: npt.NDArray[np.float64]
    aff_row: dict[str, npt.NDArray[np.int32]]
    aff_code: dict[str, npt.NDArray[np.int32]]
    aff_mass: dict[str, npt.NDArray[np.float64]]


class CustomerProfiles:
    """Batch profiles of every customer (columnar), plus the rules to read and update them.

    Read: :meth:`lookup` (JSON-ready profile), :meth:`state` (online-state seed),
    :meth:`render`, :meth:`counts`, :meth:`list_segment`. Update: :meth:`apply_event` (pure:
    returns a new state). Privacy: :meth:`erase`. Persistence: :meth:`save` / :meth:`load`.
    Reads are lock-free (they see one immutable snapshot); :meth:`erase` swaps the snapshot.
    """

    def __init__(
        self,
        *,
        as_of: datetime,
        config: ProfileConfig,
        thresholds: RfmThresholds,
        snapshot: _Snapshot,
        categories: Sequence[str],
        size_labels: Sequence[str],
        facet_values: Mapping[str, Sequence[str]],
        churn_horizon_days: int | None,
    ) -> None:
        self.as_of = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
        self.as_of_s = _epoch_seconds(self.as_of)
        self.config = config
        self.thresholds = thresholds
        self.categories = tuple(categories)
        self.size_labels = tuple(size_labels)
        self.facet_values = {f: tuple(facet_values.get(f, ())) for f in FACETS}
        self.churn_horizon_days = churn_horizon_days
        self._snap = snapshot
        self._write_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snap.ids)

    def __contains__(self, customer_id: object) -> bool:
        return isinstance(customer_id, str) and self._row(self._snap, customer_id) is not None

    @property
    def customer_ids(self) -> npt.NDArray[np.object_]:
        """Every customer id in the store, sorted (a read-only view)."""
        ids = self._snap.ids.view()
        ids.flags.writeable = False
        return ids

    def column(self, name: str) -> Array:
        """A per-customer column (aligned with :attr:`customer_ids`), read-only."""
        array = self._snap.cols[name].view()
        array.flags.writeable = False
        return array

    @staticmethod
    def _row(snap: _Snapshot, customer_id: str) -> int | None:
        ids = snap.ids
        at = int(np.searchsorted(ids, customer_id))
        if at < len(ids) and ids[at] == customer_id:
            return at
        return None

    def state(self, customer_id: str) -> dict[str, Any] | None:
        """The online state of a customer as the batch knows it (None when unknown)."""
        snap = self._snap
        row = self._row(snap, customer_id)
        if row is None:
            return None
        c = snap.cols

        def opt(name: str) -> float | None:
            value = float(c[name][row])
            return None if math.isnan(value) else value

        sizes: dict[str, dict[str, float]] = {}
        lo, hi = _span(snap.size_row, row)
        for k in range(int(lo), int(hi)):
            cat = self.categories[int(snap.size_cat[k])]
            sizes.setdefault(cat, {})[self.size_labels[int(snap.size_label[k])]] = float(
                snap.size_vote[k]
            )
        affinities: dict[str, dict[str, Any]] = {}
        for facet in FACETS:
            lo, hi = _span(snap.aff_row[facet], row)
            values = self.facet_values[facet]
            top = {
                values[int(snap.aff_code[facet][k])]: float(snap.aff_mass[facet][k])
                for k in range(int(lo), int(hi))
            }
            total = float(c[f"aff_total_{facet}"][row])
            if top or total > 0:
                affinities[facet] = {"total": total, "top": top}
        risk = float(c["churn_risk"][row])
        return {
            "version": STATE_VERSION,
            "customer_id": customer_id,
            "batch_as_of": self.as_of_s,
            "updated": None,
            "first_purchase": opt("first_purchase"),
            "last_purchase": opt("last_purchase"),
            "last_seen": opt("last_seen"),
            "frequency": int(c["frequency"][row]),
            "monetary": float(c["monetary"][row]),
            "n_purchases": int(c["n_purchases"][row]),
            "n_returns": int(c["n_returns"][row]),
            "churn_risk": None if math.isnan(risk) else risk,
            "churn_as_of": None if math.isnan(risk) else self.as_of_s,
            "consent": bool(c["consent"][row]),
            "decay_as_of": opt("decay_as_of"),
            "sizes": sizes,
            "affinities": affinities,
        }

    def lookup(self, customer_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The JSON-ready profile of one customer at ``now`` (default: the batch date)."""
        state = self.state(customer_id)
        if state is None:
            return None
        return self.render(state, now if now is not None else self.as_of)

    def render(self, state: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """The JSON-ready profile of a state at ``now`` (scores with the batch thresholds)."""
        return render_state(
            state,
            now,
            config=self.config,
            thresholds=self.thresholds,
            churn_horizon_days=self.churn_horizon_days,
        )

    def apply_event(
        self,
        state: Mapping[str, Any] | None,
        event: Interaction,
        item_attrs: Mapping[str, Any] | None,
        now: datetime,
    ) -> dict[str, Any]:
        """A new state: ``state`` (None: a new customer) updated by ``event`` (see :func:`apply_event`)."""
        base = state if state is not None else new_state(event.customer_id, self.as_of_s)
        return apply_event(base, event, item_attrs, now, config=self.config)

    def size_table(self) -> pd.DataFrame:
        """Every customer's size per category at the batch date, one row per (customer,
        category): ``customer_id``, ``category``, ``size``, ``confidence`` (as in profiles)."""
        snap = self._snap
        columns = ["customer_id", "category", "size", "confidence"]
        if len(snap.size_row) == 0:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
        group = snap.size_row.astype(np.int64) * 1024 + snap.size_cat.astype(np.int64)
        total = pd.Series(snap.size_vote).groupby(group).transform("sum").to_numpy()
        labels = np.asarray(self.size_labels, dtype=object)[snap.size_label]
        frame = pd.DataFrame(
            {"group": group, "vote": snap.size_vote, "label": labels, "total": total}
        ).sort_values(["group", "vote", "label"], ascending=[True, False, True], kind="stable")
        best = frame.drop_duplicates("group", keep="first")
        rows = (best["group"].to_numpy() // 1024).astype(np.int64)
        cats = (best["group"].to_numpy() % 1024).astype(np.int64)
        share = best["vote"].to_numpy() / best["total"].to_numpy()
        scale = self.config.size_confidence_scale
        confidence = share * (1.0 - np.exp(-best["total"].to_numpy() / scale))
        return pd.DataFrame(
            {
                "customer_id": snap.ids[rows],
                "category": np.asarray(self.categories, dtype=object)[cats],
                "size": best["label"].to_numpy(),
                "confidence": np.round(confidence, 4),
            }
        ).reset_index(drop=True)

    def counts(self) -> dict[str, Any]:
        """Customers per tier and per stage (every name present, zeros included)."""
        snap = self._snap
        tiers = np.bincount(snap.cols["tier"].astype(np.int64), minlength=len(TIERS))
        stages = np.bincount(snap.cols["stage"].astype(np.int64), minlength=len(STAGES))
        return {
            "as_of": self.as_of.isoformat(),
            "customers": len(snap.ids),
            "tiers": {name: int(tiers[i]) for i, name in enumerate(TIERS)},
            "stages": {name: int(stages[i]) for i, name in enumerate(STAGES)},
        }

    def list_segment(
        self,
        name: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
        min_churn_risk: float | None = None,
    ) -> dict[str, Any]:
        """One page of the customers of a tier or stage, in customer-id order.

        ``name`` is a tier (:data:`TIERS`) or a stage (:data:`STAGES`; ``prospect`` is both and
        means the same customers). ``min_churn_risk`` keeps customers whose churn risk is at
        least that (customers without a risk are left out then). The cursor is opaque; it holds
        the last customer id returned, so pages stay stable when customers are erased in
        between. Returns ``{"segment", "min_churn_risk", "customers": [...], "next_cursor"}``
        (``next_cursor`` None on the last page). Raises InvalidRequest for an unknown segment,
        a bad cursor or ``limit`` outside 1..1000.
        """
        if name in TIERS:
            column, code = "tier", TIERS.index(name)
        elif name in STAGES:
            column, code = "stage", STAGES.index(name)
        else:
            raise InvalidRequest(
                f"unknown segment {name!r}: expected a tier {list(TIERS)} or a stage {list(STAGES)}"
            )
        if not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be in 1..1000, got {limit}")
        if min_churn_risk is not None and not 0.0 <= min_churn_risk <= 1.0:
            raise InvalidRequest(f"min_churn_risk must be in [0, 1], got {min_churn_risk}")
        after = _decode_cursor(cursor, name, min_churn_risk) if cursor else None
        snap = self._snap
        start = 0 if after is None else int(np.searchsorted(snap.ids, after, side="right"))
        mask = snap.cols[column][start:] == code
        if min_churn_risk is not None:
            with np.errstate(invalid="ignore"):
                mask &= snap.cols["churn_risk"][start:] >= min_churn_risk
        hits = np.flatnonzero(mask)[: limit + 1] + start
        more = len(hits) > limit
        rows = hits[:limit]
        customers = [self._summary(snap, int(r)) for r in rows]
        next_cursor = (
            _encode_cursor(name, min_churn_risk, str(snap.ids[rows[-1]]))
            if more and len(rows)
            else None
        )
        return {
            "segment": name,
            "min_churn_risk": min_churn_risk,
            "customers": customers,
            "next_cursor": next_cursor,
        }

    def _summary(self, snap: _Snapshot, row: int) -> dict[str, Any]:
        c = snap.cols
        last = float(c["last_purchase"][row])
        risk = float(c["churn_risk"][row])
        purchased = not math.isnan(last)
        return {
            "customer_id": str(snap.ids[row]),
            "tier": TIERS[int(c["tier"][row])],
            "stage": STAGES[int(c["stage"][row])],
            "r_score": int(c["r_score"][row]) if purchased else None,
            "f_score": int(c["f_score"][row]) if purchased else None,
            "m_score": int(c["m_score"][row]) if purchased else None,
            "recency_days": int(_whole_days(self.as_of_s - last)) if purchased else None,
            "frequency": int(c["frequency"][row]),
            "monetary": round(float(c["monetary"][row]), 2),
            "churn_risk": None if math.isnan(risk) else round(risk, 4),
            "lifetime_value": round(float(c["ltv"][row]), 2),
            "last_purchase": _iso(last),
        }

    # -- privacy ------------------------------------------------------------------------------

    def erase(self, customer_id: str) -> bool:
        """Remove the customer from every table of the store; True when they were there.

        Counts, segment listings, lookups and a later :meth:`save` no longer contain them.
        """
        with self._write_lock:
            snap = self._snap
            row = self._row(snap, customer_id)
            if row is None:
                return False

            # A customer's entries are one contiguous span of each row-sorted table: cut it out
            # (memcpy) and shift the later row numbers down by one.
            s_lo, s_hi = _span(snap.size_row, row)
            spans = {facet: _span(snap.aff_row[facet], row) for facet in FACETS}
            self._snap = _Snapshot(
                ids=_cut(snap.ids, row, row + 1),
                cols={k: _cut(v, row, row + 1) for k, v in snap.cols.items()},
                size_row=_cut_rows(snap.size_row, s_lo, s_hi),
                size_cat=_cut(snap.size_cat, s_lo, s_hi),
                size_label=_cut(snap.size_label, s_lo, s_hi),
                size_vote=_cut(snap.size_vote, s_lo, s_hi),
                aff_row={f: _cut_rows(snap.aff_row[f], *spans[f]) for f in FACETS},
                aff_code={f: _cut(snap.aff_code[f], *spans[f]) for f in FACETS},
                aff_mass={f: _cut(snap.aff_mass[f], *spans[f]) for f in FACETS},
            )
        logger.info("erased one customer from the profiles (%d remain)", len(self._snap.ids))
        return True

    def revoke_personalization(self, customer_id: str) -> bool:
        """Drop the customer's size profile and affinities, mark consent False (RFM stays)."""
        with self._write_lock:
            snap = self._snap
            row = self._row(snap, customer_id)
            if row is None:
                return False
            cols = dict(snap.cols)
            cols["consent"] = cols["consent"].copy()
            cols["consent"][row] = False
            for facet in FACETS:
                name = f"aff_total_{facet}"
                cols[name] = cols[name].copy()
                cols[name][row] = 0.0
            s_lo, s_hi = _span(snap.size_row, row)
            spans = {facet: _span(snap.aff_row[facet], row) for facet in FACETS}
            self._snap = replace(
                snap,
                cols=cols,
                size_row=_cut(snap.size_row, s_lo, s_hi),
                size_cat=_cut(snap.size_cat, s_lo, s_hi),
                size_label=_cut(snap.size_label, s_lo, s_hi),
                size_vote=_cut(snap.size_vote, s_lo, s_hi),
                aff_row={f: _cut(snap.aff_row[f], *spans[f]) for f in FACETS},
                aff_code={f: _cut(snap.aff_code[f], *spans[f]) for f in FACETS},
                aff_mass={f: _cut(snap.aff_mass[f], *spans[f]) for f in FACETS},
            )
        return True

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write ``customers.parquet``, ``sizes.parquet``, ``affinities.parquet`` and
        ``profiles.json`` into the folder ``path`` (no pickle)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        snap = self._snap
        customers = {"customer_id": pa.array(snap.ids.tolist(), type=pa.string())}
        customers.update({k: pa.array(v) for k, v in snap.cols.items()})
        pq.write_table(pa.table(customers), path / "customers.parquet", compression="zstd")
        sizes = pa.table(
            {
                "row": pa.array(snap.size_row),
                "category": pa.array(snap.size_cat),
                "label": pa.array(snap.size_label),
                "vote": pa.array(snap.size_vote),
            }
        )
        pq.write_table(sizes, path / "sizes.parquet", compression="zstd")
        facet_code = np.concatenate(
            [np.full(len(snap.aff_row[f]), i, dtype=np.int8) for i, f in enumerate(FACETS)]
        )
        affinities = pa.table(
            {
                "facet": pa.array(facet_code),
                "row": pa.array(np.concatenate([snap.aff_row[f] for f in FACETS])),
                "value": pa.array(np.concatenate([snap.aff_code[f] for f in FACETS])),
                "mass": pa.array(np.concatenate([snap.aff_mass[f] for f in FACETS])),
            }
        )
        pq.write_table(affinities, path / "affinities.parquet", compression="zstd")
        meta = {
            "format": FORMAT,
            "as_of": self.as_of.isoformat(),
            "config": self.config.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "categories": list(self.categories),
            "size_labels": list(self.size_labels),
            "facet_values": {f: list(v) for f, v in self.facet_values.items()},
            "churn_horizon_days": self.churn_horizon_days,
            "customers": len(snap.ids),
            "tiers": list(TIERS),
            "stages": list(STAGES),
        }
        (path / "profiles.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> CustomerProfiles:
        """Read a folder written by :meth:`save` (BundleError when it is not one)."""
        path = Path(path)
        try:
            meta = json.loads((path / "profiles.json").read_text())
        except FileNotFoundError as exc:
            raise BundleError(f"{path} holds no customer profiles (no profiles.json)") from exc
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path / 'profiles.json'} is not valid JSON: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise BundleError(f"{path} holds {meta.get('format')!r}, not {FORMAT!r}")
        if tuple(meta.get("tiers", TIERS)) != TIERS or tuple(meta.get("stages", STAGES)) != STAGES:
            raise BundleError(f"{path}: tier or stage names differ from this version's")
        try:
            customers = pq.read_table(path / "customers.parquet")
            sizes = pq.read_table(path / "sizes.parquet")
            affinities = pq.read_table(path / "affinities.parquet")
        except (OSError, pa.ArrowException) as exc:
            raise BundleError(f"{path}: cannot read the profile tables ({exc})") from exc
        ids = np.asarray(customers.column("customer_id").to_pylist(), dtype=object)
        cols = {
            name: customers.column(name).to_numpy().astype(dtype, copy=False)
            for name, dtype in _COLUMNS.items()
        }
        facet = affinities.column("facet").to_numpy()
        a_row = affinities.column("row").to_numpy()
        a_val = affinities.column("value").to_numpy()
        a_mass = affinities.column("mass").to_numpy()
        snapshot = _Snapshot(
            ids=ids,
            cols=cols,
            size_row=sizes.column("row").to_numpy().astype(np.int32),
            size_cat=sizes.column("category").to_numpy().astype(np.int16),
            size_label=sizes.column("label").to_numpy().astype(np.int32),
            size_vote=sizes.column("vote").to_numpy().astype(np.float64),
            aff_row={f: a_row[facet == i].astype(np.int32) for i, f in enumerate(FACETS)},
            aff_code={f: a_val[facet == i].astype(np.int32) for i, f in enumerate(FACETS)},
            aff_mass={f: a_mass[facet == i].astype(np.float64) for i, f in enumerate(FACETS)},
        )
        return cls(
            as_of=datetime.fromisoformat(meta["as_of"]),
            config=ProfileConfig.from_dict(meta["config"]),
            thresholds=RfmThresholds.from_dict(meta["thresholds"]),
            snapshot=snapshot,
            categories=meta["categories"],
            size_labels=meta["size_labels"],
            facet_values=meta["facet_values"],
            churn_horizon_days=meta.get("churn_horizon_days"),
        )


def _span(rows: npt.NDArray[np.int32], row: int) -> tuple[int, int]:
    """``[lo, hi)`` of the entries of ``row`` in a sorted row array (the query keeps the array's
    dtype: a mismatched one would make numpy convert the whole array on every call)."""
    lo, hi = np.searchsorted(rows, np.array([row, row + 1], dtype=rows.dtype))
    return int(lo), int(hi)


def _cut(array: Array, lo: int, hi: int) -> Array:
    """``array`` without ``array[lo:hi]``."""
    return np.concatenate([array[:lo], array[hi:]])


def _cut_rows(rows: npt.NDArray[np.int32], lo: int, hi: int) -> npt.NDArray[np.int32]:
    """A row-number array without ``rows[lo:hi]`` (one customer), later rows shifted down."""
    return np.concatenate([rows[:lo], rows[hi:] - 1]).astype(np.int32, copy=False)


def _encode_cursor(segment: str, min_churn_risk: float | None, after: str) -> str:
    raw = json.dumps({"s": segment, "r": min_churn_risk, "a": after}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, segment: str, min_churn_risk: float | None) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = data["a"]
        ok = data["s"] == segment and data["r"] == min_churn_risk and isinstance(after, str)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("cursor is not valid") from exc
    if not ok:
        raise InvalidRequest("cursor belongs to another segment or filter")
    return str(after)


# --------------------------------------------------------------------------------------------
# Batch computation
# --------------------------------------------------------------------------------------------


def _decay(age_seconds: Array, half_life_days: float | None) -> npt.NDArray[np.float64]:
    age = np.maximum(np.asarray(age_seconds, np.float64), 0.0)
    if half_life_days is None:
        return np.ones(age.shape)
    return np.asarray(np.exp2(-age / (half_life_days * DAY)), dtype=np.float64)


def _top_k(group: Array, value: Array, k: int) -> npt.NDArray[np.int64]:
    """Indices (ascending) of the ``k`` largest ``value`` per group.

    Entries of a group must be contiguous and in tie-break order (the first of equal values
    wins): k rounds of a segmented max, linear in the number of entries.
    """
    n = len(group)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    big = counts > k
    keep = np.repeat(~big, counts)
    if not big.any():
        return np.flatnonzero(keep).astype(np.int64)
    # Only the entries of groups larger than k need choosing.
    sub = np.flatnonzero(~keep)
    sub_counts = counts[big]
    sub_starts = np.r_[0, np.cumsum(sub_counts)[:-1]]
    seg = np.repeat(np.arange(len(sub_counts)), sub_counts)
    v = np.asarray(value, np.float64)[sub].copy()
    position = np.arange(len(sub))
    for _ in range(k):
        best = np.maximum.reduceat(v, sub_starts)
        candidate = np.where(v == best[seg], position, len(sub))
        first = np.minimum.reduceat(candidate, sub_starts)
        keep[sub[first]] = True
        v[first] = -np.inf
    return np.flatnonzero(keep).astype(np.int64)


def _size_votes(
    ev: EventTable, allowed: npt.NDArray[np.bool_], now_s: float, config: ProfileConfig
) -> tuple[Array, Array, Array, Array]:
    """(row, category, label, vote) of the kept top ``size_keep`` labels per (customer, category)."""
    cat = ev.catalog
    known = (ev.item >= 0) & (ev.size >= 0) & allowed[ev.cust]
    item_cat = np.where(ev.item >= 0, cat.category[np.maximum(ev.item, 0)], -1)
    known &= item_cat >= 0
    buy = known & (ev.kind == K_PURCHASE)
    small = known & (ev.kind == K_RETURN) & (ev.reason == R_TOO_SMALL)
    large = known & (ev.kind == K_RETURN) & (ev.reason == R_TOO_LARGE)
    weight = _decay(now_s - ev.ts, config.size_half_life_days)
    rows_l, cats_l, labels_l, votes_l = [], [], [], []
    rows_l.append(ev.cust[buy])
    cats_l.append(item_cat[buy])
    labels_l.append(ev.size[buy])
    votes_l.append(weight[buy])
    for mask, step in ((small, 1), (large, -1)):
        rows_l.append(ev.cust[mask])
        cats_l.append(item_cat[mask])
        labels_l.append(ev.size[mask])
        votes_l.append(-config.size_return_weight * weight[mask])
        shifted = cat.shifted_label(ev.item[mask], ev.size[mask], np.full(int(mask.sum()), step))
        ok = shifted >= 0
        rows_l.append(ev.cust[mask][ok])
        cats_l.append(item_cat[mask][ok])
        labels_l.append(shifted[ok])
        votes_l.append(config.size_shift_weight * weight[mask][ok])
    row = np.concatenate(rows_l).astype(np.int64)
    category = np.concatenate(cats_l).astype(np.int64)
    label = np.concatenate(labels_l).astype(np.int64)
    vote = np.concatenate(votes_l)
    n_cat = max(len(cat.categories), 1)
    n_lab = max(len(cat.size_labels), 1)
    key = (row * n_cat + category) * n_lab + label
    uniq, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=vote, minlength=len(uniq))
    positive = total > 1e-12
    uniq, total = uniq[positive], total[positive]
    label_u = uniq % n_lab
    group = uniq // n_lab
    keep = _top_k(group, total, config.size_keep)  # labels ascend within a group
    group_k = group[keep]
    return (
        (group_k // n_cat).astype(np.int32),
        (group_k % n_cat).astype(np.int16),
        label_u[keep].astype(np.int32),
        total[keep].astype(np.float64),
    )


def _affinities(
    ev: EventTable, allowed: npt.NDArray[np.bool_], now_s: float, config: ProfileConfig
) -> tuple[dict[str, Array], dict[str, Array], dict[str, Array], dict[str, Array]]:
    """Per facet: (row, value code, mass) of the top ``affinity_keep`` values, and row totals."""
    n = ev.n_customers
    cat = ev.catalog
    w = config.kind_weights()[ev.kind.astype(np.int64)]
    size_return = (ev.kind == K_RETURN) & ((ev.reason == R_TOO_SMALL) | (ev.reason == R_TOO_LARGE))
    w = np.where(size_return, 0.0, w) * _decay(now_s - ev.ts, config.affinity_half_life_days)
    use = (w != 0) & (ev.item >= 0) & allowed[ev.cust]
    n_items = len(cat.item_ids)
    cust_items = sp.csr_matrix(
        (w[use], (ev.cust[use].astype(np.int64), ev.item[use].astype(np.int64))),
        shape=(n, n_items),
    )
    cust_items.sum_duplicates()
    rows_out: dict[str, Array] = {}
    codes_out: dict[str, Array] = {}
    mass_out: dict[str, Array] = {}
    totals: dict[str, Array] = {}
    for facet in FACETS:
        matrix = cat.facet_matrix[facet]
        if matrix.shape[1] == 0:
            rows_out[facet] = np.empty(0, np.int32)
            codes_out[facet] = np.empty(0, np.int32)
            mass_out[facet] = np.empty(0, np.float64)
            totals[facet] = np.zeros(n)
            continue
        scores = sp.csr_matrix(cust_items @ matrix)
        scores.data = np.maximum(scores.data, 0.0)
        scores.eliminate_zeros()
        scores.sort_indices()  # value codes ascend within a row: ties go to the lower code
        row = np.repeat(np.arange(n, dtype=np.int64), np.diff(scores.indptr))
        code = scores.indices.astype(np.int64)
        mass = scores.data.astype(np.float64)
        totals[facet] = np.bincount(row, weights=mass, minlength=n)
        keep = _top_k(row, mass, config.affinity_keep)
        rows_out[facet] = row[keep].astype(np.int32)
        codes_out[facet] = code[keep].astype(np.int32)
        mass_out[facet] = mass[keep]
    return rows_out, codes_out, mass_out, totals


def compute_profiles(
    dataset: Dataset | EventTable,
    now: datetime,
    config: ProfileConfig | None = None,
    *,
    churn: ChurnScorer | None = None,
) -> CustomerProfiles:
    """Profiles of every customer of ``dataset`` as of ``now`` (events after ``now`` ignored).

    ``dataset`` may also be an :class:`EventTable` already built from it (saves the conversion
    when churn snapshots are computed from the same data). ``churn`` fills ``churn_risk`` (and
    the LTV lifetime) for customers who have purchased; without it churn risk is null.
    """
    config = config or ProfileConfig()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now_s = _epoch_seconds(now)
    ev = dataset if isinstance(dataset, EventTable) else EventTable.from_dataset(dataset)
    ev = ev.until(now)
    activity = ev.activity(now)
    n = ev.n_customers
    keep = np.ones(n, dtype=bool)
    if config.consent_policy == "exclude":
        keep = ev.consent.copy()
    allowed = ev.consent if config.consent_policy == "rfm_only" else np.ones(n, dtype=bool)
    allowed = allowed & keep

    first = activity["first_purchase"].to_numpy(np.float64)
    last = activity["last_purchase"].to_numpy(np.float64)
    frequency = activity["frequency"].to_numpy(np.float64)
    monetary = activity["monetary"].to_numpy(np.float64)
    purchased = ~np.isnan(last)
    recency = _whole_days(now_s - last)
    base = purchased & keep
    thresholds = RfmThresholds.fit(recency[base], frequency[base], monetary[base])
    r, f, m = thresholds.scores(np.nan_to_num(recency), frequency, monetary)
    tier = np.where(purchased, tier_codes(r, f, m, config), TIERS.index(PROSPECT)).astype(np.int8)
    zero = np.int8(0)
    r, f, m = (np.where(purchased, s, zero).astype(np.int8) for s in (r, f, m))
    stage = stage_codes(first, last, now_s, config)

    risk = np.full(n, np.nan, dtype=np.float32)
    horizon: int | None = None
    if churn is not None:
        horizon = int(churn.horizon_days)
        if base.any():
            predicted = np.asarray(churn.predict_activity(activity[base], now), np.float64)
            risk[base] = predicted.astype(np.float32)
    ltv = lifetime_value(monetary, frequency, first, now_s, risk, horizon, config)

    size_row, size_cat, size_label, size_vote = _size_votes(ev, allowed, now_s, config)
    aff_row, aff_code, aff_mass, aff_total = _affinities(ev, allowed, now_s, config)

    cols: dict[str, Array] = {
        "first_purchase": first,
        "last_purchase": last,
        "last_seen": activity["last_seen"].to_numpy(np.float64),
        "frequency": frequency.astype(np.int32),
        "monetary": monetary,
        "n_purchases": activity["n_purchases"].to_numpy().astype(np.int32),
        "n_returns": activity["n_returns"].to_numpy().astype(np.int32),
        "r_score": r,
        "f_score": f,
        "m_score": m,
        "tier": tier,
        "stage": stage,
        "churn_risk": risk,
        "ltv": ltv,
        "consent": ev.consent.copy(),
        "decay_as_of": np.full(n, now_s),
        **{f"aff_total_{facet}": aff_total[facet] for facet in FACETS},
    }
    cols = {k: np.asarray(v).astype(_COLUMNS[k], copy=False) for k, v in cols.items()}
    ids = ev.customer_ids
    if not keep.all():
        new_index = np.cumsum(keep) - 1
        ids = ids[keep]
        cols = {k: v[keep] for k, v in cols.items()}
        size_ok = keep[size_row]
        size_row = new_index[size_row[size_ok]].astype(np.int32)
        size_cat, size_label, size_vote = size_cat[size_ok], size_label[size_ok], size_vote[size_ok]
        for facet in FACETS:
            ok = keep[aff_row[facet]]
            aff_row[facet] = new_index[aff_row[facet][ok]].astype(np.int32)
            aff_code[facet], aff_mass[facet] = aff_code[facet][ok], aff_mass[facet][ok]
    snapshot = _Snapshot(
        ids=ids,
        cols=cols,
        size_row=size_row,
        size_cat=size_cat,
        size_label=size_label,
        size_vote=size_vote,
        aff_row={k: v.astype(np.int32) for k, v in aff_row.items()},
        aff_code={k: v.astype(np.int32) for k, v in aff_code.items()},
        aff_mass={k: v.astype(np.float64) for k, v in aff_mass.items()},
    )
    profiles = CustomerProfiles(
        as_of=now,
        config=config,
        thresholds=thresholds,
        snapshot=snapshot,
        categories=ev.catalog.categories,
        size_labels=ev.catalog.size_labels,
        facet_values=ev.catalog.facet_values,
        churn_horizon_days=horizon,
    )
    logger.info(
        "profiles of %d customers as of %s: %d purchasers, %d size rows",
        len(ids),
        now.date().isoformat(),
        int(base.sum()),
        len(size_row),
    )
    return profiles


# --------------------------------------------------------------------------------------------
# Online state: one JSON-ready dict per customer
# --------------------------------------------------------------------------------------------


def new_state(
    customer_id: str, batch_as_of: float | None = None, consent: bool = True
) -> dict[str, Any]:
    """The state of a customer nothing is known about yet (a prospect)."""
    return {
        "version": STATE_VERSION,
        "customer_id": customer_id,
        "batch_as_of": batch_as_of,
        "updated": None,
        "first_purchase": None,
        "last_purchase": None,
        "last_seen": None,
        "frequency": 0,
        "monetary": 0.0,
        "n_purchases": 0,
        "n_returns": 0,
        "churn_risk": None,
        "churn_as_of": None,
        "consent": consent,
        "decay_as_of": None,
        "sizes": {},
        "affinities": {},
    }


def revoke_personalization(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` with consent False and no size profile or affinities."""
    out = _copy_state(state)
    out["consent"] = False
    out["sizes"] = {}
    out["affinities"] = {}
    return out


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(state)
    out["sizes"] = {c: dict(v) for c, v in state.get("sizes", {}).items()}
    out["affinities"] = {
        f: {"total": float(v.get("total", 0.0)), "top": dict(v.get("top", {}))}
        for f, v in state.get("affinities", {}).items()
    }
    return out


def _factor(half_life_days: float | None, seconds: float) -> float:
    if half_life_days is None:
        return 1.0
    return float(2.0 ** (-max(seconds, 0.0) / (half_life_days * DAY)))


def _item_values(item_attrs: Mapping[str, Any], facet: str) -> list[str]:
    value = item_attrs.get(FACET_COLUMNS[facet])
    if value is None:
        return []
    if facet == "style":
        if isinstance(value, str):
            return [value]
        if isinstance(value, Iterable):
            return [str(v) for v in value]
        return []
    if isinstance(value, float) and math.isnan(value):
        return []
    return [str(value)]


def _shift_size(item_attrs: Mapping[str, Any], size: str, step: int) -> str | None:
    offered = item_attrs.get(ItemCols.SIZES)
    if not isinstance(offered, list | tuple | np.ndarray):
        return None
    labels = [str(s) for s in offered]
    if size not in labels:
        return None
    target = labels.index(size) + step
    return labels[target] if 0 <= target < len(labels) else None


def apply_event(
    state: Mapping[str, Any],
    event: Interaction,
    item_attrs: Mapping[str, Any] | None,
    now: datetime,
    *,
    config: ProfileConfig,
) -> dict[str, Any]:
    """A new state: ``state`` updated by one event, with the batch rules (the input is not changed).

    * purchase: first/last purchase, frequency (+1 when its UTC day is after the last or before
      the first purchase day; a day in between is assumed counted already), monetary (+price),
      size vote (+1 at the event's size);
    * return: monetary (−price); ``too_small`` / ``too_large`` take the size vote back and vote
      for the next larger / smaller size in the item's ``sizes``; other reasons count against
      the item's affinities;
    * every type: affinities (weighted by ``config.event_weights``), ``last_seen``.

    Decayed quantities (size votes, affinities) are first decayed from the state's
    ``decay_as_of`` to ``max(decay_as_of, now)``. ``item_attrs`` is the item's record (keys of
    :class:`~feature_store.schema.ItemCols`: ``category``, ``sizes``, ``styles``, ``colour``,
    ``material``, ``price_band``, ``price``); None updates RFM only. Sizes and affinities are not
    learned when the state's ``consent`` is False.
    """
    out = _copy_state(state)
    now_s = _epoch_seconds(now)
    t = _epoch_seconds(event.timestamp)
    attrs: Mapping[str, Any] = item_attrs or {}
    price = event.price
    if price is None:
        raw = attrs.get(ItemCols.PRICE)
        price = float(raw) if isinstance(raw, int | float) and not math.isnan(raw) else 0.0
    kind = event.type
    out["last_seen"] = t if out.get("last_seen") is None else max(float(out["last_seen"]), t)
    previous = out.get("updated")
    out["updated"] = t if previous is None else max(float(previous), t)

    if kind is InteractionType.PURCHASE:
        day = math.floor(t / DAY)
        first, last = out.get("first_purchase"), out.get("last_purchase")
        if first is None or last is None:
            out["frequency"] = 1
            out["first_purchase"] = out["last_purchase"] = t
        else:
            if day > math.floor(float(last) / DAY) or day < math.floor(float(first) / DAY):
                out["frequency"] = int(out.get("frequency", 0)) + 1
            out["first_purchase"] = min(float(first), t)
            out["last_purchase"] = max(float(last), t)
        out["monetary"] = float(out.get("monetary", 0.0)) + float(price)
        out["n_purchases"] = int(out.get("n_purchases", 0)) + 1
    elif kind is InteractionType.RETURN:
        out["monetary"] = max(float(out.get("monetary", 0.0)) - float(price), 0.0)
        out["n_returns"] = int(out.get("n_returns", 0)) + 1

    if not out.get("consent", True) or item_attrs is None:
        return out

    ref = now_s if out.get("decay_as_of") is None else max(float(out["decay_as_of"]), now_s)
    elapsed = 0.0 if out.get("decay_as_of") is None else ref - float(out["decay_as_of"])
    size_f = _factor(config.size_half_life_days, elapsed)
    aff_f = _factor(config.affinity_half_life_days, elapsed)
    out["decay_as_of"] = ref
    sizes: dict[str, dict[str, float]] = {
        c: {label: v * size_f for label, v in votes.items()} for c, votes in out["sizes"].items()
    }
    affinities: dict[str, dict[str, Any]] = {
        f: {"total": v["total"] * aff_f, "top": {k: m * aff_f for k, m in v["top"].items()}}
        for f, v in out["affinities"].items()
    }

    category = attrs.get(ItemCols.CATEGORY)
    size_return = kind is InteractionType.RETURN and event.return_reason in SIZE_RETURN_REASONS
    if event.size is not None and category is not None:
        w = _factor(config.size_half_life_days, ref - t)
        votes = sizes.setdefault(str(category), {})
        if kind is InteractionType.PURCHASE:
            votes[event.size] = votes.get(event.size, 0.0) + w
        elif size_return:
            votes[event.size] = votes.get(event.size, 0.0) - config.size_return_weight * w
            step = 1 if event.return_reason is ReturnReason.TOO_SMALL else -1
            target = _shift_size(attrs, event.size, step)
            if target is not None:
                votes[target] = votes.get(target, 0.0) + config.size_shift_weight * w
        kept = sorted(
            ((label, v) for label, v in votes.items() if v > 1e-12), key=lambda lv: (-lv[1], lv[0])
        )[: config.size_keep]
        sizes[str(category)] = dict(kept)
        if not kept:
            del sizes[str(category)]

    weight = 0.0 if size_return else float(config.event_weights.get(kind.value, 0.0))
    weight *= _factor(config.affinity_half_life_days, ref - t)
    if weight != 0.0:
        for facet in FACETS:
            values = _item_values(attrs, facet)
            if not values:
                continue
            entry = affinities.setdefault(facet, {"total": 0.0, "top": {}})
            top: dict[str, float] = entry["top"]
            share = weight / len(values)
            for value in values:
                old = top.get(value, 0.0)
                new = max(old + share, 0.0)
                top[value] = new
                entry["total"] = max(float(entry["total"]) + (new - old), 0.0)
            ranked = sorted(
                ((v, m) for v, m in top.items() if m > 1e-12), key=lambda vm: (-vm[1], vm[0])
            )
            entry["top"] = dict(ranked[: config.affinity_keep])
    out["sizes"] = sizes
    out["affinities"] = affinities
    return out


def render_state(
    state: Mapping[str, Any],
    now: datetime,
    *,
    config: ProfileConfig,
    thresholds: RfmThresholds,
    churn_horizon_days: int | None,
) -> dict[str, Any]:
    """The JSON-ready profile of a state at ``now``: tier, RFM, stage, sizes, affinities, churn
    risk, lifetime value, last purchase."""
    now_s = _epoch_seconds(now)
    first_raw = state.get("first_purchase")
    last_raw = state.get("last_purchase")
    first = None if first_raw is None else float(first_raw)
    last = None if last_raw is None else float(last_raw)
    frequency = int(state.get("frequency", 0))
    monetary = float(state.get("monetary", 0.0))
    stage = stage_of(first, last, now_s, config)
    rfm: dict[str, Any] = {
        "recency_days": None,
        "frequency": frequency,
        "monetary": round(monetary, 2),
        "r_score": None,
        "f_score": None,
        "m_score": None,
    }
    tier = PROSPECT
    if last is not None:
        recency = max(math.floor((now_s - last) / DAY), 0)
        r = _score_one(recency, thresholds.recency, higher_is_better=False)
        f = _score_one(frequency, thresholds.frequency, higher_is_better=True)
        m = _score_one(monetary, thresholds.monetary, higher_is_better=True)
        tier = _tier_one(r, f, m, config)
        rfm.update(recency_days=recency, r_score=r, f_score=f, m_score=m)
    risk = state.get("churn_risk")
    ltv = _lifetime_value_one(
        monetary,
        frequency,
        first,
        now_s,
        None if risk is None else float(risk),
        churn_horizon_days,
        config,
    )
    sizes: dict[str, Any] = {}
    decay_as_of = state.get("decay_as_of")
    # Votes were decayed to ``decay_as_of``; confidence uses their mass at ``now``.
    age = 0.0 if decay_as_of is None else now_s - float(decay_as_of)
    to_now = _factor(config.size_half_life_days, age)
    for category in sorted(state.get("sizes", {})):
        votes = {k: float(v) for k, v in state["sizes"][category].items() if float(v) > 1e-12}
        total = sum(votes.values()) * to_now
        if total <= 0:
            continue
        ranked = sorted(votes.items(), key=lambda lv: (-lv[1], lv[0]))
        best, best_vote = ranked[0]
        share = best_vote * to_now / total
        confidence = share * (1.0 - math.exp(-total / config.size_confidence_scale))
        sizes[category] = {
            "size": best,
            "confidence": round(confidence, 4),
            "alternatives": [
                {"size": label, "share": round(v * to_now / total, 4)} for label, v in ranked[1:]
            ],
        }
    affinities: dict[str, list[dict[str, Any]]] = {}
    for facet in FACETS:
        entry = state.get("affinities", {}).get(facet)
        if not entry:
            continue
        total = float(entry.get("total", 0.0))
        top = {k: float(v) for k, v in entry.get("top", {}).items() if float(v) > 1e-12}
        if total <= 0 or not top:
            continue
        ranked = sorted(top.items(), key=lambda vm: (-vm[1], vm[0]))[: config.top_affinities]
        affinities[facet] = [{"value": v, "score": round(m / total, 4)} for v, m in ranked]
    return {
        "customer_id": state.get("customer_id"),
        "as_of": datetime.fromtimestamp(now_s, tz=UTC).isoformat(),
        "tier": tier,
        "stage": stage,
        "rfm": rfm,
        "first_purchase": _iso(first),
        "last_purchase": _iso(last),
        "sizes": sizes,
        "affinities": affinities,
        "churn_risk": None if risk is None else round(float(risk), 4),
        "churn_horizon_days": churn_horizon_days if risk is not None else None,
        "churn_as_of": _iso(state.get("churn_as_of")),
        "lifetime_value": round(float(ltv), 2),
        "personalization_consent": bool(state.get("consent", True)),
        "updated_online": state.get("updated") is not None,
    }


def preferred_size(
    state_or_profile: Mapping[str, Any],
    category: str,
    offered_sizes: Sequence[str],
    config: ProfileConfig | None = None,
) -> tuple[str, float] | None:
    """The customer's size for an item of ``category`` offering ``offered_sizes``: the best-voted
    label of that category the item offers, with its confidence (None when none is offered).

    Accepts a state (votes) or a rendered profile (size + alternatives), so size-aware filtering
    works across size scales in one category (jeans in waist sizes, joggers in S/M/L).
    """
    offered = {str(s) for s in offered_sizes}
    sizes = state_or_profile.get("sizes", {}).get(category)
    if not sizes:
        return None
    if "size" in sizes:  # a rendered profile
        if sizes["size"] in offered:
            return str(sizes["size"]), float(sizes["confidence"])
        for alt in sizes.get("alternatives", []):
            if alt["size"] in offered:
                return str(alt["size"]), float(sizes["confidence"]) * float(alt["share"])
        return None
    votes = {k: float(v) for k, v in sizes.items() if float(v) > 1e-12}
    total = sum(votes.values())
    ranked = sorted(votes.items(), key=lambda lv: (-lv[1], lv[0]))
    for label, vote in ranked:
        if label in offered:
            scale = (config or ProfileConfig()).size_confidence_scale
            return label, vote / total * (1.0 - math.exp(-total / scale))
    return None


# --------------------------------------------------------------------------------------------
# Keeping online state: what the service calls
# --------------------------------------------------------------------------------------------


@runtime_checkable
class ProfileStateStore(Protocol):
    """Where online states live: the in-process default or a Redis JSON per customer."""

    def get(self, customer_id: str) -> dict[str, Any] | None: ...

    def put(self, customer_id: str, state: Mapping[str, Any]) -> None: ...

    def delete(self, customer_id: str) -> None: ...


class InMemoryProfileStates:
    """Online states in this process: JSON bytes in a dict behind a lock (copies on read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, bytes] = {}

    def get(self, customer_id: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._states.get(customer_id)
        if raw is None:
            return None
        state: dict[str, Any] = orjson.loads(raw)
        return state

    def put(self, customer_id: str, state: Mapping[str, Any]) -> None:
        raw = orjson.dumps(dict(state))
        with self._lock:
            self._states[customer_id] = raw

    def delete(self, customer_id: str) -> None:
        with self._lock:
            self._states.pop(customer_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def __contains__(self, customer_id: object) -> bool:
        with self._lock:
            return customer_id in self._states


class LiveProfiles:
    """Batch profiles + online states: the one object the service needs.

    * ``GET /v1/customers/{id}/profile`` → :meth:`profile` (None → 404 unknown customer);
    * ``POST /v1/events`` (after the event log and online store) → :meth:`apply` per event;
    * ``GET /v1/segments`` → ``live.batch.counts()``; ``GET /v1/segments/{name}/customers`` →
      ``live.batch.list_segment(name, cursor=..., limit=..., min_churn_risk=...)``;
    * ``PUT /v1/customers/{id}/consent`` → :meth:`set_consent`;
    * ``DELETE /v1/customers/{id}`` → :meth:`erase`;
    * a new bundle → :meth:`swap` (states seeded from an older batch are re-seeded lazily).
    """

    def __init__(self, batch: CustomerProfiles, states: ProfileStateStore | None = None) -> None:
        self.batch = batch
        self.states: ProfileStateStore = states if states is not None else InMemoryProfileStates()

    def _current(self, customer_id: str) -> dict[str, Any] | None:
        state = self.states.get(customer_id)
        if state is not None and state.get("batch_as_of") == self.batch.as_of_s:
            return state
        return self.batch.state(customer_id)

    def profile(self, customer_id: str, now: datetime) -> dict[str, Any] | None:
        state = self._current(customer_id)
        return None if state is None else self.batch.render(state, now)

    def apply(
        self,
        event: Interaction,
        item_attrs: Mapping[str, Any] | None,
        now: datetime,
        *,
        personalization: bool | None = None,
    ) -> dict[str, Any]:
        """Update the customer's state with ``event``; returns the rendered profile.

        ``personalization`` (when the caller knows the consent) is written into the state
        first; without consent sizes and affinities are not learned from the event.
        """
        state = self._current(event.customer_id)
        if state is None:
            state = new_state(
                event.customer_id,
                self.batch.as_of_s,
                consent=True if personalization is None else personalization,
            )
        elif personalization is False and state.get("consent", True):
            state = revoke_personalization(state)
        elif personalization is True:
            state = {**state, "consent": True}
        updated = self.batch.apply_event(state, event, item_attrs, now)
        self.states.put(event.customer_id, updated)
        return self.batch.render(updated, now)

    def replay(
        self,
        customer_id: str,
        events: Sequence[Interaction],
        item_lookup: Mapping[str, Mapping[str, Any]],
        now: datetime,
    ) -> dict[str, Any] | None:
        """Re-seed the state from the batch and apply ``events`` dated after the batch, in time
        order (e.g. ``online_store.recent(customer_id)`` after a bundle swap)."""
        state = self.batch.state(customer_id)
        later = sorted(
            (e for e in events if _epoch_seconds(e.timestamp) > self.batch.as_of_s),
            key=lambda e: e.timestamp,
        )
        if state is None and not later:
            return None
        for event in later:
            state = self.batch.apply_event(state, event, item_lookup.get(event.item_id), now)
        assert state is not None
        self.states.put(customer_id, state)
        return self.batch.render(state, now)

    def set_consent(self, customer_id: str, personalization: bool) -> None:
        """Record consent; revoking clears sizes and affinities in the batch and online."""
        state = self._current(customer_id)
        if not personalization:
            self.batch.revoke_personalization(customer_id)
            if state is not None:
                self.states.put(customer_id, revoke_personalization(state))
        elif state is not None:
            self.states.put(customer_id, {**state, "consent": True})

    def erase(self, customer_id: str) -> None:
        """Remove the customer from the online states and the batch profiles."""
        self.states.delete(customer_id)
        self.batch.erase(customer_id)

    def swap(self, batch: CustomerProfiles) -> None:
        """Serve a new batch (states seeded from the previous one are ignored from now on)."""
        self.batch = batch


__all__ = [
    "FACETS",
    "STAGES",
    "TIERS",
    "Catalog",
    "ChurnScorer",
    "CustomerProfiles",
    "EventTable",
    "InMemoryProfileStates",
    "LiveProfiles",
    "ProfileConfig",
    "ProfileStateStore",
    "RfmThresholds",
    "apply_event",
    "compute_profiles",
    "customer_activity",
    "lifetime_value",
    "new_state",
    "preferred_size",
    "render_state",
    "revoke_personalization",
    "stage_codes",
    "stage_of",
    "tier_codes",
]
