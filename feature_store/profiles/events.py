"""Events and catalog in columnar form: the arrays the batch profiles and churn model read."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from ..dataset import Dataset
from ..schema import (
    CustomerCols,
    InteractionCols,
    ItemCols,
)
from ..timeutils import SECONDS_PER_DAY
from .vocabulary import (
    _KIND_CODE,
    _ONLINE_CHANNELS,
    _REASON_CODE,
    FACET_COLUMNS,
    K_CART,
    K_CLICK,
    K_PURCHASE,
    K_RETURN,
    K_VIEW,
    K_WISH,
    R_TOO_LARGE,
    R_TOO_SMALL,
    Array,
)

logger = logging.getLogger("lookbook.profiles")


def _epoch_seconds(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(seconds: float | None) -> str | None:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return None
    return datetime.fromtimestamp(float(seconds), tz=UTC).isoformat()


def _codes(values: pd.Series | pd.Index, vocabulary: Mapping[str, int]) -> npt.NDArray[np.int32]:
    """Code of each value in ``vocabulary`` (-1 for null or unknown)."""
    codes, uniques = pd.factorize(values)
    lookup = np.array([vocabulary.get(str(u), -1) for u in uniques] + [-1], dtype=np.int32)
    return lookup[np.asarray(codes, dtype=np.int64)]  # code -1 (null) takes the trailing -1


@dataclass
class Catalog:
    """Item attributes as arrays aligned with ``items`` rows (what profiles need of them)."""

    item_ids: pd.Index
    price: npt.NDArray[np.float64]
    category: npt.NDArray[np.int16]  # index into ``categories``, -1 unknown
    categories: tuple[str, ...]
    size_ptr: npt.NDArray[np.int64]  # sizes of item i: size_flat[size_ptr[i]:size_ptr[i+1]]
    size_flat: npt.NDArray[np.int32]  # codes into ``size_labels``, in the item's size order
    size_labels: tuple[str, ...]
    facet_values: dict[str, tuple[str, ...]]
    facet_matrix: dict[str, sp.csr_matrix]  # items x values, rows sum to 1 (or 0)

    @classmethod
    def from_items(cls, items: pd.DataFrame, extra_size_labels: Iterable[str] = ()) -> Catalog:
        n = len(items)
        ids = pd.Index(items[ItemCols.ID].astype("str"))
        price = pd.to_numeric(items[ItemCols.PRICE], errors="coerce").to_numpy(np.float64)
        categories = tuple(sorted({str(c) for c in items[ItemCols.CATEGORY].dropna().unique()}))
        category = _codes(items[ItemCols.CATEGORY], {c: i for i, c in enumerate(categories)})
        sizes = (
            items[ItemCols.SIZES]
            if ItemCols.SIZES in items.columns
            else pd.Series([[] for _ in range(n)], dtype=object)
        )
        lengths = np.fromiter(
            (len(v) if isinstance(v, list | tuple | np.ndarray) else 0 for v in sizes),
            dtype=np.int64,
            count=n,
        )
        flat_labels = pd.Series(
            [str(x) for v in sizes if isinstance(v, list | tuple | np.ndarray) for x in v],
            dtype=object,
        )
        labels = tuple(sorted(set(flat_labels.unique()) | {str(x) for x in extra_size_labels}))
        label_code = {label: i for i, label in enumerate(labels)}
        size_flat = _codes(flat_labels, label_code) if len(flat_labels) else np.empty(0, np.int32)
        size_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=size_ptr[1:])
        facet_values: dict[str, tuple[str, ...]] = {}
        facet_matrix: dict[str, sp.csr_matrix] = {}
        for facet, column in FACET_COLUMNS.items():
            if column not in items.columns:
                facet_values[facet] = ()
                facet_matrix[facet] = sp.csr_matrix((n, 0), dtype=np.float64)
                continue
            col = items[column]
            if facet == "style":
                rows_l: list[int] = []
                vals_l: list[str] = []
                for row, value in enumerate(col):
                    if isinstance(value, list | tuple | np.ndarray):
                        for s in value:
                            rows_l.append(row)
                            vals_l.append(str(s))
                rows = np.asarray(rows_l, dtype=np.int64)
                vocab = tuple(sorted(set(vals_l)))
                codes = _codes(pd.Series(vals_l, dtype=object), {v: i for i, v in enumerate(vocab)})
            else:
                vocab = tuple(sorted({str(v) for v in col.dropna().unique()}))
                all_codes = _codes(col, {v: i for i, v in enumerate(vocab)})
                rows = np.flatnonzero(all_codes >= 0)
                codes = all_codes[rows]
            per_item = np.bincount(rows, minlength=n).astype(np.float64)
            weight = 1.0 / np.maximum(per_item[rows], 1.0)
            matrix = sp.csr_matrix((weight, (rows, codes)), shape=(n, len(vocab)))
            matrix.sum_duplicates()
            facet_values[facet] = vocab
            facet_matrix[facet] = matrix
        return cls(
            item_ids=ids,
            price=price,
            category=category.astype(np.int16),
            categories=categories,
            size_ptr=size_ptr,
            size_flat=size_flat.astype(np.int32),
            size_labels=labels,
            facet_values=facet_values,
            facet_matrix=facet_matrix,
        )

    def _size_keys(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(sorted ``item * n_labels + label`` keys, their index into ``size_flat``), cached."""
        cached = self.__dict__.get("_size_key_cache")
        if cached is None:
            n_labels = max(len(self.size_labels), 1)
            owner = np.repeat(
                np.arange(len(self.size_ptr) - 1, dtype=np.int64), np.diff(self.size_ptr)
            )
            keys = owner * n_labels + self.size_flat
            order = np.argsort(keys, kind="stable").astype(np.int64)
            cached = (keys[order], order)
            self.__dict__["_size_key_cache"] = cached
        return cached

    def size_position(self, item: Array, label: Array) -> npt.NDArray[np.int64]:
        """Position of ``label`` in the size list of ``item`` (-1 where not offered)."""
        item = np.asarray(item, np.int64)
        label = np.asarray(label, np.int64)
        sorted_keys, order = self._size_keys()
        if len(sorted_keys) == 0:
            return np.full(item.shape, -1, dtype=np.int64)
        want = item * max(len(self.size_labels), 1) + label
        at = np.minimum(np.searchsorted(sorted_keys, want), len(sorted_keys) - 1)
        found = (item >= 0) & (label >= 0) & (sorted_keys[at] == want)
        position = np.where(found, order[at] - self.size_ptr[np.maximum(item, 0)], -1)
        return position.astype(np.int64)

    def shifted_label(self, item: Array, label: Array, step: Array) -> npt.NDArray[np.int32]:
        """Label code ``step`` places along the item's size order from ``label`` (-1 if none)."""
        item = np.asarray(item, np.int64)
        pos = self.size_position(item, label)
        target = pos + np.asarray(step, np.int64)
        safe_item = np.maximum(item, 0)
        length = self.size_ptr[safe_item + 1] - self.size_ptr[safe_item]
        ok = (pos >= 0) & (target >= 0) & (target < length)
        flat_at = np.where(ok, self.size_ptr[safe_item] + target, 0)
        if len(self.size_flat) == 0:
            return np.full(item.shape, -1, dtype=np.int32)
        return np.where(ok, self.size_flat[flat_at], -1).astype(np.int32)


