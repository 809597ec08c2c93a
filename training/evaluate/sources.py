"""The ranked lists the methods and the blend are made of, one function per source.

Each ``source_*(ctx)`` takes a :class:`~training.evaluate.context.FoldContext` and returns one row
of ``config.depth`` item indices (``-1`` padded) per holdout customer. ``popularity`` is
time-decayed best sellers as of the cutoff; ``repurchase``, ``repeat`` and ``siblings`` are the
:mod:`models.candidates` functions the service calls; ``als`` folds the customer's history in;
``item_knn`` sums co-purchase cosine over the history with recency decay; ``lstm`` is
:class:`models.sequence.SequenceRecommender`; ``sasrec`` is the published peer
(:mod:`training.evaluate.peer`). :func:`fill` tops a list up with popularity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feature_store.timeutils import SECONDS_PER_DAY, decay
from models.als import ALSRecommender
from models.base import IntArray, TrainingData
from models.bundle import BlendWeights
from models.candidates import (
    NeighbourTable,
    build_product_siblings,
    build_repeat_rates,
    neighbour_ranking,
    repeat_ranking,
    repurchase_ranking,
)
from models.popularity import PopularityRecommender
from models.sequence import SequenceRecommender
from training.data import PURCHASE_CODE
from training.evaluate.config import EvalConfig
from training.evaluate.context import FoldContext
from training.evaluate.peer import PeerUnavailable, source_sasrec
from training.evaluate.prepared import Prepared
from training.ranker import RankingExamples, build_examples

logger = logging.getLogger("lookbook.training.evaluate")

__all__ = [
    "BLEND_SOURCES",
    "METHOD_SOURCE",
    "SOURCE_FUNCTIONS",
    "SourceFn",
    "fill",
    "ranker_examples",
    "repeat_rates",
    "run_sources",
    "siblings_table",
    "source_als",
    "source_item_knn",
    "source_lstm",
    "source_popularity",
    "source_repeat",
    "source_repurchase",
    "source_sasrec",
    "source_siblings",
]


def _pad(rows: Sequence[IntArray], width: int) -> IntArray:
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        row = np.asarray(row, dtype=np.int64)[:width]
        out[r, : len(row)] = row
    return out


def _decayed_counts(
    ctx: FoldContext, r: int, half_life: float, purchases_only: bool
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    data = ctx.prepared.data
    events = ctx.histories[r]
    if purchases_only:
        events = events[data.event_types[events] == PURCHASE_CODE]
    if len(events) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    age = (int(ctx.holdout.cutoffs[r]) - data.timestamps[events]) / SECONDS_PER_DAY
    weight = decay(age, half_life) * np.maximum(data.weights[events], 0)
    items, inverse = np.unique(data.item_idx[events], return_inverse=True)
    totals = np.bincount(inverse, weights=weight, minlength=len(items)).astype(np.float64)
    return items.astype(np.int64), totals


def source_popularity(ctx: FoldContext) -> IntArray:
    return _pad([ctx.popularity[int(c)] for c in ctx.holdout.cutoffs], ctx.config.depth)


def _purchases(
    ctx: FoldContext, r: int
) -> tuple[IntArray, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Holdout customer ``r``'s purchases before their cutoff: items, timestamps, weights."""
    data = ctx.prepared.data
    events = ctx.histories[r]
    events = events[data.event_types[events] == PURCHASE_CODE]
    return (
        data.item_idx[events],
        data.timestamps[events],
        np.asarray(data.weights[events], dtype=np.float64),
    )


def _rank_purchases(
    ctx: FoldContext,
    rank: Callable[
        [IntArray, npt.NDArray[np.int64], npt.NDArray[np.float64], int],
        tuple[IntArray, npt.NDArray[np.float64]],
    ],
) -> IntArray:
    """Each holdout customer's list from their purchases before their cutoff (``rank(items,
    timestamps, weights, cutoff)``, a :mod:`models.candidates` ranking), padded to ``depth``."""
    rows = [
        rank(*_purchases(ctx, r), int(ctx.holdout.cutoffs[r]))[0] for r in range(len(ctx.holdout))
    ]
    return _pad(rows, ctx.config.depth)


def source_repurchase(ctx: FoldContext) -> IntArray:
    """The customer's own purchases by recency-weighted count (ties: lower index), as served:
    :func:`models.candidates.repurchase_ranking`."""
    half_life = ctx.config.repurchase_half_life_days
    return _rank_purchases(
        ctx,
        lambda items, ts, w, now: repurchase_ranking(items, ts, w, now, half_life_days=half_life),
    )


def repeat_rates(prepared: Prepared, train: TrainingData) -> npt.NDArray[np.float64]:
    """The repeat-rate table a bundle trained on ``train`` carries (per item)."""
    bought = train.event_types == PURCHASE_CODE
    groups = prepared.groups if len(prepared.groups) else np.zeros(prepared.n_items, np.int64)
    return build_repeat_rates(
        train.user_idx[bought], train.item_idx[bought], train.timestamps[bought], groups
    )


