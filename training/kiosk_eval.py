"""Evaluation of the fitting-room kiosk on real data (``benchmarks/kiosk_outfits.py``,
``benchmarks/kiosk_occasion_rtr.py``).

Outfit completion (:func:`outfit_completion`): for each held-out outfit one item a shopper would
carry into a fitting room (a top, bottom, dress or outerwear; seeded) is "carried in"; the
kiosk's slots for it (:func:`models.outfit_builder.outfit_slots`) are filled by each method with
three items per slot — the kiosk's three outfits (:func:`models.outfit_builder.compose`) or a
baseline's top three of the slot's category — and a held-out piece of a slot's category is a hit
when it is among them (hit@3 per category). Baselines: popular in the category (training
outfits holding the item), attribute match (equal attribute values with the carried item,
popularity breaking ties), co-occurrence (training outfits holding both, popularity breaking
ties), and the complementary model's own top three per slot (without composing outfits).

Occasion (:func:`occasion_hits`): for each held-out rental with an occasion, does the rented item
appear in the top k of an occasion-blind ranking (popularity before the cut-off), of the same
ranking with the occasion table's prior (:func:`models.occasions.occasion_bonus`), and — as a
learned reference — of popularity among the training rentals for that occasion?
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from feature_store.outfits import Outfits
from feature_store.schema import Category, ItemCols
from models.complementary import ComplementaryModel
from models.occasions import occasion_bonus
from models.outfit_builder import POPULARITY_STRENGTH, compose, outfit_slots, popularity_bonus

logger = logging.getLogger("lookbook.training")

IntArray = npt.NDArray[np.int64]
CARRIED_CATEGORIES = (
    Category.TOP.value,
    Category.BOTTOM.value,
    Category.DRESS.value,
    Category.OUTERWEAR.value,
)
SUGGESTIONS = 3  # per slot: the kiosk's three outfits, a baseline's top three


@dataclass
class HitCounts:
    """Per category: held-out pieces of a slot's category, and how many were suggested."""

    pieces: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def add(self, category: str, hit: bool) -> None:
        self.pieces[category] = self.pieces.get(category, 0) + 1
        self.hits[category] = self.hits.get(category, 0) + int(hit)

    def rate(self, category: str | None = None) -> float:
        if category is None:
            n = sum(self.pieces.values())
            return sum(self.hits.values()) / n if n else float("nan")
        n = self.pieces.get(category, 0)
        return self.hits.get(category, 0) / n if n else float("nan")


@dataclass
class CompletionResult:
    """Hit counts per method, and how the held-out pieces fell (in a slot or not)."""

    methods: dict[str, HitCounts]
    unseen: dict[str, HitCounts]  # the outfits whose carried item no training outfit holds
    outfits: int
    pieces_in_slots: int
    pieces_outside_slots: int


Suggest = Callable[[int, str], IntArray]  # (carried item, slot category) → items, best first


class OutfitBaselines:
    """Popular-in-category, attribute-match and co-occurrence suggestions from training outfits."""

    def __init__(self, items: pd.DataFrame, train: Outfits, attributes: Sequence[str]) -> None:
        n = len(items)
        self.categories = items[ItemCols.CATEGORY].astype(str).to_numpy()
        self.members = {c: np.flatnonzero(self.categories == c) for c in np.unique(self.categories)}
        self.popularity = np.bincount(train.indices, minlength=n).astype(np.float64)
        rows = np.repeat(np.arange(len(train)), train.sizes())
        incidence = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, train.indices)), shape=(len(train), n)
        )
        incidence.data[:] = 1.0
        self.together = (incidence.T @ incidence).tocsr()
        cols = [c for c in attributes if c in items.columns]
        self.codes = np.stack(
            [pd.factorize(items[c].astype(object).where(items[c].notna(), None))[0] for c in cols],
            axis=1,
        ).astype(np.int64)
        # a small popularity share breaks ties without overriding the method's own score
        self.tie = self.popularity / (self.popularity.max() + 1.0)

    def _top(self, scores: npt.NDArray[np.float64], members: IntArray, carried: int) -> IntArray:
        scores = scores.copy()
        scores[members == carried] = -np.inf
        order = np.lexsort((members, -scores))[:SUGGESTIONS]
        return members[order].astype(np.int64)

    def popular(self, carried: int, slot: str) -> IntArray:
        members = self.members.get(slot, np.empty(0, np.int64))
        return self._top(self.popularity[members], members, carried)

    def attribute_match(self, carried: int, slot: str) -> IntArray:
        members = self.members.get(slot, np.empty(0, np.int64))
        mine = self.codes[carried]
        equal = ((self.codes[members] == mine) & (mine >= 0)).sum(axis=1)
        return self._top(equal + 0.5 * self.tie[members], members, carried)

    def cooccurrence(self, carried: int, slot: str) -> IntArray:
        members = self.members.get(slot, np.empty(0, np.int64))
        row = np.asarray(self.together[carried].toarray()).reshape(-1)
        return self._top(row[members] + 0.5 * self.tie[members], members, carried)


