"""Each training customer's candidate pools, computed at training so the service only filters them.

The personalized feed's two retrieval sources search a FAISS index per request: ALS with the
customer's factor, the LSTM with the session vector of the customer's history. For a customer with
no events since training both queries are known when the bundle is written, so the trainer answers
them all at once and stores the answers (:class:`models.bundle.CustomerPools`,
``pools/<source>.npy``). A request then reads a row and drops the customer's exclusions
(:func:`models.index.answer_from_pool`); it searches only when the customer has events since
training, the request names a category, or the row is too short for the list asked for.

The LSTM's session vectors of those customers are stored too
(:class:`models.bundle.CustomerVectors`, ``pools/sequence_sessions.npy``): the repeat term and the
scores of a pool's items need the session, and with it stored the LSTM runs per request only for
customers with events since training.

The answers come from :class:`models.index.BatchIndex`: exact where the served index is flat (the
pools are then its very answers), otherwise an inverted file scanning the fewest lists that are,
on a seeded sample of customers, as close to the exact answers as the served HNSW graph
(:meth:`~models.index.BatchIndex.match`; both recalls are logged).

Each source's pass runs on the trainer's background thread (:class:`training.background.Background`)
after its served index: ALS's beside the LSTM's refit, the LSTM's beside the phases after it. The
LSTM's session vectors are encoded on the calling (main) thread, with the model's own torch
threads, since torch's thread count is process-wide.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import numpy as np
import numpy.typing as npt

from models.bundle import CustomerPools, CustomerVectors
from models.index import BatchIndex, ItemIndex
from models.sequence import SequenceRecommender
from training.background import Background

logger = logging.getLogger("lookbook.training")

#: queries per FAISS call (bounds the answer arrays: batch x size x 12 bytes)
_BATCH = 65_536
#: customers whose exact answers :meth:`BatchIndex.match` compares the two indexes on
_SAMPLE = 2_000


def search_pools(
    name: str,
    items: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    size: int,
    *,
    served: ItemIndex,
    seed: int,
) -> CustomerPools:
    """The ``size`` best of ``items`` (the vectors ``served`` holds) for every row of
    ``queries``: source ``name``'s :class:`CustomerPools`."""
    start = time.perf_counter()
    index = BatchIndex(items, exact=served.kind == "flat", seed=seed)
    sample = np.random.default_rng(seed).choice(
        len(queries), size=min(_SAMPLE, len(queries)), replace=False
    )
    mine, theirs = index.match(served, queries[np.sort(sample)], size)
    ids = np.full((len(queries), size), -1, dtype=np.int32)
    for lo in range(0, len(queries), _BATCH):
        hi = min(lo + _BATCH, len(queries))
        ids[lo:hi] = index.top_ids(queries[lo:hi], size)
    logger.info(
        "pools: %s, %d candidates for %d customers in %.1fs (%s; recall@%d against exact on "
        "%d customers: %.3f, the served %s index %.3f)",
        name,
        size,
        len(queries),
        time.perf_counter() - start,
        "exact" if index.exact else f"inverted file, {index.nprobe} lists per query",
        size,
        len(sample),
        mine,
        served.kind,
        theirs,
    )
    return CustomerPools(ids)


def als_pools(
    background: Background,
    size: int,
    *,
    users: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    served: Future[ItemIndex],
    seed: int,
) -> Future[CustomerPools]:
    """Every training customer's ``size`` best items by ALS (``users`` · ``items``, the factors
    the served index ``served`` holds), searched on ``background``."""
    queries = np.array(users, dtype=np.float32, order="C")
    vectors = np.array(items, dtype=np.float32, order="C")
    return background.submit(
        lambda: search_pools("als", vectors, queries, size, served=served.result(), seed=seed)
    )


def sequence_pools(
    background: Background,
    size: int,
    *,
    sequence: SequenceRecommender,
    served: Future[ItemIndex],
    seed: int,
) -> tuple[Future[CustomerPools], CustomerVectors]:
    """Every training customer's ``size`` best items by the LSTM before the repeat term (the
    session vector of the history kept at training · the item vectors ``served`` holds), and the
    session vectors themselves: the sessions encoded here, the search on ``background``. The
    service reads a customer's session instead of running the LSTM when the customer has no
    events since training."""
    start = time.perf_counter()
    sessions = sequence.user_sessions(np.arange(sequence.n_users))
    vectors = np.array(sequence.item_vectors(), dtype=np.float32, order="C")
    logger.info(
        "pools: %d LSTM session vectors in %.1fs", len(sessions), time.perf_counter() - start
    )
    pools = background.submit(
        lambda: search_pools("sequence", vectors, sessions, size, served=served.result(), seed=seed)
    )
    return pools, CustomerVectors(sessions)
