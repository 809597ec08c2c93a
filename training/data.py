"""From a :class:`~feature_store.dataset.Dataset` to the dense-index :class:`TrainingData` models fit on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from feature_store.dataset import Dataset
from feature_store.ids import IdMap
from feature_store.schema import (
    INTERACTION_WEIGHTS,
    CustomerCols,
    InteractionCols,
    InteractionType,
    ItemCols,
)
from models.base import TrainingData

logger = logging.getLogger("lookbook.training")

_TYPE_ORDER = list(InteractionType)
_TYPE_CODE = {t.value: i for i, t in enumerate(_TYPE_ORDER)}
_WEIGHT_BY_CODE = np.array([INTERACTION_WEIGHTS[t] for t in _TYPE_ORDER], dtype=np.float32)
PURCHASE_CODE = _TYPE_CODE[InteractionType.PURCHASE.value]
RETURN_CODE = _TYPE_CODE[InteractionType.RETURN.value]


@dataclass(frozen=True)
class IdMaps:
    items: IdMap
    customers: IdMap


def build_id_maps(dataset: Dataset) -> IdMaps:
    """Dense indices: items in catalog order; customers from the customer table, then any customer
    seen only in interactions (in first-appearance order, or category order for a categorical
    column) — deterministic for the same data."""
    items = IdMap(dataset.items[ItemCols.ID].astype(str).tolist())
    known = dataset.customers[CustomerCols.ID].astype(str)
    column = dataset.interactions[InteractionCols.CUSTOMER_ID]
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = column.cat.remove_unused_categories().cat.categories
        seen = [str(c) for c in present]
    else:
        seen = [str(c) for c in pd.unique(column.astype(str))]
    known_set = set(known.tolist())
    extra = [str(c) for c in seen if c not in known_set]
    customers = IdMap([*known.tolist(), *extra])
    return IdMaps(items=items, customers=customers)


def encode(values: pd.Series, id_map: IdMap) -> npt.NDArray[np.int64]:
    """Dense indices of a column of external ids (``-1`` for unknown), vectorised.

    A ``category`` column is encoded through its categories (no per-row strings are made).
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = id_map.indices([str(c) for c in values.cat.categories])
        codes = values.cat.codes.to_numpy()
        out = np.full(len(codes), -1, dtype=np.int64)
        valid = codes >= 0
        out[valid] = lookup[codes[valid]]
        return out
    categories = pd.Index(id_map.ids())
    encoded = pd.Categorical(values.astype(str), categories=categories).codes
    return np.asarray(encoded, dtype=np.int64)