@dataclass
class EventTable:
    """All interactions as aligned numpy arrays, customers as codes into sorted ``customer_ids``.

    Built once per dataset (:meth:`from_dataset`) and reused for profiles at one date and for
    churn snapshots at many (``activity(as_of)`` only looks at events up to ``as_of``).
    """

    customer_ids: npt.NDArray[np.object_]  # sorted, unique: every customer of the dataset
    consent: npt.NDArray[np.bool_]  # per customer: False only where explicitly refused
    catalog: Catalog
    cust: npt.NDArray[np.int32]
    item: npt.NDArray[np.int32]  # row in catalog, -1 unknown
    kind: npt.NDArray[np.int8]  # InteractionType declaration order
    ts: npt.NDArray[np.int64]  # epoch seconds
    price: npt.NDArray[np.float64]  # price of the event, or the item's list price; NaN unknown
    size: npt.NDArray[np.int32]  # code into catalog.size_labels, -1 none
    reason: npt.NDArray[np.int8]  # ReturnReason declaration order, -1 none
    online: npt.NDArray[np.bool_]

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> EventTable:
        inter = dataset.interactions
        raw_ids = inter[InteractionCols.CUSTOMER_ID]
        if isinstance(raw_ids.dtype, pd.CategoricalDtype):
            inter_codes = raw_ids.cat.codes.to_numpy().astype(np.int64)
            inter_cats = pd.Index(raw_ids.cat.categories.astype("str"))
        else:
            codes_f, uniques = pd.factorize(raw_ids.astype("str"))
            inter_codes = np.asarray(codes_f, np.int64)
            inter_cats = pd.Index(pd.Series(uniques, dtype="str"))
        table_ids = pd.Index(dataset.customers[CustomerCols.ID].astype("str")).dropna().unique()
        universe = pd.Index(inter_cats.dropna().unique()).union(table_ids).sort_values()
        customer_ids = universe.to_numpy(dtype=object)
        position = np.append(universe.get_indexer(inter_cats), -1).astype(np.int64)
        cust = position[inter_codes]  # code -1 → trailing -1

        consent = np.ones(len(customer_ids), dtype=bool)
        consent_col = CustomerCols.CONSENT_PERSONALIZATION
        if consent_col in dataset.customers.columns and len(dataset.customers):
            flags = dataset.customers[consent_col].astype("boolean")
            refused = (~flags.fillna(True)).to_numpy(dtype=bool)
            if refused.any():
                rows = universe.get_indexer(
                    pd.Index(dataset.customers[CustomerCols.ID].astype("str"))[refused]
                )
                consent[rows[rows >= 0]] = False

        size_col = inter[InteractionCols.SIZE] if InteractionCols.SIZE in inter.columns else None
        event_labels: list[str] = []
        if size_col is not None:
            event_labels = [str(v) for v in pd.Series(size_col.dropna().unique()).tolist()]
        catalog = Catalog.from_items(dataset.items, event_labels)

        raw_items = inter[InteractionCols.ITEM_ID]
        if isinstance(raw_items.dtype, pd.CategoricalDtype) and pd.Index(
            raw_items.cat.categories.astype("str")
        ).equals(catalog.item_ids):
            item = raw_items.cat.codes.to_numpy().astype(np.int32)
        else:
            item = catalog.item_ids.get_indexer(pd.Index(raw_items.astype("str"))).astype(np.int32)

        kind = _codes(inter[InteractionCols.TYPE], _KIND_CODE).astype(np.int8)
        ts_ns = pd.to_datetime(inter[InteractionCols.TIMESTAMP], utc=True).to_numpy(
            dtype="datetime64[ns]"
        )
        ts = ts_ns.view(np.int64) // 1_000_000_000
        if InteractionCols.PRICE in inter.columns:
            price = pd.to_numeric(inter[InteractionCols.PRICE], errors="coerce").to_numpy(
                np.float64, na_value=np.nan
            )
        else:
            price = np.full(len(inter), np.nan)
        list_price = np.where(item >= 0, catalog.price[np.maximum(item, 0)], np.nan)
        price = np.where(np.isnan(price), list_price, price)
        if size_col is not None:
            size = _codes(size_col.astype("str"), {s: i for i, s in enumerate(catalog.size_labels)})
        else:
            size = np.full(len(inter), -1, dtype=np.int32)
        if InteractionCols.RETURN_REASON in inter.columns:
            reason = _codes(inter[InteractionCols.RETURN_REASON], _REASON_CODE).astype(np.int8)
        else:
            reason = np.full(len(inter), -1, dtype=np.int8)
        if InteractionCols.CHANNEL in inter.columns:
            online = inter[InteractionCols.CHANNEL].isin(_ONLINE_CHANNELS).to_numpy(dtype=bool)
        else:
            online = np.zeros(len(inter), dtype=bool)
        keep = (cust >= 0) & (kind >= 0)
        if not keep.all():
            logger.warning(
                "%d interactions without a customer id or with an unknown type are ignored",
                int((~keep).sum()),
            )
        return cls(
            customer_ids=customer_ids,
            consent=consent,
            catalog=catalog,
            cust=cust[keep].astype(np.int32),
            item=item[keep],
            kind=kind[keep],
            ts=ts[keep],
            price=price[keep],
            size=size[keep].astype(np.int32),
            reason=reason[keep],
            online=online[keep],
        )

    def until(self, as_of: datetime) -> EventTable:
        """The events dated at or before ``as_of`` (same customers and catalog)."""
        mask = self.ts <= _epoch_seconds(as_of)
        if mask.all():
            return self
        return replace(
            self,
            cust=self.cust[mask],
            item=self.item[mask],
            kind=self.kind[mask],
            ts=self.ts[mask],
            price=self.price[mask],
            size=self.size[mask],
            reason=self.reason[mask],
            online=self.online[mask],
        )

    def purchased_between(self, start: datetime, end: datetime) -> npt.NDArray[np.bool_]:
        """Per customer: a purchase dated in ``(start, end]``."""
        s, e = _epoch_seconds(start), _epoch_seconds(end)
        mask = (self.kind == K_PURCHASE) & (self.ts > s) & (self.ts <= e)
        out = np.zeros(self.n_customers, dtype=bool)
        out[self.cust[mask]] = True
        return out

    def activity(self, as_of: datetime) -> pd.DataFrame:
        """Per-customer RFM and behaviour aggregates from the events up to ``as_of``.

        Columns (one row per customer, in ``customer_ids`` order): ``customer_id``,
        ``first_purchase`` / ``last_purchase`` / ``last_seen`` (epoch seconds, NaN if none),
        ``frequency`` (orders = distinct purchase days), ``n_purchases`` (items), ``n_returns``,
        ``n_size_returns``, ``monetary`` (net), ``spend_90``, ``orders_30/90/180/365``,
        ``views_30/90`` (views + clicks), ``carts_30`` (carts + wishlists), ``events_30/90``,
        ``online_share`` (of purchases). Recency etc. are derived from these and ``as_of``.
        """
        ev = self.until(as_of)
        now_s = _epoch_seconds(as_of)
        n = self.n_customers
        cust = ev.cust.astype(np.int64)
        buy = ev.kind == K_PURCHASE
        ret = ev.kind == K_RETURN
        age = now_s - ev.ts.astype(np.float64)

        def count(mask: Array, weights: Array | None = None) -> npt.NDArray[np.float64]:
            w = None if weights is None else weights[mask]
            return np.bincount(cust[mask], weights=w, minlength=n).astype(np.float64)

        first = np.full(n, np.nan)
        last = np.full(n, np.nan)
        seen = np.full(n, np.nan)
        b_cust, b_ts = cust[buy], ev.ts[buy].astype(np.float64)
        if len(b_cust):
            frame = pd.DataFrame({"c": b_cust, "t": b_ts}).groupby("c", sort=False)["t"]
            lo, hi = frame.min(), frame.max()
            first[lo.index.to_numpy()] = lo.to_numpy()
            last[hi.index.to_numpy()] = hi.to_numpy()
        if len(cust):
            seen_s = pd.Series(ev.ts.astype(np.float64)).groupby(cust, sort=False).max()
            seen[seen_s.index.to_numpy()] = seen_s.to_numpy()
        # Orders: distinct (customer, day) pairs among purchases.
        day = ev.ts[buy] // int(SECONDS_PER_DAY)
        pairs = np.unique(b_cust * (1 << 24) + (day - (day.min() if len(day) else 0)))
        pair_cust = pairs >> 24
        pair_day = (pairs & ((1 << 24) - 1)) + (day.min() if len(day) else 0)
        now_day = math.floor(now_s / SECONDS_PER_DAY)
        out: dict[str, Any] = {"customer_id": self.customer_ids}
        out["first_purchase"] = first
        out["last_purchase"] = last
        out["last_seen"] = seen
        out["frequency"] = np.bincount(pair_cust, minlength=n).astype(np.float64)
        out["n_purchases"] = count(buy)
        out["n_returns"] = count(ret)
        size_ret = ret & ((ev.reason == R_TOO_SMALL) | (ev.reason == R_TOO_LARGE))
        out["n_size_returns"] = count(size_ret)
        paid = np.nan_to_num(ev.price)
        spend = count(buy, paid) - count(ret, paid)
        out["monetary"] = np.maximum(spend, 0.0)
        recent90 = age < 90 * SECONDS_PER_DAY
        out["spend_90"] = np.maximum(count(buy & recent90, paid) - count(ret & recent90, paid), 0)
        for k in (30, 90, 180, 365):
            in_window = pair_day > now_day - k
            out[f"orders_{k}"] = np.bincount(pair_cust[in_window], minlength=n).astype(np.float64)
        looked = (ev.kind == K_VIEW) | (ev.kind == K_CLICK)
        carted = (ev.kind == K_CART) | (ev.kind == K_WISH)
        recent30 = age < 30 * SECONDS_PER_DAY
        out["views_30"] = count(looked & recent30)
        out["views_90"] = count(looked & recent90)
        out["carts_30"] = count(carted & recent30)
        out["events_30"] = count(recent30)
        out["events_90"] = count(recent90)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["online_share"] = np.nan_to_num(count(buy & ev.online) / out["n_purchases"])
        return pd.DataFrame(out)


def customer_activity(dataset: Dataset, as_of: datetime) -> pd.DataFrame:
    """:meth:`EventTable.activity` of ``dataset`` (one-off convenience)."""
    return EventTable.from_dataset(dataset).activity(as_of)


@runtime_checkable
class ChurnScorer(Protocol):
    """What :func:`compute_profiles` needs of a churn model (``models.churn.ChurnModel``)."""

    @property
    def horizon_days(self) -> int: ...

    def predict_activity(self, activity: pd.DataFrame, as_of: datetime) -> npt.NDArray[np.float64]:
        """Probability of no purchase in the next ``horizon_days`` per row of ``activity``."""
        ...