def source_repeat(ctx: FoldContext) -> IntArray:
    """The customer's own purchases, those of often-rebought product types first
    (:func:`models.candidates.repeat_ranking` with :func:`repeat_rates` of the training events)."""
    rates = repeat_rates(ctx.prepared, ctx.train)
    c = ctx.config
    return _rank_purchases(
        ctx,
        lambda items, ts, w, now: repeat_ranking(
            items,
            ts,
            w,
            now,
            rates,
            half_life_days=c.repeat_half_life_days,
            exponent=c.repeat_exponent,
        ),
    )


def _train_popularity(ctx: FoldContext) -> npt.NDArray[np.float64]:
    """Scores of the popularity model fitted on the training events (the bundle's popularity):
    the tie-break of the neighbour sources."""
    if "popularity_scores" not in ctx.cache:
        model = PopularityRecommender(half_life_days=ctx.config.popularity_half_life_days)
        if len(ctx.train.item_idx):
            model.fit(ctx.train)
            scores = np.asarray(model.scores, dtype=np.float64)
        else:
            scores = np.zeros(ctx.prepared.n_items, dtype=np.float64)
        ctx.cache["popularity_scores"] = scores
    out: npt.NDArray[np.float64] = ctx.cache["popularity_scores"]
    return out


def _neighbour_source(ctx: FoldContext, table: NeighbourTable, half_life_days: float) -> IntArray:
    scores = _train_popularity(ctx)
    return _rank_purchases(
        ctx,
        lambda items, ts, w, now: neighbour_ranking(
            items,
            ts,
            w,
            now,
            table,
            half_life_days=half_life_days,
            item_scores=scores,
            depth=ctx.config.depth,
        ),
    )


def siblings_table(prepared: Prepared, train: TrainingData, config: EvalConfig) -> NeighbourTable:
    """The product-siblings table a bundle trained on ``train`` carries: other variants of each
    item's product, proposing only items with an event in ``train``. (The sample's catalog lists
    only articles somebody bought at some time, so an unrestricted table would leak future
    purchases into the offline measurement.)"""
    codes = prepared.product_codes or [None] * prepared.n_items
    seen = np.zeros(prepared.n_items, dtype=bool)
    seen[train.item_idx] = True
    return build_product_siblings(codes, eligible=seen, max_neighbours=config.max_neighbours)


def source_siblings(ctx: FoldContext) -> IntArray:
    """Other variants (same product code) of the customer's purchases, recent purchases first
    (:func:`models.candidates.neighbour_ranking` over :func:`siblings_table`)."""
    table = siblings_table(ctx.prepared, ctx.train, ctx.config)
    return _neighbour_source(ctx, table, ctx.config.sibling_half_life_days)


def source_als(ctx: FoldContext) -> IntArray:
    c = ctx.config
    model = ALSRecommender(
        factors=c.als.factors,
        regularization=c.als.regularization,
        alpha=c.als.alpha,
        iterations=c.als.iterations,
        random_state=c.seed,
        num_threads=c.threads,
    )
    start = time.perf_counter()
    model.fit(ctx.train)
    ctx.timings["als_fit"] = time.perf_counter() - start
    data = ctx.prepared.data
    rows = []
    for events in ctx.histories:
        if len(events) == 0 or not ctx.train.user_idx.size:
            rows.append(np.empty(0, np.int64))
            continue
        items, _ = model.recommend_from_items(
            data.item_idx[events], data.weights[events], N=c.depth, filter_already_liked_items=False
        )
        rows.append(items)
    return _pad(rows, c.depth)


