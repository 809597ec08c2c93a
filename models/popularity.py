"""Time-decayed popularity: the fallback for every customer and the baseline every model must beat.

``score_i = Σ_e w_e · 0.5 ** ((now − t_e) / (half_life_days · 86400))`` over the training events
``e`` on item ``i`` with a positive weight ``w_e`` (views, clicks, carts, purchases; returns do not
subtract). ``now`` is :attr:`TrainingData.now`; an event after ``now`` counts as if at ``now``.
``half_life_days=None`` turns decay off (plain weighted counts); ``window_days`` keeps only events
less than that many days before ``now``.

The ranking is global, so every customer gets the same list minus what they already liked and what
the caller filters out; for a per-category list pass every other item in ``filter_items``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from feature_store.errors import BundleError
from feature_store.timeutils import SECONDS_PER_DAY, decay

from .base import (
    FloatArray,
    IntArray,
    Recommender,
    TrainingData,
    as_userids,
    load_arrays,
    read_model_config,
    save_arrays,
    user_rows,
    write_config,
)

logger = logging.getLogger("lookbook.models")

_FORMAT = 1


class PopularityRecommender(Recommender):
    """Items ranked by time-decayed, weighted event counts; ``scores`` holds one per item."""

    name: ClassVar[str] = "popularity"

    def __init__(
        self, *, half_life_days: float | None = 14.0, window_days: float | None = None
    ) -> None:
        if half_life_days is not None and not (
            half_life_days > 0 and math.isfinite(half_life_days)
        ):
            raise ValueError(
                f"half_life_days must be a positive number or None, got {half_life_days}"
            )
        if window_days is not None and not window_days > 0:
            raise ValueError(f"window_days must be positive or None, got {window_days}")
        self.half_life_days = None if half_life_days is None else float(half_life_days)
        self.window_days = None if window_days is None else float(window_days)
        self.scores: FloatArray = np.zeros(0, dtype=np.float32)
        self.now: int = 0
        self.n_users: int = 0
        self._fitted = False
        self._order: IntArray | None = None

    @property
    def n_items(self) -> int:
        return int(self.scores.shape[0])

    def fit(self, data: TrainingData, *, show_progress: bool = False) -> Self:
        """Compute :attr:`scores` from ``data``'s events (``show_progress`` is accepted for the
        common contract; there is nothing slow enough to show)."""
        n_events = len(data.item_idx)
        if not (len(data.timestamps) == len(data.weights) == n_events):
            raise ValueError(
                f"TrainingData event arrays differ in length: item_idx {n_events}, "
                f"timestamps {len(data.timestamps)}, weights {len(data.weights)}"
            )
        if n_events and (data.item_idx.min() < 0 or data.item_idx.max() >= data.n_items):
            raise ValueError(f"TrainingData.item_idx has indices outside 0..{data.n_items - 1}")
        keep = np.asarray(data.weights) > 0
        age = np.maximum(data.now - np.asarray(data.timestamps, dtype=np.int64), 0).astype(
            np.float64
        )
        if self.window_days is not None:
            keep &= age < self.window_days * SECONDS_PER_DAY
        weight = np.asarray(data.weights, dtype=np.float64)[keep]
        if self.half_life_days is not None:
            weight = weight * decay(age[keep], self.half_life_days * SECONDS_PER_DAY)
        totals = np.bincount(data.item_idx[keep], weights=weight, minlength=data.n_items)
        self.scores = totals.astype(np.float32)
        self.now = int(data.now)
        self.n_users = data.n_users
        self._fitted = True
        self._order = None
        logger.info(
            "popularity: %d of %d events scored over %d items (half-life %s days, window %s)",
            int(keep.sum()),
            n_events,
            data.n_items,
            self.half_life_days,
            self.window_days,
        )
        return self

    def ranking(self) -> IntArray:
        """Every item index, most popular first (ties: lower index first); cached."""
        self._check_fitted()
        if self._order is None:
            order = np.lexsort((np.arange(self.n_items), -self.scores)).astype(np.int64)
            order.flags.writeable = False
            self._order = order
        return self._order

    def recommend(
        self,
        userid: int | IntArray,
        user_items: sp.csr_matrix,
        N: int = 12,
        *,
        filter_already_liked_items: bool = True,
        filter_items: IntArray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """The most popular items (1-d for one id, 2-d padded with -1/-inf for many).

        Any customer index is accepted (this is the fallback for unknown customers);
        ``user_items`` (rows as in :func:`models.base.user_rows`) is read only to drop already
        liked items. Equal to ``top_n(scores, N, liked ∪ filter_items)`` for each customer.
        """
        self._check_fitted()
        ids, single = as_userids(userid)
        order = self.ranking()
        if filter_items is not None and len(filter_items):
            blocked = np.zeros(self.n_items, dtype=bool)
            items = np.asarray(filter_items, dtype=np.int64).reshape(-1)
            blocked[items[(items >= 0) & (items < self.n_items)]] = True
            order = order[~blocked[order]]
        rows = None
        if filter_already_liked_items:
            rows = user_rows(user_items, ids, self.n_items)
        width = max(int(N), 0)
        out_ids = np.full((len(ids), width), -1, dtype=np.int64)
        out_scores = np.full((len(ids), width), -np.inf, dtype=np.float32)
        top = order[:width]
        for r in range(len(ids)):
            chosen = top
            if rows is not None and rows.indptr[r + 1] > rows.indptr[r]:
                liked = rows.indices[rows.indptr[r] : rows.indptr[r + 1]]
                head = order[: width + len(liked)]
                chosen = head[~np.isin(head, liked)][:width]
            out_ids[r, : len(chosen)] = chosen
            out_scores[r, : len(chosen)] = self.scores[chosen]
        if single:
            keep = out_ids[0] >= 0
            return out_ids[0][keep], out_scores[0][keep]
        return out_ids, out_scores

    def save(self, path: Path) -> None:
        self._check_fitted()
        save_arrays(path, scores=self.scores)
        write_config(path, self._config())

    @classmethod
    def load(cls, path: Path) -> Self:
        config = read_model_config(path, cls.name)
        arrays = load_arrays(path)
        try:
            model = cls(half_life_days=config["half_life_days"], window_days=config["window_days"])
            scores = arrays["scores"]
            model.now = int(config["now"])
            model.n_users = int(config["n_users"])
            n_items = int(config["n_items"])
        except KeyError as exc:
            raise BundleError(
                f"{path} is not a complete popularity model: {exc} is missing"
            ) from exc
        if scores.shape != (n_items,):
            raise BundleError(f"{path}: scores has shape {scores.shape}, config says ({n_items},)")
        model.scores = np.ascontiguousarray(scores, dtype=np.float32)
        model._fitted = True
        return model

    def _config(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "format": _FORMAT,
            "half_life_days": self.half_life_days,
            "window_days": self.window_days,
            "now": self.now,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("PopularityRecommender is not fitted: call fit() or load() first")
