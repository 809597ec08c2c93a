"""Each training customer's candidate pools, computed at training so the service only filters them.

The personalized feed's two retrieval sources search a FAISS index per request: ALS with the
customer's factor, the LSTM with the session vector of the customer's history. For a customer with
no events since training both queries are known when the bundle is written, so the trainer asks
each index once for every customer (:meth:`models.index.ItemIndex.top_ids`, in batches) and
stores the answers (:class:`models.bundle.CustomerPools`, ``pools/<source>.npy``). A request
then reads a row and drops the customer's exclusions
(:func:`models.index.answer_from_pool`); it searches only when the customer has events since
training, the request names a category, or the row is too short for the list asked for.

The LSTM's session vectors are encoded on the calling (main) thread, with the model's own torch
threads, since torch's thread count is process-wide; the searches, which release the GIL, run
on the trainer's background thread (:class:`training.background.Background`) beside the phases
that follow the refit.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from models.bundle import CustomerPools
from models.index import ItemIndex
from models.sequence import SequenceRecommender
from training.background import Background

logger = logging.getLogger("lookbook.training")

#: queries per FAISS call (bounds the answer arrays: batch x size x 12 bytes)
_BATCH = 65_536


def search_pools(index: ItemIndex, queries: npt.NDArray[np.float32], size: int) -> CustomerPools:
    """The ``size`` best items of ``index`` for every row of ``queries`` (one FAISS thread, in
    batches): a source's :class:`CustomerPools`."""
    ids = np.full((len(queries), size), -1, dtype=np.int32)
    for lo in range(0, len(queries), _BATCH):
        hi = min(lo + _BATCH, len(queries))
        ids[lo:hi] = index.top_ids(queries[lo:hi], size, threads=1)
    return CustomerPools(ids)


def customer_pools(
    background: Background,
    size: int,
    *,
    als_factors: npt.NDArray[np.float32],
    als_index: Future[ItemIndex],
    sequence: SequenceRecommender | None = None,
    sequence_index: Future[ItemIndex] | None = None,
) -> Future[dict[str, CustomerPools]]:
    """Source name (``als``, ``sequence``) → the pools of every training customer, ``size``
    candidates each; the searches run on ``background`` after the indexes it is building."""
    sessions = None
    if sequence is not None and sequence_index is not None:
        start = time.perf_counter()
        sessions = sequence.user_sessions(np.arange(sequence.n_users))
        logger.info(
            "pools: %d LSTM session vectors in %.1fs", len(sessions), time.perf_counter() - start
        )
    factors = np.array(als_factors, dtype=np.float32, order="C")

    def task() -> dict[str, CustomerPools]:
        start = time.perf_counter()
        pools = {"als": search_pools(als_index.result(), factors, size)}
        if sessions is not None and sequence_index is not None:
            pools["sequence"] = search_pools(sequence_index.result(), sessions, size)
        logger.info(
            "pools: %d candidates of %s for %d customers in %.1fs (background)",
            size,
            " and ".join(pools),
            len(factors),
            time.perf_counter() - start,
        )
        return pools

    return background.submit(task)
