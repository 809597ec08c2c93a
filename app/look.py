"""Complete the look and seasonal picks: the service behind ``/v1/items/{id}/complementary``,
``/v1/complementary`` and ``/v1/seasonal``.

Lists are cached like the other lists (:mod:`app.response_cache`): per item, per basket, in one
seasonal group, or — with a ``customer_id`` — with the customer's lists, so their events, consent
changes and erasure drop them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from app.customers import Clock, Customers
from app.outfit_sources import default_date, fits_customer, purchased_items, stock_mask
from app.pipeline import Context
from app.rendering import Renderer, item_entry
from app.response_cache import ComplementaryKey, ResponseCache, SeasonalKey
from app.runtime import BundleManager, LoadedBundle
from feature_store.errors import InvalidRequest, ModelNotLoaded, UnknownItem
from feature_store.schema import SEASONS, Category
from models.complementary import ComplementaryModel
from models.seasonal import WEATHER_HINTS, SeasonalModel, SeasonalPicks

MAX_BASKET = 20
CUSTOMER_OVERSAMPLE = 4  # size filtering drops items: look further down each list


def parse_categories(raw: str | Sequence[str] | None) -> list[str] | None:
    """``"bottom,shoes"`` (or a list) → validated category names; None = the default slots."""
    if raw is None:
        return None
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    names = [p.strip().lower() for p in parts if p.strip()]
    if not names:
        raise InvalidRequest("categories: give at least one category, or leave it out")
    known = {c.value for c in Category}
    bad = [n for n in names if n not in known]
    if bad:
        raise InvalidRequest(
            f"categories: unknown {', '.join(bad)} (known: {', '.join(sorted(known))})"
        )
    return list(dict.fromkeys(names))


def parse_date(raw: str | None) -> pd.Timestamp | None:
    if raw is None:
        return None
    try:
        stamp = pd.Timestamp(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"date: not an ISO 8601 date: {raw!r}") from exc
    if pd.isna(stamp):
        raise InvalidRequest(f"date: not an ISO 8601 date: {raw!r}")
    return stamp


def parse_weather(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = raw.strip().lower().replace(" ", "_").replace("-", "_")
    if name not in WEATHER_HINTS:
        raise InvalidRequest(f"weather: must be one of {', '.join(WEATHER_HINTS)}, got {raw!r}")
    return name


class LookService:
    """Complementary slots and seasonal picks over the served bundle."""

    def __init__(
        self,
        bundles: BundleManager,
        customers: Customers,
        responses: ResponseCache,
        renderer: Renderer,
        clock: Clock,
    ) -> None:
        self.bundles = bundles
        self.customers = customers
        self.responses = responses
        self.renderer = renderer
        self.clock = clock

    def _customer(self, bundle: LoadedBundle, customer_id: str | None, k: int) -> Context:
        """The request context: the customer's history, purchases and profile (sizes) when they
        consented, else an anonymous one."""
        if customer_id is not None:
            view = self.customers.read(bundle, customer_id)
            if view.consent:
                ctx = self.customers.context(bundle, view, k=k, category=None)
                ctx.profile = view.profile
                return ctx
        return Context(bundle=bundle, k=k, customer_id=customer_id)

    @staticmethod
    def _personalized(ctx: Context) -> bool:
        return ctx.customer_index is not None or bool(ctx.recent)

    # -- complete the look -----------------------------------------------------------------------

    def complementary(
        self,
        item_ids: Sequence[str],
        *,
        k: int,
        categories: list[str] | None = None,
        customer_id: str | None = None,
        single: bool = False,
    ) -> bytes:
        """Per slot (category), the ``k`` items that go best with *all* of ``item_ids``."""
        bundle = self.bundles.current
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            raise InvalidRequest("items: give at least one item")
        if len(ids) > MAX_BASKET:
            raise InvalidRequest(f"items: at most {MAX_BASKET} items")
        items: list[int] = []
        for item_id in ids:
            index = bundle.catalog.ids.index(item_id)
            if index is None:
                raise UnknownItem(item_id)
            items.append(index)
        model = bundle.complementary
        if model is None:
            raise ModelNotLoaded(
                f"bundle {bundle.version} has no complementary model; train a new bundle"
            )
        key = ComplementaryKey(
            version=bundle.version,
            item_ids=tuple(ids),
            k=k,
            categories=tuple(categories) if categories is not None else None,
            single=single,
            customer_id=customer_id,
        )
        return self.responses.get_or_compute(
            key,
            lambda: self._complete(
                bundle,
                model,
                ids,
                items,
                k=k,
                categories=categories,
                customer_id=customer_id,
                single=single,
            ),
        )

    def _complete(
        self,
        bundle: LoadedBundle,
        model: ComplementaryModel,
        ids: list[str],
        items: list[int],
        *,
        k: int,
        categories: list[str] | None,
        customer_id: str | None,
        single: bool,
    ) -> bytes:
        ctx = self._customer(bundle, customer_id, k)
        personalized = self._personalized(ctx)
        wanted: list[str] | None = None
        empty: set[str] = set()
        if categories is not None:  # valid categories without items in the catalog: empty slots
            wanted = [c for c in categories if c in model.categories_]
            empty = {c for c in categories if c not in model.categories_}
        in_stock = stock_mask(bundle)
        exclude = sorted((ctx.exclude if personalized else set()) - set(items))
        fetch = k * CUSTOMER_OVERSAMPLE if ctx.profile is not None else k
        slots = (
            model.complete(
                items,
                k_per_slot=fetch,
                categories=wanted,
                exclude=exclude,
                allowed=None if in_stock is None else np.flatnonzero(in_stock),
            )
            if wanted is None or wanted
            else {}
        )
        names = bundle.catalog.names
        rendered: list[dict[str, Any]] = []
        order = categories if categories is not None else list(slots)
        for category in order:
            if category in empty:
                rendered.append({"category": category, "items": []})
                continue
            found, scores = slots[category]
            keep = [
                (int(i), float(s))
                for i, s in zip(found, scores, strict=True)
                if ctx.profile is None or fits_customer(ctx, int(i))
            ][:k]
            pairs_with: list[int] = (
                model.anchors(items, [i for i, _ in keep]).tolist() if keep else []
            )
            entries = []
            for (item, score), anchor in zip(keep, pairs_with, strict=True):
                pairs = names[int(anchor)]  # a reason never names the item it explains
                reason = (
                    f"Pairs with the {pairs}" if pairs != names[item] else "Pairs with your pick"
                )
                entry = item_entry(ctx, item, score, "complementary", reason)
                entry["pairs_with"] = bundle.catalog.ids.id(int(anchor))
                entries.append(entry)
            rendered.append({"category": category, "items": entries})
        body = {
            "model_version": bundle.version,
            "surface": "complementary",
            "customer_id": customer_id,
            "item_id": ids[0] if single else None,
            "basket": ids,
            "compatibility": round(model.compatibility(items), 6) if len(items) > 1 else None,
            "personalized": personalized,
            "fallback": False,
            "slots": rendered,
        }
        return self.renderer.body(body)

    # -- seasonal --------------------------------------------------------------------------------

    def seasonal(
        self,
        *,
        k: int,
        date: str | None = None,
        season: str | None = None,
        weather: str | None = None,
        category: str | None = None,
        customer_id: str | None = None,
    ) -> bytes:
        """Seasonal picks for the 4 weeks from ``date`` (default today) or a whole ``season``,
        with a weather hint; with a known, consenting ``customer_id``: in their style, without
        what they bought, in stock in their size."""
        bundle = self.bundles.current
        model = bundle.seasonal
        if model is None:
            raise ModelNotLoaded(
                f"bundle {bundle.version} has no seasonal model; train a new bundle"
            )
        when = parse_date(date)
        weather = parse_weather(weather)
        if season is not None and season.strip().lower() not in SEASONS:
            raise InvalidRequest(f"season: must be one of {', '.join(SEASONS)}, got {season!r}")
        day: datetime = (
            when.to_pydatetime() if when is not None else default_date(bundle, self.clock)
        )
        key = SeasonalKey(
            version=bundle.version,
            day=day,
            season=season,
            weather=weather,
            category=category,
            k=k,
            customer_id=customer_id,
        )
        return self.responses.get_or_compute(
            key,
            lambda: self._seasonal(
                bundle,
                model,
                day,
                season=season,
                weather=weather,
                category=category,
                k=k,
                customer_id=customer_id,
            ),
        )

    def _seasonal(
        self,
        bundle: LoadedBundle,
        model: SeasonalModel,
        day: datetime,
        *,
        season: str | None,
        weather: str | None,
        category: str | None,
        k: int,
        customer_id: str | None,
    ) -> bytes:
        ctx = self._customer(bundle, customer_id, k)
        personalized = self._personalized(ctx)
        affinity = None
        exclude: list[int] = []
        if personalized:
            bought = purchased_items(ctx)
            style = bought if bought else ctx.history.tolist()
            affinity = model.affinity_from_items(style) if style else None
            exclude = sorted(ctx.exclude)
        fetch = k * CUSTOMER_OVERSAMPLE + 8 if ctx.profile is not None else k
        if category is not None and category not in model.categories_:
            picks = SeasonalPicks(np.empty(0, np.int64), np.empty(0, np.float32), [])
        else:
            picks = model.recommend(
                date=day,
                season=season,
                weather=weather,
                category=category,
                k=fetch,
                customer_affinity=affinity,
                in_stock=stock_mask(bundle),
                exclude=exclude or None,
            )
        entries = [
            item_entry(ctx, int(i), float(s), "seasonal", r)
            for i, s, r in zip(picks.items, picks.scores, picks.reasons, strict=True)
            if ctx.profile is None or fits_customer(ctx, int(i))
        ][:k]
        body = {
            "model_version": bundle.version,
            "surface": "seasonal",
            "customer_id": customer_id,
            "item_id": None,
            "date": f"{day:%Y-%m-%d}",
            "season": season.strip().lower() if season is not None else None,
            "weather": weather,
            "personalized": personalized,
            "fallback": False,
            "items": entries,
        }
        return self.renderer.body(body)
