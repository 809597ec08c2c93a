"""Work the trainer does on a second thread while its own phase keeps one core busy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from models.bundle import SimilarItems
from models.index import ItemIndex

logger = logging.getLogger("lookbook.training")

_T = TypeVar("_T")


class Background:
    """Work done on one background thread while the trainer's own phase keeps one core busy.

    Two kinds of work release the GIL for most of their time and read only finished models:
    the held-out lists of ALS and popularity, ranked while the LSTM (one torch thread) fits
    (:meth:`HeldOutLists.prefetch`), and the bundle's FAISS work from the refit on — the HNSW
    graphs and the exact similar-items table, beside the LSTM refit, profiles, complete the look
    and size-fit, collected last by the bundle writer. Each result is the one an inline run gives
    (HNSW is built on one thread either way). The similar-items table is searched on one FAISS
    thread, so it is the same on any machine: a search on FAISS's default threads (one per core)
    rounds a few scores differently in the last float bit, by the core count, which can swap
    near ties.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookbook-background")
        #: seconds the background thread spent on its tasks (the manifest's timings)
        self.busy_seconds = 0.0

    def submit(self, task: Callable[[], _T]) -> Future[_T]:
        """Run ``task`` on the background thread, after the tasks submitted before it."""

        def run() -> _T:
            start = time.perf_counter()
            try:
                return task()
            finally:
                self.busy_seconds += time.perf_counter() - start

        return self._pool.submit(run)

    def build(self, vectors: npt.ArrayLike, *, kind: str, seed: int) -> Future[ItemIndex]:
        """:meth:`ItemIndex.build` over (a copy of) ``vectors``."""
        data = np.array(vectors, dtype=np.float32, order="C")
        return self.submit(lambda: ItemIndex.build(data, kind=kind, seed=seed))

    def similar_items(
        self, vectors: npt.ArrayLike, *, kind: str, seed: int, n: int
    ) -> Future[tuple[ItemIndex, SimilarItems]]:
        """The similar-items index over (a copy of) ``vectors`` and every item's ``n`` nearest
        other items in it (:meth:`ItemIndex.all_neighbours`, on one FAISS thread)."""
        data = np.array(vectors, dtype=np.float32, order="C")

        def task() -> tuple[ItemIndex, SimilarItems]:
            start = time.perf_counter()
            index = ItemIndex.build(data, kind=kind, seed=seed)
            ids, scores = index.all_neighbours(data, n, threads=1)
            logger.info(
                "similar items: %d neighbours of %d items in %.1fs (background)",
                n,
                len(data),
                time.perf_counter() - start,
            )
            return index, SimilarItems(ids, scores)

        return self.submit(task)

    def close(self) -> None:
        """Stop taking work; tasks not started are dropped (after a failure the running one
        finishes on its own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
