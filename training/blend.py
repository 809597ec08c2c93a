"""The personalized blend's weights, fitted on a validation period.

Sources (:data:`models.bundle.SOURCES`): the customer's own **repurchase** candidates (decayed
count), the same items reordered by how often their product type is bought again (**repeat**),
other variants of the same products (**siblings**), **als**, the LSTM **sequence** model and
**popularity**; the rule-based ones are :mod:`models.candidates` functions the service calls too.
Each proposes a ranked list; the blend is their weighted reciprocal-rank fusion,
:func:`models.bundle.rrf_fuse` — the function the service's pipeline fuses with — so weights fitted
here (and ``rrf_k``, see :class:`models.bundle.BlendWeights`) can be handed to the service (and
later to the bandit, as its prior) unchanged.

Where the weights come from: :func:`carve_validation` cuts a validation period off the *end of the
training period* (never the test period): the customers whose last purchase day before the end of
training falls in the last ``days`` days are held out exactly as the test protocol holds out test
customers (their last purchase day is the target; their own earlier events are their history; the
sources are fitted on events before the validation period). :func:`fit_blend_weights` then picks
the weights that maximise MAP@k of the fused list on those customers by coordinate ascent over a
grid (deterministic; the default weights are kept when the validation set is too small).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.timeutils import SECONDS_PER_DAY
from models.base import IntArray
from models.bundle import BlendWeights, RankTable, rrf_fuse

logger = logging.getLogger("lookbook.training.blend")

WEIGHT_GRID: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
RRF_K_GRID: tuple[float, ...] = (1.0, 5.0, 20.0, 60.0)
MIN_VALIDATION_CUSTOMERS = 30


# --------------------------------------------------------------------------- validation carve


@dataclass(frozen=True)
class Holdout:
    """Customers to predict for, with one global training end.

    Models that learn across customers see only events dated before ``train_end``; customer
    ``users[r]`` is represented by their own events before ``cutoffs[r]`` (``>= train_end``) and
    is scored against ``truths[r]`` (the items bought on the day starting at ``cutoffs[r]``, or in
    a test window). Times are seconds since the epoch.
    """

    train_end: int
    users: IntArray
    cutoffs: npt.NDArray[np.int64]
    truths: list[IntArray]

    def __post_init__(self) -> None:
        if not (len(self.users) == len(self.cutoffs) == len(self.truths)):
            raise ValueError("users, cutoffs and truths differ in length")
        if len(self.cutoffs) and int(self.cutoffs.min()) < self.train_end:
            raise ValueError("a customer's cutoff is before train_end: their target would leak")

    def __len__(self) -> int:
        return len(self.users)


def last_purchase_day_holdout(
    users: IntArray,
    items: IntArray,
    timestamps: npt.NDArray[np.int64],
    is_purchase: npt.NDArray[np.bool_],
    *,
    end: int,
    window_start: int,
    train_end: int,
) -> Holdout:
    """The per-customer last-purchase-day protocol on the events dated before ``end``.

    Customers whose last purchase day (before ``end``) starts at or after ``window_start`` are
    held out: that day's purchases are their truth and the day's start their cutoff.
    """
    day = (timestamps // SECONDS_PER_DAY) * SECONDS_PER_DAY
    mask = is_purchase & (timestamps < end)
    if not mask.any():
        return Holdout(train_end, np.empty(0, np.int64), np.empty(0, np.int64), [])
    u, i, d = users[mask], items[mask], day[mask]
    n_users = int(u.max()) + 1
    last = np.full(n_users, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, u, d)
    chosen = np.flatnonzero(last >= window_start)
    held = (d == last[u]) & (last[u] >= window_start)
    hu, hi = u[held], i[held]
    order = np.lexsort((hi, hu))
    hu, hi = hu[order], hi[order]
    bounds = np.searchsorted(hu, np.concatenate([chosen, [n_users]]))
    truths = [np.unique(hi[bounds[r] : bounds[r + 1]]) for r in range(len(chosen))]
    return Holdout(train_end, chosen.astype(np.int64), last[chosen].astype(np.int64), truths)


def carve_validation(
    users: IntArray,
    items: IntArray,
    timestamps: npt.NDArray[np.int64],
    is_purchase: npt.NDArray[np.bool_],
    *,
    train_end: int,
    days: int,
) -> Holdout:
    """A validation :class:`Holdout` cut from the training period ``[.., train_end)``.

    The same protocol as the test (last purchase day per customer), on events before
    ``train_end``: customers whose last purchase day before ``train_end`` lies in the final
    ``days`` days are the validation customers, and the sources are to be fitted on the events
    before ``train_end - days`` days. Nothing at or after ``train_end`` is read.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    start = int(train_end) - int(days) * SECONDS_PER_DAY
    start = (start // SECONDS_PER_DAY) * SECONDS_PER_DAY
    return last_purchase_day_holdout(
        users,
        items,
        timestamps,
        is_purchase,
        end=int(train_end),
        window_start=start,
        train_end=start,
    )


# --------------------------------------------------------------------------- fusion


def fuse(
    rankings: Mapping[str, IntArray], weights: BlendWeights, k: int
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Fused top ``k`` per customer from each source's ranked lists: :func:`models.bundle.rrf_fuse`
    over the sources in name order.

    ``rankings[source]`` is ``(n_customers, depth)`` item indices, best first, padded with -1.
    Sources missing from ``weights`` get weight 0. Returns ``(n, k)`` items (padded with -1) and
    their fused scores.
    """
    names = sorted(rankings)
    fused = rrf_fuse(
        RankTable.build([rankings[s] for s in names]), weights.of(names), weights.rrf_k, k
    )
    return fused.items, fused.scores


def _ap_at_k(items: IntArray, truths: Sequence[IntArray], k: int) -> npt.NDArray[np.float64]:
    """Kaggle AP@k of each row of ``items`` (no repeats within a row, -1 padding)."""
    return _APScorer(truths, k)(items)


class _APScorer:
    """:func:`_ap_at_k` against fixed ``truths``, for scoring many fused lists of the same
    customers: the truths are encoded once, and every row is scored in one pass of array
    operations (the same per-row arithmetic, so the same floats, as a row at a time)."""

    def __init__(self, truths: Sequence[IntArray], k: int) -> None:
        self.k = int(k)
        lengths = np.array([len(t) for t in truths], dtype=np.int64)
        flat = (
            np.concatenate([np.asarray(t, dtype=np.int64) for t in truths])
            if len(truths)
            else np.empty(0, dtype=np.int64)
        )
        self.width = int(flat.max(initial=0)) + 2  # room for every item index and -1
        rows = np.repeat(np.arange(len(truths), dtype=np.int64), lengths)
        self.codes = np.unique(rows * self.width + flat)  # (row, truth item), sorted
        self.denominators = np.minimum(lengths, self.k)
        self.positions = np.arange(1, self.k + 1)

    def __call__(self, items: IntArray) -> npt.NDArray[np.float64]:
        top = np.asarray(items, dtype=np.int64)[:, : self.k]
        out = np.zeros(len(self.denominators), dtype=np.float64)
        if top.shape[1] == 0 or len(self.codes) == 0:
            return out
        listed = (top >= 0) & (top < self.width - 1)
        codes = np.arange(len(top), dtype=np.int64)[:, None] * self.width + np.where(
            listed, top, self.width - 1
        )
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        hits = listed & (self.codes[at] == codes)
        scored = np.flatnonzero(hits.any(axis=1) & (self.denominators > 0))
        if len(scored):
            hit = hits[scored]
            precision = np.cumsum(hit, axis=1) / self.positions[: hit.shape[1]]
            out[scored] = (precision * hit).sum(axis=1) / self.denominators[scored]
        return out


def fit_blend_weights(
    rankings: Mapping[str, IntArray],
    truths: Sequence[IntArray],
    *,
    k: int = 12,
    weight_grid: Sequence[float] = WEIGHT_GRID,
    rrf_k_grid: Sequence[float] = RRF_K_GRID,
    rounds: int = 3,
    min_customers: int = MIN_VALIDATION_CUSTOMERS,
    initial: BlendWeights | None = None,
) -> BlendWeights:
    """Weights (and ``rrf_k``) maximising validation MAP@k of the fused list.

    ``rankings`` are the sources' lists for the *validation* customers and ``truths`` their
    validation targets — nothing else is read. Coordinate ascent from ``initial`` (default
    :data:`~models.bundle.DEFAULT_WEIGHTS`): for each ``rrf_k`` in the grid, each source's weight in turn is set to
    the grid value with the best MAP (ties keep the current value), for ``rounds`` rounds; the best
    over ``rrf_k`` wins. With fewer than ``min_customers`` validation customers (with a non-empty
    truth) the initial weights are returned with ``fitted=False``.
    """
    start = initial or BlendWeights()
    usable = [r for r, t in enumerate(truths) if len(t)]
    if len(usable) < min_customers:
        logger.warning(
            "blend: %d validation customers (< %d); keeping the default weights",
            len(usable),
            min_customers,
        )
        return BlendWeights(
            weights=dict(start.weights),
            rrf_k=start.rrf_k,
            fitted=False,
            validation_customers=len(usable),
        )
    idx = np.asarray(usable, dtype=np.int64)
    names = sorted(rankings)
    table = RankTable.build([np.asarray(rankings[s])[idx] for s in names])
    kept = [truths[r] for r in usable]

    scorer = _APScorer(kept, k)

    def objective(weights: BlendWeights) -> float:
        fused = rrf_fuse(table, weights.of(names), weights.rrf_k, k)
        return float(scorer(fused.items).mean())

    base = {s: float(start.weights.get(s, 0.0)) for s in names}
    default_map = objective(BlendWeights(weights=base, rrf_k=start.rrf_k))
    best_weights, best_k, best_map = dict(base), start.rrf_k, default_map
    for rrf_k in rrf_k_grid:
        current = dict(base)
        current_map = objective(BlendWeights(weights=current, rrf_k=rrf_k))
        for _ in range(rounds):
            improved = False
            for s in names:
                for value in weight_grid:
                    if value == current[s]:
                        continue
                    trial = {**current, s: float(value)}
                    if not any(v > 0 for v in trial.values()):
                        continue
                    m = objective(BlendWeights(weights=trial, rrf_k=rrf_k))
                    if m > current_map + 1e-12:
                        current, current_map, improved = trial, m, True
            if not improved:
                break
        if current_map > best_map + 1e-12:
            best_weights, best_k, best_map = current, float(rrf_k), current_map
    logger.info(
        "blend: fitted on %d validation customers: MAP@%d %.4f (defaults %.4f), rrf_k=%g, %s",
        len(usable),
        k,
        best_map,
        default_map,
        best_k,
        {s: round(v, 3) for s, v in best_weights.items()},
    )
    return BlendWeights(
        weights=best_weights,
        rrf_k=best_k,
        fitted=True,
        validation_map=best_map,
        default_validation_map=default_map,
        validation_customers=len(usable),
    )
