"""The one place Lookbook talks to FAISS: an inner-product index over item vectors.

:class:`ItemIndex` ranks items by inner product with a query. Over L2-normalised vectors (e.g.
:meth:`models.als.ALSRecommender.item_vectors`) that is cosine similarity; over raw ALS item
factors, queried with a customer factor, it is the ALS score.

Kinds: ``"flat"`` is exact (``IndexFlatIP``); ``"hnsw"`` is approximate (``IndexHNSWFlat``, inner
product); ``"auto"`` picks flat up to :data:`AUTO_FLAT_MAX_ITEMS` items and HNSW beyond.

Files: ``save(path)`` writes the FAISS index at ``path`` (``faiss.write_index``; no pickle) and a
small JSON beside it (``<path>.json``: kind, dim, n, HNSW settings).

Threads: the service answers one query per request, where FAISS's OpenMP threads only add
overhead; call :func:`set_threads` (``set_threads(1)``) once at start-up.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import faiss
import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from feature_store.errors import BundleError

from .base import FloatArray, IntArray

logger = logging.getLogger("lookbook.models")

IndexKind = Literal["auto", "flat", "hnsw"]
AUTO_FLAT_MAX_ITEMS = 200_000
_FORMAT = 1

ExcludeArg = Sequence[Sequence[int] | npt.NDArray[np.integer[Any]]] | Sequence[int] | None


_search_threads: int | None = None


def set_threads(n: int) -> None:
    """Use ``n`` OpenMP threads for every FAISS search from now on, in every thread.

    OpenMP's thread count is per calling thread, and a web server searches from a pool of worker
    threads, so the number is remembered here and applied by :meth:`ItemIndex.search` in whichever
    thread runs it (a cheap check). Without this, a search from a fresh worker thread uses all
    cores and, on a busy 2-core machine, runs ten times slower.
    """
    global _search_threads
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    _search_threads = int(n)
    faiss.omp_set_num_threads(int(n))


def _apply_search_threads() -> None:
    if _search_threads is not None and faiss.omp_get_max_threads() != _search_threads:
        faiss.omp_set_num_threads(_search_threads)


def answer_from_pool(
    pool: npt.NDArray[np.integer[Any]], blocked: npt.NDArray[np.integer[Any]], n: int
) -> IntArray | None:
    """The first ``n`` items of an index answer computed before, ``pool`` (best first, ``-1``
    padded; e.g. a customer's precomputed candidates), that are not ``blocked`` — what
    :meth:`ItemIndex.search` asked for ``n`` with those exclusions gives from the same answer.
    None when the pool is full but holds fewer than ``n`` once ``blocked`` is dropped (more may
    lie beyond it: search instead); a padded pool is all the index had, so it answers shorter."""
    if len(pool) == 0:
        return None
    kept = pool[pool >= 0].astype(np.int64)
    if len(blocked):
        kept = kept[~np.isin(kept, blocked)]
    if len(kept) >= n:
        return kept[:n]
    return kept if pool[-1] < 0 else None


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class ItemIndex:
    """A FAISS inner-product index over ``n`` item vectors of dimension ``dim``; item index =
    row of the vectors it was built from."""

    def __init__(
        self,
        index: faiss.Index,
        *,
        kind: Literal["flat", "hnsw"],
        hnsw_m: int | None = None,
        ef_search: int | None = None,
        ef_construction: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.index = index
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.seed = seed

    set_threads = staticmethod(set_threads)  # ItemIndex.set_threads(1) reads well at start-up

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(
        cls,
        vectors: npt.ArrayLike,
        *,
        kind: IndexKind | str = "auto",
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 40,
        seed: int = 0,
        build_threads: int | None = 1,
    ) -> Self:
        """Index the rows of ``vectors`` (n x d, finite).

        HNSW only: ``seed`` seeds the level assignment of the graph; ``build_threads`` is the
        OpenMP thread count while inserting (1, the default, gives a bit-reproducible graph;
        ``None`` keeps FAISS's setting, which is faster on several cores but lets thread timing
        shape the graph). The process-wide FAISS thread count is restored afterwards.
        """
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(f"vectors must be a 2-d (n x d) array, got shape {data.shape}")
        if not np.isfinite(data).all():
            raise ValueError("vectors contain NaN or infinite values")
        if kind not in ("auto", "flat", "hnsw"):
            raise ValueError(f"kind must be 'auto', 'flat' or 'hnsw', got {kind!r}")
        if hnsw_m < 2 or ef_search < 1 or ef_construction < 1:
            raise ValueError("hnsw_m must be >= 2 and ef_search, ef_construction >= 1")
        n, dim = data.shape
        chosen: Literal["flat", "hnsw"]
        if kind == "auto":
            chosen = "flat" if n <= AUTO_FLAT_MAX_ITEMS else "hnsw"
        else:
            chosen = "flat" if kind == "flat" else "hnsw"
        start = time.perf_counter()
        if chosen == "flat":
            index: faiss.Index = faiss.IndexFlatIP(dim)
            index.add(data)
            built = cls(index, kind="flat")
        else:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
            # the graph's level draws; FAISS's type hints do not declare these two names
            index.hnsw.rng = faiss.RandomGenerator(int(seed))  # type: ignore[attr-defined]
            previous = faiss.omp_get_max_threads()
            if build_threads is not None:
                faiss.omp_set_num_threads(int(build_threads))
            try:
                index.add(data)
            finally:
                faiss.omp_set_num_threads(previous)
            built = cls(
                index,
                kind="hnsw",
                hnsw_m=hnsw_m,
                ef_search=ef_search,
                ef_construction=ef_construction,
                seed=seed,
            )
        logger.info(
            "index: built %s over %d x %d in %.2fs", chosen, n, dim, time.perf_counter() - start
        )
        return built

    def search(
        self, queries: npt.ArrayLike, k: int, exclude: ExcludeArg = None
    ) -> tuple[IntArray, FloatArray]:
        """The ``k`` items with the largest inner product with each query, best first.

        ``queries`` is one vector (``d``; returns 1-d arrays of up to ``k`` results) or a matrix
        (``n x d``; returns ``n x k`` arrays padded with index ``-1`` / score ``-inf``).
        ``exclude`` holds, per query, item indices never to return: a list of ``n`` lists, or for
        a single query also a flat list of indices. FAISS is asked for ``k + len(exclude)``
        neighbours, so exclusions do not shorten the answer (HNSW may still return fewer).
        """
        _apply_search_threads()
        q = np.asarray(queries, dtype=np.float32)
        single = q.ndim == 1
        q = np.ascontiguousarray(q.reshape(1, -1) if single else q)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"queries must have shape (d,) or (n, d) with d={self.dim}, got {q.shape}"
            )
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or infinite values")
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        excluded = self._exclusions(exclude, q.shape[0], single)
        if single and k and len(self):  # one request's query: no padded arrays
            scores, ids = self.index.search(q, min(k + len(excluded[0]), len(self)))
            keep = ids[0] >= 0
            if len(excluded[0]):
                keep &= ~np.isin(ids[0], excluded[0])
            return ids[0][keep][:k].astype(np.int64), scores[0][keep][:k]
        out_ids = np.full((q.shape[0], k), -1, dtype=np.int64)
        out_scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        if k and len(self) and q.shape[0]:
            extra = max((len(e) for e in excluded), default=0)
            fetch = min(k + extra, len(self))
            scores, ids = self.index.search(q, fetch)
            for r in range(q.shape[0]):
                row_ids, row_scores = ids[r], scores[r]
                keep = row_ids >= 0
                if len(excluded[r]):
                    keep &= ~np.isin(row_ids, excluded[r])
                row_ids, row_scores = row_ids[keep][:k], row_scores[keep][:k]
                out_ids[r, : len(row_ids)] = row_ids
                out_scores[r, : len(row_ids)] = row_scores
        if single:
            valid = out_ids[0] >= 0
            return out_ids[0][valid], out_scores[0][valid]
        return out_ids, out_scores

    def all_neighbours(
        self,
        vectors: npt.ArrayLike,
        n: int,
        *,
        batch: int = 4096,
        show_progress: bool = False,
        threads: int | None = None,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """For every row of ``vectors`` (the vectors this index was built from), its ``n`` nearest
        other items, best first: ``(ids, scores)`` of shape ``n_items x n``, padded with ``-1`` /
        ``-inf``. Batched, so the whole catalog is answered offline in seconds (exact for flat).

        ``threads``: the OpenMP thread count of the searches in the calling thread (``None``
        keeps FAISS's setting). A flat index's scores come from a BLAS product whose blocking
        follows the thread count, so they can differ in the last float bit (and near ties swap)
        between thread counts: a table reproducible on any machine fixes the count."""
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        total = v.shape[0]
        ids = np.full((total, n), -1, dtype=np.int32)
        scores = np.full((total, n), -np.inf, dtype=np.float32)
        previous = faiss.omp_get_max_threads()
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))
        try:
            for start in tqdm(
                range(0, total, batch), desc="item neighbours", disable=not show_progress
            ):
                stop = min(start + batch, total)
                sims, found = self.index.search(v[start:stop], min(n + 1, len(self)))  # (D, I)
                rows = np.arange(start, stop)[:, None]
                keep = (found >= 0) & (found != rows)  # padding and the item itself
                # each row's kept entries first, in their order (a stable sort of the flags)
                order = np.argsort(~keep, axis=1, kind="stable")[:, :n]
                kept = np.take_along_axis(keep, order, axis=1)
                ids[start:stop, : order.shape[1]] = np.where(
                    kept, np.take_along_axis(found, order, axis=1), -1
                )
                scores[start:stop, : order.shape[1]] = np.where(
                    kept, np.take_along_axis(sims, order, axis=1), -np.inf
                )
        finally:
            faiss.omp_set_num_threads(previous)
        return ids, scores

    @staticmethod
    def _exclusions(exclude: ExcludeArg, n_queries: int, single: bool) -> list[IntArray]:
        empty = np.empty(0, dtype=np.int64)
        if exclude is None:
            return [empty] * n_queries
        items = list(exclude)
        if single and (not items or all(np.ndim(e) == 0 for e in items)):
            # a flat list of indices for the one query
            return [np.asarray(items, dtype=np.int64).reshape(-1)]
        if len(items) != n_queries:
            raise ValueError(f"exclude has {len(items)} lists for {n_queries} queries")
        return [np.asarray(e, dtype=np.int64).reshape(-1) for e in items]

    def set_ef_search(self, ef_search: int) -> None:
        """HNSW search breadth (recall vs latency); no effect on a flat index."""
        if ef_search < 1:
            raise ValueError(f"ef_search must be >= 1, got {ef_search}")
        index = self.index
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = int(ef_search)
            self.ef_search = int(ef_search)

    def save(self, path: Path) -> None:
        """Write the index to ``path`` and its description to ``<path>.json``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path))
        meta = {
            "format": _FORMAT,
            "kind": self.kind,
            "dim": self.dim,
            "n": len(self),
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "ef_construction": self.ef_construction,
            "seed": self.seed,
            "faiss_version": faiss.__version__,
        }
        _meta_path(path).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read an index written by :meth:`save`; raises ``BundleError`` if the files disagree."""
        meta_file = _meta_path(path)
        try:
            meta: dict[str, Any] = json.loads(meta_file.read_text())
        except FileNotFoundError as exc:
            raise BundleError(f"{meta_file} is missing") from exc
        except json.JSONDecodeError as exc:
            raise BundleError(f"{meta_file} is not valid JSON: {exc}") from exc
        if not path.is_file():
            raise BundleError(f"FAISS index file {path} is missing")
        try:
            # read_index returns the concrete class and owns it (downcast_index would not own it)
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise BundleError(f"{path} is not a readable FAISS index: {exc}") from exc
        kind = meta.get("kind")
        expected = faiss.IndexFlatIP if kind == "flat" else faiss.IndexHNSWFlat
        if kind not in ("flat", "hnsw") or not isinstance(index, expected):
            raise BundleError(f"{path}: index is {type(index).__name__}, metadata says {kind!r}")
        if index.d != meta.get("dim") or index.ntotal != meta.get("n"):
            raise BundleError(
                f"{path}: index is {index.ntotal} x {index.d}, metadata says "
                f"{meta.get('n')} x {meta.get('dim')}"
            )
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise BundleError(f"{path}: index metric is not inner product")
        loaded = cls(
            index,
            kind=kind,
            hnsw_m=meta.get("hnsw_m"),
            ef_search=meta.get("ef_search"),
            ef_construction=meta.get("ef_construction"),
            seed=meta.get("seed"),
        )
        if kind == "hnsw" and meta.get("ef_search"):
            loaded.set_ef_search(int(meta["ef_search"]))
        return loaded


#: An offline pass over an index served as HNSW is answered by an inverted file instead: about
#: ``4 * sqrt(n)`` lists, of which 1 in :data:`IVF_SCAN` is scanned per query unless
#: :meth:`BatchIndex.match` finds fewer enough.
IVF_SCAN = 32


class BatchIndex:
    """Answers many queries at once offline (the trainer's candidate pools, one per customer),
    over the vectors of a served index.

    ``exact``: a flat scan (the answers of a served flat index). Otherwise an inverted file
    (``IndexIVFFlat``, inner product) of about ``4 * sqrt(n)`` lists scanning 1 in
    :data:`IVF_SCAN`, or as few as :meth:`match` finds as close to the exact answers as a served
    HNSW graph. On the 1M-customer x 100k-item retailer, scanning 1 in 32 gives recall@36 against
    a flat scan of 0.56 for ALS (the graph: 0.32) and 0.92 for the LSTM (the graph: 0.91) at
    twice the graph's batch speed. k-means is seeded and every search runs on one FAISS thread,
    so the answers are reproducible."""

    def __init__(self, vectors: npt.ArrayLike, *, exact: bool, seed: int = 0) -> None:
        data = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(f"vectors must be a 2-d (n x d) array, got shape {data.shape}")
        n, dim = data.shape
        lists = min(max(1, round(4 * np.sqrt(n))), max(1, n // 39))  # k-means: >= 39 per list
        quantizer = None
        self._ivf: faiss.IndexIVFFlat | None = None
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            if exact or lists < 2 * IVF_SCAN:
                self.index: faiss.Index = faiss.IndexFlatIP(dim)
                self.exact = True
            else:
                quantizer = faiss.IndexFlatIP(dim)
                ivf = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
                ivf.cp.seed = int(seed)
                ivf.train(data)
                ivf.nprobe = max(1, lists // IVF_SCAN)
                self.index = self._ivf = ivf
                self.exact = False
            self.index.add(data)
        finally:
            faiss.omp_set_num_threads(previous)
        self._quantizer = quantizer  # kept alive beside the IVF, which does not own it
        self._vectors = data

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def nprobe(self) -> int | None:
        """Lists scanned per query (None: exact)."""
        return None if self._ivf is None else int(self._ivf.nprobe)

    def match(self, served: ItemIndex, queries: npt.ArrayLike, k: int) -> tuple[float, float]:
        """Scan the fewest lists (from 1 in 512 up to 1 in 8 of them, doubling) whose
        recall@``k`` against a flat scan, on the sample ``queries``, is at least ``served``'s:
        the offline answers are then as close to the exact ones as the served index's, at the
        least cost. Returns ``(this index's recall, served's recall)`` on the sample (both 1.0
        for an exact index)."""
        ivf = self._ivf
        if ivf is None:
            return 1.0, 1.0
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        truth = BatchIndex(self._vectors, exact=True).top_ids(q, k)
        target = _recall(served.search(q, k)[0], truth)
        start = max(1, int(ivf.nlist) // IVF_SCAN)
        ladder = sorted({max(1, start >> 4) << shift for shift in range(7)})  # 1/512 ... 1/8
        found = 0.0
        for nprobe in ladder:  # the cheapest first
            ivf.nprobe = nprobe
            found = _recall(self.top_ids(q, k), truth)
            if found >= target:
                return found, target
        return found, target  # none reached it: the widest scan of the ladder

    def top_ids(self, queries: npt.ArrayLike, k: int) -> npt.NDArray[np.int32]:
        """The ``k`` best items of each row of ``queries`` (``n x d``) as ``n x k`` item indices,
        best first, padded with ``-1``; nothing excluded."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {q.shape}")
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        out = np.full((q.shape[0], k), -1, dtype=np.int32)
        if not (k and len(self) and q.shape[0]):
            return out
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or infinite values")
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            _, found = self.index.search(q, min(k, len(self)))
        finally:
            faiss.omp_set_num_threads(previous)
        out[:, : found.shape[1]] = found
        return out


def _recall(found: npt.NDArray[np.integer[Any]], truth: npt.NDArray[np.integer[Any]]) -> float:
    """Mean share of each row of ``truth`` (``-1`` padded) that the row of ``found`` holds."""
    hits = total = 0
    for f, t in zip(found, truth, strict=True):
        wanted = t[t >= 0]
        hits += len(np.intersect1d(f[f >= 0], wanted))
        total += len(wanted)
    return hits / total if total else 1.0
