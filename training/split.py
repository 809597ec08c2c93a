"""Time-ordered train/test splits of an interactions frame.

Two protocols:

* :func:`time_split` — one global cutoff: the last ``test_days`` days of the data are the test
  period, everything before is training. No information from the test period leaks into training,
  for any customer or item; it is the split of ``lookbook train``.
* :func:`last_day_holdout` — per customer: the items bought on the customer's last purchase day
  are the test set, and the training set is every interaction strictly before that customer's
  last purchase day (the H&M "next basket" protocol of docs/DESIGN). Customers' cutoffs differ, so
  training rows of one customer may be later than another's test day (e.g. item popularity may
  see a later period): the usual price of this protocol.

Timestamps may be ``datetime64`` (timezone-aware or naive) or numbers of seconds since the epoch.
Inputs are checked here, at the boundary, with ``ValueError`` messages that name the problem.
The returned frames are row subsets of the input with its index and columns unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store.schema import InteractionCols, InteractionType
from feature_store.timeutils import SECONDS_PER_DAY


def _timestamps(frame: pd.DataFrame, timestamp_col: str) -> pd.Series:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if timestamp_col not in frame.columns:
        raise ValueError(
            f"no timestamp column {timestamp_col!r}; the frame has {list(frame.columns)}"
        )
    if len(frame) == 0:
        raise ValueError("cannot split an empty frame")
    ts = frame[timestamp_col]
    if not (pd.api.types.is_datetime64_any_dtype(ts) or pd.api.types.is_numeric_dtype(ts)):
        raise ValueError(
            f"column {timestamp_col!r} has dtype {ts.dtype}: expected datetime64 or seconds since "
            "the epoch (convert strings with pandas.to_datetime first)"
        )
    if pd.api.types.is_bool_dtype(ts):
        raise ValueError(f"column {timestamp_col!r} holds booleans, not timestamps")
    missing = int(ts.isna().sum())
    if missing:
        raise ValueError(f"column {timestamp_col!r} has {missing} missing timestamps")
    return ts


def _days(ts: pd.Series, days: int) -> pd.Timedelta | int:
    if pd.api.types.is_datetime64_any_dtype(ts):
        return pd.Timedelta(days=days)
    return days * SECONDS_PER_DAY


def _day_start(ts: pd.Series) -> pd.Series:
    """The start of each timestamp's calendar day (UTC for epoch seconds)."""
    if pd.api.types.is_datetime64_any_dtype(ts):
        return ts.dt.floor("D")
    return (ts // SECONDS_PER_DAY) * SECONDS_PER_DAY


def time_split(
    frame: pd.DataFrame, *, test_days: int, timestamp_col: str = InteractionCols.TIMESTAMP
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` around one cutoff ``max(timestamp) − test_days`` days.

    ``test`` holds the rows after the cutoff, ``train`` the rows at or before it: with
    day-resolution dates, ``test_days=7`` puts exactly the last seven dates in ``test``.
    Raises ``ValueError`` when ``test_days`` is not a positive integer or leaves ``train`` empty.
    """
    if isinstance(test_days, bool) or not isinstance(test_days, int | np.integer) or test_days < 1:
        raise ValueError(f"test_days must be a positive integer, got {test_days!r}")
    ts = _timestamps(frame, timestamp_col)
    cutoff = ts.max() - _days(ts, int(test_days))
    in_test = (ts > cutoff).to_numpy()
    if in_test.all():
        raise ValueError(
            f"test_days={test_days} covers all the data ({ts.min()} .. {ts.max()}): "
            "nothing is left to train on"
        )
    return frame[~in_test], frame[in_test]


def last_day_holdout(
    frame: pd.DataFrame,
    customer_col: str = InteractionCols.CUSTOMER_ID,
    timestamp_col: str = InteractionCols.TIMESTAMP,
    *,
    type_col: str | None = None,
    purchase_type: str = InteractionType.PURCHASE.value,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``(train, test, cutoffs)``: each customer's last purchase day held out.

    A *purchase* is every row when ``type_col`` is ``None`` (a transactions table such as H&M's),
    else a row whose ``type_col`` equals ``purchase_type``. For each customer with a purchase,
    ``cutoffs[customer]`` is the start of the calendar day of their last purchase; ``test`` holds
    their purchase rows on that day and ``train`` their rows (of any type) strictly before it.
    Their other rows on or after the cutoff (say, views on the last day) are in neither, so
    nothing from the held-out day leaks into training. Customers without any purchase are not
    evaluated: all their rows go to ``train``. A customer whose purchases all fall on one day has
    no training rows (a cold-start case the evaluation should report separately).

    ``cutoffs`` is a Series named ``"cutoff"`` indexed by customer id.
    """
    ts = _timestamps(frame, timestamp_col)
    if customer_col not in frame.columns:
        raise ValueError(
            f"no customer column {customer_col!r}; the frame has {list(frame.columns)}"
        )
    customers = frame[customer_col]
    missing = int(customers.isna().sum())
    if missing:
        raise ValueError(f"column {customer_col!r} has {missing} missing customer ids")
    if type_col is None:
        is_purchase = np.ones(len(frame), dtype=bool)
    else:
        if type_col not in frame.columns:
            raise ValueError(f"no type column {type_col!r}; the frame has {list(frame.columns)}")
        is_purchase = (frame[type_col].astype(str) == purchase_type).to_numpy()
        if not is_purchase.any():
            raise ValueError(f"no row has {type_col} == {purchase_type!r}: nothing to hold out")
    day = _day_start(ts)
    purchase_day = day.where(is_purchase)
    last_day = purchase_day.groupby(customers, observed=True, sort=False).transform("max")
    has_cutoff = last_day.notna().to_numpy()
    same_day = (day == last_day).to_numpy() & has_cutoff
    before = (day < last_day).to_numpy() & has_cutoff
    in_test = is_purchase & same_day
    in_train = before | ~has_cutoff
    cutoffs = purchase_day[is_purchase].groupby(customers[is_purchase], observed=True).max()
    cutoffs.name = "cutoff"
    return frame[in_train], frame[in_test], cutoffs
