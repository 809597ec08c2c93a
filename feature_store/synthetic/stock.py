"""Synthetic stock: one row per (item, store, size) carried, online and in physical stores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import (
    ONLINE_STORE,
    StockCols,
)
from .catalog import _Catalog
from .common import _rank_in_segment, _rng, _strings, _take
from .vocabulary import _SCALE_NAMES, _SEED_STOCK, SIZE_SCALES


def _store_ids(stores: int) -> pa.Array:
    width = max(3, len(str(stores)))
    return pa.array(
        [ONLINE_STORE, *(f"store-{i:0{width}d}" for i in range(1, stores + 1))], type=pa.string()
    )


def _make_stock(cat: _Catalog, stores: int, seed: int, end_day: int) -> pa.Table:
    """Units on hand at ``end_date`` per (item, store, size): online carries every item, each
    physical store a subset; middle sizes are deeper; older items are mostly sold through."""
    rng = _rng(seed, _SEED_STOCK)
    n = cat.n
    age = np.maximum(end_day - cat.launch, 0)
    carry_rate = np.concatenate([[1.0], rng.uniform(0.2, 0.5, stores)])
    if stores:
        carry_rate[1] = 0.7  # the flagship
    recency = np.where(age < 365, 1.0, 0.35)
    carried = rng.random((n, stores + 1)) < carry_rate[None, :] * recency[:, None]
    carried[:, 0] = True
    pair_item, pair_store = np.nonzero(carried)
    counts = cat.size_hi[pair_item] - cat.size_lo[pair_item] + 1
    row_item = np.repeat(pair_item, counts)
    row_store = np.repeat(pair_store, counts)
    size_idx = np.repeat(cat.size_lo[pair_item], counts) + _rank_in_segment(counts)
    scale_len = np.array([len(SIZE_SCALES[s]) for s in _SCALE_NAMES])[cat.scale[row_item]]
    centre = (scale_len - 1) / 2.0
    curve = np.exp(-(((size_idx - centre) / np.maximum(scale_len / 3.0, 1.0)) ** 2))
    depth = np.where(row_store == 0, 30.0, 4.0)
    fresh = 0.25 + 0.75 * np.exp(-age[row_item] / 200.0)
    mean = depth * curve * fresh * cat.popularity[row_item] ** 0.3
    quantity = rng.poisson(mean)
    quantity[rng.random(len(quantity)) < 0.08] = 0  # sold out in that store
    scale_base = np.zeros(len(_SCALE_NAMES), dtype=np.int64)
    np.cumsum([len(SIZE_SCALES[s]) for s in _SCALE_NAMES[:-1]], out=scale_base[1:])
    all_labels = tuple(label for s in _SCALE_NAMES for label in SIZE_SCALES[s])
    return pa.table(
        {
            StockCols.ITEM_ID: pc.take(cat.ids, pa.array(row_item)),
            StockCols.STORE_ID: _take(_store_ids(stores), row_store),
            StockCols.SIZE: _take(_strings(all_labels), scale_base[cat.scale[row_item]] + size_idx),
            StockCols.QUANTITY: pa.array(quantity.astype(np.int64)),
        }
    )
