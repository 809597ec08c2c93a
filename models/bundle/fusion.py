"""The personalized blend's weights and the one fusion function both the trainer and the service use.

Weighted reciprocal-rank fusion of the sources' ranked lists::

    score(item) = Σ_s  w_s / (rrf_k + rank_s(item) + 1)        (rank 0-based; absent = 0)

summed over the sources in the order given, sources with a weight ``<= 0`` left out; items are
ordered by score, ties broken by the lower item index. :func:`rrf_fuse` is the only place this is
computed: the trainer's weight fit (:mod:`training.blend`) scores every trial weighting with it,
and the service's :class:`app.pipeline.Pipeline` fuses each request's sources with it, so weights
fitted offline mean the same thing online.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import IntArray

ScoreArray = npt.NDArray[np.float64]

#: The sources the trainer fits weights for (names as the service's strategies know them, with
#: ``popular`` called ``popularity``).
SOURCES: tuple[str, ...] = ("repurchase", "repeat", "siblings", "als", "sequence", "popularity")
#: Starting point of the fit, and the weights used when validation is too small (set from the
#: pooled H&M validation folds: the repeat-prior ordering of the customer's own items leads).
DEFAULT_WEIGHTS: dict[str, float] = {
    "repurchase": 0.25,
    "repeat": 4.0,
    "siblings": 1.0,
    "als": 0.1,
    "sequence": 0.5,
    "popularity": 0.25,
}
#: The fusion constant when none was fitted (the service's strategies with fixed weights too).
DEFAULT_RRF_K = 60.0


@dataclass(frozen=True)
class BlendWeights:
    """Weights per source, the fusion constant, and how they were obtained."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    rrf_k: float = DEFAULT_RRF_K
    fitted: bool = False
    validation_map: float | None = None
    default_validation_map: float | None = None
    validation_customers: int = 0

    def of(self, sources: Sequence[str]) -> list[float]:
        """The weights of ``sources`` in that order (0 for a source without one)."""
        return [float(self.weights.get(s, 0.0)) for s in sources]

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "rrf_k": self.rrf_k,
            "fitted": self.fitted,
            "validation_map": self.validation_map,
            "default_validation_map": self.default_validation_map,
            "validation_customers": self.validation_customers,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BlendWeights:
        return cls(
            weights={str(k): float(v) for k, v in raw["weights"].items()},
            rrf_k=float(raw.get("rrf_k", DEFAULT_RRF_K)),
            fitted=bool(raw.get("fitted", False)),
            validation_map=raw.get("validation_map"),
            default_validation_map=raw.get("default_validation_map"),
            validation_customers=int(raw.get("validation_customers", 0)),
        )


