"""Blend: reciprocal-rank fusion (one function for the trainer and the service), weights fitted
on validation customers only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pytest

import app.pipeline
import models.bundle
import training.blend
from app.pipeline import Candidate, Context, Pipeline
from app.runtime import LoadedBundle
from models.bundle import DEFAULT_RRF_K as RRF_K
from models.bundle import DEFAULT_WEIGHTS, SOURCES, BlendWeights
from training.blend import (
    RRF_K_GRID,
    SECONDS_PER_DAY,
    WEIGHT_GRID,
    carve_validation,
    fit_blend_weights,
    fuse,
)
from training.evaluate import fit_served_blend


def test_fuse_known_answer_and_ties() -> None:
    rankings = {
        "a": np.array([[5, 6, 7, -1]]),
        "b": np.array([[7, 8, -1, -1]]),
    }
    # a=1, b=1, rrf_k=0: 5 -> 1/1, 6 -> 1/2, 7 -> 1/3 + 1/1, 8 -> 1/2
    items, scores = fuse(rankings, BlendWeights(weights={"a": 1.0, "b": 1.0}, rrf_k=0.0), k=5)
    assert items[0].tolist() == [7, 5, 6, 8, -1]  # 6 and 8 tie: the lower index first
    np.testing.assert_allclose(scores[0, :4], [4 / 3, 1.0, 0.5, 0.5])
    items, _ = fuse(rankings, BlendWeights(weights={"a": 1.0, "b": 0.0}, rrf_k=0.0), k=3)
    assert items[0].tolist() == [5, 6, 7]


def test_fuse_matches_the_service_formula() -> None:
    rankings = {"x": np.array([[1, 2, 3]]), "y": np.array([[3, 1, 4]])}
    weights = BlendWeights(weights={"x": 0.7, "y": 1.3}, rrf_k=RRF_K)
    items, scores = fuse(rankings, weights, k=4)
    expected = {
        1: 0.7 / (RRF_K + 1) + 1.3 / (RRF_K + 2),
        2: 0.7 / (RRF_K + 2),
        3: 0.7 / (RRF_K + 3) + 1.3 / (RRF_K + 1),
        4: 1.3 / (RRF_K + 3),
    }
    order = sorted(expected, key=lambda i: (-expected[i], i))
    assert items[0].tolist() == order
    np.testing.assert_allclose(scores[0], [expected[i] for i in order])


def test_fit_prefers_the_informative_source() -> None:
    rng = np.random.default_rng(0)
    n = 200
    truths = [np.array([int(t)]) for t in rng.integers(0, 50, size=n)]
    # the informative source has each customer's answer first; the other is noise without it
    good = np.stack([[t[0], *[x for x in rng.permutation(50) if x != t[0]][:9]] for t in truths])
    noise = np.stack([[x for x in rng.permutation(50) if x != t[0]][:10] for t in truths])
    weights = fit_blend_weights(
        {"repurchase": noise, "als": good}, truths, k=12, initial=BlendWeights()
    )
    assert weights.fitted and weights.validation_customers == n
    assert weights.weights["als"] > weights.weights["repurchase"]
    assert weights.validation_map is not None and weights.default_validation_map is not None
    assert weights.validation_map >= weights.default_validation_map
    assert weights.validation_map > 0.99
    restored = BlendWeights.from_dict(weights.to_dict())
    assert restored == weights


def test_too_few_validation_customers_keep_defaults() -> None:
    truths = [np.array([1]), np.array([2])]
    rankings = {"als": np.array([[1, 2], [2, 1]])}
    weights = fit_blend_weights(rankings, truths, min_customers=30)
    assert not weights.fitted and weights.weights == DEFAULT_WEIGHTS


def test_carve_validation_reads_only_the_training_period() -> None:
    day = SECONDS_PER_DAY
    users = np.array([0, 0, 1, 1, 2, 2, 0])
    items = np.array([1, 2, 3, 4, 5, 6, 9])
    ts = np.array([1, 50, 10, 95, 20, 30, 120]) * day
    purchase = np.ones(len(users), dtype=bool)
    holdout = carve_validation(users, items, ts, purchase, train_end=100 * day, days=60)
    # customer 2's last purchase (day 30) is before the window [40, 100): not held out;
    # customer 0's event on day 120 is after train_end and is never read
    assert holdout.users.tolist() == [0, 1]
    assert holdout.cutoffs.tolist() == [50 * day, 95 * day]
    assert [t.tolist() for t in holdout.truths] == [[2], [4]]
    assert holdout.train_end == 40 * day
    changed = ts.copy()
    changed[-1] = 99 * day  # move a future event into the validation window
    moved = carve_validation(users, items, changed, purchase, train_end=100 * day, days=60)
    assert moved.truths[0].tolist() == [9]
    items_future = items.copy()
    items_future[-1] = 42  # what happens after train_end does not matter
    again = carve_validation(users, items_future, ts, purchase, train_end=100 * day, days=60)
    assert [t.tolist() for t in again.truths] == [[2], [4]]


def test_served_blend_is_fitted_on_the_last_days() -> None:
    from test_evaluate import FAST, synthetic_retailer

    weights = fit_served_blend(
        synthetic_retailer(), FAST.replace(methods=("blend",)), validation_days=40
    )
    assert weights.validation_customers > 0
    assert set(weights.weights) == set(SOURCES)
    assert set(DEFAULT_WEIGHTS) == set(SOURCES)
    assert BlendWeights.from_dict(weights.to_dict()) == weights


@dataclass
class Listed:
    """A pipeline source that proposes fixed items, best first."""

    name: str
    items: list[int]

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        return [
            Candidate(i, 0.0, self.name, f"{self.name} #{r}") for r, i in enumerate(self.items)
        ][:n]


def _served(lists: dict[str, list[int]], blend: BlendWeights, k: int) -> list[Candidate]:
    """What the service's pipeline makes of ``lists`` with ``blend``'s weights (sources in name
    order, as the trainer fuses them)."""
    pipeline = Pipeline(
        sources=[
            (Listed(name, items), blend.weights.get(name, 0.0))
            for name, items in sorted(lists.items())
        ],
        rrf_k=blend.rrf_k,
    )
    return pipeline.run(Context(bundle=cast(LoadedBundle, None), k=k))


def _before(lists: dict[str, list[int]], blend: BlendWeights, k: int) -> list[tuple[Any, ...]]:
    """The service's fusion as it was written before it called models.bundle.rrf_fuse."""
    fused: dict[int, list[Any]] = {}
    for name, items in sorted(lists.items()):
        weight = blend.weights.get(name, 0.0)
        if weight <= 0:
            continue
        for rank, item in enumerate(items):
            contribution = weight / (blend.rrf_k + rank + 1)
            seen = fused.get(item)
            if seen is None:
                fused[item] = [item, contribution, name, f"{name} #{rank}", contribution]
            else:
                seen[1] += contribution
                if contribution > seen[4]:
                    seen[2:] = [name, f"{name} #{rank}", contribution]
    ranked = sorted(fused.values(), key=lambda c: (-c[1], c[0]))[:k]
    return [tuple(c[:4]) for c in ranked]


