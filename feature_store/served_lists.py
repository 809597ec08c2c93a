"""The served-list record: what one list response showed, under its ``recommendation_id``.

A record is one JSON object (one line of the impression log, one value in the online store)::

    {"recommendation_id": "9f1c…", "served_at": "2026-12-05T12:00:00.123456+00:00",
     "surface": "personalized", "segment": "loyal", "variant": null, "customer_id": "C0000001",
     "model_version": "20261205T1100", "strategy_surface": "home",
     "items": [{"item_id": "I000001", "source": "als", "propensity": 1.0}, …]}

``items`` holds one entry per position (0-based, in the order shown; a list with slots — complete
the look — counts positions across its slots in order). ``propensity`` is the probability with
which the ranking step chose that entry's source for that position (1.0 for the deterministic
fusion), as off-policy evaluation needs it. ``variant`` is the experiment variant (``None``
outside experiments); ``customer_id`` is ``None`` for anonymous sessions; ``segment`` is ``None``
for surfaces without segments. ``policy`` is present only on lists the bandit ranked
(``"bandit"``, :mod:`models.bandit`): the bandit learns from those lists' impressions and events;
a record without it was ranked by the fixed fusion.

The service builds a record in two steps: a *template* (everything but the id and the time, made
once per computed list and cached beside the body) and :func:`stamp`, which adds both for each
showing — a cached list served again is a new showing with its own record. This module is the one
owner of the format: the online store (:mod:`feature_store.attribution_store`) and the durable
log (:mod:`feature_store.impression_log`) both store what :func:`stamp` returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .errors import DataFormatError

__all__ = ["ServedList", "ServedPosition", "stamp", "template"]


@dataclass(frozen=True, slots=True)
class ServedPosition:
    """One position of a served list."""

    item_id: str
    source: str
    propensity: float


@dataclass(frozen=True, slots=True)
class ServedList:
    """One showing of a list (a parsed record)."""

    recommendation_id: str
    served_at: datetime
    surface: str
    segment: str | None
    variant: str | None
    customer_id: str | None
    model_version: str
    items: tuple[ServedPosition, ...]
    strategy_surface: str | None = None
    policy: str | None = None  # "bandit" when the bandit ranked the list; None: fixed fusion

    @classmethod
    def from_json(cls, raw: bytes | str) -> ServedList:
        """Parse a record (raises :class:`DataFormatError` on anything malformed)."""
        try:
            data = orjson.loads(raw)
            return cls.from_record(data)
        except orjson.JSONDecodeError as exc:
            raise DataFormatError(f"served-list record is not JSON: {exc}") from exc

    @classmethod
    def from_record(cls, data: Any) -> ServedList:
        try:
            items = tuple(
                ServedPosition(str(p["item_id"]), str(p["source"]), float(p["propensity"]))
                for p in data["items"]
            )
            return cls(
                recommendation_id=str(data["recommendation_id"]),
                served_at=datetime.fromisoformat(data["served_at"]),
                surface=str(data["surface"]),
                segment=_opt(data.get("segment")),
                variant=_opt(data.get("variant")),
                customer_id=_opt(data.get("customer_id")),
                model_version=str(data["model_version"]),
                items=items,
                strategy_surface=_opt(data.get("strategy_surface")),
                policy=_opt(data.get("policy")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"malformed served-list record: {exc!r}") from exc

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "recommendation_id": self.recommendation_id,
            "served_at": self.served_at.isoformat(),
            "surface": self.surface,
            "segment": self.segment,
            "variant": self.variant,
            "customer_id": self.customer_id,
            "model_version": self.model_version,
            "strategy_surface": self.strategy_surface,
            "items": [
                {"item_id": p.item_id, "source": p.source, "propensity": p.propensity}
                for p in self.items
            ],
        }
        if self.policy is not None:
            record["policy"] = self.policy
        return record


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def template(
    *,
    surface: str,
    model_version: str,
    positions: Iterable[tuple[str, str, float]],
    segment: str | None = None,
    variant: str | None = None,
    customer_id: str | None = None,
    strategy_surface: str | None = None,
    policy: str | None = None,
) -> bytes:
    """A record without ``recommendation_id`` and ``served_at`` (JSON bytes): ``positions`` are
    ``(item_id, source, propensity)`` in the order shown; ``policy`` only when given."""
    record: dict[str, Any] = {
        "surface": surface,
        "segment": segment,
        "variant": variant,
        "customer_id": customer_id,
        "model_version": model_version,
        "strategy_surface": strategy_surface,
        "items": [
            {"item_id": item_id, "source": source, "propensity": float(propensity)}
            for item_id, source, propensity in positions
        ],
    }
    if policy is not None:
        record["policy"] = policy
    return orjson.dumps(record)


def stamp(template_json: bytes, recommendation_id: str, served_at: datetime) -> bytes:
    """The full record of one showing: ``template_json`` with the id and the time spliced in
    front (no parsing: a cached template costs a few hundred nanoseconds per showing)."""
    head = orjson.dumps(
        {"recommendation_id": recommendation_id, "served_at": served_at.isoformat()}
    )
    return head[:-1] + b"," + template_json[1:]
