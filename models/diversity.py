"""Diversity: the one rerank that keeps a list from being twelve black T-shirts, and the
intra-list diversity it is measured by.

:func:`diversify` is maximal marginal relevance over the item attributes
(:mod:`models.attributes`: product type, colour, material, pattern, styles) plus the category:
from a ranked candidate pool it picks, one slot at a time, the candidate maximising
``(1 - diversity) * relevance - diversity * (largest similarity to an item already picked)``,
where relevance falls linearly with the candidate's rank (1 for the first, ``1/n`` for the last)
and ties go to the better rank. ``diversity = 0`` keeps the ranking as it is; the first item is
always kept. The service (``app.pipeline.Pipeline``) reranks its fused candidates with it and the
offline harness (``benchmarks/diversity_hm.py``) reranks the blend's lists with it, both from a
pool of :func:`candidate_pool` candidates, so what is measured is what is served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from feature_store.schema import ItemCols
from models.attributes import attribute_matrix
from models.base import IntArray

__all__ = [
    "CATEGORY_WEIGHT",
    "ItemSimilarity",
    "candidate_pool",
    "check_diversity",
    "diversify",
    "diversify_rows",
    "intra_list_diversity",
]

#: Weight of "same category" beside the attribute weights (product type 2, colour 1, ...).
CATEGORY_WEIGHT = 1.0


def candidate_pool(k: int) -> int:
    """How many ranked candidates a list of ``k`` is diversified from."""
    return max(2 * k, k + 8)


def check_diversity(diversity: float) -> float:
    """``diversity`` as a float in [0, 1]; ValueError otherwise (NaN and infinities too)."""
    value = float(diversity)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1, got {diversity!r}")
    return value


@dataclass(frozen=True)
class ItemSimilarity:
    """Attribute similarity of items in [0, 1]: the cosine of their weighted one-hot attribute
    rows with the category as one more attribute (weight :data:`CATEGORY_WEIGHT`). Rows are
    normalised once, so a list's similarity is one small product."""

    unit_rows: sp.csr_matrix  # n_items x (d + categories), each row of norm 1 (or all zero)

    @classmethod
    def build(
        cls,
        attributes: sp.csr_matrix,
        categories: Sequence[object] | npt.NDArray[np.generic],
        category_weight: float = CATEGORY_WEIGHT,
    ) -> ItemSimilarity:
        codes, uniques = pd.factorize(
            pd.Series(np.asarray(categories, dtype=object), dtype="string")
        )
        known = codes >= 0
        n = attributes.shape[0]
        category = sp.csr_matrix(
            (
                np.full(int(known.sum()), np.sqrt(category_weight)),
                (np.flatnonzero(known), codes[known]),
            ),
            shape=(n, len(uniques)),
        )
        rows = sp.hstack([sp.csr_matrix(attributes, dtype=np.float64), category], format="csr")
        norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return cls(sp.csr_matrix(sp.diags(scale) @ rows))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ItemSimilarity:
        """From a catalog table (one row per item, in item-index order)."""
        categories = (
            frame[ItemCols.CATEGORY].tolist()
            if ItemCols.CATEGORY in frame.columns
            else [None] * len(frame)
        )
        return cls.build(attribute_matrix(frame), categories)

    def matrix(self, items: IntArray) -> npt.NDArray[np.float64]:
        """The ``len(items) x len(items)`` similarity of ``items`` (1 on the diagonal of items
        with any attribute; 0 between an item without attributes and any other)."""
        # the items' rows gathered straight from the CSR arrays, over the columns they use
        # (scipy's row and column indexing costs ~10x more on a list this short)
        unit = self.unit_rows
        starts = unit.indptr[items]
        lengths = unit.indptr[np.asarray(items) + 1] - starts
        total = int(lengths.sum())
        first = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        at = first + np.arange(total)
        columns, column = np.unique(unit.indices[at], return_inverse=True)
        dense = np.zeros((len(starts), len(columns)))
        dense[np.repeat(np.arange(len(starts)), lengths), column] = unit.data[at]
        return np.clip(dense @ dense.T, 0.0, 1.0)


def diversify(
    items: Sequence[int] | IntArray, k: int, diversity: float, similarity: ItemSimilarity
) -> IntArray:
    """Positions (into ``items``, a ranked pool, best first) of the ``min(k, len(items))`` items
    maximal marginal relevance picks, in the order picked. ``diversity`` in [0, 1]."""
    diversity = check_diversity(diversity)
    pool = np.asarray(items, dtype=np.int64)
    n = len(pool)
    m = min(k, n)
    if diversity == 0.0 or m <= 1:
        return np.arange(m, dtype=np.int64)
    penalty = diversity * similarity.matrix(pool)
    value = (1.0 - diversity) * (1.0 - np.arange(n, dtype=np.float64) / n)
    chosen = np.empty(m, dtype=np.int64)
    best = value.copy()  # relevance less the penalty of the closest item picked so far
    for step in range(m):
        pick = int(np.argmax(best))  # the first maximum: ties go to the better rank
        chosen[step] = pick
        np.minimum(best, value - penalty[pick], out=best)
        best[pick] = -np.inf  # and stays so: min(-inf, x) = -inf
    return chosen


def diversify_rows(
    rows: IntArray, k: int, diversity: float, similarity: ItemSimilarity
) -> IntArray:
    """:func:`diversify` of each row of ``rows`` (ranked pools, ``-1`` padded): ``(n, k)`` items,
    ``-1`` padded."""
    out = np.full((rows.shape[0], k), -1, dtype=np.int64)
    for r in range(rows.shape[0]):
        pool = rows[r][rows[r] >= 0]
        picked = pool[diversify(pool, k, diversity, similarity)]
        out[r, : len(picked)] = picked
    return out


def intra_list_diversity(items: Sequence[int] | IntArray, similarity: ItemSimilarity) -> float:
    """Mean pairwise dissimilarity ``1 - similarity`` of a list's items (``-1`` ignored); NaN
    for a list of fewer than two items."""
    pool = np.asarray(items, dtype=np.int64)
    pool = pool[pool >= 0]
    n = len(pool)
    if n < 2:
        return float("nan")
    sim = similarity.matrix(pool)
    upper = np.triu_indices(n, 1)
    return float(np.mean(1.0 - sim[upper]))
