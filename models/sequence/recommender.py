"""The LSTM sequence recommender: fit, recommend for known customers and for any history in
time order, item vectors for a FAISS index, save and load.

``SequenceRecommender(config, item_features=ItemFeatures.from_frame(items, item_ids))`` then
``fit(data, sizes=...)`` (``sizes[e]``: the size string of event ``e``, ``None`` when unknown;
``training.evaluate.event_sizes`` builds it); after ``fit`` or ``load``: ``recommend`` for training
customers, ``recommend_from_sequence`` / ``recommend_sequences`` for any history,
``item_vectors`` and ``session_vector`` for retrieval, ``repeat_scores`` for the repeat term.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import torch

from feature_store.errors import BundleError
from feature_store.schema import InteractionType
from feature_store.timeutils import SECONDS_PER_DAY, decay
from models.base import (
    FloatArray,
    IntArray,
    Recommender,
    TrainingData,
    as_userids,
    load_arrays,
    read_model_config,
    save_arrays,
    top_n,
    top_n_batch,
    user_rows,
    write_config,
)
from models.index import answer_from_pool

from .config import SequenceConfig
from .encoding import PURCHASE, TYPE_ORDER, UNKNOWN, ItemFeatures, encode_event_sizes
from .fitting import EpochTrainer
from .network import SequenceNet, torch_session
from .numpy_lstm import NumpyLSTM
from .windows import Coded, Histories, UserEvents, Windows, keep_histories, training_windows

logger = logging.getLogger("lookbook.models.sequence")

_FORMAT = 1
SequenceInput = Sequence[int] | npt.NDArray[np.integer[Any]]
#: histories encoded and scored together by ``_rank`` (bounds memory: chunk x n_items scores)
_RANK_CHUNK = 256
#: histories encoded together by ``user_sessions`` (the LSTM batch of the offline pass)
_SESSION_CHUNK = 4096


def repeat_features(
    items: IntArray, times: npt.NDArray[np.int64] | None, now: int | None, half_life_days: float
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """``(distinct items, features (n x 2))`` of a history: ``log1p(count)`` and
    ``log1p(Σ 0.5 ** (age_days / half_life))``; with unknown times every occurrence is recent."""
    if len(items) == 0:
        return np.empty(0, np.int64), np.empty((0, 2), np.float32)
    if times is None or now is None:
        weight = np.ones(len(items), dtype=np.float64)
    else:
        age = np.maximum(int(now) - np.asarray(times, dtype=np.int64), 0) / SECONDS_PER_DAY
        weight = decay(age, half_life_days)
    distinct, inverse = np.unique(items, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(distinct)).astype(np.float64)
    decayed = np.bincount(inverse, weights=weight, minlength=len(distinct))
    features = np.log1p(np.stack([counts, decayed], axis=1))
    return distinct.astype(np.int64), features.astype(np.float32)


class SequenceRecommender(Recommender):
    """The LSTM sequence recommender (the network: :class:`~models.sequence.SequenceNet`).

    ``SequenceRecommender(config, item_features=...)``; after :meth:`fit` / :meth:`load`:
    ``item_vectors()`` (``n_items x (D+1)``), ``session_vector(items, sizes)`` (``D+1``),
    ``recommend`` for training customers and ``recommend_from_sequence`` for any history.

    It is trained with a softmax cross-entropy (``loss="sampled"``: the batch's targets and
    history items plus ``num_negatives`` uniform negatives; ``loss="full"``: the whole catalog)
    to predict the items of the next basket (the next distinct timestamp with a target-type
    event; ``target="next_item"``: the very next event).

    Retrieval: ``item_vectors()`` is ``[v_i, b_i]`` and ``session_vector`` is ``[u, 1]``, so a
    FAISS inner-product :class:`~models.index.ItemIndex` over the item vectors ranks by ``u · v_i
    + b_i``; the repeat term (:meth:`repeat_scores`, non-zero only for the history's items) is
    added to the FAISS candidates plus the history items, so the final ranking is exact. Without
    an index the scores are computed exactly with numpy.

    ``fit`` keeps each training customer's last ``max_len`` input events, which
    :meth:`recommend` answers from; a customer whose history grew after training, or an
    anonymous session, is answered by :meth:`recommend_from_sequence`. ``save`` writes the
    ``state_dict`` as numpy arrays in ``arrays.npz`` plus ``config.json`` (no pickle); ``load``
    rebuilds the module and gives identical outputs.
    """

    name: ClassVar[str] = "sequence"

    def __init__(
        self, config: SequenceConfig | None = None, *, item_features: ItemFeatures | None = None
    ) -> None:
        self.config = config or SequenceConfig()
        self.item_features = item_features
        self.size_vocab: list[str] = [UNKNOWN]
        self._size_lookup: tuple[list[str] | None, dict[str, int]] = (None, {})
        self.net: SequenceNet | None = None
        self.histories = Histories()
        self.n_users = 0
        self.n_items = 0 if item_features is None else item_features.n_items
        self.trained_until = 0
        self.train_seconds = 0.0
        self.loss_history: list[float] = []
        self.stopped_by_budget = False  # the last fit ended early on max_train_seconds
        self._vectors: FloatArray | None = None
        self._table: torch.Tensor | None = None  # item vectors without the bias, for the LSTM
        self._numpy_net: NumpyLSTM | None = None  # single-history inference without torch
        self._index: Any = None

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        data: TrainingData,
        *,
        show_progress: bool = False,
        sizes: Sequence[str | None] | None = None,
    ) -> Self:
        """Train on ``data``'s events in time order; ``sizes[e]`` is event ``e``'s size (or None).

        Input steps are every event except impressions and returns; targets are the events of
        ``config.target_types``. Returns ``self``.
        """
        c = self.config
        n_events = len(data.item_idx)
        if sizes is not None and len(sizes) != n_events:
            raise ValueError(f"{len(sizes)} sizes for {n_events} events")
        if self.item_features is not None and self.item_features.n_items != data.n_items:
            raise ValueError(
                f"item_features has {self.item_features.n_items} items, the data {data.n_items}"
            )
        self.n_items, self.n_users = data.n_items, data.n_users
        self.trained_until = int(data.now)
        self.size_vocab, size_codes = encode_event_sizes(sizes, n_events)
        target_codes = np.asarray([TYPE_ORDER.index(InteractionType(t)) for t in c.target_types])
        events = UserEvents.build(data, size_codes)
        self.histories = keep_histories(events, data.n_users, c.max_len)
        if c.max_windows is None:
            # every customer's windows, the same in every epoch
            fixed = training_windows(
                (events.sequence(k) for k in range(len(events))), target_codes, c
            )

            def windows_of(epoch: int) -> Windows:
                return fixed

        else:
            # a fresh seeded sample of customers per epoch, cut until max_windows windows; its
            # own random stream, so the rest of training draws what it draws without the cap
            sampler = np.random.default_rng([c.seed, 0x5EC])
            limit = c.max_windows

            def windows_of(epoch: int) -> Windows:
                order = sampler.permutation(len(events))
                return training_windows(
                    (events.sequence(int(k)) for k in order), target_codes, c, limit
                )

        start = time.perf_counter()
        with torch_session(c.num_threads, c.seed):
            self.net = SequenceNet(c, self.n_items, self.item_features, len(self.size_vocab))
            trainer = EpochTrainer(self.net, c, self.n_items)
            self.loss_history, seen = trainer.run(windows_of, show_progress, start)
            self.stopped_by_budget = trainer.stopped_by_budget
            self.net.eval()
        self.train_seconds = time.perf_counter() - start
        self._vectors = None
        self._table = None
        self._numpy_net = None
        self._index = None
        logger.info(
            "sequence: %d windows, %d targets, %d/%d epochs in %.1fs (final loss %.3f, seed %d)",
            seen[0],
            seen[1],
            len(self.loss_history),
            c.epochs,
            self.train_seconds,
            self.loss_history[-1] if self.loss_history else float("nan"),
            c.seed,
        )
        return self

    # ------------------------------------------------------------------ inference

    def _check_fitted(self) -> SequenceNet:
        if self.net is None:
            raise RuntimeError("SequenceRecommender is not fitted: call fit() or load() first")
        return self.net

    def item_vectors(self) -> FloatArray:
        """``[v_i, b_i]`` for every item (``n_items x (output_dim + 1)``, float32, read-only):
        the inner product with :meth:`session_vector` is the model's score before the repeat
        term."""
        net = self._check_fitted()
        if self._vectors is None:
            with torch_session(self.config.num_threads, None), torch.no_grad():
                table = net.item_table().numpy()
                bias = net.biases().numpy()[:, None]
            vectors = np.ascontiguousarray(np.concatenate([table, bias], axis=1), dtype=np.float32)
            vectors.flags.writeable = False
            self._vectors = vectors
        return self._vectors

    def use_index(self, index: Any) -> None:
        """Retrieve through ``index`` (a :class:`~models.index.ItemIndex` built over
        :meth:`item_vectors`) instead of exact numpy scoring; ``None`` goes back to exact."""
        if index is not None and (
            index.dim != self.item_vectors().shape[1] or len(index) != self.n_items
        ):
            raise ValueError("the index was not built over this model's item_vectors()")
        self._index = index

    def encode_sizes(self, sizes: Sequence[str | None] | None, n: int) -> IntArray:
        """Size codes of a history (unknown or missing sizes are 0)."""
        if sizes is None:
            return np.zeros(n, dtype=np.int64)
        if len(sizes) != n:
            raise ValueError(f"{len(sizes)} sizes for {n} items")
        vocab, lookup = self._size_lookup
        if vocab is not self.size_vocab:  # built once per vocabulary (fit / load set it)
            lookup = {s: k for k, s in enumerate(self.size_vocab)}
            self._size_lookup = (self.size_vocab, lookup)
        return np.asarray([lookup.get(s, 0) if s is not None else 0 for s in sizes], dtype=np.int64)

    def _prepare(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None,
        event_types: Sequence[int] | None,
        timestamps: SequenceInput | None,
    ) -> Coded:
        items = np.asarray(item_indices, dtype=np.int64).reshape(-1)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            bad = items[(items < 0) | (items >= self.n_items)][0]
            raise ValueError(f"item index {int(bad)} is not in the model ({self.n_items} items)")
        codes = self.encode_sizes(sizes, len(items))
        if event_types is None:
            types = np.full(len(items), PURCHASE, dtype=np.int64)
        else:
            types = np.asarray(event_types, dtype=np.int64).reshape(-1)
            if types.shape != items.shape:
                raise ValueError(f"{len(types)} event types for {len(items)} items")
        times = None
        if timestamps is not None:
            times = np.asarray(timestamps, dtype=np.int64).reshape(-1)
            if times.shape != items.shape:
                raise ValueError(f"{len(times)} timestamps for {len(items)} items")
        return Coded(items, codes, types, times)

    def _encode(self, histories: Sequence[Coded]) -> tuple[FloatArray, FloatArray]:
        """``([u, 1]`` per history ``(B x (D+1))``, repeat weights ``beta(u)`` ``(B x 2))``.

        Only the last ``max_len`` steps are read; an empty history gives the LSTM's state before
        any step (its scores rank items by what follows "nothing", close to popularity).
        """
        net = self._check_fitted()
        c = self.config
        n = len(histories)
        out = np.ones((n, c.output_dim + 1), dtype=np.float32)
        if n == 0:
            return out, np.zeros((0, 2), dtype=np.float32)
        lengths = np.asarray([min(len(h.items), c.max_len) for h in histories], dtype=np.int64)
        width = max(int(lengths.max()), 1)
        items = np.zeros((n, width), dtype=np.int64)
        sizes = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for r, h in enumerate(histories):
            length = int(lengths[r])
            if length:
                items[r, :length] = h.items[-length:] + 1
                sizes[r, :length] = h.sizes[-length:]
                types[r, :length] = h.types[-length:] + 1
        if n == 1 and c.num_layers == 1:  # one request's history: numpy, no torch overhead
            if self._numpy_net is None:
                self._numpy_net = NumpyLSTM.of(net, self.item_vectors()[:, :-1])
            length = int(lengths[0])
            session = self._numpy_net.session(
                items[0, :length] - 1, sizes[0, :length], types[0, :length]
            )
            out[0, :-1] = session
            betas = self._numpy_net.repeat_weight(session)[None, :]
            if not c.repeat:
                betas = np.zeros((1, 2), dtype=np.float32)
            return out, betas
        if self._table is None:
            self._table = torch.from_numpy(np.ascontiguousarray(self.item_vectors()[:, :-1]))
        table = self._table
        with torch_session(c.num_threads, None), torch.no_grad():
            states = net(
                torch.from_numpy(items), torch.from_numpy(sizes), torch.from_numpy(types), table
            )
            last = torch.from_numpy(np.maximum(lengths - 1, 0))
            sessions = states[torch.arange(n), last]
            if (lengths == 0).any():
                empty = net.head(torch.zeros(1, c.hidden_dim))[0]
                sessions[torch.from_numpy(lengths == 0)] = empty
            betas = net.repeat_weight(sessions).numpy()
            out[:, :-1] = sessions.numpy()
        if not c.repeat:
            betas = np.zeros((n, 2), dtype=np.float32)
        return out, np.asarray(betas, dtype=np.float32)

    def session_vector(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None = None,
        event_types: Sequence[int] | None = None,
    ) -> FloatArray:
        """``[u, 1]`` (``output_dim + 1``) for a history of item indices in time order.

        ``sizes`` are the sizes bought (strings as in the training data, ``None`` when unknown);
        ``event_types`` index :class:`~feature_store.schema.InteractionType` in declaration order
        (default: purchases). The full score of item ``i`` is ``item_vectors()[i] · [u, 1]`` plus,
        for items in the history, the repeat term of :meth:`repeat_scores`.
        """
        return self._encode([self._prepare(item_indices, sizes, event_types, None)])[0][0]

    def repeat_scores(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None = None,
        event_types: Sequence[int] | None = None,
        timestamps: SequenceInput | None = None,
        now: int | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """``(items, boost)``: the repeat term added to the scores of the history's items,
        ``beta_1(u) · log1p(count) + beta_2(u) · log1p(Σ 0.5 ** (age_days / half_life))`` (ages
        from ``timestamps`` and ``now``, seconds since the epoch; without them every occurrence
        counts as recent)."""
        coded = self._prepare(item_indices, sizes, event_types, timestamps)
        _, betas = self._encode([coded])
        items, feature = repeat_features(
            coded.items, coded.times, now, self.config.repeat_half_life_days
        )
        return items, (feature @ betas[0]).astype(np.float32)

    def user_sessions(self, users: IntArray) -> FloatArray:
        """``[u, 1]`` (``len(users) x (output_dim + 1)``) of training customers ``users`` from the
        histories kept at fit, encoded in batches: the queries of their precomputed candidate
        pools (:meth:`recommend_from_sequence`'s ``candidates``)."""
        self._check_fitted()
        ids = np.asarray(users, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_users):
            raise ValueError(f"customer indices must be in [0, {self.n_users})")
        out = np.empty((len(ids), self.config.output_dim + 1), dtype=np.float32)
        for lo in range(0, len(ids), _SESSION_CHUNK):
            chunk = ids[lo : lo + _SESSION_CHUNK]
            out[lo : lo + len(chunk)] = self._encode([self.histories.row(int(u)) for u in chunk])[0]
        return out

    def _rank(
        self,
        coded: Sequence[Coded],
        nows: Sequence[int | None],
        k: int,
        excludes: Sequence[IntArray | None],
        pools: Sequence[IntArray | None] | None = None,
        sessions: Sequence[FloatArray | None] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        n = len(coded)
        width = max(int(k), 0)
        out_ids = np.full((n, width), -1, dtype=np.int64)
        out_scores = np.full((n, width), -np.inf, dtype=np.float32)
        item_vectors = self.item_vectors()
        for lo in range(0, n, _RANK_CHUNK):
            hi = min(lo + _RANK_CHUNK, n)
            stored = None if sessions is None else sessions[lo:hi]
            if stored is not None and all(v is not None for v in stored):  # encoded at training
                vectors = np.stack(stored).astype(np.float32, copy=False)  # type: ignore[arg-type]
                betas = self._repeat_weights(vectors)
            else:
                vectors, betas = self._encode(coded[lo:hi])
            # exact scores of the chunk in one matrix product (a row at a time is ~15x slower)
            exact = None if self._index is not None else vectors @ item_vectors.T
            for j, r in enumerate(range(lo, hi)):
                rep_items, feature = repeat_features(
                    coded[r].items, coded[r].times, nows[r], self.config.repeat_half_life_days
                )
                boost = feature @ betas[j]
                if exact is not None:  # the row as top_n would rank it; ranked below, all at once
                    scores = exact[j]
                    scores[rep_items] += boost
                    excl = excludes[r]
                    if excl is not None and len(excl):
                        scores[excl[(excl >= 0) & (excl < len(scores))]] = -np.inf
                    continue
                given = excludes[r]
                blocked: IntArray = given if given is not None else np.empty(0, np.int64)
                wanted = width + len(rep_items)
                pooled = None if pools is None else pools[r]
                found_ids = None if pooled is None else answer_from_pool(pooled, blocked, wanted)
                if found_ids is None:
                    found, _ = self._index.search(vectors[j], wanted, exclude=blocked)
                    found_ids = np.asarray(found, np.int64).reshape(-1)
                pool = np.unique(np.concatenate([found_ids[found_ids >= 0], rep_items]))
                pool = pool[~np.isin(pool, blocked)]
                # rank the pool alone (sorted by item, so ties still go to the lower item)
                pool_scores = item_vectors[pool] @ vectors[j]
                at = np.searchsorted(pool, rep_items)
                hit = at < len(pool)
                hit[hit] = pool[at[hit]] == rep_items[hit]
                pool_scores[at[hit]] += boost[hit]
                top, vals = top_n(pool_scores, width)
                ids = pool[top]
                out_ids[r, : len(ids)] = ids
                out_scores[r, : len(vals)] = vals
            if exact is not None:
                out_ids[lo:hi], out_scores[lo:hi] = top_n_batch(exact, width)
        return out_ids, out_scores

    def _repeat_weights(self, vectors: FloatArray) -> FloatArray:
        """The repeat weights ``beta(u)`` (``B x 2``) of session vectors ``[u, 1]`` (``B x
        (D+1)``), as :meth:`_encode` gives them beside the sessions it encodes."""
        if not self.config.repeat:
            return np.zeros((len(vectors), 2), dtype=np.float32)
        net = self._check_fitted()
        if len(vectors) == 1 and self.config.num_layers == 1:  # as _encode's one-history path
            if self._numpy_net is None:
                self._numpy_net = NumpyLSTM.of(net, self.item_vectors()[:, :-1])
            return self._numpy_net.repeat_weight(vectors[0, :-1])[None, :]
        with torch_session(self.config.num_threads, None), torch.no_grad():
            weights = net.repeat_weight(torch.from_numpy(np.ascontiguousarray(vectors[:, :-1])))
        return np.asarray(weights.numpy(), dtype=np.float32)

    def recommend_from_sequence(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None = None,
        k: int = 12,
        exclude: SequenceInput | None = None,
        event_types: Sequence[int] | None = None,
        timestamps: SequenceInput | None = None,
        now: int | None = None,
        candidates: npt.NDArray[np.integer[Any]] | None = None,
        session: FloatArray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``k`` items (1-d indices, scores) for a history in time order — a known customer's
        history including events after training, or an anonymous session. ``exclude`` lists item
        indices never to return (e.g. what was already bought); ``timestamps``/``now`` (seconds)
        age the repeat term.

        ``candidates``: the index's answer for this very history computed before (a training
        customer's precomputed pool, best first, ``-1`` padded), used instead of searching the
        index when it holds as many items as the search would fetch; otherwise ignored.

        ``session``: the session vector ``[u, 1]`` of this very history encoded before (a
        training customer's, :meth:`user_sessions`), used instead of running the LSTM."""
        coded = self._prepare(item_indices, sizes, event_types, timestamps)
        excl = None if exclude is None else np.asarray(exclude, dtype=np.int64).reshape(-1)
        pool = None if candidates is None else np.asarray(candidates).reshape(-1)
        ids, scores = self._rank([coded], [now], k, [excl], [pool], [session])
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def recommend_sequences(
        self,
        histories: Sequence[SequenceInput],
        sizes: Sequence[Sequence[str | None] | None] | None = None,
        k: int = 12,
        exclude: Sequence[SequenceInput | None] | None = None,
        event_types: Sequence[Sequence[int] | None] | None = None,
        timestamps: Sequence[SequenceInput | None] | None = None,
        now: Sequence[int | None] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Batched :meth:`recommend_from_sequence`: 2-d arrays, one row per history, padded with
        ``-1`` / ``-inf``."""
        coded = [
            self._prepare(
                h,
                None if sizes is None else sizes[r],
                None if event_types is None else event_types[r],
                None if timestamps is None else timestamps[r],
            )
            for r, h in enumerate(histories)
        ]
        excludes = [
            None
            if exclude is None or exclude[r] is None
            else np.asarray(exclude[r], dtype=np.int64)
            for r in range(len(histories))
        ]
        nows = list(now) if now is not None else [None] * len(histories)
        return self._rank(coded, nows, k, excludes)

    def recommend(
        self,
        userid: int | IntArray,
        user_items: sp.csr_matrix,
        N: int = 12,
        *,
        filter_already_liked_items: bool = True,
        filter_items: IntArray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` for training customers from the histories kept at fit, as of the end of
        training (see the base class for the shapes). A customer without history gets the
        empty-history ranking."""
        self._check_fitted()
        ids, single = as_userids(userid)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_users):
            bad = ids[(ids < 0) | (ids >= self.n_users)][0]
            raise ValueError(
                f"customer index {int(bad)} is not in the model ({self.n_users} customers); "
                "use recommend_from_sequence"
            )
        rows = user_rows(user_items, ids, self.n_items) if filter_already_liked_items else None
        extra = (
            None if filter_items is None else np.asarray(filter_items, dtype=np.int64).reshape(-1)
        )
        excludes: list[IntArray | None] = []
        for r in range(len(ids)):
            parts = []
            if rows is not None:
                parts.append(
                    np.asarray(rows.indices[rows.indptr[r] : rows.indptr[r + 1]], dtype=np.int64)
                )
            if extra is not None:
                parts.append(extra)
            excludes.append(np.concatenate(parts) if parts else None)
        coded = [self.histories.row(int(u)) for u in ids]
        out_ids, out_scores = self._rank(coded, [self.trained_until] * len(ids), int(N), excludes)
        if single:
            keep = out_ids[0] >= 0
            return out_ids[0][keep], out_scores[0][keep]
        return out_ids, out_scores

    def history_of(
        self, user: int
    ) -> tuple[IntArray, list[str | None], IntArray, npt.NDArray[np.int64]]:
        """``(items, sizes, event types, timestamps)`` kept at fit for training customer ``user``
        (time order, at most ``max_len``): the service appends the events that arrived since and
        calls :meth:`recommend_from_sequence` with them."""
        if not 0 <= int(user) < self.n_users:
            raise ValueError(
                f"customer index {user} is not in the model ({self.n_users} customers)"
            )
        row = self.histories.row(int(user))
        sizes = [None if code == 0 else self.size_vocab[int(code)] for code in row.sizes]
        times = row.times if row.times is not None else np.zeros(len(row.items), np.int64)
        return row.items.copy(), sizes, row.types.copy(), times.copy()

    def similar_items(
        self, itemid: int, N: int = 12, *, filter_items: IntArray | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` items by cosine similarity of the item vectors ``v_i`` (itself excluded)."""
        vectors = self.item_vectors()[:, :-1]
        item = int(itemid)
        if not 0 <= item < self.n_items:
            raise ValueError(f"item index {item} is not in the model ({self.n_items} items)")
        norms = np.linalg.norm(vectors, axis=1)
        scores = (vectors @ vectors[item]) / np.maximum(norms * norms[item], 1e-12)
        exclude = np.asarray([item], dtype=np.int64)
        if filter_items is not None:
            exclude = np.concatenate([exclude, np.asarray(filter_items, dtype=np.int64).ravel()])
        return top_n(scores, N, exclude)

    # ------------------------------------------------------------------ save / load

    def save(self, path: Path) -> None:
        """``path/arrays.npz``: every ``state_dict`` tensor as ``param.<name>``, the item feature
        codes and the kept histories; ``path/config.json``: hyperparameters and vocabularies."""
        net = self._check_fitted()
        arrays: dict[str, np.ndarray] = {
            f"param.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()
        }
        if self.item_features is not None:
            arrays.update(self.item_features.to_arrays())
        arrays.update(
            hist_indptr=self.histories.indptr,
            hist_items=self.histories.items,
            hist_sizes=self.histories.sizes,
            hist_types=self.histories.types,
            hist_times=self.histories.times,
        )
        save_arrays(path, **arrays)
        write_config(
            path,
            {
                "model": self.name,
                "format": _FORMAT,
                "config": self.config.to_dict(),
                "n_items": self.n_items,
                "n_users": self.n_users,
                "trained_until": self.trained_until,
                "size_vocab": self.size_vocab,
                "item_features": None
                if self.item_features is None
                else self.item_features.to_config(),
                "train_seconds": round(self.train_seconds, 3),
                "loss_history": [round(v, 6) for v in self.loss_history],
                "stopped_by_budget": self.stopped_by_budget,
                "torch_version": torch.__version__,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        config = read_model_config(path, cls.name)
        arrays = load_arrays(path)
        try:
            features = (
                None
                if config["item_features"] is None
                else ItemFeatures.from_saved(config["item_features"], arrays)
            )
            model = cls(SequenceConfig.from_dict(config["config"]), item_features=features)
            model.n_items = int(config["n_items"])
            model.n_users = int(config["n_users"])
            model.trained_until = int(config["trained_until"])
            model.size_vocab = [str(s) for s in config["size_vocab"]]
            model.train_seconds = float(config.get("train_seconds", 0.0))
            model.loss_history = [float(v) for v in config.get("loss_history", [])]
            model.stopped_by_budget = bool(config.get("stopped_by_budget", False))
            model.histories = Histories(
                indptr=arrays["hist_indptr"].astype(np.int64),
                items=arrays["hist_items"].astype(np.int64),
                sizes=arrays["hist_sizes"].astype(np.int64),
                types=arrays["hist_types"].astype(np.int64),
                times=arrays["hist_times"].astype(np.int64),
            )
            state = {
                k[len("param.") :]: torch.from_numpy(v.copy())
                for k, v in arrays.items()
                if k.startswith("param.")
            }
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"{path} is not a complete sequence model: {exc}") from exc
        net = SequenceNet(model.config, model.n_items, features, len(model.size_vocab))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"{path}: weights do not fit the saved configuration: {exc}") from exc
        net.eval()
        model.net = net
        return model
