"""Measuring the churn model: AUC at a held-out cutoff beside the recency-only baseline.

``evaluate(model, events, cutoff, n_boot=1000)`` scores the customers who had purchased by
``cutoff`` (features up to it, labels from the model's horizon after it) and returns the AUC of the
model and of days-since-last-purchase, with paired bootstrap intervals of each and of their
difference (:func:`training.metrics.bootstrap_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from feature_store.dataset import Dataset
from feature_store.profiles import EventTable
from models.churn import ChurnModel, event_table, snapshot
from training.metrics import bootstrap_interval

__all__ = ["AucEstimate", "ChurnEvaluation", "auc", "bootstrap_auc", "evaluate"]


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count half); NaN with one class only."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc_along(
    labels: npt.NDArray[np.generic], scores: npt.NDArray[np.generic], axis: int = -1
) -> npt.NDArray[np.float64]:
    """:func:`auc` of every row (along ``axis``) of resampled labels and scores at once."""
    y = np.moveaxis(np.asarray(labels), axis, -1).astype(bool)
    s = np.moveaxis(np.asarray(scores, dtype=np.float64), axis, -1)
    ranks = rankdata(s, axis=-1)
    n_pos = y.sum(axis=-1).astype(np.float64)
    n_neg = y.shape[-1] - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ((ranks * y).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos == 0) | (n_neg == 0), np.nan, out)


def _auc_gain(
    labels: npt.NDArray[np.generic],
    scores: npt.NDArray[np.generic],
    baseline: npt.NDArray[np.generic],
    axis: int = -1,
) -> npt.NDArray[np.float64]:
    return _auc_along(labels, scores, axis) - _auc_along(labels, baseline, axis)


@dataclass(frozen=True)
class AucEstimate:
    auc: float
    low: float
    high: float


def bootstrap_auc(
    labels: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[dict[str, AucEstimate], dict[str, AucEstimate]]:
    """AUC of each score with a percentile bootstrap CI, and of each score's AUC minus the first
    score's. Customers are resampled with replacement, the same resamples for every score (one
    seed and sample size give :func:`~training.metrics.bootstrap_interval` the same draws), so
    the differences are paired. ``n_boot=0``: point estimates only (NaN bounds)."""
    y = np.asarray(labels).astype(bool)
    names = list(scores)
    values = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    point = {k: auc(y, values[k]) for k in names}
    first = names[0]

    def interval(
        statistic: Callable[..., Any], *samples: npt.NDArray[np.generic]
    ) -> tuple[float, float]:
        if n_boot == 0:
            return math.nan, math.nan
        return bootstrap_interval(
            statistic,
            y,
            *samples,
            n_resamples=n_boot,
            confidence=level,
            seed=seed,
        )

    single = {k: AucEstimate(point[k], *interval(_auc_along, values[k])) for k in names}
    diffs = {
        k: AucEstimate(point[k] - point[first], *interval(_auc_gain, values[k], values[first]))
        for k in names[1:]
    }
    return single, diffs


@dataclass(frozen=True)
class ChurnEvaluation:
    """AUC at one evaluation cutoff, the model beside the recency-only baseline."""

    cutoff: datetime
    customers: int
    positive_rate: float
    model: AucEstimate
    recency: AucEstimate
    model_minus_recency: AucEstimate


def evaluate(
    model: ChurnModel,
    data: Dataset | EventTable,
    cutoff: datetime,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> ChurnEvaluation:
    """AUC of ``model`` at ``cutoff`` (features up to it, labels from the horizon after it) vs
    the recency-only baseline (days since the last purchase as the score)."""
    snap = snapshot(event_table(data), cutoff, model.horizon_days)
    risk = model.predict_features(snap.features)
    single, diffs = bootstrap_auc(
        snap.labels, {"recency": snap.recency_days, "model": risk}, n_boot=n_boot, seed=seed
    )
    return ChurnEvaluation(
        cutoff=snap.cutoff,
        customers=len(snap.labels),
        positive_rate=float(snap.labels.mean()) if len(snap.labels) else math.nan,
        model=single["model"],
        recency=single["recency"],
        model_minus_recency=diffs["model"],
    )
