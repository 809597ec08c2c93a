"""Collaborative filtering by implicit-feedback matrix factorisation (implicit's CPU ALS).

:class:`ALSRecommender` fits customer and item factors on :attr:`TrainingData.user_items` with
``benfred/implicit``'s conjugate-gradient ALS, then answers from the factors alone:

* ``recommend`` — the inner product of a customer's factor with every item factor;
* fold-in — :meth:`ALSRecommender.user_vector` solves the exact ALS least-squares problem for a
  customer from a list of items (new events, or customers unseen at training time), using the
  cached ``YᵀY + λI``;
* ``similar_items`` — cosine similarity of item factors; :meth:`~ALSRecommender.item_vectors` gives
  the L2-normalised item factors that the FAISS :class:`~models.index.ItemIndex` is built over.

Confidence follows implicit: ``C = alpha * user_items``; for a liked item the solver uses
``c_ui = C_ui`` and ``p_ui = 1`` (Hu, Koren & Volinsky 2008 with implicit's convention of no
``+1``). Scores are accumulated in float64 and rounded to float32, so a customer's scores do not
depend on the batch they are computed in (float32 BLAS sums in a batch-dependent order).

Determinism: with a fixed ``random_state`` two fits give bit-identical factors for every
``num_threads`` (each customer's/item's update is independent of the others, and implicit draws
the initial factors from ``numpy.random.default_rng(random_state)``); this is tested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import implicit
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from scipy.linalg.lapack import dposv
from threadpoolctl import threadpool_limits

from feature_store.errors import BundleError

from .base import (
    FloatArray,
    IntArray,
    Recommender,
    TrainingData,
    as_userids,
    exclude_liked,
    load_arrays,
    read_model_config,
    save_arrays,
    top_n,
    top_n_batch,
    user_rows,
    write_config,
)

logger = logging.getLogger("lookbook.models")

_FORMAT = 1
# Rows of a scoring chunk: keeps the float64 (chunk x n_items) score block near 32 MB.
_SCORE_BLOCK = 1 << 22


class ALSRecommender(Recommender):
    """Implicit-feedback ALS (implicit's CPU conjugate-gradient solver) with exact fold-in.

    Hyperparameters are plain keyword arguments; after :meth:`fit` or :meth:`load` the public
    attributes ``user_factors`` (n_users x factors) and ``item_factors`` (n_items x factors) hold
    the model (float32, C-contiguous).
    """

    name: ClassVar[str] = "als"

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int | None = 42,
        num_threads: int = 0,
    ) -> None:
        if factors < 1:
            raise ValueError(f"factors must be >= 1, got {factors}")
        if not regularization > 0:
            raise ValueError(f"regularization must be > 0, got {regularization}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = all cores), got {num_threads}")
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.random_state = random_state
        self.num_threads = int(num_threads)
        self.user_factors: FloatArray = np.zeros((0, self.factors), dtype=np.float32)
        self.item_factors: FloatArray = np.zeros((0, self.factors), dtype=np.float32)
        self._fitted = False
        self._normalized: FloatArray | None = None
        self._items64: npt.NDArray[np.float64] | None = None
        self._gram64: npt.NDArray[np.float64] | None = None

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        data: TrainingData,
        *,
        show_progress: bool = False,
        callback: Callable[[int, float, float | None], None] | None = None,
    ) -> Self:
        """Factorise ``data.user_items`` (confidence ``alpha * user_items``); returns ``self``.

        ``callback(iteration, seconds, loss)`` is called after every iteration (implicit's hook).
        BLAS is limited to one thread during the fit: implicit parallelises over customers itself
        and a threaded BLAS underneath only slows it down.
        """
        user_items = data.user_items
        if not isinstance(user_items, sp.csr_matrix):
            raise ValueError(f"user_items must be a CSR matrix, got {type(user_items).__name__}")
        if user_items.shape[0] < 1 or user_items.shape[1] < 1:
            raise ValueError(f"cannot fit on an empty matrix of shape {user_items.shape}")
        if user_items.nnz and user_items.data.min() < 0:
            raise ValueError("user_items has negative confidences; TrainingData clips them at 0")
        matrix = user_items.astype(np.float32) if user_items.dtype != np.float32 else user_items
        start = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                dtype=np.float32,
                use_cg=True,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
            model.fit(matrix, show_progress=show_progress, callback=callback)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._fitted = True
        self._reset_caches()
        self._warm()
        logger.info(
            "als: fitted %d customers x %d items (%d nonzeros), %d factors, %d iterations in %.2fs",
            data.n_users,
            data.n_items,
            user_items.nnz,
            self.factors,
            self.iterations,
            time.perf_counter() - start,
        )
        return self

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    # --------------------------------------------------------------- recommend

    def recommend(
        self,
        userid: int | IntArray,
        user_items: sp.csr_matrix,
        N: int = 12,
        *,
        filter_already_liked_items: bool = True,
        filter_items: IntArray | None = None,
        recalculate_user: bool = False,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` items for one customer (1-d arrays) or many (2-d arrays padded with -1/-inf).

        ``user_items`` follows implicit's convention: one row per requested customer, row ``r``
        for ``userid[r]`` (for one id, ``user_items[userid]``). The full customer x item matrix
        is accepted too (see :func:`models.base.user_rows`). It is only read when
        ``filter_already_liked_items`` (those items are dropped) or ``recalculate_user`` (the
        customers' factors are folded in from these rows with :meth:`fold_in` instead of taken
        from ``user_factors``; the ids may then lie outside the training customers) is set.

        A customer with no training interactions has a zero factor, so every score is 0 and the
        answer is the lowest item indices: callers should fall back to popularity for them.
        """
        self._check_fitted()
        ids, single = as_userids(userid)
        rows = None
        if filter_already_liked_items or recalculate_user:
            rows = user_rows(user_items, ids, self.n_items)
        if rows is not None and recalculate_user:
            vectors = self.fold_in(rows)
        else:
            if len(ids) and (ids.min() < 0 or ids.max() >= self.n_users):
                bad = ids[(ids < 0) | (ids >= self.n_users)][0]
                raise ValueError(
                    f"customer index {int(bad)} is not in the model ({self.n_users} customers); "
                    "pass recalculate_user=True to fold it in from user_items"
                )
            vectors = self.user_factors[ids]
        width = max(int(N), 0)
        out_ids = np.full((len(ids), width), -1, dtype=np.int64)
        out_scores = np.full((len(ids), width), -np.inf, dtype=np.float32)
        block = max(1, _SCORE_BLOCK // max(self.n_items, 1))
        liked = rows if filter_already_liked_items else None
        for start in range(0, len(ids), block):
            stop = min(start + block, len(ids))
            scores = self._scores(vectors[start:stop])
            exclude_liked(scores, None if liked is None else liked[start:stop], filter_items)
            out_ids[start:stop], out_scores[start:stop] = top_n_batch(scores, width)
        if single:
            keep = out_ids[0] >= 0
            return out_ids[0][keep], out_scores[0][keep]
        return out_ids, out_scores

    def recommend_from_items(
        self,
        item_indices: npt.ArrayLike,
        weights: npt.ArrayLike | None = None,
        N: int = 12,
        *,
        filter_already_liked_items: bool = True,
        filter_items: IntArray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` items for a customer known only by ``item_indices`` (see :meth:`user_vector`);
        those items are left out when ``filter_already_liked_items``."""
        self._check_fitted()
        items = self._item_array(item_indices)
        vector = self.user_vector(items, weights)
        scores = self._scores(vector[None, :])[0]
        exclude = [items] if filter_already_liked_items else []
        if filter_items is not None:
            exclude.append(np.asarray(filter_items, dtype=np.int64).reshape(-1))
        return top_n(scores, N, np.concatenate(exclude) if exclude else None)

    def user_query(self, vector: npt.ArrayLike) -> FloatArray:
        """A customer factor (from ``user_factors`` or :meth:`user_vector`) as a contiguous float32
        FAISS query. Its inner products with ``item_factors`` are the ALS scores; build the
        :class:`~models.index.ItemIndex` over ``item_factors`` (not :meth:`item_vectors`) to
        retrieve by them."""
        query = np.ascontiguousarray(vector, dtype=np.float32)
        if query.shape != (self.factors,):
            raise ValueError(f"a query has shape ({self.factors},), got {query.shape}")
        if not np.isfinite(query).all():
            raise ValueError("the query vector has non-finite values")
        return query

    # ----------------------------------------------------------------- fold-in

    def user_vector(
        self, item_indices: npt.ArrayLike, weights: npt.ArrayLike | None = None
    ) -> FloatArray:
        """A customer's factor from the items they interacted with: the exact ALS solve.

        ``weights`` are in the units of :attr:`TrainingData.user_items` (summed interaction weights
        from :data:`feature_store.schema.INTERACTION_WEIGHTS`; ``None`` means 1.0 each). Repeated
        items are summed and non-positive totals dropped, like the training matrix; then
        ``x = (YᵀY + λI + Σ (c_i − 1) y_i y_iᵀ)⁻¹ Σ c_i y_i`` with ``c_i = alpha · w_i`` — the
        same normal equations implicit's solver approximates during :meth:`fit`. With no
        positive items the result is the zero vector.
        """
        self._check_fitted()
        items = self._item_array(item_indices)
        if weights is None:
            w = np.ones(len(items), dtype=np.float64)
        else:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            if w.shape != items.shape:
                raise ValueError(f"{len(w)} weights for {len(items)} items")
            if not np.isfinite(w).all():
                raise ValueError("weights must be finite")
        return self._solve(items, w)

    def fold_in(self, user_items: sp.csr_matrix) -> FloatArray:
        """Factors (one row per row of ``user_items``) by :meth:`user_vector` of each row."""
        self._check_fitted()
        rows = user_rows(user_items, np.arange(user_items.shape[0]), self.n_items)
        out = np.zeros((rows.shape[0], self.factors), dtype=np.float32)
        for r in range(rows.shape[0]):
            start, end = rows.indptr[r], rows.indptr[r + 1]
            items = np.asarray(rows.indices[start:end], dtype=np.int64)
            out[r] = self._solve(items, np.asarray(rows.data[start:end], dtype=np.float64))
        return out

    def _solve(self, items: IntArray, weights: npt.NDArray[np.float64]) -> FloatArray:
        if len(items) > 1:
            order = np.argsort(items, kind="stable")
            items, weights = items[order], weights[order]
            repeated = items[1:] == items[:-1]
            if repeated.any():
                starts = np.flatnonzero(np.concatenate(([True], ~repeated)))
                items, weights = items[starts], np.add.reduceat(weights, starts)
        positive = weights > 0
        if not positive.all():
            items, weights = items[positive], weights[positive]
        if len(items) == 0:
            return np.zeros(self.factors, dtype=np.float32)
        confidence = self.alpha * weights
        y = self.item_factors[items].astype(np.float64)
        a = self._gram() + y.T @ (y * (confidence - 1.0)[:, None])
        b = y.T @ confidence
        # A is symmetric positive definite (λ > 0 and every c_i > 0): Cholesky via LAPACK posv.
        _, x, info = dposv(a, b, lower=False)
        if info != 0:  # numerically singular: fall back to a general solver
            x = np.linalg.lstsq(a, b, rcond=None)[0]
        return np.asarray(x, dtype=np.float32)

    # ----------------------------------------------------------- item similarity

    def similar_items(
        self, itemid: int, N: int = 12, *, filter_items: IntArray | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` items by cosine similarity of item factors, ``itemid`` itself excluded."""
        self._check_fitted()
        item = int(itemid)
        if not 0 <= item < self.n_items:
            raise ValueError(f"item index {item} is not in the model ({self.n_items} items)")
        vectors = self.item_vectors()
        scores = vectors @ vectors[item]
        exclude = np.asarray([item], dtype=np.int64)
        if filter_items is not None:
            exclude = np.concatenate([exclude, np.asarray(filter_items, dtype=np.int64).ravel()])
        return top_n(scores, N, exclude)

    def item_vectors(self) -> FloatArray:
        """L2-normalised item factors (n_items x factors, float32, read-only, cached): inner
        product = cosine similarity. Items with a zero factor stay zero."""
        self._check_fitted()
        if self._normalized is None:
            norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
            normalized = np.divide(
                self.item_factors,
                norms,
                out=np.zeros_like(self.item_factors),
                where=norms > 0,
            )
            normalized = np.ascontiguousarray(normalized, dtype=np.float32)
            normalized.flags.writeable = False
            self._normalized = normalized
        return self._normalized

    # ------------------------------------------------------------------ save/load

    def save(self, path: Path) -> None:
        """``path/arrays.npz`` (the factors) and ``path/config.json`` (hyperparameters)."""
        self._check_fitted()
        save_arrays(path, user_factors=self.user_factors, item_factors=self.item_factors)
        write_config(path, self._config())

    @classmethod
    def load(cls, path: Path) -> Self:
        config = read_model_config(path, cls.name)
        arrays = load_arrays(path)
        try:
            model = cls(
                factors=int(config["factors"]),
                regularization=float(config["regularization"]),
                alpha=float(config["alpha"]),
                iterations=int(config["iterations"]),
                random_state=config["random_state"],
                num_threads=int(config["num_threads"]),
            )
            user_factors, item_factors = arrays["user_factors"], arrays["item_factors"]
        except KeyError as exc:
            raise BundleError(f"{path} is not a complete ALS model: {exc} is missing") from exc
        for label, array, rows in (
            ("user_factors", user_factors, config.get("n_users")),
            ("item_factors", item_factors, config.get("n_items")),
        ):
            if array.ndim != 2 or array.shape[1] != model.factors or array.shape[0] != rows:
                raise BundleError(
                    f"{path}: {label} has shape {array.shape}, config says ({rows}, "
                    f"{model.factors})"
                )
        model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        model._fitted = True
        model._warm()
        return model

    def _config(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "format": _FORMAT,
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "random_state": self.random_state,
            "num_threads": self.num_threads,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "implicit_version": implicit.__version__,
        }

    # ------------------------------------------------------------------ helpers

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("ALSRecommender is not fitted: call fit() or load() first")

    def _reset_caches(self) -> None:
        self._normalized = None
        self._items64 = None
        self._gram64 = None

    def _warm(self) -> None:
        """Compute what every serving call needs (``YᵀY + λI``, the normalised item vectors) now,
        so the first request after fit/load is as fast as the rest."""
        self._gram()
        self.item_vectors()

    def _item_factors64(self) -> npt.NDArray[np.float64]:
        """float64 copy of ``item_factors`` for :meth:`recommend`'s scoring (made on first use)."""
        if self._items64 is None:
            self._items64 = self.item_factors.astype(np.float64)
        return self._items64

    def _gram(self) -> npt.NDArray[np.float64]:
        """``YᵀY + λI`` in float64, cached."""
        if self._gram64 is None:
            y = self.item_factors.astype(np.float64)
            self._gram64 = y.T @ y + self.regularization * np.eye(self.factors)
        return self._gram64

    def _scores(self, vectors: npt.NDArray[np.floating[Any]]) -> FloatArray:
        """``vectors @ item_factorsᵀ`` accumulated in float64, rounded to float32."""
        scores: FloatArray = (vectors.astype(np.float64) @ self._item_factors64().T).astype(
            np.float32
        )
        return scores

    def _item_array(self, item_indices: npt.ArrayLike) -> IntArray:
        items = np.asarray(item_indices).reshape(-1)
        if items.size and not np.issubdtype(items.dtype, np.integer):
            raise ValueError(f"item indices must be integers, got {items.dtype}")
        items = items.astype(np.int64, copy=False)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            bad = items[(items < 0) | (items >= self.n_items)][0]
            raise ValueError(f"item index {int(bad)} is not in the model ({self.n_items} items)")
        return items
