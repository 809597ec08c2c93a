"""Offline ranking metrics, with the Kaggle H&M definitions, and a bootstrap confidence interval.

Conventions, for every function here:

* ``actual`` is the set of relevant item indices of one customer (duplicates count once);
  ``predicted`` is that customer's ranked list, best first. Repeated predictions count once, at
  their first position (Kaggle's ``apk``). Padding such as ``-1`` in a batched
  :meth:`~models.base.Recommender.recommend` row never matches an item, so it is harmless.
* Per-customer functions (:func:`average_precision_at_k`, :func:`user_recall_at_k`,
  :func:`user_ndcg_at_k`) return ``0.0`` when ``actual`` is empty.
* Aggregates (:func:`map_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k`, :func:`per_user`) **skip**
  customers whose ``actual`` is empty — they cannot be evaluated, as in the H&M competition, where
  only customers who bought something in the test week are scored — and raise ``ValueError`` when
  no customer is left.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

ItemList = Sequence[int] | npt.NDArray[np.integer[Any]]
ItemSet = Collection[int] | npt.NDArray[np.integer[Any]]
UserMetric = Callable[[ItemSet, ItemList, int], float]

DEFAULT_K = 12


def _check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _as_set(actual: ItemSet) -> set[int]:
    if isinstance(actual, np.ndarray):
        return set(map(int, actual.ravel().tolist()))
    return {int(a) for a in actual}


def _head(predicted: ItemList, k: int) -> list[int]:
    if isinstance(predicted, np.ndarray):
        return list(map(int, predicted.ravel()[:k].tolist()))
    return [int(p) for p in islice(predicted, k)]


def average_precision_at_k(actual: ItemSet, predicted: ItemList, k: int = DEFAULT_K) -> float:
    """AP@k as in Kaggle's H&M competition (``ml_metrics.apk``).

    ``Σ_{i ≤ k} P@i · rel(i) / min(|actual|, k)``; a repeated prediction is not relevant again.
    """
    k = _check_k(k)
    relevant = _as_set(actual)
    if not relevant:
        return 0.0
    seen: set[int] = set()
    hits = 0
    score = 0.0
    for position, item in enumerate(_head(predicted, k), start=1):
        if item in relevant and item not in seen:
            hits += 1
            score += hits / position
        seen.add(item)
    return score / min(len(relevant), k)


def user_recall_at_k(actual: ItemSet, predicted: ItemList, k: int = DEFAULT_K) -> float:
    """Distinct relevant items in the top ``k`` divided by ``|actual|``."""
    k = _check_k(k)
    relevant = _as_set(actual)
    if not relevant:
        return 0.0
    return len(relevant.intersection(_head(predicted, k))) / len(relevant)


def user_ndcg_at_k(actual: ItemSet, predicted: ItemList, k: int = DEFAULT_K) -> float:
    """NDCG@k with binary relevance: ``DCG / IDCG``, ``DCG = Σ rel(i) / log2(i + 1)``."""
    k = _check_k(k)
    relevant = _as_set(actual)
    if not relevant:
        return 0.0
    seen: set[int] = set()
    dcg = 0.0
    for position, item in enumerate(_head(predicted, k), start=1):
        if item in relevant and item not in seen:
            dcg += 1.0 / math.log2(position + 1)
        seen.add(item)
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def per_user(
    metric: UserMetric,
    actuals: Sequence[ItemSet],
    predictions: Sequence[ItemList],
    k: int = DEFAULT_K,
) -> npt.NDArray[np.float64]:
    """``metric(actual, predicted, k)`` of every customer whose ``actual`` is not empty (the input
    to :func:`bootstrap_ci`)."""
    k = _check_k(k)
    if len(actuals) != len(predictions):
        raise ValueError(f"{len(actuals)} actual lists but {len(predictions)} prediction lists")
    values = [
        metric(actual, predicted, k)
        for actual, predicted in zip(actuals, predictions, strict=True)
        if len(actual)
    ]
    if not values:
        raise ValueError("no customer has a non-empty actual list: nothing to evaluate")
    return np.asarray(values, dtype=np.float64)


def map_at_k(
    actuals: Sequence[ItemSet], predictions: Sequence[ItemList], k: int = DEFAULT_K
) -> float:
    """Mean :func:`average_precision_at_k` over customers with a non-empty ``actual``."""
    return float(per_user(average_precision_at_k, actuals, predictions, k).mean())


def recall_at_k(
    actuals: Sequence[ItemSet], predictions: Sequence[ItemList], k: int = DEFAULT_K
) -> float:
    """Mean :func:`user_recall_at_k` over customers with a non-empty ``actual``."""
    return float(per_user(user_recall_at_k, actuals, predictions, k).mean())


def ndcg_at_k(
    actuals: Sequence[ItemSet], predictions: Sequence[ItemList], k: int = DEFAULT_K
) -> float:
    """Mean :func:`user_ndcg_at_k` over customers with a non-empty ``actual``."""
    return float(per_user(user_ndcg_at_k, actuals, predictions, k).mean())


def catalog_coverage(predictions: Iterable[ItemList], n_items: int, k: int | None = None) -> float:
    """Share of the catalog's ``n_items`` items that appear in at least one prediction list (only
    the first ``k`` of each when ``k`` is given; indices outside ``0..n_items-1`` are ignored)."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if k is not None:
        k = _check_k(k)
    seen = np.zeros(n_items, dtype=bool)
    for predicted in predictions:
        items = np.asarray(predicted).reshape(-1)
        if k is not None:
            items = items[:k]
        if items.size:
            items = items.astype(np.int64)
            seen[items[(items >= 0) & (items < n_items)]] = True
    return float(seen.sum() / n_items)


