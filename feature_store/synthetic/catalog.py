"""The synthetic catalog: items with names, attributes, prices, launch dates, sizes and popularity.

**Catalog.** Product types (t-shirt, shirt, jeans, trench coat, down jacket, sneakers, belt, …)
carry a category, a size scale, plausible materials, styles, seasons and a base price. Materials
move seasons (linen → spring/summer, wool and cashmere → autumn/winter) and colours (denim is
blue, leather black or brown); price = base × price band × material × noise. Launch dates
spread over the period, seasonal items shortly before or during their season. Popularity is
long-tailed (log-normal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..schema import (
    PRICE_BANDS,
    SEASONS,
    Category,
    ItemCols,
)
from .common import (
    _calendar,
    _choice,
    _choice_rows,
    _join,
    _rank_in_segment,
    _rng,
    _season_of_month,
    _strings,
    _take,
)
from .rates import _FIT_OFFSET_P, _FIT_OFFSETS
from .vocabulary import (
    _CAT,
    _CATEGORY_SHARE,
    _COL,
    _COLOUR_BASE,
    _FIT_WORDS,
    _MAT,
    _MATERIAL_COLOURS,
    _MATERIAL_PRICE,
    _PAT,
    _PATTERN_BY_CATEGORY,
    _PRICE_BAND_FACTOR,
    _PRICE_BAND_SHARE,
    _SCALE,
    _SCALE_NAMES,
    _SCALE_RANGE,
    _SEASON,
    _SEED_CATALOG,
    _SEED_FIT,
    _SLOT,
    _STYLE,
    _SUMMER_COLOURS,
    _WINTER_COLOURS,
    CATEGORIES,
    COLOURS,
    MATERIALS,
    PATTERNS,
    PRODUCT_TYPES,
    SIZE_SCALES,
    STYLES,
    BoolArray,
    FloatArray,
    IntArray,
)


@dataclass
class _Catalog:
    n: int
    ids: pa.Array
    category: IntArray
    styles: BoolArray  # (n, len(STYLES))
    seasons: BoolArray  # (n, 4)
    colour: IntArray
    band: IntArray
    price: FloatArray
    launch: IntArray  # epoch day
    scale: IntArray
    size_lo: IntArray
    size_hi: IntArray
    slot: IntArray  # true-size slot, -1 for one-size items
    fit_offset: IntArray  # sizes above the customer's true size that fit (+1 runs small)
    popularity: FloatArray
    table: pa.Table


def _allocate(total: int, shares: tuple[float, ...]) -> IntArray:
    """Largest-remainder split of ``total`` by ``shares`` (every share gets >= 1 when possible)."""
    raw = np.asarray(shares, dtype=np.float64) / sum(shares) * total
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    if total >= len(shares):
        for i in np.flatnonzero(counts == 0):
            j = int(np.argmax(counts))
            counts[j] -= 1
            counts[i] += 1
    return counts


def _make_catalog(n_items: int, seed: int, start_day: int, end_day: int) -> _Catalog:
    rng = _rng(seed, _SEED_CATALOG)
    n = n_items
    cat_counts = _allocate(n, _CATEGORY_SHARE)
    category = np.repeat(np.arange(len(CATEGORIES), dtype=np.int64), cat_counts)

    # Product type within category, by weight.
    ptype = np.empty(n, dtype=np.int64)
    for ci, cat in enumerate(CATEGORIES):
        members = [i for i, t in enumerate(PRODUCT_TYPES) if t.category == cat]
        weights = np.array([PRODUCT_TYPES[i].weight for i in members])
        rows = np.flatnonzero(category == ci)
        ptype[rows] = np.asarray(members)[_choice(rng, weights, len(rows))]
    perm = rng.permutation(n)  # shuffle so ids do not follow categories
    category, ptype = category[perm], ptype[perm]

    n_types = len(PRODUCT_TYPES)
    n_styles, n_mat = len(STYLES), len(MATERIALS)
    type_mat = np.zeros((n_types, n_mat))
    type_style = np.zeros((n_types, n_styles), dtype=bool)
    type_season = np.zeros((n_types, 4), dtype=bool)
    for ti, t in enumerate(PRODUCT_TYPES):
        for m, w in t.materials.items():
            type_mat[ti, _MAT[m]] = w
        for s in t.styles:
            type_style[ti, _STYLE[s]] = True
        for z in t.seasons:
            type_season[ti, _SEASON[z]] = True

    material = _choice_rows(rng, type_mat[ptype])

    # Styles: one or two of the type's styles.
    style_w = type_style[ptype].astype(np.float64) * rng.random((n, n_styles))
    first = np.argmax(style_w, axis=1)
    styles = np.zeros((n, n_styles), dtype=bool)
    styles[np.arange(n), first] = True
    style_w[np.arange(n), first] = 0.0
    second = np.argmax(style_w, axis=1)
    add_second = (style_w[np.arange(n), second] > 0) & (rng.random(n) < 0.45)
    styles[np.flatnonzero(add_second), second[add_second]] = True

    # Seasons: the type's, moved by the material.
    seasons = type_season[ptype].copy()
    warm = np.array([True, True, False, False])
    cold = ~warm
    for mats, keep in ((("linen",), warm), (("wool", "cashmere"), cold)):
        made_of = np.isin(material, [_MAT[m] for m in mats])
        narrowed = seasons[made_of] & keep
        empty = ~narrowed.any(axis=1)
        narrowed[empty] = keep & np.array([False, True, False, True])  # summer / winter
        seasons[made_of] = narrowed

    # Colours: base weights × material palette × season palette.
    n_col = len(COLOURS)
    col_w = np.tile(_COLOUR_BASE, (n, 1))
    for mat, palette in _MATERIAL_COLOURS.items():
        made_of = material == _MAT[mat]
        if made_of.any():
            material_w = np.zeros(n_col)
            for c, v in palette.items():
                material_w[_COL[c]] = v
            col_w[made_of] = material_w
    only_cold = ~seasons[:, 0] & ~seasons[:, 1]
    only_warm = ~seasons[:, 2] & ~seasons[:, 3]
    for season_rows, boost in ((only_cold, _WINTER_COLOURS), (only_warm, _SUMMER_COLOURS)):
        boosted = np.array([_COL[c] for c in boost], dtype=np.int64)
        col_w[np.ix_(np.flatnonzero(season_rows), boosted)] *= 2.5
    colour = _choice_rows(rng, col_w)

    # Patterns by category; boho likes florals; denim, leather, metal stay plain.
    pat_w = np.array([_PATTERN_BY_CATEGORY[CATEGORIES[c]] for c in category], dtype=np.float64)
    pat_w[styles[:, _STYLE["boho"]], _PAT["floral"]] *= 3.0
    plain = np.isin(material, [_MAT[m] for m in ("denim", "leather", "suede", "metal")])
    pat_w[plain, 1:] *= 0.05
    pattern = _choice_rows(rng, pat_w)

    # Price band and price.
    band = _choice(rng, _PRICE_BAND_SHARE, n)
    mat_factor = np.ones(n_mat)
    for m, f in _MATERIAL_PRICE.items():
        mat_factor[_MAT[m]] = f
    base = np.array([t.price for t in PRODUCT_TYPES])[ptype]
    raw = base * _PRICE_BAND_FACTOR[band] * mat_factor[material] * rng.lognormal(0.0, 0.12, n)
    price = np.where(raw >= 10, np.round(raw) - 0.01, np.round(raw * 2) / 2 - 0.01)
    price = np.maximum(price, 2.99)

    # Launch dates: a back catalogue before the period, the rest spread over it; seasonal items
    # land shortly before or during one of their seasons.
    launch = np.empty(n, dtype=np.int64)
    back = rng.random(n) < 0.25
    launch[back] = rng.integers(start_day - 540, start_day, int(back.sum()))
    rest = np.flatnonzero(~back)
    cand = rng.integers(start_day, end_day + 1, len(rest))
    seasonal = ~seasons[rest].all(axis=1)
    for _ in range(8):
        _, month, _, _ = _calendar(cand + 45)
        ok = seasons[rest, _season_of_month(month)] | ~seasonal
        if ok.all():
            break
        redo = np.flatnonzero(~ok)
        cand[redo] = rng.integers(start_day, end_day + 1, len(redo))
    launch[rest] = cand

    # Sizes offered: a contiguous range of the type's scale.
    scale = np.array([_SCALE[t.scale] for t in PRODUCT_TYPES])[ptype]
    size_lo = np.zeros(n, dtype=np.int64)
    size_hi = np.zeros(n, dtype=np.int64)
    for si, sname in enumerate(_SCALE_NAMES):
        rows = np.flatnonzero(scale == si)
        los, his = _SCALE_RANGE[sname]
        size_lo[rows] = np.asarray(los)[rng.integers(0, len(los), len(rows))]
        size_hi[rows] = np.asarray(his)[rng.integers(0, len(his), len(rows))]
    slot_of = np.full((len(CATEGORIES), len(_SCALE_NAMES)), -1, dtype=np.int64)
    for (cname, sname), k in _SLOT.items():
        slot_of[_CAT[Category(cname)], _SCALE[sname]] = k
    slot = slot_of[category, scale]

    popularity = rng.lognormal(0.0, 1.3, n)
    fit_offset = _fit_offsets(seed, slot, size_hi - size_lo + 1)

    width = max(6, len(str(n)))
    ids = pa.array([f"I{i:0{width}d}" for i in range(1, n + 1)], type=pa.string())
    table = _items_table(
        ids,
        category,
        ptype,
        styles,
        colour,
        material,
        pattern,
        seasons,
        price,
        band,
        launch,
        scale,
        size_lo,
        size_hi,
        rng,
    )
    return _Catalog(
        n=n,
        ids=ids,
        category=category,
        styles=styles,
        seasons=seasons,
        colour=colour,
        band=band,
        price=price,
        launch=launch,
        scale=scale,
        size_lo=size_lo,
        size_hi=size_hi,
        slot=slot,
        fit_offset=fit_offset,
        popularity=popularity,
        table=table,
    )


def _fit_offsets(seed: int, slot: IntArray, n_sizes: IntArray) -> IntArray:
    """Per item, how its cut fits: the size that fits is ``offset`` sizes above the customer's
    true size (+1: runs small, -1: runs large, 0: true to size). Only sized items offering at
    least three sizes run off; drawn from their own stream (:data:`_SEED_FIT`)."""
    rng = _rng(seed, _SEED_FIT)
    offset = _FIT_OFFSETS[_choice(rng, _FIT_OFFSET_P, len(slot))]
    return np.where((slot >= 0) & (n_sizes >= 3), offset, 0).astype(np.int64)


def items_truth(cat: _Catalog) -> pa.Table:
    """The hidden truth behind each item (``latent_items.parquet``): its fit offset."""
    return pa.table({"item_id": cat.ids, "fit_offset": pa.array(cat.fit_offset, type=pa.int8())})


def _list_array(mask: BoolArray, labels: tuple[str, ...]) -> pa.Array:
    """A list<string> column from a boolean membership matrix (columns in ``labels`` order)."""
    _, cols = np.nonzero(mask)
    offsets = np.zeros(mask.shape[0] + 1, dtype=np.int32)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), _take(_strings(labels), cols))


def _items_table(
    ids: pa.Array,
    category: IntArray,
    ptype: IntArray,
    styles: BoolArray,
    colour: IntArray,
    material: IntArray,
    pattern: IntArray,
    seasons: BoolArray,
    price: FloatArray,
    band: IntArray,
    launch: IntArray,
    scale: IntArray,
    size_lo: IntArray,
    size_hi: IntArray,
    rng: np.random.Generator,
) -> pa.Table:
    n = len(category)
    fit = rng.integers(0, 5, n)
    names: list[str] = []
    descriptions: list[str] = []
    for i in range(n):
        t = PRODUCT_TYPES[int(ptype[i])]
        col = COLOURS[int(colour[i])]
        mat = MATERIALS[int(material[i])]
        pat = PATTERNS[int(pattern[i])]
        pat_word = "" if pat == "solid" else f"{pat} "
        mat_word = "" if len(t.materials) == 1 else f"{mat} "
        name = f"{col} {pat_word}{mat_word}{t.name}"
        names.append(name[0].upper() + name[1:])
        item_styles = [s for s, on in zip(STYLES, styles[i], strict=True) if on]
        item_seasons = [z for z, on in zip(SEASONS, seasons[i], strict=True) if on]
        season_text = "all year round" if len(item_seasons) == 4 else _join(item_seasons)
        pattern_text = "" if pat == "solid" else f" with a {pat} pattern"
        descriptions.append(
            f"{_FIT_WORDS[t.category][int(fit[i])]} {t.name} in {col} {mat}{pattern_text}. "
            f"A {_join(item_styles)} piece for {season_text}."
        )
    # Sizes offered: labels of scale[lo..hi].
    scale_base = np.zeros(len(_SCALE_NAMES), dtype=np.int64)
    np.cumsum([len(SIZE_SCALES[s]) for s in _SCALE_NAMES[:-1]], out=scale_base[1:])
    all_labels = tuple(label for s in _SCALE_NAMES for label in SIZE_SCALES[s])
    counts = size_hi - size_lo + 1
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = np.repeat(scale_base[scale] + size_lo, counts) + _rank_in_segment(counts)
    sizes = pa.ListArray.from_arrays(pa.array(offsets), _take(_strings(all_labels), values))
    cat_names = _strings(tuple(c.value for c in CATEGORIES))
    columns: dict[str, pa.Array] = {
        ItemCols.ID: ids,
        ItemCols.NAME: pa.array(names, type=pa.string()),
        ItemCols.CATEGORY: _take(cat_names, category),
        ItemCols.PRODUCT_TYPE: _take(_strings(tuple(t.name for t in PRODUCT_TYPES)), ptype),
        ItemCols.STYLES: _list_array(styles, STYLES),
        ItemCols.COLOUR: _take(_strings(COLOURS), colour),
        ItemCols.MATERIAL: _take(_strings(MATERIALS), material),
        ItemCols.PATTERN: _take(_strings(PATTERNS), pattern),
        ItemCols.SEASONS: _list_array(seasons, SEASONS),
        ItemCols.PRICE: pa.array(price, type=pa.float64()),
        ItemCols.PRICE_BAND: _take(_strings(PRICE_BANDS), band),
        ItemCols.LAUNCH_DATE: pa.array(launch.astype(np.int32), type=pa.int32()).cast(pa.date32()),
        ItemCols.SIZES: sizes,
        ItemCols.DESCRIPTION: pa.array(descriptions, type=pa.string()),
    }
    return pa.table({c: columns[c] for c in ItemCols.ALL})
