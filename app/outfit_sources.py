"""Candidate sources of the "complete the look" and seasonal models, for the feed pipeline.

* :class:`CompleteTheLookSource` (``complete_look``) — items of *other* categories that the
  complementary model pairs with what the customer bought most recently ("Completes the linen
  shirt you bought").
* :class:`SeasonalSource` (``seasonal``) — the seasonal model's picks for today (or the bundle's
  last day when that is later), weighted by the customer's style ("Autumn staple", "Trending now").

Both are added with modest weights to every segment's strategy of the personalized feed
(:func:`with_look_sources`); a strategies file that names them sets their weights itself. Both
return nothing for bundles trained without their model. The helpers here are shared with the
``/v1/items/{id}/complementary``, ``/v1/complementary`` and ``/v1/seasonal`` endpoints.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from app.pipeline import Candidate, CandidateSource, Context
from app.runtime import LoadedBundle

# Reciprocal-rank fusion is flat (k=60): 0.9 puts a source's first item around ALS's 8th, 0.85
# around its 11th — one or two of each in a feed of twelve.
# Added to every segment's feed strategy by default. ``complete_look`` (weight 0.9 when named)
# costs a FAISS search per slot per anchor, too much for the feed's millisecond budget on a large
# catalog, so a strategies file opts into it per segment (LOOKBOOK_STRATEGIES_FILE).
LOOK_SOURCE_WEIGHTS: Final[dict[str, float]] = {"seasonal": 0.85}
MAX_ANCHORS: Final = 3

_stock_lock = threading.Lock()
_stock_masks: dict[str, npt.NDArray[np.bool_] | None] = {}


def stock_mask(bundle: LoadedBundle) -> npt.NDArray[np.bool_] | None:
    """Items with some size in stock somewhere (``None`` when the bundle has no stock table);
    computed once per bundle version."""
    with _stock_lock:
        if bundle.version not in _stock_masks:
            if len(_stock_masks) > 4:
                _stock_masks.clear()
            _stock_masks[bundle.version] = (
                None if bundle.stock.empty else bundle.stock.in_stock_items()
            )
        return _stock_masks[bundle.version]


def fits_customer(ctx: Context, item: int) -> bool:
    """In stock in the customer's size for the item (when their size is known and the bundle
    has stock); items whose size for the customer is unknown are kept."""
    if ctx.bundle.stock.empty:
        return True
    size = ctx.size_for(item)
    return size is None or ctx.bundle.stock.quantity(item, size, ctx.store_id) > 0


def purchased_items(ctx: Context, limit: int | None = None) -> list[int]:
    """What the customer bought and kept, most engaged first (:meth:`Context.kept_purchases`)."""
    out = ctx.kept_purchases(bundle_order="engagement")
    return out if limit is None else out[:limit]


def default_date(bundle: LoadedBundle, clock: Callable[[], datetime]) -> datetime:
    """Today, or the bundle's last day when that is later (a bundle trained on future-dated data
    or a clock behind the data)."""
    now = clock()
    trained = bundle.trained_until
    if trained.tzinfo is None:
        trained = trained.replace(tzinfo=UTC)
    return max(now, trained)


class CompleteTheLookSource:
    """Complementary items for the customer's latest purchases (other categories only)."""

    name = "complete_look"

    def __init__(self, max_anchors: int = MAX_ANCHORS) -> None:
        self.max_anchors = max_anchors

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        model = ctx.bundle.complementary
        if model is None or n < 1:
            return []
        catalog = ctx.bundle.catalog
        anchors = [
            a
            for a in purchased_items(ctx, self.max_anchors * 2)
            if ctx.category is None or str(catalog.categories[a]) != ctx.category
        ][: self.max_anchors]
        if not anchors:
            return []
        if ctx.category is not None and ctx.category not in model.categories_:
            return []
        categories = None if ctx.category is None else [ctx.category]
        allowed = stock_mask(ctx.bundle)
        exclude = sorted(ctx.exclude | set(anchors))
        per_slot = max(2, math.ceil(n / (len(anchors) * (1 if categories else 3))))
        lists: list[list[tuple[int, float]]] = []
        for anchor in anchors:
            slots = model.complete(
                [anchor],
                k_per_slot=per_slot,
                categories=categories,
                exclude=exclude,
                allowed=None if allowed is None else np.flatnonzero(allowed),
            )
            pairs = [
                (int(i), float(s))
                for items, scores in slots.values()
                for i, s in zip(items, scores, strict=True)
            ]
            lists.append(sorted(pairs, key=lambda p: (-p[1], p[0])))
        out: list[Candidate] = []
        seen: set[int] = set()
        for rank in range(max(len(items) for items in lists)):  # round robin over the anchors
            for anchor, items in zip(anchors, lists, strict=True):
                if rank < len(items) and items[rank][0] not in seen:
                    item, score = items[rank]
                    seen.add(item)
                    reason = (
                        f"Completes the {catalog.names[anchor]} you bought"
                        if ctx.may_cite(item, anchor)
                        else "Completes a look you bought"
                    )
                    out.append(Candidate(item, score, self.name, reason))
        return out[:n]


