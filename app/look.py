"""Complete the look and seasonal picks: the service behind ``/v1/items/{id}/complementary``,
``/v1/complementary`` and ``/v1/seasonal``.

Lists are cached like the other lists (:mod:`app.response_cache`): per item, per basket, in one
seasonal group, or — with a ``customer_id`` — with the customer's lists, so their events, consent
changes and erasure drop them too.

``min_price`` / ``max_price`` (:class:`~app.list_options.ListOptions`) restrict the models'
candidates before ranking (each slot and the seasonal list are ranked exactly over the items in
the range), so a list comes up short only when fewer items than ``k`` are in range; ``diversity``
reranks each slot and the seasonal list (:func:`models.diversity.diversify`) from a pool of
:func:`models.diversity.candidate_pool` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.customers import Clock, Customers
from app.list_options import NO_OPTIONS, ListOptions
from app.outfit_sources import default_date, fits_customer, purchased_items, stock_mask
from app.pipeline import Context
from app.rendering import Renderer, item_entry
from app.response_cache import ComplementaryKey, ResponseCache, SeasonalKey
from app.runtime import BundleManager, LoadedBundle
from app.served_lists import Served
from feature_store.errors import InvalidRequest, ModelNotLoaded, UnknownItem
from feature_store.schema import SEASONS, Category
from feature_store.served_lists import template
from models.complementary import ComplementaryModel
from models.diversity import candidate_pool, diversify
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


#: The dates ``GET /v1/seasonal?date=`` accepts (inclusive): the seasonal model works in
#: nanosecond timestamps, and a date outside these years is a mistake, not a season.
EARLIEST_SEASONAL_DATE: Final = date(1900, 1, 1)
LATEST_SEASONAL_DATE: Final = date(2199, 12, 31)


def parse_date(raw: str | None) -> pd.Timestamp | None:
    """The ``date`` of a seasonal request, or :class:`InvalidRequest` when it is not an ISO 8601
    date between :data:`EARLIEST_SEASONAL_DATE` and :data:`LATEST_SEASONAL_DATE`."""
    if raw is None:
        return None
    try:
        stamp = pd.Timestamp(raw)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"date: not an ISO 8601 date: {raw!r}") from exc
    if pd.isna(stamp):
        raise InvalidRequest(f"date: not an ISO 8601 date: {raw!r}")
    if not EARLIEST_SEASONAL_DATE <= stamp.date() <= LATEST_SEASONAL_DATE:
        raise InvalidRequest(
            f"date: must be between {EARLIEST_SEASONAL_DATE.isoformat()} and "
            f"{LATEST_SEASONAL_DATE.isoformat()}, got {raw!r}"
        )
    return stamp


def parse_weather(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = raw.strip().lower().replace(" ", "_").replace("-", "_")
    if name not in WEATHER_HINTS:
        raise InvalidRequest(f"weather: must be one of {', '.join(WEATHER_HINTS)}, got {raw!r}")
    return name


def _within(
    mask: npt.NDArray[np.bool_] | None, options: ListOptions, bundle: LoadedBundle
) -> npt.NDArray[np.bool_] | None:
    """``mask`` (items allowed; None: all) narrowed to the request's price range."""
    prices = options.price_mask(bundle.catalog.prices)
    if prices is None:
        return mask
    return prices if mask is None else mask & prices


def _diversified(
    ranked: list[tuple[int, float]], k: int, options: ListOptions, bundle: LoadedBundle
) -> list[tuple[int, float]]:
    """The first ``k`` of ``ranked`` (best first), or with ``diversity`` its diversity rerank."""
    if options.diversity <= 0:
        return ranked[:k]
    pool = ranked[: candidate_pool(k)]
    picked = diversify([i for i, _ in pool], k, options.diversity, bundle.item_similarity)
    return [pool[int(p)] for p in picked]


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
        options: ListOptions = NO_OPTIONS,
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
            options=options,
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
                options=options,
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
        options: ListOptions = NO_OPTIONS,
    ) -> Served:
        ctx = self._customer(bundle, customer_id, k)
        personalized = self._personalized(ctx)
        wanted: list[str] | None = None
        empty: set[str] = set()
        if categories is not None:  # valid categories without items in the catalog: empty slots
            wanted = [c for c in categories if c in model.categories_]
            empty = {c for c in categories if c not in model.categories_}
        in_stock = _within(stock_mask(bundle), options, bundle)
        exclude = sorted((ctx.exclude if personalized else set()) - set(items))
        fetch = k * CUSTOMER_OVERSAMPLE if ctx.profile is not None else k
        if options.diversity > 0:
            fetch = max(fetch, candidate_pool(k))
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
            keep = _diversified(
                [
                    (int(i), float(s))
                    for i, s in zip(found, scores, strict=True)
                    if ctx.profile is None or fits_customer(ctx, int(i))
                ],
                k,
                options,
                bundle,
            )
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
        positions = [  # positions count across the slots, in order
            (entry["item_id"], entry["source"], 1.0) for slot in rendered for entry in slot["items"]
        ]
        return self._served(body, bundle, positions, customer_id if personalized else None)

    def _served(
        self,
        body: dict[str, Any],
        bundle: LoadedBundle,
        positions: list[tuple[str, str, float]],
        customer_id: str | None,
    ) -> Served:
        """The rendered body with its served-list record template."""
        record = template(
            surface=body["surface"],
            model_version=bundle.version,
            positions=positions,
            customer_id=customer_id,
        )
        return Served(self.renderer.body(body), record)

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
        options: ListOptions = NO_OPTIONS,
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
            options=options,
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
                options=options,
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
        options: ListOptions = NO_OPTIONS,
    ) -> Served:
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
        if options.diversity > 0:
            fetch = max(fetch, candidate_pool(k))
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
                in_stock=_within(stock_mask(bundle), options, bundle),
                exclude=exclude or None,
            )
        reasons = dict(zip(picks.items.tolist(), picks.reasons, strict=True))
        entries = [
            item_entry(ctx, i, s, "seasonal", reasons[i])
            for i, s in _diversified(
                [
                    (int(i), float(s))
                    for i, s in zip(picks.items, picks.scores, strict=True)
                    if ctx.profile is None or fits_customer(ctx, int(i))
                ],
                k,
                options,
                bundle,
            )
        ]
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
        positions = [(entry["item_id"], entry["source"], 1.0) for entry in entries]
        return self._served(body, bundle, positions, customer_id if personalized else None)