def source_item_knn(ctx: FoldContext) -> IntArray:
    """Item-to-item cosine of co-purchase (customers who bought both, before ``train_end``)."""
    c = ctx.config
    train = ctx.train
    bought = train.event_types == PURCHASE_CODE
    x = sp.csr_matrix(
        (np.ones(int(bought.sum()), np.float32), (train.user_idx[bought], train.item_idx[bought])),
        shape=train.user_items.shape,
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    co = (x.T @ x).tocsr()
    counts = np.asarray(co.diagonal(), dtype=np.float64)
    co.setdiag(0)
    co.eliminate_zeros()
    norm = np.sqrt(np.maximum(counts, 1.0))
    sim = sp.diags(1.0 / norm) @ co @ sp.diags(1.0 / norm)
    sim = sp.csr_matrix(sim)
    rows = []
    for r in range(len(ctx.holdout)):
        items, totals = _decayed_counts(ctx, r, c.knn_half_life_days, False)
        if len(items) == 0:
            rows.append(np.empty(0, np.int64))
            continue
        profile = sp.csr_matrix(
            (totals, (np.zeros(len(items), np.int64), items)), shape=(1, train.n_items)
        )
        scores = np.asarray((profile @ sim).todense()).ravel()
        cand = np.flatnonzero(scores > 0)
        order = np.lexsort((cand, -scores[cand]))
        rows.append(cand[order][: c.depth])
    return _pad(rows, c.depth)


def source_lstm(ctx: FoldContext) -> IntArray:
    c = ctx.config
    data = ctx.prepared.data
    train_mask = data.timestamps < ctx.holdout.train_end
    sizes = [s for s, keep in zip(ctx.prepared.sizes, train_mask, strict=True) if keep]
    model = SequenceRecommender(c.sequence, item_features=ctx.item_features)
    start = time.perf_counter()
    if len(ctx.train.item_idx) == 0:
        return np.full((len(ctx.holdout), c.depth), -1, dtype=np.int64)
    model.fit(ctx.train, sizes=sizes)
    ctx.timings["lstm_fit"] = time.perf_counter() - start
    have = [r for r, h in enumerate(ctx.histories) if len(h)]
    out = np.full((len(ctx.holdout), c.depth), -1, dtype=np.int64)
    if have:
        histories = [ctx.histories[r] for r in have]
        items, _ = model.recommend_sequences(
            [data.item_idx[h] for h in histories],
            sizes=[[ctx.prepared.sizes[e] for e in h] for h in histories],
            event_types=[data.event_types[h].astype(np.int64).tolist() for h in histories],
            timestamps=[data.timestamps[h] for h in histories],
            now=[int(ctx.holdout.cutoffs[r]) for r in have],
            k=c.depth,
        )
        out[np.asarray(have)] = items
    return out


SourceFn = Callable[[FoldContext], IntArray]
SOURCE_FUNCTIONS: dict[str, SourceFn] = {
    "popularity": source_popularity,
    "repurchase": source_repurchase,
    "als": source_als,
    "item_knn": source_item_knn,
    "lstm": source_lstm,
    "sasrec": source_sasrec,
    "siblings": source_siblings,
    "repeat": source_repeat,
}
# source feeding each method (before the popularity top-up); the blend fuses BLEND_SOURCES
METHOD_SOURCE: dict[str, str] = {
    "popularity": "popularity",
    "repurchase": "repurchase",
    "als": "als",
    "item_knn": "item_knn",
    "sasrec": "sasrec",
    "lstm": "lstm",
}
BLEND_SOURCES: dict[str, str] = {  # blend source name -> source function
    "repurchase": "repurchase",
    "als": "als",
    "sequence": "lstm",
    "popularity": "popularity",
    "siblings": "siblings",
    "repeat": "repeat",
}


def fill(primary: IntArray, popular: IntArray, k: int) -> IntArray:
    """Each row of ``primary`` (first ``k`` distinct items) topped up from ``popular``."""
    out = np.full((primary.shape[0], k), -1, dtype=np.int64)
    for r in range(primary.shape[0]):
        row = [int(i) for i in primary[r] if i >= 0]
        seen: set[int] = set()
        chosen: list[int] = []
        for item in (*row, *(int(i) for i in popular[r] if i >= 0)):
            if item not in seen:
                seen.add(item)
                chosen.append(item)
                if len(chosen) == k:
                    break
        out[r, : len(chosen)] = chosen
    return out


def run_sources(
    ctx: FoldContext, names: Sequence[str], skipped: dict[str, str]
) -> dict[str, IntArray]:
    """The rankings of the sources ``names`` for ``ctx`` (timed into ``ctx.timings``); a source
    whose library is missing is recorded in ``skipped`` with the reason and left out."""
    out: dict[str, IntArray] = {}
    for name in names:
        if name in skipped:
            continue
        start = time.perf_counter()
        try:
            out[name] = SOURCE_FUNCTIONS[name](ctx)
        except PeerUnavailable as exc:
            skipped[name] = str(exc)
            logger.warning("skipping %s: %s", name, exc)
            continue
        ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - start
    return out


def ranker_examples(
    ctx: FoldContext,
    rankings: Mapping[str, IntArray],
    truths: Sequence[IntArray] | None = None,
    blend: BlendWeights | None = None,
) -> RankingExamples:
    """The learned ranker's examples of ``ctx``'s customers: the union of ``rankings`` (blend
    source name → rows) cut to ``config.ranker_depth`` per source, with the features of
    :func:`models.ranker_features.ranker_features` over each customer's purchases before their
    cutoff and the item statistics as of the training end; labelled by ``truths`` when given;
    ``blend`` gives the ``blend_score`` feature."""
    purchases = [(it, ts) for it, ts, _ in (_purchases(ctx, r) for r in range(len(ctx.holdout)))]
    return build_examples(
        rankings,
        purchases,
        ctx.holdout.cutoffs,
        ctx.item_stats,
        depth=ctx.config.ranker_depth,
        truths=truths,
        blend=None if blend is None else blend.weights,
        blend_rrf_k=60.0 if blend is None else blend.rrf_k,
    )
