"""RFM scores, tiers, lifecycle stages and lifetime value, for arrays and for one customer.

Every day count and threshold lives in :class:`ProfileConfig`; ``now`` is always an explicit
argument, so evaluations on old data are correct.

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

**Lifetime value** (see :func:`lifetime_value`)::

    LTV = AOV × purchases_per_year × expected_remaining_lifetime_years
    AOV                 = monetary / frequency                 (net spend per order)
    purchases_per_year  = frequency / max(tenure_years, ltv_min_tenure_days / 365.25)
    expected lifetime   = (H / 365.25) × (1 − p) / p, capped at ltv_max_lifetime_years

where ``p`` is the churn risk (probability of no purchase in the next ``H`` days, from the churn
model) — the expected number of further ``H``-day periods a customer with per-period survival
``1 − p`` stays (geometric) — and ``ltv_default_lifetime_years`` when there is no churn risk.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..timeutils import SECONDS_PER_DAY
from .config import ProfileConfig
from .vocabulary import _TIER_LOOKUP, PROSPECT, STAGES, TIER_OF_RFM, YEAR_DAYS, Array


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
        return np.maximum(np.floor(np.asarray(seconds, np.float64) / SECONDS_PER_DAY), 0.0)


def stage_of(
    first_purchase: float | None, last_purchase: float | None, now_s: float, config: ProfileConfig
) -> str:
    """:func:`stage_codes` for one customer (epoch seconds; None: no purchase), as a name."""
    if first_purchase is None or last_purchase is None:
        return PROSPECT
    since_first = max(math.floor((now_s - first_purchase) / SECONDS_PER_DAY), 0)
    recency = max(math.floor((now_s - last_purchase) / SECONDS_PER_DAY), 0)
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
    tenure_years = max((now_s - first_purchase) / SECONDS_PER_DAY, 0.0) / YEAR_DAYS
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
        tenure_years = np.maximum((now_s - first) / SECONDS_PER_DAY, 0.0) / YEAR_DAYS
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