def bootstrap_interval(
    statistic: Callable[..., Any],
    *samples: npt.ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    vectorized: bool = True,
) -> tuple[float, float]:
    """The one bootstrap of Lookbook: a percentile interval of ``statistic(*samples)``.

    ``samples`` are per-customer values of equal length, resampled together (paired): customers
    are drawn with replacement ``n_resamples`` times (seeded). With ``vectorized`` the statistic
    takes ``axis=-1`` and reduces along it (``np.mean`` does); otherwise it is called once per
    resample. Resamples whose statistic is not finite are left out of the quantiles; NaN
    bounds when none is finite. Built on :func:`scipy.stats.bootstrap`.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arrays = [np.asarray(sample) for sample in samples]
    if not arrays or arrays[0].size == 0:
        raise ValueError("the bootstrap needs at least one value")
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("paired samples need the same length")
    with np.errstate(invalid="ignore"):  # non-finite draws are dropped below
        result = stats.bootstrap(
            tuple(arrays),
            statistic,
            n_resamples=n_resamples,
            paired=True,
            vectorized=vectorized,
            confidence_level=confidence,
            method="percentile",
            batch=max(1, 4_000_000 // arrays[0].size),
            rng=np.random.default_rng(seed),
        )
    draws = np.asarray(result.bootstrap_distribution, dtype=np.float64).reshape(-1)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_ci(
    per_user_values: npt.ArrayLike, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``per_user_values`` and its percentile-bootstrap
    ``1 - alpha`` confidence interval (customers resampled with replacement, seeded)."""
    values = np.asarray(per_user_values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_ci values must be finite")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    low, high = bootstrap_interval(
        np.mean, values, n_resamples=n_boot, confidence=1 - alpha, seed=seed
    )
    return float(values.mean()), low, high


def _ratio_of_means(
    numerator: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64], axis: int = -1
) -> npt.NDArray[np.float64]:
    """``mean(numerator) / mean(denominator)`` along ``axis``; ``inf`` where the denominator's
    mean is not positive."""
    den = denominator.mean(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(den > 0, numerator.mean(axis=axis) / den, np.inf))


def bootstrap_ratio_ci(
    numerator: npt.ArrayLike,
    denominator: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(ratio of means, low, high)``: percentile bootstrap of ``mean(num) / mean(den)`` over the
    same resampled customers (paired, :func:`bootstrap_interval`).

    The ratio is ``inf`` when the denominator's mean is 0; resamples whose denominator mean is 0
    are left out of the interval, which is ``(inf, inf)`` when every resample's is.
    """
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape or num.size == 0:
        raise ValueError("numerator and denominator need the same non-zero length")
    ratio = float(num.mean() / den.mean()) if den.mean() > 0 else math.inf
    low, high = bootstrap_interval(
        _ratio_of_means, num, den, n_resamples=n_boot, confidence=1 - alpha, seed=seed
    )
    if math.isnan(low):
        return ratio, math.inf, math.inf
    return ratio, low, high
