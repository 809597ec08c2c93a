"""Ranking metrics on edge cases with known values (Kaggle's ml_metrics examples for AP/MAP)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    average_precision_at_k,
    bootstrap_ci,
    bootstrap_ratio_ci,
    catalog_coverage,
    map_at_k,
    ndcg_at_k,
    per_user,
    recall_at_k,
    user_ndcg_at_k,
    user_recall_at_k,
)


def test_average_precision_kaggle_examples() -> None:
    # the test cases of benhamner/Metrics (ml_metrics), whose apk/mapk Kaggle's H&M MAP@12 uses
    assert average_precision_at_k(range(1, 6), [6, 4, 7, 1, 2], 2) == pytest.approx(0.25)
    assert average_precision_at_k(range(1, 6), [1, 1, 1, 1, 1], 5) == pytest.approx(0.2)
    predicted = list(range(1, 21)) + list(range(200, 600))
    assert average_precision_at_k(range(1, 100), predicted, 20) == pytest.approx(1.0)
    assert average_precision_at_k([1, 2, 3], [3, 9, 1], 12) == pytest.approx((1 + 2 / 3) / 3)


def test_map_kaggle_examples() -> None:
    assert map_at_k([range(1, 5)], [range(1, 5)], 3) == pytest.approx(1.0)
    actual = [[1, 3, 4], [1, 2, 4], [1, 3]]
    assert map_at_k(actual, [range(1, 6)] * 3, 3) == pytest.approx(0.685185185185185)
    assert map_at_k(
        [range(1, 6), range(1, 6)], [[6, 4, 7, 1, 2], [1, 1, 1, 1, 1]], 5
    ) == pytest.approx(0.26)
    predictions = [list(range(1, 6)), [1, 1, 1], [1, 2, 1]]
    assert map_at_k([[1, 3], [1, 2, 3], [1, 2, 3]], predictions, 3) == pytest.approx(11 / 18)


def test_perfect_predictions_score_one() -> None:
    x = [4, 8, 15, 16, 23, 42]
    assert user_recall_at_k(x, x) == 1.0
    assert average_precision_at_k(x, x) == 1.0
    assert user_ndcg_at_k(x, x) == pytest.approx(1.0)
    assert recall_at_k([x, x[:2]], [x, x[:2]]) == 1.0
    assert ndcg_at_k([x], [x[::-1]]) == pytest.approx(1.0)  # every slot relevant: order is moot


def test_recall_counts_distinct_hits_over_all_relevant_items() -> None:
    assert user_recall_at_k([1, 2, 3, 4], [1, 1, 9, 2], 12) == 0.5
    assert user_recall_at_k([1, 2, 3], [9, 8, 1, 2], 2) == 0.0
    many = list(range(20))
    assert user_recall_at_k(many, many, 12) == pytest.approx(12 / 20)  # capped by k
    assert user_recall_at_k({5, 6}, np.array([5]), 12) == 0.5  # actual is a set


def test_ndcg_known_values() -> None:
    assert user_ndcg_at_k([2], [1, 2]) == pytest.approx(1 / math.log2(3))
    idcg = 1 + 1 / math.log2(3)
    assert user_ndcg_at_k([1, 2], [1, 9, 2]) == pytest.approx((1 + 1 / math.log2(4)) / idcg)
    assert user_ndcg_at_k([1], [7, 1, 1]) == pytest.approx(1 / math.log2(3))


def test_padding_and_duplicates_are_harmless() -> None:
    padded = np.array([-1, 1, -1, -1])
    assert average_precision_at_k([1], padded) == pytest.approx(0.5)
    assert user_recall_at_k([1, 2], padded) == 0.5


def test_empty_actual_scores_zero_and_is_skipped_by_aggregates() -> None:
    assert average_precision_at_k([], [1, 2]) == 0.0
    assert user_recall_at_k([], [1, 2]) == 0.0
    assert user_ndcg_at_k([], [1, 2]) == 0.0
    assert map_at_k([[], [1]], [[1], [1]]) == 1.0
    assert recall_at_k([[], [1, 2]], [[1], [1]]) == 0.5
    assert per_user(user_recall_at_k, [[], [1, 2], [3]], [[1], [1], [3]]).tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="nothing to evaluate"):
        map_at_k([[], []], [[1], [2]])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="prediction lists"):
        map_at_k([[1]], [[1], [2]])
    with pytest.raises(ValueError, match="k must be"):
        average_precision_at_k([1], [1], k=0)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k([[1]], [[1]], k=True)


def test_catalog_coverage() -> None:
    assert catalog_coverage([[0, 1], [1, 2]], 4) == 0.75
    assert catalog_coverage(np.array([[0, -1], [3, -1]]), 4) == 0.5
    assert catalog_coverage([[0, 1], [1, 2]], 4, k=1) == 0.5
    assert catalog_coverage([], 4) == 0.0
    with pytest.raises(ValueError):
        catalog_coverage([[0]], 0)


def test_bootstrap_ci() -> None:
    assert bootstrap_ci([0.25] * 10) == (0.25, 0.25, 0.25)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2, size=400).astype(float)
    mean, low, high = bootstrap_ci(values, n_boot=2000, seed=1)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    half_width = 1.96 * math.sqrt(mean * (1 - mean) / len(values))
    assert high - low == pytest.approx(2 * half_width, rel=0.15)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    _, narrow_low, narrow_high = bootstrap_ci(values, alpha=0.5)
    assert high - low > narrow_high - narrow_low
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0], alpha=1.0)
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, np.nan])


def test_ratio_ci() -> None:
    values = np.linspace(0.0, 1.0, 101)
    assert bootstrap_ratio_ci(values, values, n_boot=100) == (1.0, 1.0, 1.0)
    mean, low, high = bootstrap_ratio_ci(2 * values, values, n_boot=100)
    assert mean == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    noisy = rng.random(500)
    mean, low, high = bootstrap_ratio_ci(noisy * 1.5, rng.random(500), n_boot=300)
    assert low < mean < high


def test_ratio_ci_over_a_zero_denominator() -> None:
    assert bootstrap_ratio_ci([0.5, 0.25], [0.0, 0.0], n_boot=50) == (math.inf, math.inf, math.inf)
    # one customer of five carries the denominator: resamples without them are left out
    mean, low, high = bootstrap_ratio_ci([1.0] * 5, [1.0, 0, 0, 0, 0], n_boot=200, seed=1)
    assert mean == 5.0 and 1.0 <= low <= high <= 5.0 and math.isfinite(high)
    with pytest.raises(ValueError, match="same non-zero length"):
        bootstrap_ratio_ci([1.0, 2.0], [1.0])