class SeasonalSource:
    """The seasonal model's picks for today, weighted by the customer's style when known."""

    name = "seasonal"

    #: picks computed once per bundle, day and category, then filtered per request
    POOL: Final = 300

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._pool: dict[tuple[str, str, str | None], list[tuple[int, float, str]]] = {}
        self._lock = threading.Lock()

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        model = ctx.bundle.seasonal
        if model is None or n < 1:
            return []
        if ctx.category is not None and ctx.category not in model.categories_:
            return []
        if not len(ctx.history) and not purchased_items(ctx):
            return []  # nothing known of the customer: the feed's popular fallback stands
        out: list[Candidate] = []
        for item, score, reason in self._picks(ctx):
            if item in ctx.exclude:
                continue
            out.append(Candidate(item, score, self.name, reason))
            if len(out) >= n:
                break
        return out

    def _picks(self, ctx: Context) -> list[tuple[int, float, str]]:
        """Today's seasonal picks (in stock) for the request's category; the ALS and strategy
        sources personalise the feed, this source brings the season in. The /v1/seasonal
        endpoint personalises the picks themselves."""
        day = default_date(ctx.bundle, self.clock)
        key = (ctx.bundle.version, day.date().isoformat(), ctx.category)
        with self._lock:
            cached = self._pool.get(key)
        if cached is not None:
            return cached
        model = ctx.bundle.seasonal
        assert model is not None
        picks = model.recommend(
            date=day, category=ctx.category, k=self.POOL, in_stock=stock_mask(ctx.bundle)
        )
        pool = [
            (int(i), float(s), str(r))
            for i, s, r in zip(picks.items, picks.scores, picks.reasons, strict=True)
        ]
        with self._lock:
            if len(self._pool) > 64 or any(k[0] != ctx.bundle.version for k in self._pool):
                self._pool.clear()
            self._pool[key] = pool
        return pool


def look_sources(clock: Callable[[], datetime] | None = None) -> dict[str, CandidateSource]:
    return {"complete_look": CompleteTheLookSource(), "seasonal": SeasonalSource(clock)}


def with_look_sources(
    strategy: Sequence[tuple[CandidateSource, float]],
    sources: dict[str, CandidateSource],
    weights: dict[str, float] = LOOK_SOURCE_WEIGHTS,
) -> list[tuple[CandidateSource, float]]:
    """A segment's strategy plus the look sources at their default weights, unless the strategy
    already names them (then its own weights stand). ``complete_look`` is not added to a strategy
    that already has co-purchase complements (``complementary``): it fills the same role there."""
    named = {source.name for source, _ in strategy}
    extra = [
        (sources[name], weight)
        for name, weight in weights.items()
        if name in sources
        and name not in named
        and not (name == "complete_look" and "complementary" in named)
    ]
    return [*strategy, *extra]
