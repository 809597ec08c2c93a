"""Each training customer's candidate pools, computed at training so the service only filters them.

The personalized feed's two retrieval sources search a FAISS index per request: ALS with the
customer's factor, the LSTM with the session vector of the customer's history. For a customer with
no events since training both queries are known when the bundle is written, so the trainer answers
them all at once (:class:`models.index.BatchIndex`: exact where the served index is exact, an
inverted file as close to the exact answers as the served HNSW graph otherwise) and stores the
answers (:class:`models.bundle.CustomerPools`, ``pools/<source>.npy``). A request then reads a row
and drops the customer's exclusions (:func:`models.index.answer_from_pool`); it searches only when
the customer has events since training, the request names a category, or the row is too short for
the list asked for.

The LSTM's session vectors are encoded on the calling (main) thread, with the model's own torch
threads, since torch's thread count is process-wide; the searches, which release the GIL, run on
the trainer's background thread (:class:`training.background.Background`) beside the phases that
follow the refit.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from models.bundle import CustomerPools
from models.index import BatchIndex
from models.sequence import SequenceRecommender
from training.background import Background

logger = logging.getLogger("lookbook.training")

#: queries per FAISS call (bounds the answer arrays: batch x size x 12 bytes)
_BATCH = 65_536


def search_pools(index: BatchIndex, queries: npt.NDArray[np.float32], size: int) -> CustomerPools:
    """The ``size`` best items of ``index`` for every row of ``queries``, in batches: a source's
    :class:`CustomerPools`."""
    ids = np.full((len(queries), size), -1, dtype=np.int32)
    for lo in range(0, len(queries), _BATCH):
        hi = min(lo + _BATCH, len(queries))
        ids[lo:hi] = index.top_ids(queries[lo:hi], size)
    return CustomerPools(ids)


def customer_pools(
    background: Background,
    size: int,
    *,
    exact: bool,
    seed: int,
    als_users: npt.NDArray[np.float32],
    als_items: npt.NDArray[np.float32],
    sequence: SequenceRecommender | None = None,
) -> Future[dict[str, CustomerPools]]:
    """Source name (``als``, ``sequence``) → the pools of every training customer, ``size``
    candidates each, searched on ``background``. ``exact``: the served indexes are flat (the
    pools are then their very answers); ``als_users`` / ``als_items``: the ALS factors the
    served ALS index and the feed use."""
    sessions = items = None
    if sequence is not None:
        start = time.perf_counter()
        sessions = sequence.user_sessions(np.arange(sequence.n_users))
        items = np.array(sequence.item_vectors(), dtype=np.float32, order="C")
        logger.info(
            "pools: %d LSTM session vectors in %.1fs", len(sessions), time.perf_counter() - start
        )
    users = np.array(als_users, dtype=np.float32, order="C")
    factors = np.array(als_items, dtype=np.float32, order="C")

    def task() -> dict[str, CustomerPools]:
        start = time.perf_counter()
        pools = {"als": search_pools(BatchIndex(factors, exact=exact, seed=seed), users, size)}
        if sessions is not None and items is not None:
            index = BatchIndex(items, exact=exact, seed=seed)
            pools["sequence"] = search_pools(index, sessions, size)
        logger.info(
            "pools: %d candidates of %s for %d customers in %.1fs (background, %s)",
            size,
            " and ".join(pools),
            len(users),
            time.perf_counter() - start,
            "exact" if exact else "inverted file",
        )
        return pools

    return background.submit(task)
