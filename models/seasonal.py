"""Seasonal and trending picks: what sells at this time of year, what is rising now, what never stops.

Model
-----
Demand is read from purchases (item, time). Four estimates per item, all at the end of training
(``now``):

* **Season-of-year profile** of the item's *group* (its product type, shrunk towards its category
  when the type has few sales): the group's share of all purchases by week of year (52 bins,
  circularly smoothed), divided by its yearly mean — ``S_g(w) = 2`` means "twice its usual share in
  week ``w``". Shares, not counts, so growth or a slump of the whole business is not mistaken for
  a season.
* **Deseasonalised level** (``level_mode="sales"``, what ``lookbook train`` fits):
  recency-weighted sales (half-life ``half_life_days``), each sale divided by its group's seasonal
  index in the week it was made, ``L_i = Σ_e 0.5^{Δt_e/h} / S_g(week(e))`` — how much the item sells in an average
  week, counted in sales: a swimsuit that sold well last summer keeps a level in December, and
  proven sellers stay ahead of items with one lucky sale. On the H&M sample this beats the rate
  below (validation hit rate 4.0 % vs 2.5 % at the same half-life, ``benchmarks/seasonal_hm.py
  --tune``).
  ``level_mode="rate"`` (the class default, as bundles written before it): recency-weighted
  sales divided by the recency-weighted seasonal exposure since the item's first sale, shrunk towards the rate of an
  average item of its group with ``prior_days`` of pseudo-exposure,
  ``L_i = (Σ_e 0.5^{Δt_e/h} + m·r_g) / (Σ_{days d} 0.5^{Δd/h} S_g(week(d)) + m)`` — the item's
  rate as if every week were an average week. A swimsuit that sold well last summer keeps its
  level in December even though it sells nothing then; two lucky sales do not make a bestseller.
* **Trend**: the deseasonalised rate of the last ``trend_days`` over the item's own rate before
  them (both shrunk), divided by the same ratio for its whole group — a rise all coats share is
  the season, not a trend of one coat. *Trending* items are rising now against their own baseline (at least
  ``trend_min_sales`` recent sales, a ratio of at least ``trend_threshold``, and more recent
  sales than the baseline rate makes plausible: Poisson tail probability below
  ``trend_p_value``). The trend enters the forecast as ``trend^γ`` (``trend_weight`` = γ; 0 by
  default).
* **Evergreen**: items whose group has a flat yearly profile (peak / trough below
  ``evergreen_max_amplitude``) and that sold in most 4-week periods of their life.

For a target window (the 4 weeks from ``date``, or a whole ``season``) the forecast is
``L_i · mean_{w in window} S_g(w) · trend_i^γ`` (``trend_weight`` = γ), times a weather factor when
the caller gives a hint ("cold_snap" moves the profile towards winter and boosts outerwear and
knitwear; "heatwave" towards summer and swimwear, shorts, sandals; see :data:`WEATHER_HINTS`),
times the customer's affinity when given, restricted to the category and the in-stock mask.
Each pick carries a reason: "For the cold snap", "Trending now", "Autumn staple", "Evergreen
favourite" or "Popular right now".

Files: ``config.json`` + ``arrays.npz`` (no pickle); a loaded model gives identical picks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Final, NamedTuple, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import poisson

from feature_store.dataset import Dataset
from feature_store.errors import BundleError, InvalidRequest
from feature_store.schema import SEASONS, InteractionCols, InteractionType, ItemCols
from feature_store.timeutils import SECONDS_PER_DAY, decay

from .base import (
    FloatArray,
    IntArray,
    read_model,
    save_arrays,
    top_n,
    write_config,
)

logger = logging.getLogger("lookbook.models")

_FORMAT = 1
WEEKS: Final = 52
DateLike = Date | datetime | pd.Timestamp | str  # a date, or an ISO 8601 string

# Northern-hemisphere meteorological seasons, by month.
SEASON_MONTHS: Final[dict[str, tuple[int, ...]]] = {
    "spring": (3, 4, 5),
    "summer": (6, 7, 8),
    "autumn": (9, 10, 11),
    "winter": (12, 1, 2),
}
SOUTHERN: Final[dict[str, str]] = {
    "spring": "autumn",
    "summer": "winter",
    "autumn": "spring",
    "winter": "summer",
}


@dataclass(frozen=True)
class WeatherHint:
    """What a weather hint does: move the seasonal profile towards ``season`` (when set) and
    boost items whose category, product type, name or material matches ``keywords``."""

    reason: str
    season: str | None
    categories: tuple[str, ...]
    keywords: tuple[str, ...]


_COLD_WORDS = (
    "coat", "jacket", "parka", "puffer", "padded", "down", "knit", "sweater", "jumper",
    "cardigan", "wool", "scarf", "glove", "mitten", "beanie", "hat", "boot", "fleece",
    "hoodie", "thermal", "turtleneck", "tricot", "trench",
)  # fmt: skip
_HEAT_WORDS = (
    "swim", "bikini", "short", "vest top", "tank", "sandal", "flip flop", "dress", "t-shirt",
    "linen", "skirt", "sunglass", "espadrille", "sun hat",
)  # fmt: skip
_RAIN_WORDS = ("rain", "coat", "jacket", "parka", "trench", "boot", "umbrella", "waterproof")

WEATHER_HINTS: Final[dict[str, WeatherHint]] = {
    "cold_snap": WeatherHint("For the cold snap", "winter", ("outerwear",), _COLD_WORDS),
    "cold": WeatherHint("For the cold weather", "winter", ("outerwear",), _COLD_WORDS),
    "mild": WeatherHint("For the mild weather", None, (), ()),
    "warm": WeatherHint("For the warm weather", "summer", (), _HEAT_WORDS),
    "heatwave": WeatherHint("For the heatwave", "summer", ("swimwear",), _HEAT_WORDS),
    "rain": WeatherHint("For the rain", None, ("outerwear",), _RAIN_WORDS),
}
# Temperature bands (°C, upper bounds) -> hint.
TEMPERATURE_BANDS: Final[tuple[tuple[float, str], ...]] = (
    (3.0, "cold_snap"),
    (10.0, "cold"),
    (18.0, "mild"),
    (26.0, "warm"),
    (math.inf, "heatwave"),
)
AFFINITY_COLUMNS: Final = (
    ItemCols.CATEGORY,
    ItemCols.PRODUCT_TYPE,
    ItemCols.COLOUR,
    ItemCols.MATERIAL,
    ItemCols.PATTERN,
    ItemCols.STYLES,
)
_TEXT_COLUMNS: Final = (ItemCols.CATEGORY, ItemCols.PRODUCT_TYPE, ItemCols.NAME, ItemCols.MATERIAL)
_GROUP_PRIOR: Final = 200.0  # sales at which a product type's own profile gets half the weight


class SeasonalPicks(NamedTuple):
    """Picks, best first: item indices, scores and a human-readable reason for each."""

    items: IntArray
    scores: FloatArray
    reasons: list[str]


def season_of(when: DateLike, hemisphere: str = "north") -> str:
    """The meteorological season of a date (``"spring"``, ``"summer"``, ``"autumn"``,
    ``"winter"``)."""
    month = pd.Timestamp(when).month
    name = next(s for s, months in SEASON_MONTHS.items() if month in months)
    return SOUTHERN[name] if hemisphere == "south" else name


def weather_hint(temperature_c: float) -> str:
    """The weather hint of a temperature (°C): see :data:`TEMPERATURE_BANDS`."""
    if not math.isfinite(temperature_c):
        raise InvalidRequest(f"temperature must be a finite number, got {temperature_c}")
    return next(hint for bound, hint in TEMPERATURE_BANDS if temperature_c < bound)


def week_of_year(days: npt.NDArray[np.int64]) -> IntArray:
    """Week-of-year bin (0..51) of days since the epoch (days 358+ of the year fall in bin 51)."""
    stamps = pd.to_datetime(np.asarray(days, dtype=np.int64), unit="D")
    return np.minimum((stamps.day_of_year.to_numpy() - 1) // 7, WEEKS - 1).astype(np.int64)


def _season_weeks(season: str, hemisphere: str) -> IntArray:
    name = SOUTHERN[season] if hemisphere == "south" else season
    months = SEASON_MONTHS[name]
    days = pd.date_range("2021-01-01", "2021-12-31", freq="D")
    mask = np.isin(days.month, months)
    return np.unique(np.minimum((days.day_of_year[mask].to_numpy() - 1) // 7, WEEKS - 1))


def _circular_smooth(matrix: FloatArray, sigma: float) -> FloatArray:
    if sigma <= 0:
        return matrix
    offsets = np.arange(-WEEKS // 2, WEEKS // 2)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.zeros_like(matrix)
    for off, weight in zip(offsets, kernel, strict=True):
        out += weight * np.roll(matrix, int(off), axis=1)
    return out


def _values(cell: Any) -> list[str]:
    if cell is None:
        return []
    if isinstance(cell, str):
        text = cell.strip().lower()
        return [text] if text else []
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [v for x in cell for v in _values(x)]
    if isinstance(cell, float) and math.isnan(cell):
        return []
    if cell is pd.NA or cell is pd.NaT:
        return []
    text = str(cell).strip().lower()
    return [text] if text else []


class SeasonalModel:
    """Season-of-year, recency and trend aware demand per item; see the module docstring.

    Fitted state (public): ``profiles_`` ``(n_groups, 52)``, ``item_group_``, ``level_``,
    ``trend_``, ``recent_sales_``, ``trending_`` / ``evergreen_`` (bool per item),
    ``amplitude_`` (per group), ``now_`` (seconds since the epoch).
    """

    name: ClassVar[str] = "seasonal"

    def __init__(
        self,
        *,
        half_life_days: float = 90.0,
        prior_days: float = 30.0,
        trend_days: int = 28,
        trend_threshold: float = 1.5,
        trend_min_sales: int = 3,
        trend_p_value: float = 0.01,
        trend_weight: float = 0.0,
        smoothing_weeks: float = 3.0,
        seasonal_weight: float = 1.0,
        evergreen_max_amplitude: float = 1.6,
        staple_threshold: float = 1.15,
        weather_boost: float = 2.0,
        min_exposure_days: float = 14.0,
        hemisphere: str = "north",
        level_mode: str = "rate",
        affinity_strength: float = 1.0,
    ) -> None:
        if half_life_days <= 0 or prior_days < 0 or trend_days < 1:
            raise ValueError("half_life_days > 0, prior_days >= 0 and trend_days >= 1 required")
        if level_mode not in ("sales", "rate"):
            raise ValueError(f"level_mode must be 'sales' or 'rate', got {level_mode!r}")
        if affinity_strength < 0:
            raise ValueError("affinity_strength must be >= 0")
        if hemisphere not in ("north", "south"):
            raise ValueError(f"hemisphere must be 'north' or 'south', got {hemisphere!r}")
        self.half_life_days = float(half_life_days)
        self.prior_days = float(prior_days)
        self.trend_days = int(trend_days)
        self.trend_threshold = float(trend_threshold)
        self.trend_p_value = float(trend_p_value)
        self.trend_min_sales = int(trend_min_sales)
        self.trend_weight = float(trend_weight)
        self.smoothing_weeks = float(smoothing_weeks)
        self.seasonal_weight = float(seasonal_weight)
        self.evergreen_max_amplitude = float(evergreen_max_amplitude)
        self.staple_threshold = float(staple_threshold)
        self.weather_boost = float(weather_boost)
        self.min_exposure_days = float(min_exposure_days)
        self.hemisphere = hemisphere
        self.level_mode = level_mode
        self.affinity_strength = float(affinity_strength)
        self.now_: int = 0
        self.groups_: list[str] = []
        self.categories_: list[str] = []
        self.profiles_: FloatArray = np.zeros((0, WEEKS), dtype=np.float32)
        self.amplitude_: FloatArray = np.zeros(0, dtype=np.float32)
        self.item_group_: IntArray = np.zeros(0, dtype=np.int64)
        self.item_category_: IntArray = np.zeros(0, dtype=np.int64)
        self.level_: FloatArray = np.zeros(0, dtype=np.float32)
        self.trend_: FloatArray = np.zeros(0, dtype=np.float32)
        self.recent_sales_: FloatArray = np.zeros(0, dtype=np.float32)
        self.trending_: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self.evergreen_: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self.weather_match_: dict[str, npt.NDArray[np.bool_]] = {}
        self.attr_vocab_: list[str] = []
        self.attr_indptr_: IntArray = np.zeros(1, dtype=np.int64)
        self.attr_indices_: IntArray = np.zeros(0, dtype=np.int64)

    @property
    def n_items(self) -> int:
        return len(self.level_)

    # --------------------------------------------------------------------------------- fit

    def fit(self, dataset: Dataset, *, now: pd.Timestamp | None = None) -> Self:
        """Fit on a dataset's purchases (items in ``dataset.items`` order; a return cancels the
        customer's purchases of that item). ``now`` (default: the last interaction) ends the
        training period; later interactions are ignored."""
        inter = dataset.interactions
        types = inter[InteractionCols.TYPE].astype(str)
        ts = pd.to_datetime(inter[InteractionCols.TIMESTAMP], utc=True)
        end = ts.max() if now is None else pd.Timestamp(now)
        if end is pd.NaT or pd.isna(end):
            raise ValueError("the dataset has no interactions to fit on")
        if end.tzinfo is None:
            end = end.tz_localize("UTC")
        keep = (types == InteractionType.PURCHASE.value) & (ts <= end)
        index = pd.Index(dataset.items[ItemCols.ID].astype(str))
        items = index.get_indexer(pd.Index(inter[InteractionCols.ITEM_ID].astype(str)))
        frame = pd.DataFrame(
            {
                "customer": inter[InteractionCols.CUSTOMER_ID].astype(str).to_numpy(),
                "item": items,
                "ts": ts.to_numpy(),
                "purchase": keep.to_numpy(),
                "return": ((types == InteractionType.RETURN.value) & (ts <= end)).to_numpy(),
            }
        )
        frame = frame[frame["item"] >= 0]
        returned = frame[frame["return"]][["customer", "item"]].drop_duplicates()
        bought = frame[frame["purchase"]]
        if len(returned):
            bought = bought.merge(returned.assign(_r=True), on=["customer", "item"], how="left")
            bought = bought[bought["_r"].isna()]
        epoch = pd.Timestamp(0, tz="UTC")
        seconds = (
            (pd.to_datetime(bought["ts"], utc=True) - epoch) // pd.Timedelta(seconds=1)
        ).to_numpy(dtype=np.int64)
        return self.fit_events(
            dataset.items,
            bought["item"].to_numpy(dtype=np.int64),
            seconds.astype(np.int64),
            now=int(end.timestamp()),
        )

    def fit_events(
        self,
        items: pd.DataFrame,
        item_idx: npt.ArrayLike,
        timestamps: npt.ArrayLike,
        *,
        weights: npt.ArrayLike | None = None,
        now: int | None = None,
    ) -> Self:
        """Fit on purchase events: ``item_idx`` (rows of ``items``), ``timestamps`` (seconds
        since the epoch) and optional ``weights`` (default 1). ``now`` ends the period."""
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        secs = np.asarray(timestamps, dtype=np.int64).reshape(-1)
        w = (
            np.ones(len(idx), dtype=np.float64)
            if weights is None
            else np.asarray(weights, dtype=np.float64).reshape(-1)
        )
        if not (len(idx) == len(secs) == len(w)):
            raise ValueError("item_idx, timestamps and weights must have the same length")
        n_items = len(items)
        if len(idx) and (idx.min() < 0 or idx.max() >= n_items):
            raise ValueError(f"item index outside 0..{n_items - 1}")
        if ItemCols.CATEGORY not in items.columns:
            raise ValueError(f"items lacks the {ItemCols.CATEGORY!r} column")
        positive = w > 0
        idx, secs, w = idx[positive], secs[positive], w[positive]
        self.now_ = int(now) if now is not None else (int(secs.max()) if len(secs) else 0)
        later = secs > self.now_
        if later.any():
            logger.info("seasonal: ignoring %d events after now", int(later.sum()))
            idx, secs, w = idx[~later], secs[~later], w[~later]
        now_day = self.now_ // SECONDS_PER_DAY
        days = secs // SECONDS_PER_DAY

        self._fit_groups(items)
        self._fit_profiles(idx, days, w, n_items)
        self._fit_levels(idx, days, w, n_items, now_day)
        self._fit_attributes(items)
        logger.info(
            "seasonal: %d events, %d items, %d groups; %d trending, %d evergreen",
            len(idx),
            n_items,
            len(self.groups_),
            int(self.trending_.sum()),
            int(self.evergreen_.sum()),
        )
        return self

    def _fit_groups(self, items: pd.DataFrame) -> None:
        cats = items[ItemCols.CATEGORY].astype(str).str.lower().to_numpy()
        if ItemCols.PRODUCT_TYPE in items.columns:
            ptype = items[ItemCols.PRODUCT_TYPE].astype(object).to_numpy()
        else:
            ptype = np.array([None] * len(items), dtype=object)
        self.categories_ = sorted(set(cats.tolist()))
        cat_lookup = {c: k for k, c in enumerate(self.categories_)}
        self.item_category_ = np.array([cat_lookup[c] for c in cats], dtype=np.int64)
        names = [
            f"{c}/{vals[0]}" if (vals := _values(p)) else f"{c}/"
            for c, p in zip(cats, ptype, strict=True)
        ]
        self.groups_ = sorted(set(names))
        lookup = {g: k for k, g in enumerate(self.groups_)}
        self.item_group_ = np.array([lookup[g] for g in names], dtype=np.int64)

    def _fit_profiles(
        self, idx: IntArray, days: IntArray, w: npt.NDArray[np.float64], n_items: int
    ) -> None:
        n_groups, n_cats = len(self.groups_), len(self.categories_)
        group_cat = np.zeros(n_groups, dtype=np.int64)
        group_cat[self.item_group_] = self.item_category_
        observed = np.zeros(WEEKS)
        deflated = w.copy()
        if len(days):
            # deflate by the business's volume trend (a centred 52-week mean of all purchases), so
            # growth or a slump is not mistaken for a season while seasons stay in the counts
            first_day = int(days.min())
            abs_week = (days - first_day) // 7
            n_abs = int(abs_week.max()) + 1
            volume = pd.Series(np.bincount(abs_week, weights=w, minlength=n_abs))
            trend = volume.rolling(52, center=True, min_periods=1).mean().to_numpy()
            deflated = w / np.maximum(trend[abs_week], 1e-9) * float(trend.mean())
            span = np.arange(first_day, int(days.max()) + 1, 7, dtype=np.int64)
            np.add.at(observed, week_of_year(span), 1.0)
        weeks = week_of_year(days) if len(days) else np.zeros(0, dtype=np.int64)
        by_group = np.zeros((n_groups, WEEKS))
        np.add.at(by_group, (self.item_group_[idx], weeks), deflated)
        by_cat = np.zeros((n_cats, WEEKS))
        np.add.at(by_cat, (self.item_category_[idx], weeks), deflated)
        seen = observed > 0

        def profile(counts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            """Deflated purchases per observed week of year over their yearly mean, smoothed
            and shrunk towards flat (1) by the number of sales."""
            rate = np.divide(counts, observed[None, :], out=np.zeros_like(counts), where=seen)
            mean = rate[:, seen].mean(axis=1, keepdims=True) if seen.any() else rate[:, :1] * 0
            raw = np.divide(rate, mean, out=np.ones_like(rate), where=mean > 0)
            raw[:, ~seen] = 1.0
            raw = _circular_smooth(raw, self.smoothing_weeks)
            n = counts.sum(axis=1, keepdims=True)
            weight = n / (n + _GROUP_PRIOR)
            return weight * raw + (1.0 - weight)

        cat_profiles = profile(by_cat)
        own = profile(by_group)
        n_sales = by_group.sum(axis=1, keepdims=True)
        alpha = n_sales / (n_sales + _GROUP_PRIOR)
        blended = alpha * own + (1 - alpha) * cat_profiles[group_cat]
        blended /= blended.mean(axis=1, keepdims=True)
        if self.seasonal_weight != 1.0:
            blended = np.power(blended, self.seasonal_weight)
            blended /= blended.mean(axis=1, keepdims=True)
        self.profiles_ = blended.astype(np.float32)
        self.amplitude_ = (blended.max(axis=1) / np.maximum(blended.min(axis=1), 1e-6)).astype(
            np.float32
        )

    def _fit_levels(
        self,
        idx: IntArray,
        days: IntArray,
        w: npt.NDArray[np.float64],
        n_items: int,
        now_day: int,
    ) -> None:
        first = np.full(n_items, now_day, dtype=np.int64)
        if len(idx):
            np.minimum.at(first, idx, days)
        age = (now_day - days).astype(np.float64)
        group = self.item_group_

        def decayed(half_life: float) -> npt.NDArray[np.float64]:
            out = np.zeros(n_items)
            np.add.at(out, idx, w * decay(age, half_life))
            return out

        start_day = int(first.min()) if n_items else now_day
        span = np.arange(start_day, now_day + 1, dtype=np.int64)
        span_weeks = week_of_year(span)
        span_age = (now_day - span).astype(np.float64)

        def exposure(
            half_life: float, lo: float = 0.0, hi: float = np.inf
        ) -> npt.NDArray[np.float64]:
            """Per item: Σ over days since its first sale with ``lo <= age < hi`` of
            0.5^(age/h) · S_g(week), at least ``min_exposure_days / 2``."""
            weight = np.where((span_age >= lo) & (span_age < hi), decay(span_age, half_life), 0.0)
            per_day = self.profiles_[:, span_weeks].astype(np.float64) * weight[None, :]
            cum = np.cumsum(per_day[:, ::-1], axis=1)[:, ::-1]  # Σ from day d to now
            start = np.clip(first - start_day, 0, len(span) - 1)
            return np.maximum(cum[group, start], self.min_exposure_days * 0.5)

        # long-run deseasonalised rate, shrunk towards the rate of an average item of its group
        sales = decayed(self.half_life_days)
        exposed = exposure(self.half_life_days)
        n_groups = len(self.groups_)
        sold = sales > 0
        group_sales = np.bincount(group, weights=sales, minlength=n_groups)
        group_exposure = np.bincount(
            group, weights=np.where(sold, exposed, 0.0), minlength=n_groups
        )
        n_sold = np.bincount(group, weights=sold.astype(np.float64), minlength=n_groups)
        share_sold = n_sold / np.maximum(np.bincount(group, minlength=n_groups), 1)
        prior_rate = (
            np.divide(group_sales, group_exposure, out=np.zeros(n_groups), where=group_exposure > 0)
            * share_sold
        )
        m = self.prior_days
        level = (sales + m * prior_rate[group]) / (exposed + m)
        if self.level_mode == "sales":
            index_at_sale = self.profiles_[group[idx], week_of_year(days)].astype(np.float64)
            level = np.zeros(n_items)
            np.add.at(
                level, idx, w * decay(age, self.half_life_days) / np.maximum(index_at_sale, 1e-6)
            )
        # trend: the rate of the last trend_days over the item's own rate before them (each
        # shrunk: the baseline towards the group's, the recent rate towards the baseline)
        window = float(self.trend_days)
        in_window = age < window
        recent = np.zeros(n_items)
        np.add.at(recent, idx[in_window], w[in_window])
        before = np.zeros(n_items)
        np.add.at(before, idx[~in_window], (w * decay(age, self.half_life_days))[~in_window])
        baseline = (before + m * prior_rate[group]) / (exposure(self.half_life_days, lo=window) + m)
        half = window / 2.0
        recent_rate = (recent + half * baseline) / (exposure(1e9, hi=window) + half)  # per day
        trend = np.divide(recent_rate, baseline, out=np.ones(n_items), where=baseline > 0)
        # net of the group's own movement: a rise every coat shares is the season (or a profile
        # that under-states its peak), not a trend of one coat
        recent_exposure = exposure(1e9, hi=window)
        expected = baseline * recent_exposure
        group_recent = np.bincount(group, weights=recent, minlength=n_groups)
        group_expected = np.bincount(group, weights=expected, minlength=n_groups)
        group_trend = (group_recent + 1.0) / (group_expected + 1.0)
        trend = trend / group_trend[group]
        expected = expected * group_trend[group]
        old_enough = (now_day - first) >= 2 * self.trend_days
        self.level_ = level.astype(np.float32)
        self.trend_ = trend.astype(np.float32)
        self.recent_sales_ = recent.astype(np.float32)
        # significant too: recent sales unlikely (Poisson, p < trend_p_value) at the baseline rate
        surprise = poisson.sf(recent - 1.0, np.maximum(expected, 1e-9)) < self.trend_p_value
        self.trending_ = (
            old_enough
            & (recent >= self.trend_min_sales)
            & (trend >= self.trend_threshold)
            & surprise
        )
        # evergreen: flat group profile and sold in most 4-week periods of its (last year of) life
        periods = np.zeros((n_items, 13), dtype=bool)
        in_year = age < 364
        periods[idx[in_year], (age[in_year] // 28).astype(np.int64)] = True
        life_periods = np.clip((now_day - first) // 28 + 1, 1, 13)
        steadiness = periods.sum(axis=1) / life_periods
        self.evergreen_ = (
            (self.amplitude_[group] < self.evergreen_max_amplitude)
            & (steadiness >= 1.0 / 3.0)
            & (life_periods >= 3)
            & (periods.sum(axis=1) >= 3)
            & ~self.trending_
        )

    def _fit_attributes(self, items: pd.DataFrame) -> None:
        n = len(items)
        texts = [""] * n
        for col in _TEXT_COLUMNS:
            if col in items.columns:
                for r, cell in enumerate(items[col].tolist()):
                    texts[r] += " " + " ".join(_values(cell))
        cats = np.array(self.categories_)[self.item_category_] if n else np.array([], dtype=str)
        self.weather_match_ = {}
        for name, hint in WEATHER_HINTS.items():
            match = np.array(
                [
                    (cats[r] in hint.categories) or any(k in texts[r] for k in hint.keywords)
                    for r in range(n)
                ],
                dtype=bool,
            )
            self.weather_match_[name] = match
        vocab: dict[str, int] = {}
        indptr = [0]
        indices: list[int] = []
        columns = [c for c in AFFINITY_COLUMNS if c in items.columns]
        cells = [items[c].tolist() for c in columns]
        for r in range(n):
            values = sorted({v for col in cells for v in _values(col[r])})
            indices.extend(vocab.setdefault(v, len(vocab)) for v in values)
            indptr.append(len(indices))
        self.attr_vocab_ = [v for v, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        self.attr_indptr_ = np.asarray(indptr, dtype=np.int64)
        self.attr_indices_ = np.asarray(indices, dtype=np.int64)

    # --------------------------------------------------------------------------- recommend

    def _check_fitted(self) -> None:
        if self.n_items == 0:
            raise BundleError("the seasonal model is not fitted")

    def _target_weeks(self, date: DateLike | None, season: str | None) -> tuple[IntArray, str]:
        if season is not None:
            name = season.strip().lower()
            if name not in SEASONS:
                raise InvalidRequest(f"season must be one of {', '.join(SEASONS)}, got {season!r}")
            return _season_weeks(name, self.hemisphere), name
        when = pd.Timestamp(self.now_, unit="s") if date is None else pd.Timestamp(date)
        if when.tzinfo is not None:
            when = when.tz_convert("UTC").tz_localize(None)
        start_day = int(when.normalize().value // (SECONDS_PER_DAY * 10**9))
        days = np.arange(start_day, start_day + 28, dtype=np.int64)
        return np.unique(week_of_year(days)), season_of(when, self.hemisphere)

    def seasonal_factor(
        self, date: DateLike | None = None, season: str | None = None
    ) -> FloatArray:
        """Per item: its group's mean seasonal index over the target window (1 = average)."""
        self._check_fitted()
        weeks, _ = self._target_weeks(date, season)
        return self.profiles_[:, weeks].mean(axis=1)[self.item_group_].astype(np.float32)

    def scores(
        self,
        date: DateLike | None = None,
        season: str | None = None,
        weather: str | None = None,
        *,
        temperature_c: float | None = None,
    ) -> FloatArray:
        """Unfiltered forecast demand per item in the target window (see the module docstring)."""
        self._check_fitted()
        weeks, _ = self._target_weeks(date, season)
        factor = self.profiles_[:, weeks].mean(axis=1)[self.item_group_]
        trend = np.clip(self.trend_, 0.25, 4.0) ** self.trend_weight
        base = self.level_ * factor * trend
        hint = self._hint(weather, temperature_c)
        if hint is not None:
            base = base * self._weather_factor(hint, factor)
        return base.astype(np.float32)

    def _hint(self, weather: str | None, temperature_c: float | None) -> str | None:
        if weather is None and temperature_c is None:
            return None
        if weather is None:
            assert temperature_c is not None
            name = weather_hint(temperature_c)
        else:
            name = weather.strip().lower()
        name = name.replace(" ", "_").replace("-", "_")
        if name not in WEATHER_HINTS:
            raise InvalidRequest(
                f"weather must be one of {', '.join(WEATHER_HINTS)}, got {weather!r}"
            )
        return name

    def _weather_factor(self, hint: str, factor: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        spec = WEATHER_HINTS[hint]
        out = np.ones(self.n_items)
        if spec.season is not None:
            weeks = _season_weeks(spec.season, self.hemisphere)
            towards = self.profiles_[:, weeks].mean(axis=1)[self.item_group_]
            out *= towards / np.maximum(factor, 1e-6)
        out *= np.where(self.weather_match_[hint], self.weather_boost, 1.0)
        return out

    def recommend(
        self,
        date: DateLike | None = None,
        season: str | None = None,
        weather: str | None = None,
        category: str | None = None,
        k: int = 12,
        customer_affinity: npt.ArrayLike | Mapping[str, float] | None = None,
        in_stock: npt.ArrayLike | None = None,
        *,
        temperature_c: float | None = None,
        exclude: Sequence[int] | IntArray | None = None,
    ) -> SeasonalPicks:
        """The ``k`` best seasonal picks for the 4 weeks from ``date`` (default: the end of
        training) or for a whole ``season``, best first, each with a reason.

        ``weather``: a hint of :data:`WEATHER_HINTS` (or ``temperature_c``, mapped through
        :data:`TEMPERATURE_BANDS`). ``category`` restricts to one category. ``customer_affinity``
        is either a per-item weight vector (``n_items``, 1 = neutral, 0 = never) or style
        preferences ``{attribute value: weight}`` (e.g. ``{"casual": 1.0, "black": 0.5}``; an
        item's weight is ``1 + the sum over its matching values``). ``in_stock`` is a boolean
        mask (``n_items``); ``exclude`` item indices are never returned.
        """
        self._check_fitted()
        if k < 1:
            raise InvalidRequest(f"k must be >= 1, got {k}")
        weeks, season_name = self._target_weeks(date, season)
        factor = self.profiles_[:, weeks].mean(axis=1)[self.item_group_]
        hint = self._hint(weather, temperature_c)
        score = self.scores(date, season, None).astype(np.float64)
        weather_mult = None
        if hint is not None:
            weather_mult = self._weather_factor(hint, factor)
            score = score * weather_mult
        if customer_affinity is not None:
            score = score * self._affinity(customer_affinity)
        if category is not None:
            name = category.strip().lower()
            if name not in self.categories_:
                raise InvalidRequest(
                    f"unknown category {category!r} (known: {', '.join(self.categories_)})"
                )
            score = np.where(self.item_category_ == self.categories_.index(name), score, -np.inf)
        if in_stock is not None:
            mask = np.asarray(in_stock, dtype=bool).reshape(-1)
            if len(mask) != self.n_items:
                raise InvalidRequest(f"in_stock has {len(mask)} entries, not {self.n_items}")
            score = np.where(mask, score, -np.inf)
        score = np.where(score > 0, score, -np.inf)  # never pick what nothing suggests
        banned = None if exclude is None else np.asarray(exclude, dtype=np.int64).reshape(-1)
        items, values = top_n(score, k, exclude=banned)
        reasons = [self._reason(int(i), factor, season_name, hint, weather_mult) for i in items]
        return SeasonalPicks(items=items, scores=values, reasons=reasons)

    def _reason(
        self,
        item: int,
        factor: npt.NDArray[Any],
        season_name: str,
        hint: str | None,
        weather_mult: npt.NDArray[np.float64] | None,
    ) -> str:
        if hint is not None and weather_mult is not None and self.weather_match_[hint][item]:
            return WEATHER_HINTS[hint].reason
        if self.trending_[item]:
            return "Trending now"
        if factor[item] >= self.staple_threshold:
            return f"{season_name.capitalize()} staple"
        if self.evergreen_[item]:
            return "Evergreen favourite"
        return "Popular right now"

    def kind(self, item_indices: Sequence[int] | IntArray) -> list[str]:
        """Per item: ``"trending"``, ``"evergreen"``, ``"seasonal"`` (its group's yearly peak is
        at least ``evergreen_max_amplitude`` times its trough) or ``"regular"``."""
        self._check_fitted()
        out = []
        for i in np.asarray(item_indices, dtype=np.int64).reshape(-1):
            if self.trending_[i]:
                out.append("trending")
            elif self.evergreen_[i]:
                out.append("evergreen")
            elif self.amplitude_[self.item_group_[i]] >= self.evergreen_max_amplitude:
                out.append("seasonal")
            else:
                out.append("regular")
        return out

    def _affinity(self, affinity: npt.ArrayLike | Mapping[str, float]) -> npt.NDArray[np.float64]:
        if isinstance(affinity, Mapping):
            weights = np.zeros(len(self.attr_vocab_) + 1)
            lookup = {v: k for k, v in enumerate(self.attr_vocab_)}
            for key, value in affinity.items():
                for v in _values(key):
                    if v in lookup:
                        weights[lookup[v]] += float(value)
            sums = np.add.reduceat(
                np.append(weights[self.attr_indices_], 0.0),
                np.minimum(self.attr_indptr_[:-1], len(self.attr_indices_)),
            )
            empty = np.diff(self.attr_indptr_) == 0
            sums[empty] = 0.0
            return np.clip(1.0 + sums, 0.0, None)
        vector = np.asarray(affinity, dtype=np.float64).reshape(-1)
        if len(vector) != self.n_items:
            raise InvalidRequest(f"customer_affinity has {len(vector)} entries, not {self.n_items}")
        if not np.isfinite(vector).all() or (vector < 0).any():
            raise InvalidRequest("customer_affinity weights must be finite and >= 0")
        return vector

    def affinity_from_items(
        self, item_indices: Sequence[int] | IntArray, strength: float | None = None
    ) -> FloatArray:
        """A per-item weight vector from a customer's purchases: ``1 + strength · share`` of
        the customer's items sharing each attribute value (category, product type, colour,
        material, pattern, styles) with the item, summed over its values. ``strength``
        defaults to the model's ``affinity_strength`` (chosen on the H&M validation dates)."""
        self._check_fitted()
        if strength is None:
            strength = self.affinity_strength
        idx = np.asarray(item_indices, dtype=np.int64).reshape(-1)
        if len(idx) == 0:
            return np.ones(self.n_items, dtype=np.float32)
        counts = np.zeros(len(self.attr_vocab_))
        for i in idx:
            counts[self.attr_indices_[self.attr_indptr_[i] : self.attr_indptr_[i + 1]]] += 1.0
        share = counts / len(idx)
        weights = {self.attr_vocab_[v]: strength * share[v] for v in np.flatnonzero(share)}
        return self._affinity(weights).astype(np.float32)

    # ------------------------------------------------------------------------- persistence

    def _params(self) -> dict[str, Any]:
        return {
            "half_life_days": self.half_life_days,
            "prior_days": self.prior_days,
            "trend_days": self.trend_days,
            "trend_threshold": self.trend_threshold,
            "trend_p_value": self.trend_p_value,
            "trend_min_sales": self.trend_min_sales,
            "trend_weight": self.trend_weight,
            "smoothing_weeks": self.smoothing_weeks,
            "seasonal_weight": self.seasonal_weight,
            "evergreen_max_amplitude": self.evergreen_max_amplitude,
            "staple_threshold": self.staple_threshold,
            "weather_boost": self.weather_boost,
            "min_exposure_days": self.min_exposure_days,
            "hemisphere": self.hemisphere,
            "level_mode": self.level_mode,
            "affinity_strength": self.affinity_strength,
        }

    def save(self, path: Path) -> None:
        """Write ``config.json`` and ``arrays.npz`` into the folder ``path``."""
        self._check_fitted()
        path = Path(path)
        write_config(
            path,
            {
                "model": self.name,
                "format": _FORMAT,
                "params": self._params(),
                "now": self.now_,
                "groups": self.groups_,
                "categories": self.categories_,
                "attr_vocab": self.attr_vocab_,
                "weather_hints": sorted(self.weather_match_),
            },
        )
        save_arrays(
            path,
            profiles=self.profiles_,
            amplitude=self.amplitude_,
            item_group=self.item_group_,
            item_category=self.item_category_,
            level=self.level_,
            trend=self.trend_,
            recent_sales=self.recent_sales_,
            trending=self.trending_,
            evergreen=self.evergreen_,
            attr_indptr=self.attr_indptr_,
            attr_indices=self.attr_indices_,
            **{f"weather__{k}": v for k, v in self.weather_match_.items()},
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        config, arrays = read_model(path, cls.name, _FORMAT)
        # bundles written before level_mode existed computed the rate level
        model = cls(**{"level_mode": "rate", **config["params"]})
        model.now_ = int(config["now"])
        model.groups_ = list(config["groups"])
        model.categories_ = list(config["categories"])
        model.attr_vocab_ = list(config["attr_vocab"])
        try:
            model.profiles_ = arrays["profiles"].astype(np.float32)
            model.amplitude_ = arrays["amplitude"].astype(np.float32)
            model.item_group_ = arrays["item_group"].astype(np.int64)
            model.item_category_ = arrays["item_category"].astype(np.int64)
            model.level_ = arrays["level"].astype(np.float32)
            model.trend_ = arrays["trend"].astype(np.float32)
            model.recent_sales_ = arrays["recent_sales"].astype(np.float32)
            model.trending_ = arrays["trending"].astype(bool)
            model.evergreen_ = arrays["evergreen"].astype(bool)
            model.attr_indptr_ = arrays["attr_indptr"].astype(np.int64)
            model.attr_indices_ = arrays["attr_indices"].astype(np.int64)
            model.weather_match_ = {
                k: arrays[f"weather__{k}"].astype(bool) for k in config["weather_hints"]
            }
        except KeyError as exc:
            raise BundleError(f"{path}/arrays.npz lacks {exc}") from exc
        return model