def test_the_trainer_and_the_service_fuse_with_one_formula(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trainer fuses through models.bundle.rrf_fuse, the service through its one-request form
    rrf_fuse_row (the next test checks the two agree term for term); neither has its own."""
    assert training.blend.rrf_fuse is models.bundle.rrf_fuse
    assert app.pipeline.rrf_fuse_row is models.bundle.rrf_fuse_row
    assert app.pipeline.Pipeline.rrf_k == BlendWeights().rrf_k == RRF_K
    calls: list[str] = []

    def counted_table(*args: Any, **kwargs: Any) -> models.bundle.Fused:
        calls.append("table")
        return models.bundle.rrf_fuse(*args, **kwargs)

    def counted_row(*args: Any, **kwargs: Any) -> list[tuple[int, float, int]]:
        calls.append("row")
        return models.bundle.rrf_fuse_row(*args, **kwargs)

    monkeypatch.setattr(training.blend, "rrf_fuse", counted_table)
    monkeypatch.setattr(app.pipeline, "rrf_fuse_row", counted_row)
    lists = {"als": [3, 1, 2], "repeat": [2, 5]}
    _served(lists, BlendWeights(), k=3)
    assert calls == ["row"]
    rows = {name: np.array([items + [-1] * (3 - len(items))] * 40) for name, items in lists.items()}
    fit_blend_weights(rows, [np.array([2])] * 40, k=3, rounds=1)
    assert calls.count("table") > 1 and calls.count("row") == 1


@pytest.mark.parametrize("seed", range(5))
def test_the_blend_fit_and_the_service_give_the_same_fused_lists(seed: int) -> None:
    """For the same ranked lists and weights, the trainer's fused lists (all customers at once)
    and the service's (one request at a time) hold the same items in the same order with the
    same scores — and the service's are what it computed before the one function."""
    rng = np.random.default_rng(seed)
    n_customers, depth, k = 30, 20, 12
    rankings = {
        name: np.stack([rng.permutation(40)[:depth] for _ in range(n_customers)])
        for name in SOURCES
    }
    for name in SOURCES[:2]:  # shorter lists, padded as the trainer's are
        rankings[name][:, rng.integers(1, depth) :] = -1
    blend = BlendWeights(
        weights={name: float(rng.choice(WEIGHT_GRID)) for name in SOURCES},
        rrf_k=float(rng.choice(RRF_K_GRID)),
    )
    items, scores = fuse(rankings, blend, k)
    for r in range(n_customers):
        lists = {name: [int(i) for i in a[r] if i >= 0] for name, a in rankings.items()}
        served = _served(lists, blend, k)
        assert [c.item for c in served] == [int(i) for i in items[r] if i >= 0]
        assert [c.score for c in served] == [float(v) for v in scores[r] if np.isfinite(v)]
        assert [(c.item, c.score, c.source, c.reason) for c in served] == _before(lists, blend, k)


def _rrf_fuse_by_full_sort(
    table: models.bundle.RankTable, weights: list[float], rrf_k: float, k: int
) -> models.bundle.Fused:
    """rrf_fuse as it was first written: every term, then a stable sort of whole rows."""
    w = np.where(np.asarray(weights, dtype=np.float64) > 0, weights, 0.0)
    terms = w[:, None, None] / (rrf_k + table.ranks + 1.0)
    scores = terms[0].copy()
    for source_terms in terms[1:]:
        scores += source_terms
    scores[table.candidates < 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(order))[:, None]
    items, values = table.candidates[rows, order], scores[rows, order]
    keep = values > 0
    best = np.argmax(terms[:, rows, order], axis=0)
    pad = ((0, 0), (0, k - order.shape[1]))
    return models.bundle.Fused(
        items=np.pad(np.where(keep, items, -1), pad, constant_values=-1),
        scores=np.pad(np.where(keep, values, -np.inf), pad, constant_values=-np.inf),
        sources=np.pad(np.where(keep, best, -1), pad, constant_values=-1),
    )


@pytest.mark.parametrize("seed", range(5))
def test_rrf_fuse_is_the_full_sort_to_the_bit(seed: int) -> None:
    """rrf_fuse partitions out the top k (and skips sources of weight 0): the same items,
    scores and best sources as fusing every term and sorting whole rows, ties included."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n_sources, n, depth = (int(x) for x in rng.integers(1, [7, 40, 30]))
        rankings = [
            rng.integers(-1, int(rng.integers(2, 60)), size=(n, depth)) for _ in range(n_sources)
        ]
        table = models.bundle.RankTable.build(rankings)
        for _ in range(4):  # the table is reused, as by the weight fit
            weights = [float(rng.choice([*WEIGHT_GRID, -1.0])) for _ in range(n_sources)]
            rrf_k = float(rng.choice([0.0, *RRF_K_GRID]))
            k = int(rng.integers(0, 40))
            got = models.bundle.rrf_fuse(table, weights, rrf_k, k)
            want = _rrf_fuse_by_full_sort(table, weights, rrf_k, k)
            np.testing.assert_array_equal(got.items, want.items)
            assert got.scores.tobytes() == want.scores.tobytes()
            np.testing.assert_array_equal(got.sources, want.sources)


def test_ap_at_k_is_the_row_by_row_formula() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, k, width = int(rng.integers(1, 30)), int(rng.integers(1, 15)), int(rng.integers(0, 20))
        items = np.stack([rng.permutation(40)[:width] for _ in range(n)]).reshape(n, width)
        items[rng.random(items.shape) < 0.1] = -1
        truths = [rng.choice(45, size=int(rng.integers(0, 8))) for _ in range(n)]
        expected = np.zeros(n)
        for r, truth in enumerate(truths):
            hits = np.isin(items[r, :k], truth) & (items[r, :k] >= 0)
            if len(truth) and hits.any():
                precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
                expected[r] = float((precision * hits).sum() / min(len(truth), k))
        assert training.blend._ap_at_k(items, truths, k).tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", range(20))
def test_the_one_request_form_is_the_table_form_term_for_term(seed: int) -> None:
    """rrf_fuse_row gives rrf_fuse's items, scores (to the bit) and best sources, with repeated
    items in a list, weights of zero and below, padding, exact ties and short lists."""
    rng = np.random.default_rng(seed)
    n_sources = int(rng.integers(1, 7))
    lists = [
        [int(i) for i in rng.integers(-1, 25, size=int(rng.integers(0, 30)))]
        for _ in range(n_sources)
    ]
    weights = [float(rng.choice([-1.0, 0.0, 0.5, 1.0, 1.0, 2.0])) for _ in range(n_sources)]
    rrf_k = float(rng.choice(RRF_K_GRID))
    k = int(rng.integers(1, 20))
    width = max(1, *(len(items) for items in lists))
    table = models.bundle.RankTable.build(
        [np.asarray([items + [-1] * (width - len(items))]) for items in lists]
    )
    fused = models.bundle.rrf_fuse(table, weights, rrf_k, k)
    expected = [
        (int(item), float(score), int(source))
        for item, score, source in zip(
            fused.items[0], fused.scores[0], fused.sources[0], strict=True
        )
        if item >= 0
    ]
    assert models.bundle.rrf_fuse_row(lists, weights, rrf_k, k) == expected
