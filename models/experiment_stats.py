"""The statistics of an A/B experiment from per-variant counters (no per-event data needed).

Rates (click-through, add-to-cart, conversion: events per impression) are binomial proportions:

* :func:`wilson_interval` — the Wilson score interval of one proportion (well behaved near 0,
  where click rates live, unlike the Wald interval);
* :func:`compare_proportions` — a variant against control: the difference with its unpooled
  (Wald) 95 % interval, and the two-sided p-value of the pooled two-proportion z-test (the same
  p-value as a chi-square test of the 2×2 table without continuity correction).

Revenue per 1,000 impressions is a mean of per-impression revenue (almost all zeros), from the
sum and the sum of squares of attributed revenue:

* :func:`mean_interval` — the normal interval of the mean;
* :func:`compare_means` — Welch's unequal-variance t-test and its Welch–Satterthwaite interval
  for the difference (with thousands of impressions the t and normal answers agree).

All intervals are two-sided at ``confidence`` (default 95 %). Undefined quantities (no
impressions) are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

__all__ = [
    "Comparison",
    "Estimate",
    "compare_means",
    "compare_proportions",
    "mean_interval",
    "wilson_interval",
]

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its interval (all None when undefined)."""

    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant minus control: the difference, its interval and the two-sided p-value."""

    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None


_NONE = Estimate(None, None, None)
_NO_COMPARISON = Comparison(None, None, None, None)


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """The proportion ``successes / trials`` with its Wilson score interval."""
    if trials <= 0:
        return _NONE
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials], got {successes} of {trials}")
    z = _z(confidence)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def compare_proportions(
    successes: int,
    trials: int,
    control_successes: int,
    control_trials: int,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Variant rate minus control rate, its Wald interval and the pooled z-test's p-value."""
    if trials <= 0 or control_trials <= 0:
        return _NO_COMPARISON
    p1, p0 = successes / trials, control_successes / control_trials
    difference = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / trials + p0 * (1 - p0) / control_trials)
    z = _z(confidence)
    pooled = (successes + control_successes) / (trials + control_trials)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / trials + 1 / control_trials))
    # both rates 0 or both 1: no evidence of a difference
    p_value = 1.0 if se_pooled == 0.0 else float(2.0 * stats.norm.sf(abs(difference) / se_pooled))
    return Comparison(difference, difference - z * se, difference + z * se, p_value)


def _mean_var(total: float, squares: float, n: int) -> tuple[float, float]:
    """Mean and sample variance from a sum and a sum of squares (variance 0 for one value)."""
    mean = total / n
    if n < 2:
        return mean, 0.0
    return mean, max(0.0, (squares - n * mean * mean) / (n - 1))


def mean_interval(
    total: float, squares: float, n: int, *, scale: float = 1.0, confidence: float = CONFIDENCE
) -> Estimate:
    """``scale`` × the mean of ``n`` values (given by their sum and sum of squares), with the
    normal interval ``mean ± z·s/√n``."""
    if n <= 0:
        return _NONE
    mean, var = _mean_var(total, squares, n)
    half = _z(confidence) * math.sqrt(var / n)
    return Estimate(scale * mean, scale * (mean - half), scale * (mean + half))


def compare_means(
    total: float,
    squares: float,
    n: int,
    control_total: float,
    control_squares: float,
    control_n: int,
    *,
    scale: float = 1.0,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """``scale`` × (variant mean − control mean) with Welch's t-test p-value and interval."""
    if n < 2 or control_n < 2:
        return _NO_COMPARISON
    m1, v1 = _mean_var(total, squares, n)
    m0, v0 = _mean_var(control_total, control_squares, control_n)
    difference = m1 - m0
    a, b = v1 / n, v0 / control_n
    if a + b == 0.0:  # no spread at all: equal means are no evidence, unequal ones are certain
        p_value = 1.0 if difference == 0.0 else 0.0
        return Comparison(scale * difference, scale * difference, scale * difference, p_value)
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n - 1) + b * b / (control_n - 1))
    t = difference / se
    p_value = float(2.0 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    return Comparison(
        scale * difference, scale * (difference - half), scale * (difference + half), p_value
    )