@dataclass(frozen=True)
class RankTable:
    """Several sources' ranked lists for ``n`` rows (customers or one request) in one padded table,
    built once and fused under as many weightings as needed.

    ``candidates[r]`` are the distinct items any source ranks for row ``r`` (ascending, ``-1``
    padded); ``ranks[s, r, c]`` is the 0-based position of ``candidates[r, c]`` in source ``s``'s
    list (its first occurrence), ``inf`` when the source does not list it.
    """

    candidates: IntArray  # (n, C)
    ranks: ScoreArray  # (S, n, C)
    #: ``rrf_k`` → ``rrf_k + ranks + 1.0`` (the terms' denominators), kept for the next weighting
    _denominators: dict[float, ScoreArray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def n_sources(self) -> int:
        return int(self.ranks.shape[0])

    def denominators(self, rrf_k: float) -> ScoreArray:
        """``rrf_k + ranks + 1.0`` (``inf`` where a source does not list the candidate), computed
        once per ``rrf_k``: a weight fit fuses the same table under many weightings."""
        key = float(rrf_k)
        cached = self._denominators.get(key)
        if cached is None:
            cached = rrf_k + self.ranks + 1.0
            cached.flags.writeable = False
            self._denominators[key] = cached
        return cached

    @classmethod
    def build(cls, rankings: Sequence[npt.ArrayLike]) -> RankTable:
        """``rankings[s]`` is source ``s``'s ``(n, depth_s)`` item indices, best first, padded
        with ``-1`` (depths may differ; every source has the same ``n`` rows)."""
        if not rankings:
            raise ValueError("no source rankings to fuse")
        arrays = [np.asarray(a, dtype=np.int64) for a in rankings]
        n = arrays[0].shape[0] if arrays[0].ndim == 2 else -1
        if any(a.ndim != 2 or a.shape[0] != n for a in arrays):
            raise ValueError("every source ranking must be a 2-d array with one row per customer")
        # the listed entries in (row, source, position) order, then stably sorted by (row, item):
        # each (row, item) is one run, holding each source's first position before its others
        depths = [a.shape[1] for a in arrays]
        width = max(sum(depths), 1)
        flat = np.concatenate(arrays, axis=1).ravel()
        listed = np.flatnonzero(flat >= 0)
        row, slot = np.divmod(listed, width)
        items = flat[listed]
        order = np.argsort(row * (int(items.max(initial=0)) + 1) + items, kind="stable")
        row, slot, items = row[order], slot[order], items[order]
        source = np.repeat(np.arange(len(arrays)), depths)[slot]
        position = slot - np.repeat(np.cumsum([0, *depths[:-1]]), depths)[slot]
        new_item = np.ones(len(items), dtype=bool)
        new_item[1:] = (row[1:] != row[:-1]) | (items[1:] != items[:-1])
        first = new_item.copy()
        first[1:] |= source[1:] != source[:-1]
        # each candidate's column: its rank among its row's distinct items
        per_row = np.bincount(row[new_item], minlength=n)
        column = np.cumsum(new_item) - 1 - (np.cumsum(per_row) - per_row)[row]
        candidates = np.full((n, max(int(per_row.max(initial=0)), 1)), -1, dtype=np.int64)
        candidates[row[new_item], column[new_item]] = items[new_item]
        ranks = np.full((len(arrays), *candidates.shape), np.inf, dtype=np.float64)
        ranks[source[first], row[first], column[first]] = position[first]
        return cls(candidates=candidates, ranks=ranks)


def rrf_fuse_row(
    lists: Sequence[Sequence[int]], weights: Sequence[float], rrf_k: float, k: int
) -> list[tuple[int, float, int]]:
    """:func:`rrf_fuse` for one row, in plain Python: ``(item, score, best source)`` of the top
    ``k``, best first.

    A request fuses a few short lists, where building arrays costs more than the arithmetic. The
    formula is :func:`rrf_fuse`'s term for term: ``w_s / (rrf_k + rank + 1)`` for each source's
    first listing of the item, summed in source order, weights ≤ 0 proposing nothing, only
    scores ``> 0`` kept, ties to the lower item, the best source the first with the largest term
    (``tests/test_blend.py`` checks the two agree on every item, score and source).
    """
    if len(lists) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(lists)} sources")
    # Per item its running sum (sources in order, as rrf_fuse adds them: the sum of a row's terms
    # with zeros where a source does not list it is the same float) and its best (term, source):
    # the first source with the largest term, source 0 while no term is positive.
    scores: dict[int, float] = {}
    best: dict[int, tuple[float, int]] = {}
    for s, (items, weight) in enumerate(zip(lists, weights, strict=True)):
        w = float(weight) if weight > 0 else 0.0
        listed: set[int] = set()
        for rank, item in enumerate(items):
            if item < 0 or item in listed:
                continue  # padding, or not the source's first listing of the item
            listed.add(item)
            term = w / (rrf_k + rank + 1.0)
            score = scores.get(item)
            if score is None:
                scores[item] = term
                best[item] = (term, s) if term > 0 else (0.0, 0)
            else:
                scores[item] = score + term
                if term > best[item][0]:
                    best[item] = (term, s)
    fused = sorted((-score, item) for item, score in scores.items() if score > 0)
    return [(item, -neg, best[item][1]) for neg, item in fused[: int(k)]]


