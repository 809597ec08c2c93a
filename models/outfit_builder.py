"""Outfits around carried items: which slots (categories) complete them, and several different,
coherent outfits chosen from per-slot candidates with the complementary model's set
compatibility. The kiosk (``app/kiosk.py``) and the outfit-completion benchmark
(``benchmarks/kiosk_outfits_mango.py``) share it.

Slots (:func:`outfit_slots`): the carried items' categories decide the base — a dress needs
nothing more for the body; a top needs a bottom and a bottom a top; outerwear, shoes or an
accessory alone need a top and a bottom — then shoes, then a finishing piece: outerwear when it
is cold (autumn, winter, a cold or rainy day), an accessory when it is warm, and without a
season the one the model saw more often with the carried categories. Only categories the model
knows are slots; categories already carried are never slots.

Composition (:func:`compose`): every combination of the first ``per_slot`` candidates of each
slot is scored as ``compatibility(carried + combination) + mean bonus of its items``, where the
compatibility is the model's own set score (:meth:`ComplementaryModel.compatibility`, computed
here from one pair-score matrix for all combinations at once) and the bonus is any per-item
prior the caller adds (the occasion). Outfits are then taken greedily: the best combination,
then the best one sharing the fewest items with those already taken, and so on — different
outfits first, better ones among equally different.

Popularity (:func:`popularity_bonus`): before composing, the kiosk ranks a slot's candidates by
compatibility plus a popularity prior (what sells — or, on Mango, what recurs in outfits — is a
safer suggestion); the same bonus counts in the outfits' scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from feature_store.schema import Category

from .complementary import ComplementaryModel

__all__ = ["POPULARITY_STRENGTH", "ComposedOutfit", "compose", "outfit_slots", "popularity_bonus"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

COLD_SEASONS: Final = frozenset({"autumn", "winter"})
COLD_WEATHER: Final = frozenset({"cold_snap", "cold", "rain"})
WARM_WEATHER: Final = frozenset({"warm", "heatwave", "mild"})
MAX_COMBINATIONS: Final = 4096


def _finishing(
    model: ComplementaryModel, carried: IntArray, season: str | None, weather: str | None
) -> str:
    """Outerwear or an accessory: by weather, then season, then the model's slot prior."""
    if weather in COLD_WEATHER:
        return Category.OUTERWEAR.value
    if weather in WARM_WEATHER:
        return Category.ACCESSORY.value
    if season is not None:
        return Category.OUTERWEAR.value if season in COLD_SEASONS else Category.ACCESSORY.value
    lookup = {c: k for k, c in enumerate(model.categories_)}
    share = model.slot_prior_[model.item_category_[carried]].mean(axis=0)
    outer = lookup.get(Category.OUTERWEAR.value)
    accessory = lookup.get(Category.ACCESSORY.value)
    if outer is None:
        return Category.ACCESSORY.value
    if accessory is None:
        return Category.OUTERWEAR.value
    return Category.OUTERWEAR.value if share[outer] > share[accessory] else Category.ACCESSORY.value


def outfit_slots(
    model: ComplementaryModel,
    carried: Sequence[int] | IntArray,
    *,
    season: str | None = None,
    weather: str | None = None,
) -> list[str]:
    """The categories to fill around ``carried`` (item indices of the model), in outfit order."""
    idx = np.asarray(carried, dtype=np.int64)
    own = {model.categories_[c] for c in model.item_category_[idx].tolist()}
    top, bottom, dress = Category.TOP.value, Category.BOTTOM.value, Category.DRESS.value
    wanted: list[str] = []
    if dress not in own:
        if top in own and bottom not in own:
            wanted.append(bottom)
        elif bottom in own and top not in own:
            wanted.append(top)
        elif top not in own and bottom not in own:
            wanted += [top, bottom]
    wanted.append(Category.SHOES.value)
    finishing = _finishing(model, idx, season, weather)
    wanted.append(finishing)
    if (
        finishing == Category.OUTERWEAR.value
        and Category.OUTERWEAR.value in own
        and Category.ACCESSORY.value not in own
    ):
        wanted.append(Category.ACCESSORY.value)  # carried the coat: finish with an accessory
    known = set(model.categories_)
    slots = [c for c in dict.fromkeys(wanted) if c in known and c not in own]
    if slots:
        return slots
    return [c for c in model.slots(idx) if c not in own][:3]


@dataclass(frozen=True)
class ComposedOutfit:
    """One outfit: per slot the chosen item (slots without candidates are absent), its score
    (set compatibility plus the mean bonus) and the set compatibility alone."""

    items: dict[str, int]
    score: float
    compatibility: float


