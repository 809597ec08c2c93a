"""The two holdout protocols, cut into :class:`Fold` s with their validation periods.

``last_day`` (H&M next basket, :func:`last_day_folds`): every customer's last purchase day is
held out, its purchases are the truth and the start of that day the customer's *cutoff*;
customers are grouped by cutoff into ``config.folds`` folds, and a fold's models train on the
events before its earliest cutoff (so a customer late in a fold is served by models up to one
fold-width old, as a service between retrainings is). ``time_split`` (:func:`time_split_folds`, sparse data such as
Rent the Runway): one global cutoff ``test_days`` before the end. :func:`validation_holdout` carves
the period a fold's blend weights are fitted on from the end of its training period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.schema import InteractionCols
from feature_store.timeutils import SECONDS_PER_DAY
from models.base import IntArray
from training.blend import Holdout, carve_validation
from training.data import encode
from training.evaluate.config import EvalConfig
from training.evaluate.prepared import Prepared
from training.split import last_day_holdout

__all__ = [
    "Fold",
    "every_day_holdout",
    "last_day_folds",
    "time_split_folds",
    "validation_holdout",
    "window_holdout",
]


@dataclass(frozen=True)
class Fold:
    """One cutoff fold: its test customers and the validation carved before its training end."""

    index: int
    test: Holdout
    validation: Holdout | None


def _to_seconds(values: Any) -> npt.NDArray[np.int64]:
    stamps = pd.to_datetime(pd.Series(values), utc=True).dt.tz_convert(None)
    return np.asarray(stamps.to_numpy().astype("datetime64[s]").astype(np.int64), dtype=np.int64)


def last_day_folds(prepared: Prepared, config: EvalConfig) -> list[Fold]:
    """The ``last_day`` protocol (via :func:`training.split.last_day_holdout`) in cutoff folds."""
    frame = prepared.frame
    _, test_frame, cutoffs = last_day_holdout(frame, type_col=InteractionCols.TYPE)
    users = encode(pd.Series(cutoffs.index.astype(str)), prepared.maps.customers)
    cut = _to_seconds(cutoffs.to_numpy())
    test_users = encode(test_frame[InteractionCols.CUSTOMER_ID], prepared.maps.customers)
    test_items = encode(test_frame[InteractionCols.ITEM_ID], prepared.maps.items)
    valid = (test_users >= 0) & (test_items >= 0)
    truth_frame = pd.DataFrame({"u": test_users[valid], "i": test_items[valid]})
    truth: dict[int, IntArray] = {
        int(str(u)): np.unique(group.to_numpy()) for u, group in truth_frame.groupby("u")["i"]
    }
    keep = users >= 0
    users, cut = users[keep], cut[keep]
    users, cut = _sample(users, cut, config)
    order = np.lexsort((users, cut))
    users, cut = users[order], cut[order]
    folds: list[Fold] = []
    for f, part in enumerate(np.array_split(np.arange(len(users)), min(config.folds, len(users)))):
        if len(part) == 0:
            continue
        fold_users, fold_cut = users[part], cut[part]
        train_end = int(fold_cut.min())
        truths = [
            np.asarray(truth.get(int(u), np.empty(0, np.int64)), dtype=np.int64) for u in fold_users
        ]
        test = Holdout(train_end, fold_users, fold_cut, truths)
        span_days = int((fold_cut.max() - fold_cut.min()) // SECONDS_PER_DAY) + 1
        days = min(max(span_days, config.min_validation_days), config.max_validation_days)
        folds.append(Fold(f, test, validation_holdout(prepared, train_end, days)))
    return folds


def time_split_folds(prepared: Prepared, config: EvalConfig) -> list[Fold]:
    """The ``time_split`` protocol: one fold, test window = the last ``test_days`` days."""
    data = prepared.data
    end_day = (int(data.timestamps.max()) // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
    start = end_day - config.test_days * SECONDS_PER_DAY
    test = window_holdout(prepared, start, end_day)
    users, cut = _sample(test.users, test.cutoffs, config)
    chosen = {int(u): r for r, u in enumerate(test.users)}
    truths = [test.truths[chosen[int(u)]] for u in users]
    test = Holdout(start, users, cut, truths)
    validation = window_holdout(prepared, start - config.test_days * SECONDS_PER_DAY, start)
    return [Fold(0, test, validation)]


def window_holdout(prepared: Prepared, start: int, end: int) -> Holdout:
    """Customers who bought in ``[start, end)``: truth = those items, cutoff = ``start``."""
    data = prepared.data
    mask = prepared.is_purchase() & (data.timestamps >= start) & (data.timestamps < end)
    u, i = data.user_idx[mask], data.item_idx[mask]
    users = np.unique(u)
    order = np.lexsort((i, u))
    u, i = u[order], i[order]
    bounds = np.searchsorted(u, np.concatenate([users, [np.iinfo(np.int64).max]]))
    truths = [np.unique(i[bounds[r] : bounds[r + 1]]) for r in range(len(users))]
    return Holdout(int(start), users.astype(np.int64), np.full(len(users), int(start)), truths)


def every_day_holdout(prepared: Prepared, validation: Holdout, end: int) -> Holdout:
    """Every purchase day in ``[validation.train_end, end)`` of every customer, one row each
    (truth: that day's purchases, cutoff: the day's start), customer then day order: the learned
    ranker's training window. It holds ``validation``'s rows (each customer's last day) and the
    earlier days of the same period, all dated before ``end`` (the fold's training end)."""
    data = prepared.data
    start = int(validation.train_end)
    mask = prepared.is_purchase() & (data.timestamps >= start) & (data.timestamps < int(end))
    u, i = data.user_idx[mask], data.item_idx[mask]
    d = (data.timestamps[mask] // SECONDS_PER_DAY) * SECONDS_PER_DAY
    order = np.lexsort((i, d, u))
    u, i, d = u[order], i[order], d[order]
    new = np.r_[True, (u[1:] != u[:-1]) | (d[1:] != d[:-1])] if len(u) else np.empty(0, bool)
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(u)]
    truths = [np.unique(i[a:b]) for a, b in zip(starts, ends, strict=True)]
    return Holdout(start, u[starts].astype(np.int64), d[starts].astype(np.int64), truths)


def _sample(
    users: IntArray, cutoffs: npt.NDArray[np.int64], config: EvalConfig
) -> tuple[IntArray, npt.NDArray[np.int64]]:
    if config.max_customers is None or len(users) <= config.max_customers:
        return users, cutoffs
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(users), size=config.max_customers, replace=False))
    return users[chosen], cutoffs[chosen]


def validation_holdout(prepared: Prepared, train_end: int, days: int) -> Holdout | None:
    """The ``days`` before ``train_end`` held out by the ``last_day`` protocol
    (:func:`training.blend.carve_validation`); None when no event precedes ``train_end``."""
    data = prepared.data
    if not (data.timestamps < train_end).any():
        return None
    return carve_validation(
        data.user_idx,
        data.item_idx,
        data.timestamps,
        prepared.is_purchase(),
        train_end=train_end,
        days=days,
    )