def kiosk_suggest(
    model: ComplementaryModel,
    per_slot: int = 4,
    *,
    popularity: npt.NDArray[np.float64] | None = None,
    strength: float = POPULARITY_STRENGTH,
    pool: int = 50,
) -> Callable[[int, list[str]], dict[str, IntArray]]:
    """The kiosk's suggestions per slot: the items of its three composed outfits — with
    ``popularity``, each slot's ``pool`` best by compatibility reranked with the popularity
    prior (:func:`models.outfit_builder.popularity_bonus`), as the kiosk ranks."""

    def suggest(carried: int, slots: list[str]) -> dict[str, IntArray]:
        fetch = pool if popularity is not None else per_slot
        ranked = model.complete([carried], k_per_slot=fetch, categories=slots)
        candidates: dict[str, IntArray] = {}
        bonus: dict[int, float] = {}
        for slot in slots:
            found, scores = ranked[slot]
            if popularity is not None and len(found):
                extra = popularity_bonus(scores, popularity[found], strength)
                order = np.lexsort((np.arange(len(found)), -(scores + extra)))[:per_slot]
                found = found[order]
                bonus.update(zip(found.tolist(), extra[order].tolist(), strict=True))
            candidates[slot] = found[:per_slot]
        outfits = compose(
            model,
            [carried],
            candidates,
            n_outfits=SUGGESTIONS,
            per_slot=per_slot,
            bonus=bonus or None,
        )
        return {
            s: np.array(sorted({o.items[s] for o in outfits if s in o.items}), dtype=np.int64)
            for s in slots
        }

    return suggest


def model_top(model: ComplementaryModel) -> Callable[[int, list[str]], dict[str, IntArray]]:
    """The complementary model's own top three per slot (no outfit composition)."""

    def suggest(carried: int, slots: list[str]) -> dict[str, IntArray]:
        ranked = model.complete([carried], k_per_slot=SUGGESTIONS, categories=slots)
        return {s: ranked[s][0] for s in slots}

    return suggest


def per_slot(suggest: Suggest) -> Callable[[int, list[str]], dict[str, IntArray]]:
    return lambda carried, slots: {s: suggest(carried, s) for s in slots}


def outfit_completion(
    model: ComplementaryModel,
    items: pd.DataFrame,
    test: Outfits,
    methods: Mapping[str, Callable[[int, list[str]], dict[str, IntArray]]],
    *,
    seed: int,
    seen: npt.NDArray[np.bool_] | None = None,
    progress: bool = True,
) -> CompletionResult:
    """Hit@3 per category of every method on the held-out outfits ``test`` (one carried item per
    outfit, seeded; outfits without a carried-kind item or with a single item are skipped); with
    ``seen`` (per item: in a training outfit), also over the outfits whose carried item is not."""
    rng = np.random.default_rng(seed)
    categories = items[ItemCols.CATEGORY].astype(str).to_numpy()
    counts = {name: HitCounts() for name in methods}
    unseen = {name: HitCounts() for name in methods}
    used = inside = outside = 0
    for outfit in tqdm(test, desc="kiosk outfits", disable=not progress, mininterval=2.0):
        if len(outfit) < 2:
            continue
        carriable = [int(i) for i in outfit if categories[i] in CARRIED_CATEGORIES]
        if not carriable:
            continue
        carried = carriable[int(rng.integers(len(carriable)))]
        slots = outfit_slots(model, [carried])
        held_out = [int(i) for i in outfit if int(i) != carried]
        in_slots = [i for i in held_out if categories[i] in slots]
        outside += len(held_out) - len(in_slots)
        inside += len(in_slots)
        used += 1
        for name, method in methods.items():
            suggested = method(carried, slots)
            for piece in in_slots:
                found = suggested.get(categories[piece], np.empty(0, np.int64))
                hit = bool(np.isin(piece, found))
                counts[name].add(str(categories[piece]), hit)
                if seen is not None and not seen[carried]:
                    unseen[name].add(str(categories[piece]), hit)
    return CompletionResult(counts, unseen, used, inside, outside)


@dataclass
class OccasionResult:
    """Per method and occasion: held-out rentals and hits at each k."""

    ks: tuple[int, ...]
    rentals: dict[str, int]
    hits: dict[str, dict[str, dict[int, int]]]  # method → occasion → k → hits

    def rate(self, method: str, occasion: str | None, k: int) -> float:
        names = list(self.rentals) if occasion is None else [occasion]
        n = sum(self.rentals[o] for o in names)
        return sum(self.hits[method][o][k] for o in names) / n if n else float("nan")


def occasion_hits(
    base: npt.NDArray[np.float64],
    occasion_scores: Mapping[str, npt.NDArray[np.float32]],
    learned: Mapping[str, npt.NDArray[np.float64]],
    test_items: IntArray,
    test_occasions: Sequence[str],
    ks: tuple[int, ...] = (10, 50),
) -> OccasionResult:
    """Hits at ``ks`` of the rented items ``test_items`` (for ``test_occasions``) in three rankings
    of the catalog: ``base`` (occasion-blind), ``base`` with the occasion table's bonus, and the
    ``learned`` per-occasion scores (a reference fitted on the training rentals)."""
    top = max(ks)

    def ranking(scores: npt.NDArray[np.float64]) -> dict[int, int]:
        order = np.lexsort((np.arange(len(scores)), -scores))[:top]
        return {int(item): rank for rank, item in enumerate(order.tolist())}

    blind = ranking(base)
    aware = {o: ranking(base + occasion_bonus(base, s)) for o, s in occasion_scores.items()}
    reference = {o: ranking(s) for o, s in learned.items()}
    methods = {
        "blind": lambda o: blind,
        "aware": lambda o: aware[o],
        "learned": lambda o: reference[o],
    }
    rentals: dict[str, int] = {}
    hits: dict[str, dict[str, dict[int, int]]] = {m: {} for m in methods}
    for item, occasion in zip(test_items.tolist(), test_occasions, strict=True):
        rentals[occasion] = rentals.get(occasion, 0) + 1
        for name, ranked in methods.items():
            rank = ranked(occasion).get(int(item))
            per_k = hits[name].setdefault(occasion, {k: 0 for k in ks})
            for k in ks:
                per_k[k] += int(rank is not None and rank < k)
    return OccasionResult(ks, rentals, hits)
