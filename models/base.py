"""The small contract every Lookbook model follows.

A model is fitted on :class:`TrainingData` (dense indices only — ids are mapped by the trainer),
recommends for one customer or many at once, and saves to / loads from a folder of ``.npz`` arrays
plus a ``config.json`` (never pickle). Models that can compare items also implement
:class:`SimilarItems`.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feature_store.errors import BundleError

logger = logging.getLogger("lookbook.models")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrainingData:
    """Interactions in dense-index form, as every model's ``fit`` receives them.

    ``user_items`` is the confidence-weighted customer x item matrix (CSR, float32): the sum of
    interaction weights per pair, clipped at 0. The event arrays keep every interaction in time
    order for models that need sequences, baskets or recency (``timestamps`` are seconds since the
    epoch).
    """

    user_items: sp.csr_matrix
    user_idx: IntArray
    item_idx: IntArray
    timestamps: npt.NDArray[np.int64]
    event_types: npt.NDArray[np.int8]  # index into schema.InteractionType, in declaration order
    weights: FloatArray
    now: int  # seconds since the epoch: the end of the training period

    @property
    def n_users(self) -> int:
        return int(self.user_items.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.user_items.shape[1])


class Recommender(ABC):
    """Base of every model: ``fit``, ``recommend`` (one or many customers), ``save``, ``load``."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, data: TrainingData, *, show_progress: bool = False) -> Self:
        """Learn from ``data``; returns ``self``."""

    @abstractmethod
    def recommend(
        self,
        userid: int | IntArray,
        user_items: sp.csr_matrix,
        N: int = 12,
        *,
        filter_already_liked_items: bool = True,
        filter_items: IntArray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` item indices and scores.

        ``userid`` is one index (returns 1-d arrays) or an array of indices (returns 2-d arrays,
        one row per customer, padded with index ``-1`` / score ``-inf`` when fewer items qualify).
        ``user_items`` holds the rows of those customers' interactions (``user_items[userid]`` for
        a single id is also accepted), used to filter already-liked items and, for models that fold
        in, to compute the customer's representation. When it has one row per requested id, row
        ``r`` belongs to ``userid[r]`` (implicit's convention); otherwise it is indexed by customer
        index (e.g. the full training matrix) — see :func:`user_rows`.
        """

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the fitted model into the folder ``path`` (created if needed)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""


@runtime_checkable
class SimilarItems(Protocol):
    """Models that can rank items by similarity to an item."""

    def similar_items(
        self, itemid: int, N: int = 12, *, filter_items: IntArray | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` items most similar to ``itemid`` (excluding itself)."""
        ...

    def item_vectors(self) -> FloatArray:
        """Item representations (n_items x d) that a FAISS index can be built over."""
        ...


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def read_config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((path / "config.json").read_text())
    return config


def read_model_config(path: Path, name: str) -> dict[str, Any]:
    """``config.json`` of the model folder ``path``, checked to have been written by model ``name``.

    Raises :class:`~feature_store.errors.BundleError` when the folder is not such a model.
    """
    try:
        config = read_config(path)
    except FileNotFoundError as exc:
        raise BundleError(f"{path} holds no model (no config.json)") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / 'config.json'} is not valid JSON: {exc}") from exc
    if config.get("model") != name:
        raise BundleError(f"{path} holds model {config.get('model')!r}, not {name!r}")
    return config


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` into ``path/arrays.npz`` (the folder is created if needed).

    Object arrays are refused: they would need pickle, which :func:`load_arrays` never reads.
    """
    for key, array in arrays.items():
        if np.asarray(array).dtype.hasobject:
            raise ValueError(f"array {key!r} has dtype object: it cannot be saved without pickle")
    path.mkdir(parents=True, exist_ok=True)
    # (numpy's type hints read **kwds of savez as its allow_pickle flag, absent before 2.1)
    savez: Callable[..., None] = np.savez
    savez(path / "arrays.npz", **arrays)


def read_model(path: Path, name: str, fmt: object) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(config, arrays)`` of the model folder ``path``, checked to hold model ``name`` in
    format ``fmt``; a missing or foreign folder raises
    :class:`~feature_store.errors.BundleError`."""
    config = read_model_config(path, name)
    if config.get("format") != fmt:
        raise BundleError(f"{path}: unsupported {name} format {config.get('format')}")
    try:
        arrays = load_arrays(path)
    except FileNotFoundError as exc:
        raise BundleError(f"{path} has no arrays.npz") from exc
    return config, arrays


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def top_n(
    scores: npt.NDArray[np.floating[Any]], N: int, exclude: npt.NDArray[np.int64] | None = None
) -> tuple[IntArray, FloatArray]:
    """Indices and values of the ``N`` largest scores, best first, skipping ``exclude``.

    Ties are broken by the lower index so results are deterministic (also at the cut-off: of items
    tied with the ``N``-th score, the lower indices are kept). ``NaN`` counts as ``-inf``; items
    scoring ``-inf`` are never returned, so fewer than ``N`` may come back. Indices in ``exclude``
    outside ``[0, len(scores))`` are ignored (so ``-1`` padding is harmless).
    """
    row = _clean_scores(scores)
    if exclude is not None and len(exclude):
        excl = np.asarray(exclude, dtype=np.int64)
        row[excl[(excl >= 0) & (excl < row.shape[0])]] = -np.inf
    idx = _top_k_row(row, N)
    vals = row[idx]
    keep = vals > -np.inf
    return idx[keep], vals[keep]


def top_n_batch(scores: npt.NDArray[np.floating[Any]], N: int) -> tuple[IntArray, FloatArray]:
    """Row-wise :func:`top_n` of a 2-d score matrix, padded to ``N`` columns.

    Rows with fewer than ``N`` items above ``-inf`` are padded with index ``-1`` and score
    ``-inf`` (the batched layout of :meth:`Recommender.recommend`). Each row's answer is
    :func:`top_n`'s (the same float32 scores, the same ``(score desc, index asc)`` order and
    cut-off), computed for all rows at once.
    """
    matrix = np.asarray(scores)
    if matrix.ndim != 2:
        raise ValueError(f"top_n_batch needs a 2-d score matrix, got shape {matrix.shape}")
    width = max(int(N), 0)
    n, n_items = matrix.shape
    ids = np.full((n, width), -1, dtype=np.int64)
    vals = np.full((n, width), -np.inf, dtype=np.float32)
    k = min(width, n_items)
    if n == 0 or k == 0:
        return ids, vals
    clean = np.array(matrix, dtype=np.float32, copy=True)  # as _clean_scores, for every row
    nan = np.isnan(clean)
    if nan.any():
        clean[nan] = -np.inf
    top = _top_k_rows(clean, k)
    got = np.take_along_axis(clean, top, axis=1)
    keep = got > -np.inf  # best first, so the dropped -inf entries are each row's last
    ids[:, :k] = np.where(keep, top, -1)
    vals[:, :k] = np.where(keep, got, -np.inf)
    return ids, vals


#: :func:`_top_k_rows` samples every ``n_items // (_SAMPLE_FACTOR * k)``-th score of a row
_SAMPLE_FACTOR = 32


def _top_k_rows(matrix: FloatArray, k: int) -> IntArray:
    """:func:`_top_k_row` of every row of ``matrix`` (no NaN; ``0 < k``): ``(n, min(k, n_items))``
    indices ordered by (score desc, index asc).

    A row's top ``k`` all score at least the ``k``-th best of any subset of the row, so the
    ``k``-th best of a strided sample of the row is a floor: :func:`_top_k_row` of the items at or
    above it (a few thousand of ~10⁵, in index order) is the row's answer, found without
    partitioning the whole row."""
    n, n_items = matrix.shape
    if k >= n_items:
        return np.argsort(np.negative(matrix), axis=1, kind="stable")
    stride = n_items // (_SAMPLE_FACTOR * k)
    if stride < 2:
        return np.stack([_top_k_row(matrix[r], k) for r in range(n)]).reshape(n, k)
    sample = np.negative(matrix[:, ::stride])  # at least _SAMPLE_FACTOR * k scores per row
    floor = -np.partition(sample, k - 1, axis=1)[:, k - 1 : k]
    rows, cols = np.nonzero(matrix >= floor)  # per row at least k items, by index
    bounds = np.searchsorted(rows, np.arange(n + 1))
    top = np.empty((n, k), dtype=np.int64)
    for r in range(n):
        at = cols[bounds[r] : bounds[r + 1]]
        top[r] = at[_top_k_row(matrix[r, at], k)]
    return top


def _clean_scores(scores: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """A float32 1-d copy of ``scores`` with ``NaN`` replaced by ``-inf``."""
    row = np.array(scores, dtype=np.float32, copy=True).reshape(-1)
    nan = np.isnan(row)
    if nan.any():
        row[nan] = -np.inf
    return row


def _top_k_row(row: FloatArray, N: int) -> IntArray:
    """Indices of the ``N`` best entries of ``row`` ordered by (score desc, index asc)."""
    n_items = row.shape[0]
    k = min(int(N), n_items)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n_items:
        part = np.argpartition(-row, k - 1)
        cand = part[:k]
        kth = row[part[k - 1]]
        # argpartition picks arbitrarily among items tied with the k-th score: keep the lowest.
        if np.count_nonzero(row == kth) > np.count_nonzero(row[cand] == kth):
            above = cand[row[cand] > kth]
            ties = np.flatnonzero(row == kth)[: k - len(above)]
            cand = np.concatenate([above, ties])
    else:
        cand = np.arange(n_items)
    order = np.lexsort((cand, -row[cand]))
    return np.asarray(cand[order], dtype=np.int64)


def liked_items(user_items: sp.csr_matrix, row: int) -> IntArray:
    start, end = user_items.indptr[row], user_items.indptr[row + 1]
    return np.asarray(user_items.indices[start:end], dtype=np.int64)


def as_userids(userid: int | IntArray) -> tuple[IntArray, bool]:
    """``(ids as a 1-d int64 array, True when a single id was given)``."""
    if np.ndim(userid) == 0:
        return np.asarray([int(userid)], dtype=np.int64), True
    ids = np.asarray(userid)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(
            f"userid must be an int or a 1-d array of ints, got {ids.dtype} {ids.shape}"
        )
    return ids.astype(np.int64, copy=False), False


def user_rows(user_items: sp.csr_matrix, userids: IntArray, n_items: int) -> sp.csr_matrix:
    """The rows of ``user_items`` that belong to ``userids``, one per id, in order.

    Follows implicit's convention: when ``user_items`` has exactly one row per requested id, row
    ``r`` is the interactions of ``userids[r]``. Otherwise ``user_items`` is taken to be indexed by
    customer index (typically the full training matrix) and rows ``user_items[userids]`` are
    returned. (Asking for every customer, in an order other than ``0..n-1``, with the full matrix
    is therefore ambiguous: pass ``full[userids]`` instead.)
    """
    if not sp.issparse(user_items):
        raise ValueError(f"user_items must be a scipy CSR matrix, got {type(user_items).__name__}")
    matrix = user_items if isinstance(user_items, sp.csr_matrix) else sp.csr_matrix(user_items)
    if matrix.shape[1] != n_items:
        raise ValueError(
            f"user_items has {matrix.shape[1]} columns but the model knows {n_items} items"
        )
    if matrix.shape[0] == len(userids):
        return matrix
    if len(userids) and (userids.min() < 0 or userids.max() >= matrix.shape[0]):
        raise ValueError(
            f"user_items has {matrix.shape[0]} rows: neither one per requested customer "
            f"({len(userids)}) nor enough to index customer {int(userids.max())}"
        )
    rows: sp.csr_matrix = matrix[userids]
    return rows


def exclude_liked(
    scores: npt.NDArray[np.floating[Any]],
    rows: sp.csr_matrix | None,
    filter_items: IntArray | None = None,
) -> None:
    """Set, in place, ``scores[r, i] = -inf`` for items ``i`` in row ``r`` of ``rows`` and for
    every ``i`` in ``filter_items`` (out-of-range indices are ignored)."""
    n_items = scores.shape[1]
    if rows is not None and rows.nnz:
        counts = np.diff(rows.indptr)
        scores[np.repeat(np.arange(rows.shape[0]), counts), rows.indices] = -np.inf
    if filter_items is not None and len(filter_items):
        items = np.asarray(filter_items, dtype=np.int64).reshape(-1)
        scores[:, items[(items >= 0) & (items < n_items)]] = -np.inf
