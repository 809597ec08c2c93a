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
``siblings``              :func:`neighbour_ranking`              :func:`build_product_siblings`
``copurchase``            :func:`neighbour_ranking`              :func:`build_copurchase_table`
========================  =====================================  ==================================

Tables are :class:`NeighbourTable` (CSR arrays: item → neighbour items with scores), saved with
:meth:`NeighbourTable.to_arrays` and loaded with :meth:`NeighbourTable.from_arrays`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .base import IntArray

SECONDS_PER_DAY = 86_400
DEFAULT_REPURCHASE_HALF_LIFE_DAYS = 60.0
DEFAULT_NEIGHBOUR_HALF_LIFE_DAYS = 30.0
DEFAULT_MAX_NEIGHBOURS = 50

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
    decayed = np.exp2(-age / half_life_days) * w
    unique, inverse = np.unique(item_arr, return_inverse=True)
    totals = np.bincount(inverse, weights=decayed, minlength=len(unique)).astype(np.float64)
    order = np.lexsort((unique, -totals))
    order = order[totals[order] > 0]
    return unique[order].astype(np.int64), totals[order]


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
    max_neighbours: int = DEFAULT_MAX_NEIGHBOURS,
) -> NeighbourTable:
    """Other variants (colours, prints) of the same product, per item.

    Input: the catalog's optional ``product_code`` column (:data:`feature_store.schema.ItemCols.
    PRODUCT_CODE`), one entry per item index (``None``/NaN/empty = no code). Items sharing a code
    are each other's siblings, all with score 1 (listed by item index); an item without a code, or
    a whole catalog without the column (pass ``[None] * n_items``), has none.
    """
    codes = [_code(c) for c in np.asarray(product_codes, dtype=object).tolist()]
    n = len(codes)
    groups: dict[str, list[int]] = {}
    for item, code in enumerate(codes):
        if code is not None:
            groups.setdefault(code, []).append(item)
    rows: list[IntArray] = [np.empty(0, np.int64)] * n
    for members in groups.values():
        if len(members) < 2:
            continue
        arr = np.asarray(members, dtype=np.int64)
        for item in members:
            rows[item] = arr[arr != item][: int(max_neighbours)]
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


def build_copurchase_table(
    user_idx: npt.ArrayLike,
    item_idx: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    *,
    n_items: int,
    window_days: float = 0.0,
    max_neighbours: int = DEFAULT_MAX_NEIGHBOURS,
) -> NeighbourTable:
    """Items bought together: for each item, the items other customers bought with it.

    Inputs: the *purchase* events of the training period as parallel arrays (customer index, item
    index, epoch seconds) and the catalog size. Two purchases of one customer are "together" when
    they fall on the same day (``window_days=0``: the same basket-day) or within ``window_days``
    days of each other. Each customer counts a pair once; the score is the cosine
    ``n(i, j) / sqrt(n(i) n(j))`` with ``n`` the number of customers (baskets) buying the item(s).
    Keeps the ``max_neighbours`` best per item.
    """
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.int64)
    if not (len(users) == len(items) == len(ts)):
        raise ValueError("user_idx, item_idx and timestamps differ in length")
    if len(users) == 0:
        return NeighbourTable.empty(n_items)
    day = ts // SECONDS_PER_DAY
    if window_days <= 0:
        # one row per (customer, day) basket
        keys = users * (int(day.max()) + 1) + day
        _, basket = np.unique(keys, return_inverse=True)
        x = sp.csr_matrix(
            (np.ones(len(items), np.float64), (basket, items)),
            shape=(int(basket.max()) + 1, int(n_items)),
        )
        x.data[:] = 1.0
        x.sum_duplicates()
        x.data[:] = 1.0
        co = (x.T @ x).tocsr()
    else:
        order = np.lexsort((ts, users))
        u, i, d = users[order], items[order], day[order]
        rows: list[int] = []
        cols: list[int] = []
        start = 0
        seen: set[tuple[int, int, int]] = set()
        for pos in range(len(u)):
            while u[start] != u[pos] or d[pos] - d[start] > window_days:
                start += 1
            for other in range(start, pos):
                a, b = int(i[other]), int(i[pos])
                if a == b or (int(u[pos]), a, b) in seen:
                    continue
                seen.add((int(u[pos]), a, b))
                seen.add((int(u[pos]), b, a))
                rows += [a, b]
                cols += [b, a]
        co = sp.csr_matrix(
            (np.ones(len(rows), np.float64), (rows, cols)), shape=(int(n_items), int(n_items))
        )
        co.sum_duplicates()
        co = co.tocsr()
        bought = sp.csr_matrix(
            (np.ones(len(users), np.float64), (users, items)),
            shape=(int(users.max()) + 1, int(n_items)),
        )
        bought.sum_duplicates()
        bought.data[:] = 1.0
        co.setdiag(np.asarray(bought.sum(axis=0)).ravel())
    counts = np.asarray(co.diagonal(), dtype=np.float64)
    norm = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    sim = sp.diags(norm) @ co @ sp.diags(norm)
    return NeighbourTable.from_matrix(sim, max_neighbours)


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
    depth: int | None = None,
) -> tuple[IntArray, FloatArray]:
    """Neighbours (in ``table``) of the customer's purchases, the recent purchases first.

    ``items``/``timestamps``/``weights`` are the customer's purchases (as for
    :func:`repurchase_ranking`). A neighbour ``j`` of a purchase of age ``a`` days scores
    ``weight * 2^(-a / half_life_days) * table_score(i, j)``, summed over the purchases. Ties go to
    the higher ``item_scores[j]`` (e.g. the bundle's popularity scores; optional), then the lower
    item index. With ``exclude_history`` the customer's own items are left out (the repurchase
    source has them). Returns at most ``depth`` ``(items, scores)``, best first.
    """
    item_arr = np.asarray(items, dtype=np.int64)
    if len(item_arr) == 0 or table.n_items == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    ts = np.asarray(timestamps, dtype=np.int64)
    w = np.maximum(np.asarray(weights, dtype=np.float64), 0.0)
    age = np.maximum(int(now) - ts, 0) / SECONDS_PER_DAY
    decayed = np.exp2(-age / half_life_days) * w
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