def _set_scores(pairs: FloatArray, members: IntArray, aggregate: str) -> FloatArray:
    """The set compatibility of each row of ``members`` (rows of indices into ``pairs``), as
    :meth:`ComplementaryModel.compatibility` computes it for one set."""
    n = members.shape[1]
    sub = pairs[members[:, :, None], members[:, None, :]]  # (combos, n, n)
    off = ~np.eye(n, dtype=bool)
    if aggregate == "min":
        per_item = (sub * off).sum(axis=2) / (n - 1)
        return per_item.min(axis=1).astype(np.float32)
    return (sub[:, off].mean(axis=1)).astype(np.float32)


def compose(
    model: ComplementaryModel,
    carried: Sequence[int] | IntArray,
    candidates: Mapping[str, Sequence[int] | IntArray],
    *,
    n_outfits: int = 3,
    per_slot: int = 4,
    bonus: Mapping[int, float] | None = None,
) -> list[ComposedOutfit]:
    """Up to ``n_outfits`` different outfits around ``carried`` from ``candidates`` (per slot,
    item indices best first; the first ``per_slot`` of each are combined). ``bonus`` adds a
    per-item score (e.g. the occasion prior) to the outfits holding the item."""
    base = np.asarray(carried, dtype=np.int64)
    slots = [s for s, found in candidates.items() if len(found)]
    if not slots or n_outfits < 1:
        return []
    lists = [np.asarray(candidates[s], dtype=np.int64)[:per_slot] for s in slots]
    while np.prod([len(x) for x in lists]) > MAX_COMBINATIONS:  # shrink the longest list
        longest = int(np.argmax([len(x) for x in lists]))
        lists[longest] = lists[longest][:-1]
    pool = np.unique(np.concatenate([base, *lists]))
    position = {int(item): p for p, item in enumerate(pool.tolist())}
    pairs = model.pair_scores(pool, pool)
    combos = np.array(list(itertools.product(*[x.tolist() for x in lists])), dtype=np.int64)
    members = np.concatenate([np.repeat(base[None, :], len(combos), axis=0), combos], axis=1)
    local = np.vectorize(position.__getitem__, otypes=[np.int64])(members)
    if members.shape[1] >= 2:
        compat = _set_scores(pairs, local, model.set_aggregate)
    else:  # nothing carried and one slot: an item alone has no compatibility
        compat = np.zeros(len(combos), dtype=np.float32)
    extra = np.zeros(len(combos), dtype=np.float32)
    if bonus:
        values = np.vectorize(lambda i: float(bonus.get(int(i), 0.0)), otypes=[np.float32])(combos)
        extra = values.mean(axis=1).astype(np.float32)
    score = compat + extra
    order = np.lexsort((np.arange(len(combos)), -score))
    chosen: list[int] = []
    used: list[set[int]] = [set() for _ in slots]
    while len(chosen) < n_outfits:
        best: int | None = None
        best_shared = None
        for c in order.tolist():
            if c in chosen:
                continue
            shared = sum(int(combos[c, s]) in used[s] for s in range(len(slots)))
            if shared == len(slots) and chosen:
                continue  # every item already shown: not a different outfit
            if best_shared is None or shared < best_shared:
                best, best_shared = c, shared
                if shared == 0:
                    break
        if best is None:
            break
        chosen.append(best)
        for s in range(len(slots)):
            used[s].add(int(combos[best, s]))
    return [
        ComposedOutfit(
            items={slot: int(combos[c, s]) for s, slot in enumerate(slots)},
            score=float(score[c]),
            compatibility=float(compat[c]),
        )
        for c in chosen
    ]


#: The weight of the popularity prior in a slot's ranking, in units of the spread (standard
#: deviation) of the slot's compatibility scores per standard deviation of log popularity among
#: its candidates. Chosen on a validation split of the Mango training outfits
#: (``benchmarks/kiosk_outfits.py --tune``); the test outfits never informed it.
POPULARITY_STRENGTH: Final = 1.0


def popularity_bonus(
    scores: npt.NDArray[np.floating[Any]],
    popularity: npt.NDArray[np.floating[Any]],
    strength: float = POPULARITY_STRENGTH,
) -> FloatArray:
    """The additive popularity prior for candidates with compatibility ``scores`` and their
    ``popularity`` (counts, any scale): ``strength`` × std(scores) × the standardised
    log popularity among these candidates (0 when they are equally popular)."""
    if len(scores) < 2 or strength == 0:
        return np.zeros(len(scores), dtype=np.float32)
    logs = np.log1p(np.maximum(np.asarray(popularity, dtype=np.float64), 0.0))
    spread = float(np.std(logs))
    if spread == 0:
        return np.zeros(len(scores), dtype=np.float32)
    z = (logs - logs.mean()) / spread
    return (strength * max(float(np.std(scores)), 1e-3) * z).astype(np.float32)