@dataclass(frozen=True)
class Fused:
    """The fused top ``k`` of each row: ``items`` (``-1`` padded), their ``scores`` (``-inf``
    padded) and, per item, ``sources``: the index of the source whose term is the largest (the
    first such source on a tie; ``-1`` padded) — the source that ranked it best."""

    items: IntArray  # (n, k)
    scores: ScoreArray  # (n, k)
    sources: IntArray  # (n, k)


def rrf_fuse(table: RankTable, weights: Sequence[float], rrf_k: float, k: int) -> Fused:
    """Weighted reciprocal-rank fusion of ``table``'s sources, ``weights[s]`` for source ``s``.

    Each item's score is the sum of its sources' terms in source order (so the same lists give the
    same float, whatever else the table holds); an item is kept only with a score ``> 0``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (table.n_sources,):
        raise ValueError(f"{len(w)} weights for {table.n_sources} sources")
    w = np.where(w > 0, w, 0.0)  # a source without a positive weight proposes nothing
    # each source's terms w / (rrf_k + rank + 1): 0 where it does not list the item (rank inf)
    denominators = table.denominators(rrf_k)
    # summed in source order, so a score never depends on the table; a source of weight 0 adds
    # +0.0 to every (non-negative) score, which changes no bit, so it is skipped
    scores = np.zeros(table.candidates.shape, dtype=np.float64)
    for s in np.flatnonzero(w > 0).tolist():
        scores += w[s] / denominators[s]
    scores[table.candidates < 0] = -np.inf
    k = int(k)
    order = _top_columns(scores, k)
    rows = np.arange(len(order))[:, None]
    items, values = table.candidates[rows, order], scores[rows, order]
    keep = values > 0
    # the first source with the largest term (the same divisions as the scores')
    best = np.argmax(w[:, None, None] / denominators[:, rows, order], axis=0)
    items = np.where(keep, items, -1)
    values = np.where(keep, values, -np.inf)
    best = np.where(keep, best, -1)
    if order.shape[1] < k:
        pad = ((0, 0), (0, k - order.shape[1]))
        items = np.pad(items, pad, constant_values=-1)
        values = np.pad(values, pad, constant_values=-np.inf)
        best = np.pad(best, pad, constant_values=-1)
    return Fused(items=items, scores=values, sources=best.astype(np.int64))


def _top_columns(scores: ScoreArray, k: int) -> IntArray:
    """Per row, the columns of the ``min(k, C)`` best scores ordered by (score desc, column asc):
    the first ``k`` columns of a stable argsort of ``-scores``. Candidates are sorted by item, so
    ties go to the lower item. Only the top ``k`` are sorted (a partition finds them) unless a
    positive score ties across the cut-off, where that row is sorted whole."""
    n, width = scores.shape
    if k >= width or n == 0:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    if k <= 0:
        return np.empty((n, 0), dtype=np.int64)
    neg = -scores
    top = np.argpartition(neg, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(neg, top[:, k - 1 :], axis=1)  # (n, 1): minus the k-th best score
    # Rows where the k-th best ties with an item left out: the partition chose among the ties
    # arbitrarily. Only a kept (positive) score matters there; the rest are masked as padding.
    tied = np.count_nonzero(neg == kth, axis=1) > np.count_nonzero(
        np.take_along_axis(neg, top, axis=1) == kth, axis=1
    )
    redo = np.flatnonzero(tied & (kth[:, 0] < 0))
    top.sort(axis=1)  # by column, so the stable sort below keeps the lower column first on a tie
    order = np.take_along_axis(
        top, np.argsort(np.take_along_axis(neg, top, axis=1), axis=1, kind="stable"), axis=1
    )
    for r in redo.tolist():
        order[r] = np.argsort(neg[r], kind="stable")[:k]
    return order
