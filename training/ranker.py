"""Training the learned ranker: examples from held-out windows, fitting, ranking with it.

A *window* is a :class:`~training.blend.Holdout` carved from the training period (its customers'
last purchase day in the window is the truth; the sources are fitted on the events before the
window, each customer is represented by their own events before their cutoff). For each window
customer :func:`build_examples` makes the union of the candidate sources' lists and its feature
rows (:func:`models.ranker_features.ranker_features`, the function the service calls too), labelled
1 where the candidate was bought. :func:`fit_ranker` trains on all windows but the latest and
early-stops on the latest (the one nearest the period ranked), then refits on all of them for the
chosen number of rounds. Nothing in a window reads the test customers' future: the windows end at
the training end. :func:`rank_examples` turns a fitted ranker's scores into ranked lists.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import IntArray, TrainingData
from models.ranker import LearnedRanker, RankerConfig
from models.ranker_features import (
    FEATURE_NAMES,
    ItemStats,
    candidate_union,
    item_stats,
    product_index,
    ranker_features,
)
from training.data import PURCHASE_CODE

__all__ = [
    "MIN_RANKER_CUSTOMERS",
    "RANKER_GRID",
    "RankingExamples",
    "build_examples",
    "fit_ranker",
    "fit_served_ranker",
    "rank_examples",
    "served_item_stats",
]

logger = logging.getLogger("lookbook.training.ranker")

#: Fewer window customers with a bought candidate than this: no ranker is fitted.
MIN_RANKER_CUSTOMERS = 30
#: The settings :func:`fit_ranker` tries (changes to its config), the one with the best MAP on
#: the early-stopping window kept: as given, smaller and more regularised trees, larger ones.
RANKER_GRID: tuple[dict[str, Any], ...] = (
    {},
    {"num_leaves": 7, "min_data_in_leaf": 50, "lambda_l2": 10.0},
    {"num_leaves": 31, "min_data_in_leaf": 10},
)


@dataclass(frozen=True)
class RankingExamples:
    """Feature rows of some customers: ``groups[r]`` consecutive rows per customer ``r`` (its
    candidates ``candidates[r]``), label 1 where the candidate was bought."""

    candidates: list[IntArray]
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]
    groups: IntArray

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def offsets(self) -> IntArray:
        return np.concatenate([[0], np.cumsum(self.groups)]).astype(np.int64)

    def take(self, customers: npt.ArrayLike) -> RankingExamples:
        """The examples of the customers ``customers`` (positions, in that order)."""
        chosen = np.asarray(customers, dtype=np.int64)
        off = self.offsets
        rows = (
            np.concatenate([np.arange(off[r], off[r + 1]) for r in chosen])
            if len(chosen)
            else np.empty(0, np.int64)
        )
        return RankingExamples(
            [self.candidates[int(r)] for r in chosen],
            self.x[rows],
            self.y[rows],
            self.groups[chosen],
        )

    def with_positives(self) -> RankingExamples:
        """Only the customers with at least one bought candidate (the others teach LambdaRank
        nothing)."""
        off = self.offsets
        has = [r for r in range(len(self)) if self.y[off[r] : off[r + 1]].any()]
        return self.take(has)

    @staticmethod
    def concat(parts: Sequence[RankingExamples]) -> RankingExamples:
        parts = [p for p in parts if len(p)]
        if not parts:
            return RankingExamples(
                [],
                np.empty((0, len(FEATURE_NAMES)), np.float32),
                np.empty(0, np.int64),
                np.empty(0, np.int64),
            )
        return RankingExamples(
            [c for p in parts for c in p.candidates],
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.groups for p in parts]),
        )


def build_examples(
    lists: Mapping[str, IntArray],
    purchases: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
    nows: npt.ArrayLike,
    stats: ItemStats,
    *,
    depth: int,
    truths: Sequence[npt.ArrayLike] | None = None,
    blend: Mapping[str, float] | None = None,
    blend_rrf_k: float = 60.0,
) -> RankingExamples:
    """Examples of ``n`` customers: ``lists[source]`` is ``(n, >= depth)`` ranked items per
    customer (``-1`` padded), ``purchases[r]`` customer ``r``'s purchases ``(items, epoch
    seconds)``, ``nows[r]`` their cutoff, ``truths[r]`` what they bought (labels; zeros without);
    ``blend`` / ``blend_rrf_k`` the weights of the ``blend_score`` feature."""
    now = np.asarray(nows, dtype=np.int64)
    cands: list[IntArray] = []
    blocks: list[npt.NDArray[np.float32]] = []
    labels: list[npt.NDArray[np.int64]] = []
    for r in range(len(now)):
        items, ranks = candidate_union({s: rows[r] for s, rows in lists.items()}, depth)
        bought_items, bought_at = purchases[r]
        blocks.append(
            ranker_features(
                items, ranks, bought_items, bought_at, int(now[r]), stats, blend, blend_rrf_k
            )
        )
        truth = np.asarray(truths[r], dtype=np.int64) if truths is not None else np.empty(0)
        labels.append(np.isin(items, truth).astype(np.int64))
        cands.append(items)
    return RankingExamples(
        cands,
        np.concatenate(blocks) if blocks else np.empty((0, len(FEATURE_NAMES)), np.float32),
        np.concatenate(labels) if labels else np.empty(0, np.int64),
        np.asarray([len(c) for c in cands], dtype=np.int64),
    )


def fit_ranker(
    windows: Sequence[RankingExamples], config: RankerConfig | None = None
) -> LearnedRanker | None:
    """A ranker fitted on ``windows`` (oldest first): trained on all but the latest, early-stopped
    on the latest, refitted on all for the chosen rounds. With one window its customers are split
    (every fourth to early stopping). None when fewer than :data:`MIN_RANKER_CUSTOMERS` window
    customers have a bought candidate."""
    usable = [w.with_positives() for w in windows]
    total = sum(len(w) for w in usable)
    if total < MIN_RANKER_CUSTOMERS:
        logger.warning("ranker: %d window customers with a bought candidate; not fitted", total)
        return None
    train = RankingExamples.concat(usable[:-1])
    valid = usable[-1]
    if len(train) < MIN_RANKER_CUSTOMERS // 2 or len(valid) < MIN_RANKER_CUSTOMERS // 2:
        every = RankingExamples.concat(usable)
        index = np.arange(len(every))
        train, valid = every.take(index[index % 4 != 3]), every.take(index[index % 4 == 3])
    base = config or RankerConfig()
    ranker: LearnedRanker | None = None
    for changes in RANKER_GRID:  # chosen on the early-stopping window's MAP
        tried = LearnedRanker(base.model_copy(update=changes)).fit(
            train.x, train.y, train.groups.tolist(), (valid.x, valid.y, valid.groups.tolist())
        )
        score = tried.validation_map if tried.validation_map is not None else -1.0
        best = -1.0 if ranker is None or ranker.validation_map is None else ranker.validation_map
        if ranker is None or score > best:
            ranker = tried
    assert ranker is not None
    logger.info(
        "ranker: %d + %d window customers, %d rounds, validation MAP@%d %.4f",
        len(train),
        len(valid),
        ranker.best_iteration,
        ranker.config.eval_at,
        ranker.validation_map if ranker.validation_map is not None else float("nan"),
    )
    return ranker


def rank_examples(ranker: LearnedRanker, examples: RankingExamples, k: int) -> IntArray:
    """``(n, k)`` items per customer by the ranker's score (``-1`` padded)."""
    out = np.full((len(examples), k), -1, dtype=np.int64)
    scores = ranker.score(examples.x)
    off = examples.offsets
    for r, cands in enumerate(examples.candidates):
        s = scores[off[r] : off[r + 1]]
        order = np.lexsort((np.arange(len(s)), -s))[:k]
        out[r, : len(order)] = cands[order]
    return out


