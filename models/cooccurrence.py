"""Recency-weighted co-occurrence and popularity: "bought (viewed, carted) together" and "selling now".

One job: the count statistics that complete-the-look blends with its learned compatibility
(:class:`models.complementary.ComplementaryModel`) and that the benchmarks' co-purchase and
popularity baselines use, so both read the same numbers.

* **Co-occurrence** ``C[i, j] = Σ_sets w_s · 0.5^{age_s / h} · [i ∈ s] · [j ∈ s]`` (``i ≠ j``) over
  sets of items that appeared together — same-day baskets (weight 1), and from the event stream
  same-day co-carts and co-views with smaller weights — where ``age_s`` is the set's age in days at
  the end of the period and ``h`` = ``half_life_days`` (``None``: no decay). Stored sparse.
* **Popularity** ``p_j = Σ_events w_e · 0.5^{age_e / h_p}`` over purchase events
  (``h_p`` = ``popularity_half_life_days``; ``window_days`` keeps only the last days).

:meth:`CoOccurrence.scores` gives, for a seed set ``Q``, ``Σ_{i∈Q} C[i, ·]``. Saved as plain arrays
(:meth:`to_arrays` / :meth:`from_arrays`, inside the owning model's ``arrays.npz``); no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feature_store.errors import BundleError

from .base import FloatArray, IntArray


class CoOccurrence:
    """Recency-weighted item co-occurrence over sets, and recency-weighted popularity."""

    def __init__(
        self,
        *,
        half_life_days: float | None = 90.0,
        popularity_half_life_days: float | None = 14.0,
        window_days: float | None = None,
    ) -> None:
        for name, value in (
            ("half_life_days", half_life_days),
            ("popularity_half_life_days", popularity_half_life_days),
            ("window_days", window_days),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        self.half_life_days = None if half_life_days is None else float(half_life_days)
        self.popularity_half_life_days = (
            None if popularity_half_life_days is None else float(popularity_half_life_days)
        )
        self.window_days = None if window_days is None else float(window_days)
        self.matrix_: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)
        self.popularity_: FloatArray = np.zeros(0, dtype=np.float32)

    @property
    def n_items(self) -> int:
        return int(self.popularity_.shape[0])

    @staticmethod
    def _decay(ages: npt.ArrayLike, half_life: float | None) -> npt.NDArray[np.float64]:
        days = np.clip(np.asarray(ages, dtype=np.float64).reshape(-1), 0.0, None)
        if half_life is None:
            return np.ones(len(days))
        return np.asarray(0.5 ** (days / half_life), dtype=np.float64)

    def fit(
        self,
        n_items: int,
        sets: Sequence[Sequence[int] | IntArray],
        *,
        set_ages_days: npt.ArrayLike | None = None,
        set_weights: npt.ArrayLike | None = None,
        events: npt.ArrayLike | None = None,
        event_ages_days: npt.ArrayLike | None = None,
        event_weights: npt.ArrayLike | None = None,
    ) -> Self:
        """``sets``: item-index sets that appeared together, each ``set_ages_days`` old (default
        0) and weighing ``set_weights`` (default 1). ``events``: item indices of purchase events
        for the popularity, ``event_ages_days`` old (default 0), weighing ``event_weights``."""
        rows = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sets]
        sizes = np.array([len(r) for r in rows], dtype=np.int64)
        return self.fit_pairs(
            n_items,
            np.repeat(np.arange(len(rows), dtype=np.int64), sizes),
            np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
            n_sets=len(rows),
            set_ages_days=set_ages_days,
            set_weights=set_weights,
            events=events,
            event_ages_days=event_ages_days,
            event_weights=event_weights,
        )

    def fit_pairs(
        self,
        n_items: int,
        set_of: npt.ArrayLike,
        members: npt.ArrayLike,
        *,
        n_sets: int,
        set_ages_days: npt.ArrayLike | None = None,
        set_weights: npt.ArrayLike | None = None,
        events: npt.ArrayLike | None = None,
        event_ages_days: npt.ArrayLike | None = None,
        event_weights: npt.ArrayLike | None = None,
    ) -> Self:
        """As :meth:`fit`, with the sets given as ``(set_of[r], members[r])`` pairs (set
        ``0..n_sets-1``, item; repeats count once) — no Python list per set, for large logs."""
        if n_items < 0 or n_sets < 0:
            raise ValueError("n_items and n_sets must be >= 0")
        set_of = np.asarray(set_of, dtype=np.int64).reshape(-1)
        members = np.asarray(members, dtype=np.int64).reshape(-1)
        if len(set_of) != len(members):
            raise ValueError("set_of and members must have the same length")
        ages = np.zeros(n_sets) if set_ages_days is None else np.asarray(set_ages_days, float)
        weights = np.ones(n_sets) if set_weights is None else np.asarray(set_weights, float)
        if len(ages) != n_sets or len(weights) != n_sets:
            raise ValueError("set_ages_days and set_weights need one entry per set")
        if len(members) and (members.min() < 0 or members.max() >= n_items):
            raise ValueError(f"a set holds an item index outside 0..{n_items - 1}")
        if len(set_of) and (set_of.min() < 0 or set_of.max() >= n_sets):
            raise ValueError(f"a pair names a set outside 0..{n_sets - 1}")
        keep = np.ones(n_sets, dtype=bool) if self.window_days is None else ages < self.window_days
        strength = weights * self._decay(ages, self.half_life_days) * keep
        ones = sp.csr_matrix(
            (np.ones(len(members)), (set_of, members)), shape=(n_sets, n_items), dtype=np.float64
        )
        ones.sum_duplicates()
        ones.data[:] = 1.0
        incidence = sp.diags(strength) @ ones
        together = (incidence.T @ ones).tocsr()  # Σ_s strength_s [i ∈ s][j ∈ s]
        together.setdiag(0.0)
        together.eliminate_zeros()
        together.sort_indices()
        self.matrix_ = together.astype(np.float32)
        self.popularity_ = np.zeros(n_items, dtype=np.float32)
        if events is not None:
            items = np.asarray(events, dtype=np.int64).reshape(-1)
            if len(items) and (items.min() < 0 or items.max() >= n_items):
                raise ValueError(f"an event names an item index outside 0..{n_items - 1}")
            e_ages = (
                np.zeros(len(items)) if event_ages_days is None else np.asarray(event_ages_days)
            )
            e_weights = (
                np.ones(len(items)) if event_weights is None else np.asarray(event_weights, float)
            )
            if len(e_ages) != len(items) or len(e_weights) != len(items):
                raise ValueError("event_ages_days and event_weights need one entry per event")
            in_window = (
                np.ones(len(items), dtype=bool)
                if self.window_days is None
                else np.asarray(e_ages, float) < self.window_days
            )
            w = e_weights * self._decay(e_ages, self.popularity_half_life_days) * in_window
            self.popularity_ = np.bincount(items, weights=w, minlength=n_items).astype(np.float32)
        return self

    def scores(self, seeds: Sequence[int] | IntArray) -> FloatArray:
        """``Σ_{i ∈ seeds} C[i, ·]`` over all items (seeds outside the fitted items add 0)."""
        idx = np.asarray(seeds, dtype=np.int64).reshape(-1)
        idx = idx[(idx >= 0) & (idx < self.n_items)]
        if len(idx) == 0:
            return np.zeros(self.n_items, dtype=np.float32)
        return np.asarray(self.matrix_[idx].sum(axis=0), dtype=np.float32).reshape(-1)

    # ------------------------------------------------------------------------ persistence

    def params(self) -> dict[str, Any]:
        return {
            "half_life_days": self.half_life_days,
            "popularity_half_life_days": self.popularity_half_life_days,
            "window_days": self.window_days,
        }

    def to_arrays(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        m = self.matrix_
        return {
            f"{prefix}indptr": m.indptr.astype(np.int64),
            f"{prefix}indices": m.indices.astype(np.int64),
            f"{prefix}data": m.data.astype(np.float32),
            f"{prefix}popularity": self.popularity_.astype(np.float32),
        }

    @classmethod
    def from_arrays(
        cls, params: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]], prefix: str
    ) -> Self:
        out = cls(**params)
        try:
            pop = np.asarray(arrays[f"{prefix}popularity"], dtype=np.float32)
            n = len(pop)
            out.matrix_ = sp.csr_matrix(
                (
                    np.asarray(arrays[f"{prefix}data"], dtype=np.float32),
                    np.asarray(arrays[f"{prefix}indices"], dtype=np.int64),
                    np.asarray(arrays[f"{prefix}indptr"], dtype=np.int64),
                ),
                shape=(n, n),
            )
        except KeyError as exc:
            raise BundleError(f"co-occurrence arrays lack {exc}") from exc
        out.popularity_ = pop
        return out
