"""The learned ranker's features: one module for training (the harness, the trainer) and serving.

Everything is computed from arrays both sides hold, so the service computes, for a customer, the
same feature rows the trainer computed for them:

* :class:`ItemStats` — per item, as of one time ``as_of`` (the training end: the bundle carries
  them): purchases in the last 7 and 28 days, the first sale, the median price paid *before*
  ``as_of`` (never a later price), the rebuy rate of its product type, its group and product code.
  Built by :func:`item_stats` from purchase events dated before ``as_of`` only.
* the customer's purchases (item indices, epoch seconds) and ``now`` (the cutoff offline, the
  request's time online);
* the candidate sources' ranked lists (name → items, best first): :func:`candidate_union` makes
  the union and each candidate's rank in every source.

:func:`ranker_features` returns one row of :data:`FEATURE_NAMES` per candidate (``float32``;
``NaN`` where a value does not exist, e.g. a source that did not propose the item — LightGBM treats
it as missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from feature_store.timeutils import SECONDS_PER_DAY
from models.base import IntArray

__all__ = [
    "FEATURE_NAMES",
    "RANKER_SOURCES",
    "STAT_ARRAYS",
    "ItemStats",
    "candidate_union",
    "item_stats",
    "product_index",
    "ranker_features",
]

FloatArray = npt.NDArray[np.float64]

#: The candidate sources whose ranks are features (the blend's source names); a source missing
#: from a request's lists is a missing value, not an error.
RANKER_SOURCES: Final = ("repurchase", "repeat", "als", "sequence", "siblings", "popularity")
_RRF_K: Final = 60.0

_PAIR: Final = (
    "n_sources",
    "rrf",
    "blend_score",
    "days_since_item",
    "item_count",
    "days_since_group",
    "group_count",
    "group_share",
    "days_since_product",
    "product_count",
    "price_vs_customer",
)
_ITEM: Final = ("pop_7d", "pop_28d", "pop_trend", "item_age_days", "price", "rebuy_rate")
_CUSTOMER: Final = (
    "n_purchases",
    "n_purchase_days",
    "days_since_last",
    "tenure_days",
    "customer_median_price",
)
FEATURE_NAMES: Final = (
    *(f"rank_{s}" for s in RANKER_SOURCES),
    *_PAIR,
    *_ITEM,
    *_CUSTOMER,
)
#: The arrays of :class:`ItemStats` (saved in the bundle under these names).
STAT_ARRAYS: Final = ("pop_7d", "pop_28d", "first_sale", "price", "rebuy", "group", "product")


@dataclass(frozen=True)
class ItemStats:
    """Per-item statistics as of ``as_of`` (epoch seconds), from purchases strictly before it."""

    as_of: int
    pop_7d: FloatArray  # purchases (weighted) in the 7 days before ``as_of``
    pop_28d: FloatArray  # … in the 28 days before
    first_sale: npt.NDArray[np.int64]  # first purchase before ``as_of``; -1 when none
    price: FloatArray  # median price paid before ``as_of``; NaN when never sold nor known
    rebuy: (
        FloatArray  # rebuy rate of the item's group (:func:`models.candidates.build_repeat_rates`)
    )
    group: IntArray  # product type group (>= 0)
    product: IntArray  # product code index (-1 when unknown)

    @property
    def n_items(self) -> int:
        return len(self.group)

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        out: dict[str, npt.NDArray[np.generic]] = {n: getattr(self, n) for n in STAT_ARRAYS}
        out["as_of"] = np.asarray([self.as_of], dtype=np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> ItemStats:
        return cls(
            as_of=int(np.asarray(arrays["as_of"], dtype=np.int64)[0]),
            pop_7d=np.asarray(arrays["pop_7d"], dtype=np.float64),
            pop_28d=np.asarray(arrays["pop_28d"], dtype=np.float64),
            first_sale=np.asarray(arrays["first_sale"], dtype=np.int64),
            price=np.asarray(arrays["price"], dtype=np.float64),
            rebuy=np.asarray(arrays["rebuy"], dtype=np.float64),
            group=np.asarray(arrays["group"], dtype=np.int64),
            product=np.asarray(arrays["product"], dtype=np.int64),
        )


def item_stats(
    item_idx: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    weights: npt.ArrayLike,
    prices: npt.ArrayLike,
    *,
    as_of: int,
    groups: npt.ArrayLike,
    products: npt.ArrayLike,
    rebuy: npt.ArrayLike,
    list_prices: npt.ArrayLike | None = None,
) -> ItemStats:
    """:class:`ItemStats` from *purchase* events (parallel arrays; ``prices`` the price paid per
    event, NaN when unknown). Only events dated strictly before ``as_of`` are read. An item's price
    is the median price paid before ``as_of``; without one, its ``list_prices`` entry (a catalog's
    own list price, never derived from later sales) when given, else NaN."""
    items = np.asarray(item_idx, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.int64)
    w = np.maximum(np.asarray(weights, dtype=np.float64), 0.0)
    paid = np.asarray(prices, dtype=np.float64)
    group = np.asarray(groups, dtype=np.int64)
    n = len(group)
    past = ts < int(as_of)
    items, ts, w, paid = items[past], ts[past], w[past], paid[past]
    age = (int(as_of) - ts) / SECONDS_PER_DAY
    pop_7d = np.bincount(items, weights=w * (age <= 7), minlength=n).astype(np.float64)
    pop_28d = np.bincount(items, weights=w * (age <= 28), minlength=n).astype(np.float64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, items, ts)
    first[first == np.iinfo(np.int64).max] = -1
    price = (
        np.asarray(list_prices, dtype=np.float64).copy()
        if list_prices is not None
        else np.full(n, np.nan)
    )
    known = ~np.isnan(paid)
    if known.any():
        order = np.lexsort((paid[known], items[known]))
        it, pr = items[known][order], paid[known][order]
        starts = np.flatnonzero(np.r_[True, it[1:] != it[:-1]])
        ends = np.r_[starts[1:], len(it)]
        lo, hi = pr[starts + (ends - starts - 1) // 2], pr[starts + (ends - starts) // 2]
        price[it[starts]] = (lo + hi) / 2.0
    return ItemStats(
        as_of=int(as_of),
        pop_7d=pop_7d,
        pop_28d=pop_28d,
        first_sale=first,
        price=price,
        rebuy=np.asarray(rebuy, dtype=np.float64),
        group=group,
        product=np.asarray(products, dtype=np.int64),
    )


def product_index(codes: Sequence[str | None]) -> IntArray:
    """A dense index per item's product code (codes sorted; ``-1`` where None): the
    ``products`` argument of :func:`item_stats`."""
    index = {c: i for i, c in enumerate(sorted({c for c in codes if c is not None}))}
    return np.asarray([index[c] if c is not None else -1 for c in codes], dtype=np.int64)


def candidate_union(
    lists: Mapping[str, npt.ArrayLike], depth: int
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """The union of the sources' top ``depth`` items (``-1`` padding ignored), in order of first
    appearance over :data:`RANKER_SOURCES`, and each candidate's 1-based rank per source (NaN where
    the source did not propose it). Sources outside :data:`RANKER_SOURCES` are ignored."""
    rows = []
    for s in RANKER_SOURCES:
        raw = np.asarray(lists.get(s, np.empty(0, np.int64)), dtype=np.int64)[:depth]
        rows.append(raw[raw >= 0])
    every = np.concatenate(rows) if rows else np.empty(0, np.int64)
    _, first = np.unique(every, return_index=True)
    items = every[np.sort(first)]
    ranks = np.full((len(items), len(RANKER_SOURCES)), np.nan, dtype=np.float32)
    if len(items) == 0:
        return items, ranks
    sorter = np.argsort(items, kind="stable")
    for j, row in enumerate(rows):
        # first occurrence of each item in the source's list
        uniq, pos = np.unique(row, return_index=True)
        where = sorter[np.searchsorted(items, uniq, sorter=sorter)]
        ranks[where, j] = pos + 1
    return items, ranks


def _since_and_count(
    keys: IntArray, stamps: npt.NDArray[np.int64], wanted: IntArray, now: int
) -> tuple[FloatArray, FloatArray]:
    """Per ``wanted`` key: days since the latest event with that key (NaN: none) and its count."""
    days = np.full(len(wanted), np.nan)
    count = np.zeros(len(wanted))
    valid = keys >= 0
    keys, stamps = keys[valid], stamps[valid]
    if len(keys) == 0 or len(wanted) == 0:
        return days, count
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    latest = np.full(len(uniq), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, inverse, stamps)
    pos = np.searchsorted(uniq, wanted)
    pos = np.minimum(pos, len(uniq) - 1)
    hit = (uniq[pos] == wanted) & (wanted >= 0)
    days[hit] = (int(now) - latest[pos[hit]]) / SECONDS_PER_DAY
    count[hit] = counts[pos[hit]]
    return days, count


def ranker_features(
    candidates: IntArray,
    source_ranks: npt.NDArray[np.float32],
    purchases: npt.ArrayLike,
    purchase_times: npt.ArrayLike,
    now: int,
    stats: ItemStats,
    blend: Mapping[str, float] | None = None,
    blend_rrf_k: float = _RRF_K,
) -> npt.NDArray[np.float32]:
    """The ``(len(candidates), len(FEATURE_NAMES))`` feature matrix of one customer.

    ``source_ranks`` comes from :func:`candidate_union`; ``purchases`` / ``purchase_times`` are
    the customer's purchases dated before ``now`` (later ones are ignored). ``blend`` (weights by
    source name, with ``blend_rrf_k``) gives ``blend_score``, the fixed fusion's score of the
    candidate (:func:`models.bundle.rrf_fuse_row`'s formula); 0 without."""
    cands = np.asarray(candidates, dtype=np.int64)
    items = np.asarray(purchases, dtype=np.int64)
    ts = np.asarray(purchase_times, dtype=np.int64)
    past = (ts < int(now)) & (items >= 0) & (items < stats.n_items)
    items, ts = items[past], ts[past]
    n = len(cands)
    out = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}
    ranks = np.asarray(source_ranks, dtype=np.float32)
    out[:, : len(RANKER_SOURCES)] = ranks
    present = ~np.isnan(ranks)
    out[:, col["n_sources"]] = present.sum(axis=1)
    out[:, col["rrf"]] = np.where(present, 1.0 / (_RRF_K + np.nan_to_num(ranks)), 0.0).sum(axis=1)
    w = np.asarray([max(float((blend or {}).get(s, 0.0)), 0.0) for s in RANKER_SOURCES])
    out[:, col["blend_score"]] = np.where(
        present, w / (float(blend_rrf_k) + np.nan_to_num(ranks)), 0.0
    ).sum(axis=1)

    since, count = _since_and_count(items, ts, cands, now)
    out[:, col["days_since_item"]] = since
    out[:, col["item_count"]] = count
    since, count = _since_and_count(stats.group[items], ts, stats.group[cands], now)
    out[:, col["days_since_group"]] = since
    out[:, col["group_count"]] = count
    out[:, col["group_share"]] = count / max(len(items), 1)
    since, count = _since_and_count(stats.product[items], ts, stats.product[cands], now)
    out[:, col["days_since_product"]] = since
    out[:, col["product_count"]] = count

    pop_7d, pop_28d = stats.pop_7d[cands], stats.pop_28d[cands]
    out[:, col["pop_7d"]] = pop_7d
    out[:, col["pop_28d"]] = pop_28d
    out[:, col["pop_trend"]] = (pop_7d + 1.0) / (pop_28d / 4.0 + 1.0)
    first = stats.first_sale[cands]
    out[:, col["item_age_days"]] = np.where(
        first >= 0, (int(now) - first) / SECONDS_PER_DAY, np.nan
    )
    price = stats.price[cands]
    out[:, col["price"]] = price
    out[:, col["rebuy_rate"]] = stats.rebuy[cands]

    paid = stats.price[items]
    paid = paid[~np.isnan(paid)]
    median_price = float(np.median(paid)) if len(paid) else np.nan
    out[:, col["price_vs_customer"]] = price / median_price if len(paid) else np.nan
    out[:, col["n_purchases"]] = len(items)
    days = np.unique(ts // SECONDS_PER_DAY)
    out[:, col["n_purchase_days"]] = len(days)
    if len(ts):
        out[:, col["days_since_last"]] = (int(now) - int(ts.max())) / SECONDS_PER_DAY
        out[:, col["tenure_days"]] = (int(now) - int(ts.min())) / SECONDS_PER_DAY
    out[:, col["customer_median_price"]] = median_price
    return out
