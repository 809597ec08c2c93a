"""The fitting-room kiosk: outfits around the items a shopper carried in, from *this* store's
shelves in *their* size (``POST /v1/kiosk/outfits``), and what they liked sent to their online
cart (``POST /v1/kiosk/cart``).

Outfits. The carried items decide the slots to fill (:func:`models.outfit_builder.outfit_slots`:
a bottom for a top, shoes, outerwear or an accessory by season and weather). Per slot, the
complementary model ranks the items in stock anywhere by their compatibility with *all* the
carried items, plus a popularity prior (:func:`models.outfit_builder.popularity_bonus`, the
bundle's recent sales) and an occasion's prior (:mod:`models.occasions`), both scaled by the
spread of the slot's scores. Walking down each slot's ranking, an item is kept when it is in stock *in this
store in the advised size* — the size advice (:class:`app.size_advice.SizeAdvisor`: the
customer's size with their consent; an anonymous shopper's letter size carried over from what
they tried) — until ``PER_SLOT`` are kept; the neighbouring size to bring along (only one on
this store's shelves) and the stock of both come with it. :func:`models.outfit_builder.compose` then picks ``N_OUTFITS`` different
outfits by the model's set compatibility (plus the priors). The best match of a slot that
is not here in its size is not dropped silently: it is listed under ``elsewhere`` with where it
is (online, other stores, with their stock).

Each carried item gets its size advice (a tried size that did not fit moves it: tried M, too
small → take L). Every response has a ``recommendation_id`` and its served-list record
(surface ``kiosk``; positions: the outfits' items in order, then the ``elsewhere`` items), like
every other list; kiosk responses are not cached (they depend on the store's shelves and on what
was tried).

Cart. The chosen items become ``add_to_cart`` events on the ``kiosk`` channel with the store,
size and catalog price, through :meth:`app.ingest.Ingest.ingest` — the path of
``POST /v1/events``: the same validation, durable before acknowledged, the same consent rules —
so the customer's online cart and feed reflect the fitting room.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from app.customers import Clock, Customers
from app.ingest import Ingest
from app.outfit_sources import default_date, stock_mask
from app.rendering import Renderer
from app.response_cache import ResponseCache
from app.runtime import BundleManager, LoadedBundle
from app.served_lists import Served
from app.size_advice import (
    BRING_ALONG_MIN,
    FitVerdict,
    SizeAdvice,
    SizeAdvisor,
    TriedSize,
    UnknownStoreParam,
)
from feature_store.errors import InvalidEvent, InvalidRequest, ModelNotLoaded, UnknownItem
from feature_store.schema import ONLINE_STORE, Category, Channel, InteractionType, ItemCols
from feature_store.served_lists import template
from models.complementary import ComplementaryModel
from models.occasions import OCCASIONS, all_occasion_scores, occasion_bonus, occasion_scores
from models.outfit_builder import compose, outfit_slots, popularity_bonus
from models.seasonal import WEATHER_HINTS, season_of

MAX_CARRIED: Final = 5  # items a shopper carries into a fitting room, at most
MAX_CART: Final = 20
N_OUTFITS: Final = 3
PER_SLOT: Final = 4  # candidates per slot the outfits are composed from
POOL: Final = 200  # the complementary model's candidates per slot before stock and size checks
MAX_SIZE_CHECKS: Final = 16  # size advice asked per slot at most (each checks the store's stock)
MAX_LOCATIONS: Final = 3  # other stores named for an item that is not here
MAX_TABLES: Final = 256  # per-bundle store masks / occasion scores kept (two bundles' worth)
SOURCE: Final = "kiosk"
ELSEWHERE_SOURCE: Final = "kiosk_elsewhere"
#: Letter sizes an anonymous shopper's tried size carries over to other garments in.
LETTER_SIZES: Final = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "XXXL")
CARRY_OVER_CATEGORIES: Final = frozenset(
    {Category.TOP.value, Category.BOTTOM.value, Category.DRESS.value, Category.OUTERWEAR.value}
)


@dataclass(frozen=True)
class CarriedItem:
    """An item carried into the fitting room: its id, and the size tried with how it fitted."""

    item_id: str
    size: str | None = None
    fit: FitVerdict | None = None  # None with a size: taken as "fits"


@dataclass(frozen=True)
class CartLine:
    """An item to send to the online cart, in a size; ``position`` in the kiosk list shown."""

    item_id: str
    size: str | None = None
    position: int | None = None


@dataclass
class _Pick:
    """A candidate that passed the size and stock check (or, for ``elsewhere``, did not)."""

    item: int
    score: float
    bonus: float
    advice: SizeAdvice
    size: str | None
    size_stock: int
    bring_along: str | None
    bring_along_stock: int | None
    carried_over: str | None  # the carried item whose tried size was carried over
    locations: list[dict[str, Any]] = field(default_factory=list)  # where it is, when not here
    occasion_bonus: float = 0.0  # the occasion's part of ``bonus``


class KioskService:
    """Outfits for the kiosk and its cart."""

    def __init__(
        self,
        bundles: BundleManager,
        customers: Customers,
        responses: ResponseCache,
        renderer: Renderer,
        clock: Clock,
        advisor: SizeAdvisor,
        ingest: Ingest,
    ) -> None:
        self.bundles = bundles
        self.customers = customers
        self.responses = responses
        self.renderer = renderer
        self.clock = clock
        self.advisor = advisor
        self.ingest = ingest
        self._lock = threading.Lock()
        self._masks: dict[tuple[str, str], npt.NDArray[np.bool_]] = {}
        self._occasions: dict[tuple[str, str], npt.NDArray[np.float32]] = {}

    # -- per-bundle tables ---------------------------------------------------------------------

    def _store_mask(self, bundle: LoadedBundle, store_id: str) -> npt.NDArray[np.bool_]:
        key = (bundle.version, store_id)
        with self._lock:
            found = self._masks.get(key)
        if found is None:
            found = bundle.stock.store_items(store_id)
            with self._lock:
                if len(self._masks) > MAX_TABLES:
                    self._masks.clear()
                self._masks[key] = found
        return found

    def _occasion(self, bundle: LoadedBundle, occasion: str) -> npt.NDArray[np.float32]:
        key = (bundle.version, occasion)
        with self._lock:
            found = self._occasions.get(key)
        if found is None:
            found = occasion_scores(bundle.catalog.frame, occasion)
            with self._lock:
                if len(self._occasions) > MAX_TABLES:
                    self._occasions.clear()
                self._occasions[key] = found
        return found

    def warm(self, bundle: LoadedBundle) -> None:
        """A bundle's kiosk tables before it serves (a bundle-manager warm-up): every occasion's
        item scores, every store's in-stock mask, the colours, the size advice's item fit counts."""
        scores = all_occasion_scores(bundle.catalog.frame)
        self.advisor.stats(bundle)
        masks = {s: bundle.stock.store_items(s) for s in bundle.stock.stores if s != ONLINE_STORE}
        with self._lock:
            for table in (self._occasions, self._masks):
                if len(table) > MAX_TABLES:
                    table.clear()
            self._occasions.update({(bundle.version, o): v for o, v in scores.items()})
            self._masks.update({(bundle.version, s): m for s, m in masks.items()})
        if len(bundle.catalog.ids):
            _colour(bundle, 0)

    # -- validation ------------------------------------------------------------------------------

    @staticmethod
    def check_store(bundle: LoadedBundle, store_id: str) -> None:
        """A physical store of the stock table (the web shop has no fitting room)."""
        if store_id == ONLINE_STORE or store_id not in bundle.stock.store_code:
            raise UnknownStoreParam(store_id)

    @staticmethod
    def _item(bundle: LoadedBundle, item_id: str) -> int:
        index = bundle.catalog.ids.index(item_id)
        if index is None:
            raise UnknownItem(item_id)
        return index

    @staticmethod
    def _check_size(bundle: LoadedBundle, item: int, item_id: str, size: str, where: str) -> None:
        offered = bundle.catalog.sizes[item]
        if offered and size not in offered:
            raise InvalidRequest(
                f"{where}: {item_id!r} is not offered in {size!r} (sizes: {', '.join(offered)})"
            )

    # -- outfits ---------------------------------------------------------------------------------

    def outfits(
        self,
        store_id: str,
        carried: Sequence[CarriedItem],
        *,
        customer_id: str | None = None,
        occasion: str | None = None,
        weather: str | None = None,
    ) -> bytes:
        """The kiosk's body (with a fresh ``recommendation_id``, recorded)."""
        bundle = self.bundles.current
        self.check_store(bundle, store_id)
        if not carried:
            raise InvalidRequest("items: give at least one carried item")
        if len(carried) > MAX_CARRIED:
            raise InvalidRequest(f"items: at most {MAX_CARRIED} carried items")
        if occasion is not None and occasion not in OCCASIONS:
            raise InvalidRequest(f"occasion: must be one of {', '.join(OCCASIONS)}")
        if weather is not None and weather not in WEATHER_HINTS:
            raise InvalidRequest(f"weather: must be one of {', '.join(WEATHER_HINTS)}")
        seen: dict[str, CarriedItem] = {}
        for n, entry in enumerate(carried):
            item = self._item(bundle, entry.item_id)
            if entry.fit is not None and entry.size is None:
                raise InvalidRequest(f"items.{n}.fit: give the size tried with the fit")
            if entry.size is not None:
                self._check_size(bundle, item, entry.item_id, entry.size, f"items.{n}.size")
            seen.setdefault(entry.item_id, entry)
        model = bundle.complementary
        if model is None:
            raise ModelNotLoaded(
                f"bundle {bundle.version} has no complementary model; train a new bundle"
            )
        served = self._compose(
            bundle, model, store_id, list(seen.values()), customer_id, occasion, weather
        )
        return self.responses.show(served)

    def _compose(
        self,
        bundle: LoadedBundle,
        model: ComplementaryModel,
        store_id: str,
        carried: list[CarriedItem],
        customer_id: str | None,
        occasion: str | None,
        weather: str | None,
    ) -> Served:
        catalog = bundle.catalog
        items = [self._item(bundle, c.item_id) for c in carried]
        personal = False
        bought: list[int] = []
        if customer_id is not None:
            view = self.customers.read(bundle, customer_id)
            personal = view.consent and (view.index is not None or view.profile is not None)
            if view.consent and view.index is not None:
                bought = bundle.purchased(view.index).tolist()
        # the carried items' size advice (a tried size moves it)
        carried_entries: list[dict[str, Any]] = []
        letter_size: tuple[str, str] | None = None  # (size, carried item name) to carry over
        for entry, item in zip(carried, items, strict=True):
            tried = TriedSize(entry.size, entry.fit or "fits") if entry.size is not None else None
            advice = self.advisor.advise(entry.item_id, customer_id, store_id, tried)
            carried_entries.append(self._carried_entry(bundle, item, entry, advice))
            size = advice.recommended
            if (
                letter_size is None
                and size in LETTER_SIZES
                and str(catalog.categories[item]) in CARRY_OVER_CATEGORIES
                and (tried is not None or advice.personal)
            ):
                letter_size = (size, catalog.names[item])
        day = default_date(bundle, self.clock)
        season = season_of(day)
        slots = outfit_slots(model, items, season=season, weather=weather)
        anywhere = stock_mask(bundle)
        here = self._store_mask(bundle, store_id)
        occ = self._occasion(bundle, occasion) if occasion is not None else None
        # the model's own retrieval (its per-category index), then what is in stock anywhere
        ranked = model.complete(items, k_per_slot=POOL, categories=slots, exclude=bought)
        if anywhere is not None:
            ranked = {
                slot: (found[anywhere[found]], scores[anywhere[found]])
                for slot, (found, scores) in ranked.items()
            }
        picks: dict[str, list[_Pick]] = {}
        elsewhere: list[_Pick] = []
        for slot in slots:
            found, scores = ranked.get(slot, (np.empty(0, np.int64), np.empty(0, np.float32)))
            if int(here[found].sum()) < PER_SLOT:  # few of the best are here: rank the store's
                found, scores = self._store_ranking(model, items, slot, bought, here, found, scores)
            order, bonus, for_occasion = self._rerank(found, scores, bundle.popularity.scores, occ)
            kept: list[_Pick] = []
            best_elsewhere: _Pick | None = None
            checks = 0
            for rank, at in enumerate(order.tolist()):
                item = int(found[at])
                if not here[item] and rank > 0:
                    continue
                if checks >= MAX_SIZE_CHECKS:
                    break
                checks += 1
                pick = self._sized(
                    bundle, item, float(scores[at]), float(bonus[at]), customer_id, store_id,
                    letter_size,
                )  # fmt: skip
                pick.occasion_bonus = float(for_occasion[at])
                if pick.size_stock > 0:
                    kept.append(pick)
                    if len(kept) >= PER_SLOT:
                        break
                elif rank == 0:
                    best_elsewhere = pick  # the slot's best match is not here in its size
            picks[slot] = kept
            if best_elsewhere is not None:
                best_elsewhere.locations = self._locations(bundle, best_elsewhere, store_id)
                if best_elsewhere.locations:
                    elsewhere.append(best_elsewhere)
        by_item = {p.item: p for slot_picks in picks.values() for p in slot_picks}
        outfits = compose(
            model,
            items,
            {slot: [p.item for p in found] for slot, found in picks.items()},
            n_outfits=N_OUTFITS,
            per_slot=PER_SLOT,
            bonus={p.item: p.bonus for p in by_item.values()},
        )
        position = 0
        rendered_outfits: list[dict[str, Any]] = []
        positions: list[tuple[str, str, float]] = []
        for number, outfit in enumerate(outfits, start=1):
            entries = []
            for slot in slots:
                if slot not in outfit.items:
                    continue
                pick = by_item[outfit.items[slot]]
                shown = self._entry(bundle, model, items, pick, occasion, position)
                entries.append(shown)
                positions.append((shown["item_id"], SOURCE, 1.0))
                position += 1
            rendered_outfits.append(
                {
                    "outfit": number,
                    "compatibility": round(model.compatibility([*items, *outfit.items.values()]), 6)
                    if len(items) + len(outfit.items) > 1
                    else None,
                    "items": entries,
                }
            )
        rendered_elsewhere = []
        for pick in elsewhere:
            shown = self._entry(bundle, model, items, pick, occasion, position)
            rendered_elsewhere.append(shown)
            positions.append((shown["item_id"], ELSEWHERE_SOURCE, 1.0))
            position += 1
        body = {
            "model_version": bundle.version,
            "surface": "kiosk",
            "store_id": store_id,
            "customer_id": customer_id,
            "personalized": personal,
            "occasion": occasion,
            "season": season,
            "weather": weather,
            "fallback": False,
            "slots": slots,
            "carried": carried_entries,
            "outfits": rendered_outfits,
            "elsewhere": rendered_elsewhere,
        }
        record = template(
            surface="kiosk",
            model_version=bundle.version,
            positions=positions,
            customer_id=customer_id if personal else None,
        )
        return Served(self.renderer.body(body), record)

    def _store_ranking(
        self,
        model: ComplementaryModel,
        items: list[int],
        slot: str,
        bought: list[int],
        here: npt.NDArray[np.bool_],
        found: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The slot's ranking when few of the best items overall are in this store: the overall
        best first (it may be listed as elsewhere), then the store's own ranking."""
        own = model.complete(
            items, k_per_slot=POOL, categories=[slot], exclude=bought, allowed=np.flatnonzero(here)
        )[slot]
        keep = ~np.isin(own[0], found[:1])
        return (
            np.concatenate([found[:1], own[0][keep]]).astype(np.int64),
            np.concatenate([scores[:1], own[1][keep]]).astype(np.float32),
        )

    @staticmethod
    def _rerank(
        found: npt.NDArray[np.int64],
        scores: npt.NDArray[np.float32],
        popularity: npt.NDArray[np.float32],
        occ: npt.NDArray[np.float32] | None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Order of ``found`` by compatibility plus the popularity prior plus the occasion's
        (:func:`models.outfit_builder.popularity_bonus`, :func:`models.occasions.occasion_bonus`);
        the total bonus and the occasion's per item."""
        if len(found) == 0:
            empty = np.zeros(0, np.float32)
            return np.arange(0), empty, empty
        popular = popularity_bonus(scores, popularity[found])
        occasion = occasion_bonus(scores, occ[found]) if occ is not None else np.zeros_like(popular)
        bonus = (popular + occasion).astype(np.float32)
        return np.lexsort((np.arange(len(found)), -(scores + bonus))), bonus, occasion

    def _sized(
        self,
        bundle: LoadedBundle,
        item: int,
        score: float,
        bonus: float,
        customer_id: str | None,
        store_id: str,
        letter_size: tuple[str, str] | None,
    ) -> _Pick:
        """The item with its size: the advice's, or (anonymous) the letter size carried over
        from a tried item; the neighbour to bring along, and the store's stock of both."""
        item_id = bundle.catalog.ids.id(item)
        advice = self.advisor.advise(item_id, customer_id, store_id)
        offered = list(bundle.catalog.sizes[item])
        options = {o.size: o for o in advice.sizes}
        size = advice.recommended if advice.recommended is not None else None
        bring = advice.bring_along
        carried_over = None
        if (
            not advice.personal
            and letter_size is not None
            and letter_size[0] in offered
            and str(bundle.catalog.categories[item]) in CARRY_OVER_CATEGORIES
        ):
            size, carried_over = letter_size[0], letter_size[1]
            option = options.get(size)
            step = 1 if option is not None and option.p_small > option.p_large else -1
            at = offered.index(size)
            neighbours = [at + step, at - step]
            bring = next((offered[i] for i in neighbours if 0 <= i < len(offered)), None)
        if size is None and len(offered) == 1:
            size = offered[0]  # one-size item
        stock = bundle.stock

        def units(label: str | None) -> int:
            if label is None:
                return 0
            option = options.get(label)
            if option is not None and option.stock is not None:
                return int(option.stock)
            return stock.quantity(item, label, store_id)

        if size is not None and size in offered and (bring is None or units(bring) == 0):
            # a neighbour worth bringing is one on this store's shelves: the advice's, else the
            # other side's when it is here
            at = offered.index(size)
            here = [
                offered[i]
                for i in (at + 1, at - 1)
                if 0 <= i < len(offered)
                and offered[i] != bring
                and units(offered[i]) > 0
                and (offered[i] not in options or options[offered[i]].p_fit >= BRING_ALONG_MIN)
            ]
            bring = here[0] if here and bring is not None else None
        return _Pick(
            item=item,
            score=score,
            bonus=bonus,
            advice=advice,
            size=size,
            size_stock=units(size) if size is not None else 0,
            bring_along=bring,
            bring_along_stock=units(bring) if bring is not None else None,
            carried_over=carried_over,
        )

    @staticmethod
    def _locations(bundle: LoadedBundle, pick: _Pick, store_id: str) -> list[dict[str, Any]]:
        """Where the item is in stock in its size: online first, then up to
        ``MAX_LOCATIONS`` other stores with the most units."""
        if pick.size is None:
            return []
        stock = bundle.stock
        online = stock.quantity(pick.item, pick.size, ONLINE_STORE)
        stores = sorted(
            (
                (-stock.quantity(pick.item, pick.size, s), s)
                for s in stock.stores
                if s not in (ONLINE_STORE, store_id)
            ),
        )
        out = [{"store_id": ONLINE_STORE, "stock": online}] if online > 0 else []
        out += [{"store_id": s, "stock": -n} for n, s in stores if n < 0][:MAX_LOCATIONS]
        return out

    def _carried_entry(
        self, bundle: LoadedBundle, item: int, entry: CarriedItem, advice: SizeAdvice
    ) -> dict[str, Any]:
        described = bundle.catalog.describe(item)
        described["colour"] = _colour(bundle, item)
        described["tried_size"] = entry.size
        described["fit"] = None if entry.size is None else (entry.fit or "fits")
        described["size_advice"] = _advice_body(advice)
        return described

    @staticmethod
    def _entry(
        bundle: LoadedBundle,
        model: ComplementaryModel,
        carried: list[int],
        pick: _Pick,
        occasion: str | None,
        position: int,
    ) -> dict[str, Any]:
        catalog = bundle.catalog
        locations = pick.locations
        anchor = int(model.anchors(carried, [pick.item])[0])
        entry = catalog.describe(pick.item)
        entry["colour"] = _colour(bundle, pick.item)
        entry["position"] = position
        entry["score"] = round(pick.score + pick.bonus, 6)
        entry["pairs_with"] = catalog.ids.id(anchor)
        entry["size"] = pick.size
        entry["size_stock"] = pick.size_stock
        entry["bring_along"] = pick.bring_along
        entry["bring_along_stock"] = pick.bring_along_stock
        option = next((o for o in pick.advice.sizes if o.size == pick.size), None)
        entry["fit_probability"] = (
            option.p_fit if option is not None else pick.advice.fit_probability
        )
        entry["availability"] = "in_store" if not locations else "elsewhere"
        entry["locations"] = locations
        parts = [f"Goes with the {catalog.names[anchor]}"]
        if occasion is not None and pick.occasion_bonus > 0:
            parts.append(f"suits {OCCASIONS[occasion].label.lower()}")
        if pick.carried_over is not None and pick.size is not None:
            parts.append(f"{pick.size} as in the {pick.carried_over} you tried")
        elif pick.size is not None and pick.advice.sizes:
            parts.append(pick.advice.reason[0].lower() + pick.advice.reason[1:])
        if locations:
            where = ", ".join(
                f"{'online' if loc['store_id'] == ONLINE_STORE else loc['store_id']} "
                f"({loc['stock']})"
                for loc in locations
            )
            parts.append(f"not here in {pick.size}: {where}")
        entry["reason"] = "; ".join(parts)
        return entry

    # -- cart --------------------------------------------------------------------------------------

    def cart(
        self,
        customer_id: str,
        store_id: str,
        lines: Sequence[CartLine],
        recommendation_id: str | None = None,
    ) -> dict[str, Any]:
        """Record ``lines`` as the customer's ``add_to_cart`` events on the kiosk channel."""
        bundle = self.bundles.current
        self.check_store(bundle, store_id)
        if not lines:
            raise InvalidRequest("items: give at least one item")
        if len(lines) > MAX_CART:
            raise InvalidRequest(f"items: at most {MAX_CART} items")
        events: list[dict[str, Any]] = []
        for n, line in enumerate(lines):
            item = self._item(bundle, line.item_id)
            offered = bundle.catalog.sizes[item]
            size = line.size
            if size is None and len(offered) == 1:
                size = offered[0]
            if size is None and offered:
                raise InvalidRequest(
                    f"items.{n}.size: give the size of {line.item_id!r} "
                    f"(sizes: {', '.join(offered)})"
                )
            if size is not None:
                self._check_size(bundle, item, line.item_id, size, f"items.{n}.size")
            event: dict[str, Any] = {
                "customer_id": customer_id,
                "item_id": line.item_id,
                "type": InteractionType.ADD_TO_CART.value,
                "channel": Channel.KIOSK.value,
                "size": size,
                "price": _price(bundle, item),
                "store_id": store_id,
            }
            if recommendation_id is not None and line.position is not None:
                event["recommendation_id"] = recommendation_id
                event["position"] = line.position
            events.append(event)
        accepted, rejected = self.ingest.ingest(events)
        if accepted == 0:
            raise InvalidEvent(f"no valid event: {rejected[0]['message']}")
        return {
            "customer_id": customer_id,
            "store_id": store_id,
            "accepted": accepted,
            "rejected": rejected,
        }


_colour_lock = threading.Lock()
_colours: dict[str, list[str | None]] = {}


def _colour(bundle: LoadedBundle, item: int) -> str | None:
    """The item's colour (None when the catalog has none); the column is read once per bundle."""
    with _colour_lock:
        found = _colours.get(bundle.version)
        if found is None:
            frame = bundle.catalog.frame
            column = (
                frame[ItemCols.COLOUR].tolist()
                if ItemCols.COLOUR in frame.columns
                else [None] * len(frame)
            )
            found = [v if isinstance(v, str) and v else None for v in column]
            if len(_colours) >= 2:  # the served bundle and the one being swapped in
                _colours.clear()
            _colours[bundle.version] = found
    return found[item]


def _price(bundle: LoadedBundle, item: int) -> float | None:
    """The catalog price for the event (None when the catalog has none for the item)."""
    price = float(bundle.catalog.prices[item])
    return round(price, 2) if np.isfinite(price) and price >= 0 else None


def _advice_body(advice: SizeAdvice) -> dict[str, Any]:
    return {
        "personal": advice.personal,
        "recommended": advice.recommended,
        "fit_probability": advice.fit_probability,
        "bring_along": advice.bring_along,
        "runs": advice.runs,
        "evidence": advice.evidence,
        "reason": advice.reason,
        "sizes": [
            {
                "size": o.size,
                "p_small": o.p_small,
                "p_fit": o.p_fit,
                "p_large": o.p_large,
                "stock": o.stock,
            }
            for o in advice.sizes
        ],
    }
