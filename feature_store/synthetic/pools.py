"""Item pools by (category, style, season), sorted by launch, and drawing the items a session buys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalog import _Catalog
from .rates import _MAX_ROUNDS
from .vocabulary import (
    _COL,
    _NEUTRALS,
    CATEGORIES,
    COLOURS,
    STYLES,
    BoolArray,
    FloatArray,
    IntArray,
)


@dataclass
class _Pools:
    entry_item: IntArray
    comp: IntArray  # key * span + (launch - base), sorted
    start: IntArray  # first entry of each key; start[key + 1] is one past its last
    cum0: FloatArray  # cumulative popularity with a leading 0
    base: int
    span: int
    key_b: int
    key_c: int
    key_d: int


def _make_pools(cat: _Catalog, end_day: int) -> _Pools:
    n_c, n_s, n_z = len(CATEGORIES), len(STYLES), 4
    key_b = n_c * n_s * n_z
    key_c = key_b + n_c * n_z
    key_d = key_c + n_c * n_s
    n_keys = key_d + n_c
    items_a, s_a, z_a = np.nonzero(cat.styles[:, :, None] & cat.seasons[:, None, :])
    items_b, z_b = np.nonzero(cat.seasons)
    items_c, s_c = np.nonzero(cat.styles)
    items_d = np.arange(cat.n, dtype=np.int64)
    c = cat.category
    entry_item = np.concatenate([items_a, items_b, items_c, items_d]).astype(np.int64)
    entry_key = np.concatenate(
        [
            (c[items_a] * n_s + s_a) * n_z + z_a,
            key_b + c[items_b] * n_z + z_b,
            key_c + c[items_c] * n_s + s_c,
            key_d + c[items_d],
        ]
    ).astype(np.int64)
    base = int(cat.launch.min())
    span = end_day - base + 2
    comp = entry_key * span + (cat.launch[entry_item] - base)
    order = np.lexsort((entry_item, comp))
    entry_item, comp, entry_key = entry_item[order], comp[order], entry_key[order]
    start = np.searchsorted(entry_key, np.arange(n_keys + 1), side="left").astype(np.int64)
    cum0 = np.concatenate([[0.0], np.cumsum(cat.popularity[entry_item])])
    return _Pools(entry_item, comp, start, cum0, base, span, key_b, key_c, key_d)


def _pick_items(
    rng: np.random.Generator,
    cat: _Catalog,
    pools: _Pools,
    category: IntArray,
    style: IntArray,
    season: IntArray,
    day: IntArray,
    off_season: BoolArray,
    palette: IntArray,
    cust_band: IntArray,
    soft: BoolArray,
) -> IntArray:
    """One item per slot, or -1 when nothing of the category is launched by ``day``.

    Candidates are the launched items of (category, style, season), falling back to (category,
    season), (category, style) and (category); off-season slots skip the season. A candidate is
    drawn by popularity and accepted with a probability that rewards the customer's colours and
    price band and newness (square-rooted for ``soft`` slots — browsing is more exploratory).
    """
    n_s = len(STYLES)
    keys = np.stack(
        [
            (category * n_s + style) * 4 + season,
            pools.key_b + category * 4 + season,
            pools.key_c + category * n_s + style,
            pools.key_d + category,
        ]
    )
    lo = np.zeros(len(category), dtype=np.int64)
    hi = np.zeros(len(category), dtype=np.int64)
    found = np.zeros(len(category), dtype=bool)
    rel = np.clip(day - pools.base, -1, pools.span - 1)
    for level in range(4):
        k = keys[level]
        s = pools.start[k]
        e = np.searchsorted(pools.comp, k * pools.span + rel, side="right")
        usable = ~found & (e > s)
        if level < 2:
            usable &= ~off_season
        lo[usable], hi[usable] = s[usable], e[usable]
        found |= usable
    item = np.full(len(category), -1, dtype=np.int64)
    pending = np.flatnonzero(found)
    colour_bit = np.int64(1) << cat.colour
    neutral = np.isin(np.arange(len(COLOURS)), [_COL[c] for c in _NEUTRALS])
    band_factor = np.array([1.0, 0.35, 0.08, 0.02])
    for round_ in range(_MAX_ROUNDS):
        if len(pending) == 0:
            break
        a, b = lo[pending], hi[pending]
        target = pools.cum0[a] + rng.random(len(pending)) * (pools.cum0[b] - pools.cum0[a])
        j = np.clip(np.searchsorted(pools.cum0, target, side="right") - 1, a, b - 1)
        proposal = pools.entry_item[j]
        item[pending] = proposal
        if round_ == _MAX_ROUNDS - 1:
            break
        in_palette = (palette[pending] & colour_bit[proposal]) != 0
        colour_f = np.where(in_palette, 1.0, np.where(neutral[cat.colour[proposal]], 0.45, 0.12))
        band_f = band_factor[np.abs(cat.band[proposal] - cust_band[pending])]
        age = day[pending] - cat.launch[proposal]
        fresh_f = 0.35 + 0.65 * np.exp(-age / 200.0)
        accept = colour_f * band_f * fresh_f
        accept = np.where(soft[pending], np.sqrt(accept), accept)
        pending = pending[rng.random(len(pending)) >= accept]
    return item
