"""A dataset encoded once for the harness (:class:`Prepared`), and the per-item catalog columns
the trainer reads too (:func:`catalog_groups`, :func:`product_codes`, :func:`event_sizes`).

``prepare(dataset)`` builds id maps, time-ordered events, per-customer offsets, sizes and item
side features; :func:`subset` cuts a :class:`~models.base.TrainingData` down to the events a
fold may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.dataset import Dataset
from feature_store.schema import InteractionCols, ItemCols
from models.base import IntArray, TrainingData
from models.candidates import item_groups
from models.sequence import ItemFeatures
from training.data import (
    PURCHASE_CODE,
    IdMaps,
    build_id_maps,
    confidence_matrix,
    encode,
    to_training_data,
)

__all__ = [
    "Prepared",
    "catalog_groups",
    "event_prices",
    "event_sizes",
    "prepare",
    "product_codes",
    "subset",
]


@dataclass
class Prepared:
    """A dataset encoded once: events in time order, by customer, with sizes and features."""

    name: str
    maps: IdMaps
    data: TrainingData  # every event (the full period)
    sizes: list[str | None]  # per event of ``data``
    features: ItemFeatures
    by_user: IntArray  # event indices of ``data`` sorted by (customer, time)
    user_ptr: IntArray  # CSR offsets into ``by_user`` per customer index
    frame: pd.DataFrame  # the interactions frame (for the protocol functions)
    #: the catalog's optional ``product_code`` per item index (all ``None`` without the column)
    product_codes: list[str | None] = field(default_factory=list)
    #: group index per item (:func:`models.candidates.item_groups` of the catalog's product type,
    #: falling back to the category), the grouping of the repeat rates
    groups: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    #: the price paid per event of ``data`` (NaN when the event has none): prices as of a time
    #: are computed from these and the events before it, never from the catalog's price column
    prices: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    #: the catalog's items table (its price column is never read by the harness)
    items: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def is_purchase(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.data.event_types == PURCHASE_CODE)

    def history(self, user: int, cutoff: int) -> IntArray:
        """Indices (into ``data``) of ``user``'s events dated strictly before ``cutoff``."""
        events = self.by_user[self.user_ptr[user] : self.user_ptr[user + 1]]
        end = int(np.searchsorted(self.data.timestamps[events], cutoff, side="left"))
        return events[:end]


def event_sizes(frame: pd.DataFrame, maps: IdMaps, data: TrainingData) -> list[str | None]:
    """Sizes of ``data``'s events, where ``data = to_training_data(frame, maps, ...)``.

    Repeats that function's ordering (stable sort by timestamp, unknown ids dropped) and checks
    the result event by event against ``data`` so a change there is caught, not silently
    misaligned.
    """
    ordered = frame.sort_values(InteractionCols.TIMESTAMP, kind="stable")
    users = encode(ordered[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(ordered[InteractionCols.ITEM_ID], maps.items)
    keep = (users >= 0) & (items >= 0)
    if not (
        np.array_equal(users[keep], data.user_idx) and np.array_equal(items[keep], data.item_idx)
    ):
        raise ValueError("the interactions frame does not line up with the TrainingData events")
    if InteractionCols.SIZE not in ordered.columns:
        return [None] * len(data.item_idx)
    raw = ordered[InteractionCols.SIZE].astype("string").tolist()
    return [
        None if v is None or v is pd.NA or str(v) == "" else str(v)
        for v, kept in zip(raw, keep, strict=True)
        if kept
    ]


def event_prices(frame: pd.DataFrame, maps: IdMaps, data: TrainingData) -> npt.NDArray[np.float64]:
    """The price paid per event of ``data`` (NaN when unknown), aligned like :func:`event_sizes`."""
    ordered = frame.sort_values(InteractionCols.TIMESTAMP, kind="stable")
    users = encode(ordered[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(ordered[InteractionCols.ITEM_ID], maps.items)
    keep = (users >= 0) & (items >= 0)
    if not np.array_equal(items[keep], data.item_idx):
        raise ValueError("the interactions frame does not line up with the TrainingData events")
    if InteractionCols.PRICE not in ordered.columns:
        return np.full(len(data.item_idx), np.nan)
    paid = pd.to_numeric(ordered[InteractionCols.PRICE], errors="coerce").to_numpy(np.float64)
    return np.asarray(paid[keep], dtype=np.float64)


def prepare(dataset: Dataset, name: str | None = None) -> Prepared:
    """Encode ``dataset`` once (id maps, time-ordered events, sizes, item side features)."""
    frame = dataset.interactions
    maps = build_id_maps(dataset)
    now = pd.Timestamp(frame[InteractionCols.TIMESTAMP].max())
    data = to_training_data(frame, maps, now=now)
    sizes = event_sizes(frame, maps, data)
    features = ItemFeatures.from_frame(dataset.items, maps.items.ids())
    by_user = np.lexsort((np.arange(len(data.user_idx)), data.timestamps, data.user_idx))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    user_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Prepared(
        name=name or dataset.source,
        maps=maps,
        data=data,
        sizes=sizes,
        features=features,
        by_user=by_user.astype(np.int64),
        user_ptr=user_ptr,
        frame=frame,
        product_codes=product_codes(dataset.items, maps.items.ids()),
        groups=catalog_groups(dataset.items, maps.items.ids()),
        prices=event_prices(frame, maps, data),
        items=dataset.items,
    )


def catalog_groups(items: pd.DataFrame, item_ids: Sequence[str]) -> IntArray:
    """A group per item of ``item_ids``: its product type, else its category (the grouping of
    the rebuy rates, :func:`models.candidates.build_repeat_rates`)."""
    frame = items.set_index(items[ItemCols.ID].astype(str))
    frame = frame[~frame.index.duplicated()].reindex([str(i) for i in item_ids])
    ptype = (
        frame[ItemCols.PRODUCT_TYPE]
        if ItemCols.PRODUCT_TYPE in frame.columns
        else pd.Series(None, index=frame.index, dtype="object")
    )
    return item_groups(
        ptype.astype("object").tolist(), frame[ItemCols.CATEGORY].astype("object").tolist()
    )


def product_codes(items: pd.DataFrame, item_ids: Sequence[str]) -> list[str | None]:
    """The catalog's optional ``product_code`` per item of ``item_ids`` (all ``None`` when the
    catalog has no such column) — the input of :func:`models.candidates.build_product_siblings`."""
    if ItemCols.PRODUCT_CODE not in items.columns:
        return [None] * len(item_ids)
    codes = items[ItemCols.PRODUCT_CODE].astype("string")
    by_id = {
        str(i): (None if c is pd.NA or c is None else str(c))
        for i, c in zip(items[ItemCols.ID].astype(str), codes, strict=True)
    }
    return [by_id.get(str(i)) for i in item_ids]


def subset(data: TrainingData, mask: npt.NDArray[np.bool_], now: int) -> TrainingData:
    """The events of ``data`` where ``mask`` holds, encoded like :func:`to_training_data`
    (weights summed per pair, clipped at zero)."""
    users, items = data.user_idx[mask], data.item_idx[mask]
    weights = data.weights[mask]
    return TrainingData(
        user_items=confidence_matrix(users, items, weights, data.user_items.shape),
        user_idx=users,
        item_idx=items,
        timestamps=data.timestamps[mask],
        event_types=data.event_types[mask],
        weights=weights,
        now=int(now),
    )
