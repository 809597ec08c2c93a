"""Response bodies: ranked candidates (or look slots) become JSON bytes, and recommendation ids.

Bodies are rendered without ``recommendation_id`` (so they can be cached); every response gets a
fresh one spliced in front with :func:`with_recommendation_id`. :class:`Renderer` also counts each
list served (``lookbook_recommendations_total`` by surface and fallback).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from app.metrics import Metrics
from app.pipeline import Candidate, Context


def new_recommendation_id() -> str:
    return uuid.uuid4().hex


def with_recommendation_id(body: bytes, recommendation_id: str) -> bytes:
    """Splice a fresh ``recommendation_id`` in front of a cached ``{...}`` body."""
    return b'{"recommendation_id":"' + recommendation_id.encode() + b'",' + body[1:]


def item_entry(ctx: Context, item: int, score: float, source: str, reason: str) -> dict[str, Any]:
    """One item of a list: id, score, source, reason, catalog description and the customer's size.
    The reason is the source's unless what the customer did with the item says more
    (:meth:`~app.pipeline.Context.reason_for`: returned, now in another size; only looked at)."""
    described = ctx.bundle.catalog.describe(item)
    entry: dict[str, Any] = {
        "item_id": described.pop("item_id"),
        "score": round(float(score), 6),
        "source": source,
        "reason": ctx.reason_for(item, reason),
    }
    entry.update(described)
    entry["size"] = ctx.size_for(item)
    return entry


class Renderer:
    """Turns what a surface computed into the body it serves, counting every list."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def ranked_list(
        self,
        ranked: Sequence[Candidate],
        ctx: Context,
        *,
        surface: str,
        customer_id: str | None = None,
        item_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        """The body of a ranked list (feeds, sessions, similar items)."""
        items = [item_entry(ctx, c.item, c.score, c.source, c.reason) for c in ranked]
        return self.body(
            {
                "model_version": ctx.bundle.version,
                "surface": surface,
                "customer_id": customer_id,
                "item_id": item_id,
                "fallback": ctx.fallback_used,
                **(extra or {}),
                "items": items,
            }
        )

    def body(self, body: dict[str, Any]) -> bytes:
        """A finished body (``surface`` and ``fallback`` set) as bytes, counted."""
        self.metrics.recommendations.labels(
            surface=body["surface"], fallback=str(body["fallback"]).lower()
        ).inc()
        return orjson.dumps(body)
