"""Rule-based candidate rankings shared by the offline harness and the service.

The evaluation harness (:mod:`training.evaluate`) and the service's feed sources
(:mod:`app.pipeline`) call the same functions, so the blend measured offline is the blend served.
Each ``*_ranking`` function ranks the candidates of *one* customer from their own history, given
as plain arrays (item indices, epoch-second timestamps, event weights) plus, where needed, a
per-bundle table built once by the trainer:

========================  =====================================  ==================================
blend source              per-customer function                  per-bundle table (trainer builds)
========================  =====================================  ==================================
``repurchase``            :func:`repurchase_ranking`             —
``repeat``                :func:`repeat_ranking`                 :func:`build_repeat_rates`
``siblings``              :func:`neighbour_ranking`              :func:`build_product_siblings`
========================  =====================================  ==================================

The repeat rates are one float per item (``build_repeat_rates(..., groups=item_groups(
product_type, category))``); the sibling table is a :class:`NeighbourTable` (CSR arrays: item →
neighbour items with scores), saved with :meth:`NeighbourTable.to_arrays` and loaded with
:meth:`NeighbourTable.from_arrays`. Every function takes the customer's *purchases* only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feature_store.timeutils import SECONDS_PER_DAY, decay

from .base import IntArray

DEFAULT_REPURCHASE_HALF_LIFE_DAYS = 60.0
DEFAULT_NEIGHBOUR_HALF_LIFE_DAYS = 30.0
DEFAULT_MAX_NEIGHBOURS = 50
DEFAULT_REPEAT_HALF_LIFE_DAYS = 3.0
DEFAULT_REPEAT_EXPONENT = 2.0
DEFAULT_REPEAT_SMOOTHING = 10.0

FloatArray = npt.NDArray[np.float64]


def repurchase_ranking(
    items: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    weights: npt.ArrayLike,
    now: int,
    *,
    half_life_days: float = DEFAULT_REPURCHASE_HALF_LIFE_DAYS,
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """The customer's purchased items by recency-decayed purchase count, best first.

    ``items``/``timestamps`` (epoch seconds)/``weights`` describe the customer's purchases; an
    event of age ``a`` days counts ``weight * 2^(-a / half_life_days)``. Ties go to the lower item
    index. Returns ``(items, scores)``; items whose total is not positive are left out.
    """
    item_arr = np.asarray(items, dtype=np.int64)
    if len(item_arr) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    ts = np.asarray(timestamps, dtype=np.int64)
    w = np.maximum(np.asarray(weights, dtype=np.float64), 0.0)
    age = np.maximum(int(now) - ts, 0) / SECONDS_PER_DAY
    decayed = decay(age, half_life_days) * w
    unique, inverse = np.unique(item_arr, return_inverse=True)
    totals = np.bincount(inverse, weights=decayed, minlength=len(unique)).astype(np.float64)
    order = np.lexsort((unique, -totals))
    order = order[totals[order] > 0]
    return unique[order].astype(np.int64), totals[order]


def build_repeat_rates(
    user_idx: npt.ArrayLike,
    item_idx: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    smoothing: float = DEFAULT_REPEAT_SMOOTHING,
) -> FloatArray:
    """How often a bought item is bought again, per item, estimated per item group.

    Inputs: the *purchase* events of the training period as parallel arrays (customer index, item
    index, epoch seconds) and ``groups``, one group index (``>= 0``) per catalog item — e.g. the
    codes of the catalog's ``product_type`` column. For each (customer, item) pair bought, "again"
    means bought on at least two different days. A group's rate is
    ``(again + smoothing * overall) / (pairs + smoothing)`` (shrunk toward the overall rate); each
    item gets its group's rate. Returns one rate per item (``len(groups)``).
    """
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    day = np.asarray(timestamps, dtype=np.int64) // SECONDS_PER_DAY
    group = np.asarray(groups, dtype=np.int64)
    if not (len(users) == len(items) == len(day)):
        raise ValueError("user_idx, item_idx and timestamps differ in length")
    if len(group) and group.min() < 0:
        raise ValueError("groups must be >= 0")
    n_groups = int(group.max()) + 1 if len(group) else 0
    if len(users) == 0 or n_groups == 0:
        return np.ones(len(group), dtype=np.float64)  # nothing learnt: no preference
    n_items = len(group)
    triples = np.unique(np.stack([users, items, day]), axis=1)
    pairs, days = np.unique(triples[0] * n_items + triples[1], return_counts=True)
    pair_group = group[pairs % n_items]
    again = np.bincount(pair_group, weights=(days > 1).astype(np.float64), minlength=n_groups)
    total = np.bincount(pair_group, minlength=n_groups).astype(np.float64)
    overall = float(again.sum() / total.sum())
    rate = (again + smoothing * overall) / (total + smoothing)
    out: FloatArray = rate[group].astype(np.float64)
    return out


def repeat_ranking(
    items: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    weights: npt.ArrayLike,
    now: int,
    repeat_rates: npt.ArrayLike,
    *,
    half_life_days: float = DEFAULT_REPEAT_HALF_LIFE_DAYS,
    exponent: float = DEFAULT_REPEAT_EXPONENT,
) -> tuple[IntArray, FloatArray]:
    """The customer's purchased items, the ones likely to be bought again first.

    :func:`repurchase_ranking` (decayed purchase count with ``half_life_days``) times
    ``repeat_rates[item] ** exponent`` (:func:`build_repeat_rates`; items outside the table get
    rate 0). Ties go to the higher decayed count, then the lower item index: the result is always
    a reordering of :func:`repurchase_ranking`'s items.
    """
    ranked, totals = repurchase_ranking(
        items, timestamps, weights, now, half_life_days=half_life_days
    )
    rates = np.asarray(repeat_rates, dtype=np.float64)
    if len(ranked) == 0:
        return ranked, totals
    known = ranked < len(rates)
    prior = (
        np.where(known, rates[np.minimum(ranked, max(len(rates) - 1, 0))], 0.0)
        if len(rates)
        else np.zeros(len(ranked))
    )
    scores = totals * np.power(np.maximum(prior, 0.0), exponent)
    order = np.lexsort((ranked, -totals, -scores))
    return ranked[order].astype(np.int64), scores[order]


def item_groups(primary: Sequence[object], fallback: Sequence[object] | None = None) -> IntArray:
    """A group index (``>= 0``) per item from a catalog column such as ``product_type``; items
    without a value take ``fallback``'s (e.g. the category), then one shared "unknown" group.
    Groups are numbered in sorted order of their labels (deterministic)."""
    labels: list[str] = []
    for pos, value in enumerate(primary):
        label, other = _code(value), None if fallback is None else _code(fallback[pos])
        labels.append(f"v:{label}" if label else f"f:{other}" if other else "")
    _, index = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    return np.asarray(index, dtype=np.int64).reshape(-1)


# --------------------------------------------------------------------------- neighbour tables


@dataclass(frozen=True)
class NeighbourTable:
    """Item → neighbour items with scores, in CSR form (``indptr`` has ``n_items + 1`` entries).

    The neighbours of item ``i`` are ``indices[indptr[i]:indptr[i + 1]]`` with the matching
    ``scores``, best first. An item never lists itself.
    """

    indptr: IntArray
    indices: IntArray
    scores: FloatArray

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) < 1 or int(self.indptr[0]) != 0:
            raise ValueError("indptr must be 1-d and start at 0")
        if len(self.indices) != len(self.scores) or int(self.indptr[-1]) != len(self.indices):
            raise ValueError("indices, scores and indptr[-1] must agree")
        if np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must be non-decreasing")

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 1

    def neighbours(self, item: int) -> tuple[IntArray, FloatArray]:
        """``(items, scores)`` of ``item``'s neighbours (empty for an unknown item)."""
        if not 0 <= int(item) < self.n_items:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        lo, hi = int(self.indptr[item]), int(self.indptr[item + 1])
        return self.indices[lo:hi], self.scores[lo:hi]

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The arrays to store (e.g. ``np.savez(path, **table.to_arrays())``)."""
        return {"indptr": self.indptr, "indices": self.indices, "scores": self.scores}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.ArrayLike]) -> NeighbourTable:
        return cls(
            indptr=np.asarray(arrays["indptr"], dtype=np.int64),
            indices=np.asarray(arrays["indices"], dtype=np.int64),
            scores=np.asarray(arrays["scores"], dtype=np.float64),
        )

    @classmethod
    def empty(cls, n_items: int) -> NeighbourTable:
        return cls(
            np.zeros(int(n_items) + 1, dtype=np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
        )

    @classmethod
    def from_matrix(
        cls, matrix: sp.spmatrix | sp.sparray, max_neighbours: int | None = None
    ) -> NeighbourTable:
        """Rows of a square sparse score matrix, diagonal and non-positive entries dropped,
        each row sorted by score (ties: lower item index) and cut to ``max_neighbours``."""
        m = sp.csr_matrix(matrix, dtype=np.float64)
        m.setdiag(0.0)
        m.data[m.data < 0] = 0.0
        m.eliminate_zeros()
        m.sort_indices()
        n = m.shape[0]
        ptr = [0]
        idx: list[IntArray] = []
        val: list[FloatArray] = []
        for row in range(n):
            lo, hi = int(m.indptr[row]), int(m.indptr[row + 1])
            cols = m.indices[lo:hi].astype(np.int64)
            data = m.data[lo:hi].astype(np.float64)
            order = np.lexsort((cols, -data))
            if max_neighbours is not None:
                order = order[: int(max_neighbours)]
            idx.append(cols[order])
            val.append(data[order])
            ptr.append(ptr[-1] + len(order))
        return cls(
            np.asarray(ptr, dtype=np.int64),
            np.concatenate(idx) if idx else np.empty(0, np.int64),
            np.concatenate(val) if val else np.empty(0, np.float64),
        )


def build_product_siblings(
    product_codes: Sequence[str | None] | npt.ArrayLike,
    *,
    eligible: npt.ArrayLike | None = None,
    max_neighbours: int = DEFAULT_MAX_NEIGHBOURS,
) -> NeighbourTable:
    """Other variants (colours, prints) of the same product, per item.

    Inputs: the catalog's optional ``product_code`` column (:data:`feature_store.schema.ItemCols.
    PRODUCT_CODE`), one entry per item index (``None``/NaN/empty = no code), and optionally
    ``eligible``, a boolean mask per item of the items that may be *proposed* (e.g. items with
    interactions in the training period, or in stock; default: all). Items sharing a code are each
    other's siblings, all with score 1 (listed by item index); an item without a code, or a whole
    catalog without the column (pass ``[None] * n_items``), has none.
    """
    codes = [_code(c) for c in np.asarray(product_codes, dtype=object).tolist()]
    n = len(codes)
    ok = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if ok.shape != (n,):
        raise ValueError("eligible must have one entry per item")
    groups: dict[str, list[int]] = {}
    for item, code in enumerate(codes):
        if code is not None:
            groups.setdefault(code, []).append(item)
    rows: list[IntArray] = [np.empty(0, np.int64)] * n
    for members in groups.values():
        if len(members) < 2:
            continue
        arr = np.asarray(members, dtype=np.int64)
        proposable = arr[ok[arr]]
        if len(proposable) == 0:
            continue
        for item in members:
            rows[item] = proposable[proposable != item][: int(max_neighbours)]
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows) if n else np.empty(0, np.int64)
    return NeighbourTable(ptr, indices.astype(np.int64), np.ones(len(indices), dtype=np.float64))


def _code(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("nan", "none", "<na>") else None


def neighbour_ranking(
    items: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    weights: npt.ArrayLike,
    now: int,
    table: NeighbourTable,
    *,
    half_life_days: float = DEFAULT_NEIGHBOUR_HALF_LIFE_DAYS,
    exclude_history: bool = True,
    item_scores: npt.ArrayLike | None = None,
    available: npt.ArrayLike | None = None,
    depth: int | None = None,
) -> tuple[IntArray, FloatArray]:
    """Neighbours (in ``table``) of the customer's purchases, the recent purchases first.

    ``items``/``timestamps``/``weights`` are the customer's purchases (as for
    :func:`repurchase_ranking`). A neighbour ``j`` of a purchase of age ``a`` days scores
    ``weight * 2^(-a / half_life_days) * table_score(i, j)``, summed over the purchases. Ties go to
    the higher ``item_scores[j]`` (e.g. the bundle's popularity scores; optional), then the lower
    item index. With ``exclude_history`` the customer's own items are left out (the repurchase
    source has them). ``available`` (optional boolean mask per item, e.g. "on sale now") keeps
    only the items that may be proposed. Returns at most ``depth`` ``(items, scores)``, best first.
    """
    item_arr = np.asarray(items, dtype=np.int64)
    if len(item_arr) == 0 or table.n_items == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    ts = np.asarray(timestamps, dtype=np.int64)
    w = np.maximum(np.asarray(weights, dtype=np.float64), 0.0)
    age = np.maximum(int(now) - ts, 0) / SECONDS_PER_DAY
    decayed = decay(age, half_life_days) * w
    valid = (item_arr >= 0) & (item_arr < table.n_items) & (decayed > 0)
    if not valid.any():
        return np.empty(0, np.int64), np.empty(0, np.float64)
    src, strength = item_arr[valid], decayed[valid]
    lo, hi = table.indptr[src], table.indptr[src + 1]
    lengths = hi - lo
    if int(lengths.sum()) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    offsets = np.repeat(lo - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    flat = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
    cand = table.indices[flat]
    contrib = table.scores[flat] * np.repeat(strength, lengths)
    unique, inverse = np.unique(cand, return_inverse=True)
    totals = np.bincount(inverse, weights=contrib, minlength=len(unique)).astype(np.float64)
    keep = totals > 0
    if exclude_history:
        keep &= ~np.isin(unique, item_arr)
    if available is not None:
        mask = np.asarray(available, dtype=bool)
        keep &= np.where(unique < len(mask), mask[np.minimum(unique, len(mask) - 1)], False)
    unique, totals = unique[keep], totals[keep]
    if item_scores is not None:
        extra = np.asarray(item_scores, dtype=np.float64)
        tie = np.where(unique < len(extra), extra[np.minimum(unique, len(extra) - 1)], 0.0)
        order = np.lexsort((unique, -tie, -totals))
    else:
        order = np.lexsort((unique, -totals))
    if depth is not None:
        order = order[: int(depth)]
    return unique[order].astype(np.int64), totals[order]