def to_training_data(
    interactions: pd.DataFrame, maps: IdMaps, *, now: pd.Timestamp
) -> TrainingData:
    """Encode an interactions frame (sorted by time here) into :class:`TrainingData`.

    The confidence matrix sums each pair's interaction weights (a return subtracts from a purchase)
    and clips at zero; zero entries are dropped.
    """
    frame = interactions.sort_values(InteractionCols.TIMESTAMP, kind="stable")
    users = encode(frame[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(frame[InteractionCols.ITEM_ID], maps.items)
    types = frame[InteractionCols.TYPE].astype(str).map(_TYPE_CODE)
    if types.isna().any():
        bad = frame[InteractionCols.TYPE][types.isna()].iloc[0]
        raise ValueError(f"unknown interaction type {bad!r}")
    type_codes = np.asarray(types.to_numpy(), dtype=np.int8)
    keep = (users >= 0) & (items >= 0)
    if not keep.all():
        logger.warning("dropping %d interactions with unknown customer or item", int((~keep).sum()))
    users, items, type_codes = users[keep], items[keep], type_codes[keep]
    seconds = frame[InteractionCols.TIMESTAMP].dt.as_unit("s").astype("int64").to_numpy()
    ts = seconds[keep].astype(np.int64)
    weights = _WEIGHT_BY_CODE[type_codes]
    shape = (len(maps.customers), len(maps.items))
    return TrainingData(
        user_items=confidence_matrix(users, items, weights, shape),
        user_idx=users,
        item_idx=items,
        timestamps=ts,
        event_types=type_codes,
        weights=weights,
        now=int(now.timestamp()),
    )


def confidence_matrix(
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float32],
    shape: tuple[int, int],
) -> sp.csr_matrix:
    """Customer x item confidence: each pair's event weights summed (a return subtracts from a
    purchase), clipped at zero, zero entries dropped (float32 CSR)."""
    matrix = sp.csr_matrix((weights, (users, items)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data = np.clip(matrix.data, 0.0, None)
    matrix.eliminate_zeros()
    return matrix


def never_returned_purchases(
    data: TrainingData,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(item indices, timestamps in seconds) of the purchase events of pairs the customer never
    returned: the strict sense of "bought and kept" the seasonal model learns sales from.
    :func:`purchase_matrix` is the lenient sense (more purchases than returns of the pair)."""
    types = data.event_types
    n_items = int(data.user_items.shape[1])
    keys = data.user_idx.astype(np.int64) * n_items + data.item_idx.astype(np.int64)
    bought = types == PURCHASE_CODE
    returned = np.unique(keys[types == RETURN_CODE])
    if len(returned):
        bought &= ~np.isin(keys, returned)
    return data.item_idx[bought].astype(np.int64), data.timestamps[bought].astype(np.int64)


def purchase_matrix(data: TrainingData) -> sp.csr_matrix:
    """Binary customer x item matrix of the pairs bought more often than returned: the lenient
    sense of "bought and kept" ('exclude purchased', "buy again"); see
    :func:`never_returned_purchases` for the strict one."""
    sign = np.where(
        data.event_types == PURCHASE_CODE, 1.0, np.where(data.event_types == RETURN_CODE, -1.0, 0.0)
    ).astype(np.float32)
    mask = sign != 0
    matrix = sp.csr_matrix(
        (sign[mask], (data.user_idx[mask], data.item_idx[mask])),
        shape=data.user_items.shape,
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.data = (matrix.data > 0).astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def purchase_log(data: TrainingData) -> dict[str, npt.NDArray[Any]]:
    """Every customer's purchase events in time order, CSR-style (the bundle's
    ``purchase_history.npz``): ``indptr`` (``n_users + 1``), ``items`` (int32), ``timestamps``
    (epoch seconds, int64) and ``weights`` (float32). The service ranks "buy again" candidates
    from it with :func:`models.candidates.repurchase_ranking`, as the offline harness does."""
    bought = np.flatnonzero(data.event_types == PURCHASE_CODE)
    order = bought[np.lexsort((data.timestamps[bought], data.user_idx[bought]))]
    counts = np.bincount(data.user_idx[order], minlength=data.n_users)
    indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return {
        "indptr": indptr,
        "items": data.item_idx[order].astype(np.int32),
        "timestamps": data.timestamps[order].astype(np.int64),
        "weights": data.weights[order].astype(np.float32),
    }


def return_log(interactions: pd.DataFrame, maps: IdMaps) -> dict[str, npt.NDArray[Any]]:
    """Every customer's returns in time order, CSR-style (the bundle's ``returns.npz``):
    ``indptr`` (``n_users + 1``), ``items`` (int32), ``timestamps`` (epoch seconds), ``sizes``
    and ``reasons`` (strings, "" when unknown). The service does not recommend a returned item
    again, or offers it in another size saying why (the size returned, the reason)."""
    frame = interactions[
        interactions[InteractionCols.TYPE].astype(str) == InteractionType.RETURN.value
    ]
    users = encode(frame[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(frame[InteractionCols.ITEM_ID], maps.items)
    keep = (users >= 0) & (items >= 0)
    seconds = frame[InteractionCols.TIMESTAMP].dt.as_unit("s").astype("int64").to_numpy()

    def text(column: str) -> npt.NDArray[np.str_]:
        if column not in frame.columns:
            return np.full(len(frame), "", dtype=np.str_)
        values = frame[column].astype(object)
        return np.asarray(values.where(values.notna(), "").astype(str).to_numpy(), dtype=np.str_)

    users, items, seconds = users[keep], items[keep], seconds[keep]
    sizes = text(InteractionCols.SIZE)[keep]
    reasons = text(InteractionCols.RETURN_REASON)[keep]
    order = np.lexsort((seconds, users))
    counts = np.bincount(users[order], minlength=len(maps.customers))
    indptr = np.zeros(len(maps.customers) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return {
        "indptr": indptr,
        "items": items[order].astype(np.int32),
        "timestamps": seconds[order].astype(np.int64),
        "sizes": sizes[order],
        "reasons": reasons[order],
    }


def opted_out_rows(dataset: Dataset, maps: IdMaps) -> npt.NDArray[np.int64]:
    """Dense indices of customers whose ``consent_personalization`` is false in the data."""
    customers = dataset.customers
    if CustomerCols.CONSENT_PERSONALIZATION not in customers.columns:
        return np.empty(0, dtype=np.int64)
    flags = customers[CustomerCols.CONSENT_PERSONALIZATION]
    refused = customers[CustomerCols.ID][flags.notna() & (flags.astype("boolean") == False)]  # noqa: E712
    rows = maps.customers.indices([str(c) for c in refused])
    return rows[rows >= 0]


def without_rows(data: TrainingData, rows: npt.NDArray[np.int64]) -> TrainingData:
    """``data`` whose confidence matrix has the given customer rows emptied (events untouched)."""
    if len(rows) == 0:
        return data
    keep = np.ones(data.n_users, dtype=np.float32)
    keep[rows] = 0.0
    matrix = sp.diags(keep).dot(data.user_items).tocsr()
    matrix.eliminate_zeros()
    return replace(data, user_items=matrix)