def served_item_stats(
    data: TrainingData,
    prices: npt.ArrayLike,
    *,
    as_of: int,
    groups: npt.ArrayLike,
    codes: Sequence[str | None],
    rebuy: npt.ArrayLike,
) -> ItemStats:
    """:class:`ItemStats` of ``data``'s purchases before ``as_of`` (``prices``: the price paid
    per event of ``data``, :func:`training.evaluate.prepared.event_prices`)."""
    bought = data.event_types == PURCHASE_CODE
    return item_stats(
        data.item_idx[bought],
        data.timestamps[bought],
        data.weights[bought],
        np.asarray(prices, dtype=np.float64)[bought],
        as_of=as_of,
        groups=groups,
        products=product_index(codes),
        rebuy=rebuy,
    )


def fit_served_ranker(
    rankings: Mapping[str, IntArray],
    users: IntArray,
    truths: Sequence[npt.ArrayLike],
    purchases: Mapping[str, npt.NDArray[Any]],
    *,
    now: int,
    stats: ItemStats,
    depth: int,
    config: RankerConfig | None = None,
    blend: Mapping[str, float] | None = None,
    blend_rrf_k: float = 60.0,
) -> tuple[LearnedRanker | None, dict[str, Any]]:
    """The bundle's ranker, fitted on one held-out window (``users`` with their ``truths``,
    ``rankings[source]`` one row per user from the models trained before it, ``purchases`` the
    training period's purchase log, :func:`training.data.purchase_log`, ``now`` the window's
    start); its customers are split for early stopping. Returns the ranker (None: too few
    customers) and a summary for the manifest."""
    indptr = purchases["indptr"]
    bought = [
        (
            purchases["items"][int(indptr[u]) : int(indptr[u + 1])].astype(np.int64),
            purchases["timestamps"][int(indptr[u]) : int(indptr[u + 1])].astype(np.int64),
        )
        for u in np.asarray(users, dtype=np.int64).tolist()
    ]
    examples = build_examples(
        rankings,
        bought,
        np.full(len(users), int(now)),
        stats,
        depth=depth,
        truths=truths,
        blend=blend,
        blend_rrf_k=blend_rrf_k,
    )
    ranker = fit_ranker([examples], config)
    if ranker is not None:
        ranker.blend_weights = {k: float(v) for k, v in (blend or {}).items()}
        ranker.blend_rrf_k = float(blend_rrf_k)
    summary: dict[str, Any] = {"customers": len(users), "depth": depth}
    if ranker is not None:
        summary.update(
            rounds=ranker.best_iteration,
            validation_map=ranker.validation_map,
            importances={k: round(v, 4) for k, v in ranker.importances().items()},
        )
    return ranker, summary
