"""The id part of the complementary model's item vectors at scoring time: shrunk for items seen in
few training sets, borrowed for items seen in none.

The model (:mod:`models.complementary`) learns an id vector and an id bias for every item seen in
a training set. Those of an item seen once or twice are mostly noise, and an item seen in no set
has none at all — so, compared with seen items, an unseen right answer lacks the id term that
every seen wrong candidate carries. :func:`id_parts` makes the two comparable:

* an item seen in ``n`` training sets keeps its learned id part weighed by
  ``s = n / (n + shrinkage)``: the vector by ``sqrt(s)`` (a pair's id term by
  ``sqrt(s_i · s_j)``), the bias by ``s`` (``shrinkage = 0``: as learned);
* an item seen in no set (a new colour of a known product, a new collection) borrows the mean
  learned id part of, in order of preference,

  1. the seen items of its *group* — e.g. the same product (model code) in other colours;
  2. its ``neighbours`` most similar seen items of the same category (cosine of the attribute
     vectors);
  3. nothing (zero), as without this module.

With ``shrinkage = 0``, no groups and ``neighbours = 0`` the learned parts come back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

NO_GROUP = -1
_CHUNK = 1024  # query rows per similarity block (bounds memory on large catalogs)


def group_codes(
    values: Sequence[Any], vocab: Sequence[str] | None = None
) -> tuple[IntArray, list[str]]:
    """Dense codes of group labels (``NO_GROUP`` for a missing or empty label) and the
    vocabulary. With ``vocab``, labels outside it are ``NO_GROUP`` (items added after fitting
    whose product the model never saw have no group to borrow from)."""
    labels = [_label(v) for v in values]
    if vocab is None:
        vocab = sorted({label for label in labels if label is not None})
    lookup = {label: k for k, label in enumerate(vocab)}
    codes = np.array(
        [lookup.get(label, NO_GROUP) if label is not None else NO_GROUP for label in labels],
        dtype=np.int64,
    )
    return codes, list(vocab)


def _label(value: Any) -> str | None:
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


def id_parts(
    learned: FloatArray,
    counts: IntArray,
    history: npt.NDArray[np.bool_],
    *,
    groups: IntArray | None,
    attributes: FloatArray,
    categories: IntArray,
    shrinkage: float,
    neighbours: int,
) -> FloatArray:
    """The id part ``(n, D + 1)`` (vector, then bias) of every item at scoring time.

    ``learned`` ``(n, D + 1)``: the learned id vector and bias of each item (zero rows for
    items without history); ``counts`` ``(n,)``: training sets per item; ``history`` ``(n,)``:
    whether the item has a learned id part; ``groups`` ``(n,)``: group codes (``NO_GROUP``
    for none) or ``None``; ``attributes`` ``(n, A)``: unit attribute vectors; ``categories``
    ``(n,)``: category codes (neighbours are looked for within the category).
    """
    if shrinkage < 0 or neighbours < 0:
        raise ValueError("shrinkage and neighbours must be >= 0")
    n = len(learned)
    out = np.where(history[:, None], learned, 0.0).astype(np.float32)
    if shrinkage > 0:
        s = counts.astype(np.float64) / (counts.astype(np.float64) + shrinkage)
        s = np.where(history, s, 0.0)
        out[:, :-1] *= np.sqrt(s)[:, None].astype(np.float32)
        out[:, -1] *= s.astype(np.float32)
    missing = ~history
    if not missing.any() or not history.any():
        return out
    raw = np.where(history[:, None], learned, 0.0).astype(np.float32)
    if groups is not None and len(groups) == n:
        missing = _borrow_from_groups(out, raw, history, groups, missing)
    if neighbours > 0 and missing.any():
        _borrow_from_neighbours(out, raw, history, attributes, categories, missing, neighbours)
    return out


def _borrow_from_groups(
    out: FloatArray,
    raw: FloatArray,
    history: npt.NDArray[np.bool_],
    groups: IntArray,
    missing: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """Fill the rows of ``missing`` items whose group has seen items with the group's mean
    learned part; return the items still missing."""
    grouped = groups >= 0
    donors = history & grouped
    if not donors.any():
        return missing
    size = int(groups.max()) + 1
    totals = np.zeros((size, raw.shape[1]), dtype=np.float64)
    np.add.at(totals, groups[donors], raw[donors])
    members = np.bincount(groups[donors], minlength=size)
    takers = missing & grouped
    takers[takers] = members[groups[takers]] > 0
    rows = np.flatnonzero(takers)
    out[rows] = (totals[groups[rows]] / members[groups[rows]][:, None]).astype(np.float32)
    return missing & ~takers


def _borrow_from_neighbours(
    out: FloatArray,
    raw: FloatArray,
    history: npt.NDArray[np.bool_],
    attributes: FloatArray,
    categories: IntArray,
    missing: npt.NDArray[np.bool_],
    neighbours: int,
) -> None:
    """Fill the rows of ``missing`` items with the mean learned part of their ``neighbours``
    most attribute-similar seen items of the same category (ties: the lower index)."""
    for category in np.unique(categories[missing]):
        takers = np.flatnonzero(missing & (categories == category))
        pool = np.flatnonzero(history & (categories == category))
        if len(pool) == 0:
            continue
        k = min(neighbours, len(pool))
        keys = attributes[pool].astype(np.float32)
        for start in range(0, len(takers), _CHUNK):
            rows = takers[start : start + _CHUNK]
            sims = attributes[rows].astype(np.float32) @ keys.T  # (r, |pool|)
            # stable: the k best by similarity, ties by pool position (the lower item index)
            best = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            out[rows] = raw[pool[best]].astype(np.float64).mean(axis=1).astype(np.float32)
