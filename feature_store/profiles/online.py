"""Online state: one JSON-ready dict per customer, updated event by event and rendered."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..schema import (
    SIZE_RETURN_REASONS,
    Interaction,
    InteractionType,
    ItemCols,
    ReturnReason,
)
from ..timeutils import SECONDS_PER_DAY, decay
from .config import ProfileConfig
from .events import _epoch_seconds, _iso
from .scoring import (
    RfmThresholds,
    _lifetime_value_one,
    _score_one,
    _tier_one,
    stage_of,
)
from .vocabulary import FACET_COLUMNS, FACETS, PROSPECT, STATE_VERSION, half_life_seconds


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
    """The decay of a vote ``seconds`` old (negative ages count as 0)."""
    return float(decay(max(seconds, 0.0), half_life_seconds(half_life_days)))


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
        day = math.floor(t / SECONDS_PER_DAY)
        first, last = out.get("first_purchase"), out.get("last_purchase")
        if first is None or last is None:
            out["frequency"] = 1
            out["first_purchase"] = out["last_purchase"] = t
        else:
            if day > math.floor(float(last) / SECONDS_PER_DAY) or day < math.floor(
                float(first) / SECONDS_PER_DAY
            ):
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
        recency = max(math.floor((now_s - last) / SECONDS_PER_DAY), 0)
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
