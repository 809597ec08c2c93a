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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

logger = logging.getLogger("lookbook.models")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrainingData:
    """Interactions in dense-index form, as every model's ``fit`` receives them.

    ``user_items`` is the confidence-weighted customer x item matrix (CSR, float32): the sum of
    interaction weights per pair, clipped at 0. The event arrays keep every interaction in time order
    for models that need sequences, baskets or recency (``timestamps`` are seconds since the epoch).
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
        ``user_items`` holds the rows of those customers' interactions (``user_items[userid]`` for a
        single id is also accepted), used to filter already-liked items and, for models that fold in,
        to compute the customer's representation.
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


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def top_n(
    scores: npt.NDArray[np.floating[Any]], N: int, exclude: npt.NDArray[np.int64] | None = None
) -> tuple[IntArray, FloatArray]:
    """Indices and values of the ``N`` largest scores, best first, skipping ``exclude``.

    Ties are broken by the lower index so results are deterministic.
    """
    scores = np.asarray(scores, dtype=np.float32).copy()
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    n = min(N, scores.shape[0])
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    part = np.argpartition(-scores, n - 1)[:n] if n < scores.shape[0] else np.arange(scores.shape[0])
    order = np.lexsort((part, -scores[part]))
    idx = part[order].astype(np.int64)
    vals = scores[idx]
    keep = np.isfinite(vals)
    return idx[keep], vals[keep].astype(np.float32)


def liked_items(user_items: sp.csr_matrix, row: int) -> IntArray:
    start, end = user_items.indptr[row], user_items.indptr[row + 1]
    return np.asarray(user_items.indices[start:end], dtype=np.int64)
