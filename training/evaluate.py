"""The offline evaluation harness: every method on one split, in one run, with bootstrap CIs.

Protocols
    ``last_day`` (H&M next basket, :func:`training.split.last_day_holdout`): every customer's last
    purchase day is held out; its purchases are the truth and the start of that day the customer's
    *cutoff*. ``time_split`` (sparse data such as Rent the Runway): one global cutoff ``test_days``
    before the end; the truth of each customer with a purchase in the test window is what they
    bought in it, and their cutoff is the start of the window.

No look-ahead, with per-customer cutoffs
    A model fitted once on "everything before each customer's cutoff" cannot exist: the union of
    those periods reaches the last customer's cutoff, so a global model (ALS, LSTM, item kNN, the
    peer, popularity) would have seen, for an early customer, other customers' later purchases —
    future popularity and future co-purchases. The harness therefore groups customers by cutoff
    date into ``folds`` *cutoff folds* (equal numbers of customers, in cutoff order). For the
    fold with customers ``F``, every model that learns across customers is fitted on the events
    dated strictly before ``T_F = min_{u in F} cutoff_u``. A customer ``u`` of the fold is then
    represented by their *own* events before ``cutoff_u`` (which may lie after ``T_F``: the
    sequence model reads them, ALS folds them in, repurchase and kNN read them — exactly what the
    service does with events that arrived after training). Popularity, a pure count, is computed
    for each distinct cutoff day from the events strictly before that day (``popularity as of the
    customer's cutoff``). So nothing dated on or after ``cutoff_u`` — of ``u`` or of anyone —
    reaches anything used for ``u``; :func:`run_evaluation` checks this on every fold
    (:class:`FoldAudit`) and ``tests/test_evaluate.py`` checks it by perturbing the future. The price
    is staleness: a customer at the end of a fold is served by models up to one fold-width old
    (reported per fold). A single global cutoff would avoid it but is a different protocol; training
    only before the *earliest* cutoff (the first day of the data) would leave nothing to train on.

Blend weights, never from test customers
    For each fold, :func:`training.blend.carve_validation` cuts a validation period off the end of
    that fold's training period (``[T_F - V, T_F)``, ``V`` = the fold's cutoff span, clipped to
    ``[min_validation_days, max_validation_days]``): the customers whose last purchase before
    ``T_F`` falls in it are held out by the same protocol, the sources are fitted on events before
    ``T_F - V``, and the weights maximise validation MAP@k over this fold's validation customers
    and those of every earlier fold (``pool_validation``; all of them dated before ``T_F``). Only then are the sources refitted on
    everything before ``T_F`` and fused with those weights for the fold's test customers.

Methods (all in the same run, each list topped up with as-of popularity when it is short)
    ``popularity`` (time-decayed best sellers, the service's model), ``repurchase`` (the customer's
    own purchases by recency-weighted frequency, then popular: the H&M "repurchase + popular"
    heuristic), ``als`` (implicit ALS, customer vector folded in from their history),
    ``item_knn`` (item-to-item cosine of co-purchase, summed over the history with recency decay),
    ``sasrec`` (rectools' SASRec, the published peer; skipped with a message when rectools is not
    installed), ``lstm`` (:class:`models.sequence.SequenceRecommender`) and ``blend``
    (repurchase, repeat, siblings, ALS, LSTM and popularity fused with the fitted weights,
    :mod:`training.blend`; the rule-based sources are the :mod:`models.candidates` functions the
    service calls).

Metrics over customers: MAP@k (Kaggle H&M), Recall@k, NDCG@k (:mod:`training.metrics`), catalog
coverage, 95% percentile-bootstrap CIs by resampling customers, and bootstrap CIs of the ratios
``blend / best other`` and ``lstm / als`` (the same resamples for numerator and denominator).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from feature_store.dataset import Dataset
from feature_store.schema import CustomerCols, InteractionCols, InteractionType, ItemCols
from models.als import ALSRecommender
from models.base import IntArray, TrainingData
from models.candidates import (
    NeighbourTable,
    build_product_siblings,
    build_repeat_rates,
    item_groups,
    neighbour_ranking,
    repeat_ranking,
    repurchase_ranking,
)
from models.popularity import PopularityRecommender
from models.sequence import ItemFeatures, SequenceConfig, SequenceRecommender
from training.blend import (
    SECONDS_PER_DAY,
    BlendWeights,
    Holdout,
    carve_validation,
    fit_blend_weights,
    fuse,
)
from training.data import IdMaps, build_id_maps, encode, to_training_data
from training.metrics import (
    average_precision_at_k,
    bootstrap_ci,
    catalog_coverage,
    user_ndcg_at_k,
    user_recall_at_k,
)
from training.split import last_day_holdout

logger = logging.getLogger("lookbook.training.evaluate")

METHODS: tuple[str, ...] = (
    "popularity",
    "repurchase",
    "als",
    "item_knn",
    "sasrec",
    "lstm",
    "blend",
)
#: Methods the blend target is compared against (baselines and the peer).
BASELINES: tuple[str, ...] = ("popularity", "repurchase", "als", "item_knn", "sasrec")
PROTOCOLS: tuple[str, ...] = ("last_day", "time_split")
_TYPE_ORDER = list(InteractionType)
_PURCHASE = _TYPE_ORDER.index(InteractionType.PURCHASE)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ALSParams:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15


@dataclass(frozen=True)
class PeerParams:
    """rectools SASRec settings (its defaults, shortened for a 2-core CPU)."""

    epochs: int = 5
    n_factors: int = 64
    n_blocks: int = 2
    n_heads: int = 2
    session_max_len: int = 50
    batch_size: int = 128


@dataclass(frozen=True)
class EvalConfig:
    """Everything :func:`run_evaluation` can be told."""

    protocol: str = "last_day"
    k: int = 12
    folds: int = 6
    test_days: int = 28  # time_split only
    min_validation_days: int = 28
    max_validation_days: int = 91
    depth: int = 100  # candidates per source handed to the blend
    popularity_half_life_days: float = 14.0
    repurchase_half_life_days: float = 60.0
    knn_half_life_days: float = 60.0
    repeat_half_life_days: float = 3.0
    repeat_exponent: float = 2.0
    sibling_half_life_days: float = 30.0
    max_neighbours: int = 50  # per item in the sibling table
    pool_validation: bool = True  # fit a fold's weights on its and all earlier folds' validation
    als: ALSParams = field(default_factory=ALSParams)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    peer: PeerParams = field(default_factory=PeerParams)
    methods: tuple[str, ...] = METHODS
    n_boot: int = 1000
    seed: int = 42
    threads: int = 2
    max_customers: int | None = None  # a seeded sample of the evaluated customers

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {METHODS}")
        if self.k < 1 or self.folds < 1 or self.depth < self.k or self.test_days < 1:
            raise ValueError("k, folds and test_days must be >= 1 and depth >= k")
        if not 1 <= self.min_validation_days <= self.max_validation_days:
            raise ValueError("need 1 <= min_validation_days <= max_validation_days")


# --------------------------------------------------------------------------- prepared data


@dataclass
class Prepared:
    """A dataset encoded once: events in time order, by customer, with sizes and features."""

    name: str
    maps: IdMaps
    data: TrainingData  # every event (the full period)
    sizes: list[str | None]  # per event of ``data``
    features: ItemFeatures
    by_user: IntArray  # event indices of ``data`` sorted by (customer, time)
    user_ptr: IntArray  # CSR offsets into ``by_user`` per customer index
    frame: pd.DataFrame  # the interactions frame (for the protocol functions)
    #: the catalog's optional ``product_code`` per item index (all ``None`` without the column)
    product_codes: list[str | None] = field(default_factory=list)
    #: group index per item (:func:`models.candidates.item_groups` of the catalog's product type,
    #: falling back to the category), the grouping of the repeat rates
    groups: IntArray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def is_purchase(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.data.event_types == _PURCHASE)

    def history(self, user: int, cutoff: int) -> IntArray:
        """Indices (into ``data``) of ``user``'s events dated strictly before ``cutoff``."""
        events = self.by_user[self.user_ptr[user] : self.user_ptr[user + 1]]
        end = int(np.searchsorted(self.data.timestamps[events], cutoff, side="left"))
        return events[:end]


def event_sizes(frame: pd.DataFrame, maps: IdMaps, data: TrainingData) -> list[str | None]:
    """Sizes of ``data``'s events, where ``data = to_training_data(frame, maps, ...)``.

    Repeats that function's ordering (stable sort by timestamp, unknown ids dropped) and checks
    the result event by event against ``data`` so a change there is caught, not silently
    misaligned.
    """
    ordered = frame.sort_values(InteractionCols.TIMESTAMP, kind="stable")
    users = encode(ordered[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(ordered[InteractionCols.ITEM_ID], maps.items)
    keep = (users >= 0) & (items >= 0)
    if not (
        np.array_equal(users[keep], data.user_idx) and np.array_equal(items[keep], data.item_idx)
    ):
        raise ValueError("the interactions frame does not line up with the TrainingData events")
    if InteractionCols.SIZE not in ordered.columns:
        return [None] * len(data.item_idx)
    raw = ordered[InteractionCols.SIZE].astype("string").tolist()
    return [
        None if v is None or v is pd.NA or str(v) == "" else str(v)
        for v, kept in zip(raw, keep, strict=True)
        if kept
    ]


def prepare(dataset: Dataset, name: str | None = None) -> Prepared:
    """Encode ``dataset`` once (id maps, time-ordered events, sizes, item side features)."""
    frame = dataset.interactions
    maps = build_id_maps(dataset)
    now = pd.Timestamp(frame[InteractionCols.TIMESTAMP].max())
    data = to_training_data(frame, maps, now=now)
    sizes = event_sizes(frame, maps, data)
    features = ItemFeatures.from_frame(dataset.items, maps.items.ids())
    by_user = np.lexsort((np.arange(len(data.user_idx)), data.timestamps, data.user_idx))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    user_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Prepared(
        name=name or dataset.source,
        maps=maps,
        data=data,
        sizes=sizes,
        features=features,
        by_user=by_user.astype(np.int64),
        user_ptr=user_ptr,
        frame=frame,
        product_codes=product_codes(dataset.items, maps.items.ids()),
        groups=catalog_groups(dataset.items, maps.items.ids()),
    )


def catalog_groups(items: pd.DataFrame, item_ids: Sequence[str]) -> IntArray:
    """A group per item of ``item_ids``: its product type, else its category (the grouping of
    the rebuy rates, :func:`models.candidates.build_repeat_rates`)."""
    frame = items.set_index(items[ItemCols.ID].astype(str))
    frame = frame[~frame.index.duplicated()].reindex([str(i) for i in item_ids])
    ptype = (
        frame[ItemCols.PRODUCT_TYPE]
        if ItemCols.PRODUCT_TYPE in frame.columns
        else pd.Series(None, index=frame.index, dtype="object")
    )
    return item_groups(
        ptype.astype("object").tolist(), frame[ItemCols.CATEGORY].astype("object").tolist()
    )


def product_codes(items: pd.DataFrame, item_ids: Sequence[str]) -> list[str | None]:
    """The catalog's optional ``product_code`` per item of ``item_ids`` (all ``None`` when the
    catalog has no such column) — the input of :func:`models.candidates.build_product_siblings`."""
    if ItemCols.PRODUCT_CODE not in items.columns:
        return [None] * len(item_ids)
    codes = items[ItemCols.PRODUCT_CODE].astype("string")
    by_id = {
        str(i): (None if c is pd.NA or c is None else str(c))
        for i, c in zip(items[ItemCols.ID].astype(str), codes, strict=True)
    }
    return [by_id.get(str(i)) for i in item_ids]


def subset(data: TrainingData, mask: npt.NDArray[np.bool_], now: int) -> TrainingData:
    """The events of ``data`` where ``mask`` holds, encoded like :func:`to_training_data`
    (weights summed per pair, clipped at zero)."""
    users, items = data.user_idx[mask], data.item_idx[mask]
    weights = data.weights[mask]
    matrix = sp.csr_matrix((weights, (users, items)), shape=data.user_items.shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data = np.clip(matrix.data, 0.0, None)
    matrix.eliminate_zeros()
    return TrainingData(
        user_items=matrix,
        user_idx=users,
        item_idx=items,
        timestamps=data.timestamps[mask],
        event_types=data.event_types[mask],
        weights=weights,
        now=int(now),
    )


# --------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Fold:
    """One cutoff fold: its test customers and the validation carved before its training end."""

    index: int
    test: Holdout
    validation: Holdout | None


def _to_seconds(values: Any) -> npt.NDArray[np.int64]:
    stamps = pd.to_datetime(pd.Series(values), utc=True).dt.tz_convert(None)
    return np.asarray(stamps.to_numpy().astype("datetime64[s]").astype(np.int64), dtype=np.int64)


def last_day_folds(prepared: Prepared, config: EvalConfig) -> list[Fold]:
    """The ``last_day`` protocol (via :func:`training.split.last_day_holdout`) in cutoff folds."""
    frame = prepared.frame
    _, test_frame, cutoffs = last_day_holdout(frame, type_col=InteractionCols.TYPE)
    users = encode(pd.Series(cutoffs.index.astype(str)), prepared.maps.customers)
    cut = _to_seconds(cutoffs.to_numpy())
    test_users = encode(test_frame[InteractionCols.CUSTOMER_ID], prepared.maps.customers)
    test_items = encode(test_frame[InteractionCols.ITEM_ID], prepared.maps.items)
    valid = (test_users >= 0) & (test_items >= 0)
    truth_frame = pd.DataFrame({"u": test_users[valid], "i": test_items[valid]})
    truth: dict[int, IntArray] = {
        int(str(u)): np.unique(group.to_numpy()) for u, group in truth_frame.groupby("u")["i"]
    }
    keep = users >= 0
    users, cut = users[keep], cut[keep]
    users, cut = _sample(users, cut, config)
    order = np.lexsort((users, cut))
    users, cut = users[order], cut[order]
    folds: list[Fold] = []
    for f, part in enumerate(np.array_split(np.arange(len(users)), min(config.folds, len(users)))):
        if len(part) == 0:
            continue
        fold_users, fold_cut = users[part], cut[part]
        train_end = int(fold_cut.min())
        truths = [
            np.asarray(truth.get(int(u), np.empty(0, np.int64)), dtype=np.int64) for u in fold_users
        ]
        test = Holdout(train_end, fold_users, fold_cut, truths)
        span_days = int((fold_cut.max() - fold_cut.min()) // SECONDS_PER_DAY) + 1
        days = min(max(span_days, config.min_validation_days), config.max_validation_days)
        folds.append(Fold(f, test, _validation(prepared, train_end, days)))
    return folds


def time_split_folds(prepared: Prepared, config: EvalConfig) -> list[Fold]:
    """The ``time_split`` protocol: one fold, test window = the last ``test_days`` days."""
    data = prepared.data
    end_day = (int(data.timestamps.max()) // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
    start = end_day - config.test_days * SECONDS_PER_DAY
    test = window_holdout(prepared, start, end_day)
    users, cut = _sample(test.users, test.cutoffs, config)
    chosen = {int(u): r for r, u in enumerate(test.users)}
    truths = [test.truths[chosen[int(u)]] for u in users]
    test = Holdout(start, users, cut, truths)
    validation = window_holdout(prepared, start - config.test_days * SECONDS_PER_DAY, start)
    return [Fold(0, test, validation)]


def window_holdout(prepared: Prepared, start: int, end: int) -> Holdout:
    """Customers who bought in ``[start, end)``: truth = those items, cutoff = ``start``."""
    data = prepared.data
    mask = prepared.is_purchase() & (data.timestamps >= start) & (data.timestamps < end)
    u, i = data.user_idx[mask], data.item_idx[mask]
    users = np.unique(u)
    order = np.lexsort((i, u))
    u, i = u[order], i[order]
    bounds = np.searchsorted(u, np.concatenate([users, [np.iinfo(np.int64).max]]))
    truths = [np.unique(i[bounds[r] : bounds[r + 1]]) for r in range(len(users))]
    return Holdout(int(start), users.astype(np.int64), np.full(len(users), int(start)), truths)


def _sample(
    users: IntArray, cutoffs: npt.NDArray[np.int64], config: EvalConfig
) -> tuple[IntArray, npt.NDArray[np.int64]]:
    if config.max_customers is None or len(users) <= config.max_customers:
        return users, cutoffs
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(users), size=config.max_customers, replace=False))
    return users[chosen], cutoffs[chosen]


def _validation(prepared: Prepared, train_end: int, days: int) -> Holdout | None:
    data = prepared.data
    if not (data.timestamps < train_end).any():
        return None
    return carve_validation(
        data.user_idx,
        data.item_idx,
        data.timestamps,
        prepared.is_purchase(),
        train_end=train_end,
        days=days,
    )


# --------------------------------------------------------------------------- sources


@dataclass
class FoldAudit:
    """What one holdout's models and features saw (checked to be before every cutoff)."""

    fold: int
    kind: str  # "test" or "validation"
    train_end: int
    max_train_timestamp: int | None
    min_cutoff: int | None
    max_cutoff: int | None
    max_history_timestamp_minus_cutoff: int | None  # < 0 when no history reaches a cutoff
    max_popularity_timestamp_minus_cutoff: int | None
    customers: int
    train_events: int

    def check(self) -> None:
        """Raise ``RuntimeError`` if anything dated on/after a cutoff was used."""
        trained, first = self.max_train_timestamp, self.min_cutoff
        if trained is not None and first is not None and not trained < self.train_end <= first:
            raise RuntimeError(f"look-ahead: training events reach a cutoff: {self}")
        for gap in (
            self.max_history_timestamp_minus_cutoff,
            self.max_popularity_timestamp_minus_cutoff,
        ):
            if gap is not None and gap >= 0:
                raise RuntimeError(f"look-ahead: history or popularity reach a cutoff: {self}")


@dataclass
class _Context:
    prepared: Prepared
    holdout: Holdout
    config: EvalConfig
    histories: list[IntArray]  # event indices per holdout customer, before their cutoff
    train: TrainingData
    popularity: dict[int, IntArray]  # cutoff -> top ``depth`` items as of that day
    audit: FoldAudit
    timings: dict[str, float]
    cache: dict[str, Any] = field(default_factory=dict)


class PeerUnavailable(RuntimeError):
    """The published peer (rectools) is not installed."""


def _popularity_asof(
    prepared: Prepared, cutoffs: npt.NDArray[np.int64], config: EvalConfig
) -> tuple[dict[int, IntArray], int | None]:
    """Top ``depth`` popular items as of each distinct cutoff (events strictly before it)."""
    data = prepared.data
    out: dict[int, IntArray] = {}
    worst: int | None = None
    for cutoff in np.unique(cutoffs):
        mask = data.timestamps < cutoff
        snapshot = subset(data, mask, int(cutoff))
        model = PopularityRecommender(half_life_days=config.popularity_half_life_days)
        model.fit(snapshot)
        ranking = model.ranking()
        ranking = ranking[model.scores[ranking] > 0][: config.depth]
        out[int(cutoff)] = ranking
        if mask.any():
            gap = int(data.timestamps[mask].max()) - int(cutoff)
            worst = gap if worst is None else max(worst, gap)
    return out, worst


def _context(
    prepared: Prepared, holdout: Holdout, config: EvalConfig, fold: int, kind: str
) -> _Context:
    data = prepared.data
    mask = data.timestamps < holdout.train_end
    train = subset(data, mask, holdout.train_end)
    histories = [
        prepared.history(int(u), int(c))
        for u, c in zip(holdout.users, holdout.cutoffs, strict=True)
    ]
    gaps = [
        int(data.timestamps[h].max()) - int(c)
        for h, c in zip(histories, holdout.cutoffs, strict=True)
        if len(h)
    ]
    popularity, pop_gap = _popularity_asof(prepared, holdout.cutoffs, config)
    audit = FoldAudit(
        fold=fold,
        kind=kind,
        train_end=holdout.train_end,
        max_train_timestamp=int(train.timestamps.max()) if len(train.timestamps) else None,
        min_cutoff=int(holdout.cutoffs.min()) if len(holdout) else None,
        max_cutoff=int(holdout.cutoffs.max()) if len(holdout) else None,
        max_history_timestamp_minus_cutoff=max(gaps) if gaps else None,
        max_popularity_timestamp_minus_cutoff=pop_gap,
        customers=len(holdout),
        train_events=int(mask.sum()),
    )
    audit.check()
    return _Context(prepared, holdout, config, histories, train, popularity, audit, {})


def _pad(rows: Sequence[IntArray], width: int) -> IntArray:
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        row = np.asarray(row, dtype=np.int64)[:width]
        out[r, : len(row)] = row
    return out


def _decayed_counts(
    ctx: _Context, r: int, half_life: float, purchases_only: bool
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    data = ctx.prepared.data
    events = ctx.histories[r]
    if purchases_only:
        events = events[data.event_types[events] == _PURCHASE]
    if len(events) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    age = (int(ctx.holdout.cutoffs[r]) - data.timestamps[events]) / SECONDS_PER_DAY
    weight = np.exp2(-age / half_life) * np.maximum(data.weights[events], 0)
    items, inverse = np.unique(data.item_idx[events], return_inverse=True)
    totals = np.bincount(inverse, weights=weight, minlength=len(items)).astype(np.float64)
    return items.astype(np.int64), totals


def source_popularity(ctx: _Context) -> IntArray:
    return _pad([ctx.popularity[int(c)] for c in ctx.holdout.cutoffs], ctx.config.depth)


def _purchases(
    ctx: _Context, r: int
) -> tuple[IntArray, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Holdout customer ``r``'s purchases before their cutoff: items, timestamps, weights."""
    data = ctx.prepared.data
    events = ctx.histories[r]
    events = events[data.event_types[events] == _PURCHASE]
    return (
        data.item_idx[events],
        data.timestamps[events],
        np.asarray(data.weights[events], dtype=np.float64),
    )


def _rank_purchases(
    ctx: _Context,
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


def source_repurchase(ctx: _Context) -> IntArray:
    """The customer's own purchases by recency-weighted count (ties: lower index), as served:
    :func:`models.candidates.repurchase_ranking`."""
    half_life = ctx.config.repurchase_half_life_days
    return _rank_purchases(
        ctx,
        lambda items, ts, w, now: repurchase_ranking(items, ts, w, now, half_life_days=half_life),
    )


def repeat_rates(prepared: Prepared, train: TrainingData) -> npt.NDArray[np.float64]:
    """The repeat-rate table a bundle trained on ``train`` carries (per item)."""
    bought = train.event_types == _PURCHASE
    groups = prepared.groups if len(prepared.groups) else np.zeros(prepared.n_items, np.int64)
    return build_repeat_rates(
        train.user_idx[bought], train.item_idx[bought], train.timestamps[bought], groups
    )


def source_repeat(ctx: _Context) -> IntArray:
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


def _train_popularity(ctx: _Context) -> npt.NDArray[np.float64]:
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


def _neighbour_source(ctx: _Context, table: NeighbourTable, half_life_days: float) -> IntArray:
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


def source_siblings(ctx: _Context) -> IntArray:
    """Other variants (same product code) of the customer's purchases, recent purchases first
    (:func:`models.candidates.neighbour_ranking` over :func:`siblings_table`)."""
    table = siblings_table(ctx.prepared, ctx.train, ctx.config)
    return _neighbour_source(ctx, table, ctx.config.sibling_half_life_days)


def source_als(ctx: _Context) -> IntArray:
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


def source_item_knn(ctx: _Context) -> IntArray:
    """Item-to-item cosine of co-purchase (customers who bought both, before ``train_end``)."""
    c = ctx.config
    train = ctx.train
    bought = train.event_types == _PURCHASE
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


def source_lstm(ctx: _Context) -> IntArray:
    c = ctx.config
    data = ctx.prepared.data
    train_mask = data.timestamps < ctx.holdout.train_end
    sizes = [s for s, keep in zip(ctx.prepared.sizes, train_mask, strict=True) if keep]
    model = SequenceRecommender(c.sequence, item_features=ctx.prepared.features)
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


def source_sasrec(ctx: _Context) -> IntArray:
    """rectools' SASRec fitted on the events before ``train_end``; each customer's history up to
    their cutoff is its input. Raises :class:`PeerUnavailable` without rectools."""
    try:
        from rectools import Columns
        from rectools.dataset import Dataset as RecDataset
        from rectools.models import SASRecModel
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise PeerUnavailable(
            "rectools is not installed: `pip install 'rectools[torch]'` to measure the SASRec peer"
        ) from exc
    import torch
    from pytorch_lightning import Trainer

    c = ctx.config
    data = ctx.prepared.data
    train = ctx.train
    out = np.full((len(ctx.holdout), c.depth), -1, dtype=np.int64)
    if len(train.item_idx) == 0:
        return out

    def frame(users: IntArray, items: IntArray, ts: npt.NDArray[np.int64]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                Columns.User: users,
                Columns.Item: items,
                Columns.Weight: np.ones(len(users), dtype=np.float32),
                Columns.Datetime: pd.to_datetime(ts, unit="s"),
            }
        )

    keep = train.weights > 0
    train_df = frame(train.user_idx[keep], train.item_idx[keep], train.timestamps[keep])
    dataset = RecDataset.construct(train_df)

    def trainer() -> Trainer:
        return Trainer(
            max_epochs=c.peer.epochs,
            min_epochs=c.peer.epochs,
            deterministic=True,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            enable_checkpointing=False,
            accelerator="cpu",
            devices=1,
        )

    previous = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    start = time.perf_counter()
    try:
        torch.manual_seed(c.seed)
        model = SASRecModel(
            n_factors=c.peer.n_factors,
            n_blocks=c.peer.n_blocks,
            n_heads=c.peer.n_heads,
            session_max_len=c.peer.session_max_len,
            batch_size=c.peer.batch_size,
            epochs=c.peer.epochs,
            deterministic=True,
            verbose=0,
            get_trainer_func=trainer,
            recommend_torch_device="cpu",
        )
        model.fit(dataset)
        ctx.timings["sasrec_fit"] = time.perf_counter() - start
        known = set(np.unique(train_df[Columns.Item]).tolist())
        rows_u, rows_i, rows_t, targets = [], [], [], []
        for r, events in enumerate(ctx.histories):
            events = events[data.weights[events] > 0]
            items = data.item_idx[events]
            mask = np.isin(items, list(known))
            if not mask.any():
                continue
            targets.append(r)
            rows_u.append(np.full(int(mask.sum()), r, dtype=np.int64))
            rows_i.append(items[mask])
            rows_t.append(data.timestamps[events][mask])
        if not targets:
            return out
        reco_df = frame(np.concatenate(rows_u), np.concatenate(rows_i), np.concatenate(rows_t))
        reco_dataset = RecDataset.construct(reco_df)
        reco = model.recommend(
            users=np.asarray(targets, dtype=np.int64),
            dataset=reco_dataset,
            k=c.depth,
            filter_viewed=False,
            on_unsupported_targets="ignore",
        )
    finally:
        torch.set_num_threads(previous)
    reco = reco.sort_values([Columns.User, Columns.Rank])
    for r, group in reco.groupby(Columns.User, sort=True):
        items = group[Columns.Item].to_numpy(dtype=np.int64)[: c.depth]
        out[int(r), : len(items)] = items
    return out


SourceFn = Callable[[_Context], IntArray]
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


# --------------------------------------------------------------------------- results


@dataclass
class MethodResult:
    name: str
    ap: npt.NDArray[np.float64]  # per evaluated customer
    recall: npt.NDArray[np.float64]
    ndcg: npt.NDArray[np.float64]
    coverage: float
    metrics: dict[str, tuple[float, float, float]]  # metric -> (mean, low, high)


@dataclass
class EvaluationResult:
    """Everything one run measured; ``predictions[method]`` is ``(n_customers, k)`` aligned with
    ``users`` (customer indices) and ``cutoffs``."""

    dataset: str
    protocol: str
    config: EvalConfig
    users: IntArray
    cutoffs: npt.NDArray[np.int64]
    truths: list[IntArray]
    warm: npt.NDArray[np.bool_]  # customer had history before their cutoff
    fold_of: IntArray
    predictions: dict[str, IntArray]
    methods: dict[str, MethodResult]
    ratios: dict[str, tuple[float, float, float]]
    blend_weights: list[BlendWeights]
    audits: list[FoldAudit]
    skipped: dict[str, str]
    timings: dict[str, float]
    n_items: int

    def table(self) -> str:
        """A fixed-width table of the metrics with their 95% CIs."""
        k = self.config.k
        head = f"{'method':<12}{'MAP@' + str(k):>26}{'Recall@' + str(k):>26}{'NDCG@' + str(k):>26}{'coverage':>10}{'MAP warm':>10}"
        lines = [
            f"{self.dataset} ({self.protocol}, {len(self.users)} customers)",
            head,
            "-" * len(head),
        ]
        for name, m in self.methods.items():
            cells = "".join(
                f"{m.metrics[key][0]:>10.4f} [{m.metrics[key][1]:.4f},{m.metrics[key][2]:.4f}]"
                for key in ("map", "recall", "ndcg")
            )
            warm = float(m.ap[self.warm].mean()) if self.warm.any() else float("nan")
            lines.append(f"{name:<12}{cells}{m.coverage:>10.4f}{warm:>10.4f}")
        for label, (mean, low, high) in self.ratios.items():
            lines.append(f"ratio {label}: {mean:.3f} [{low:.3f}, {high:.3f}]")
        for name, reason in self.skipped.items():
            lines.append(f"skipped {name}: {reason}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "customers": len(self.users),
            "warm_customers": int(self.warm.sum()),
            "k": self.config.k,
            "folds": int(self.fold_of.max()) + 1 if len(self.fold_of) else 0,
            "methods": {
                name: {
                    **{key: list(v) for key, v in m.metrics.items()},
                    "coverage": m.coverage,
                    "map_warm": float(m.ap[self.warm].mean()) if self.warm.any() else None,
                }
                for name, m in self.methods.items()
            },
            "ratios": {key: list(v) for key, v in self.ratios.items()},
            "blend_weights": [w.to_dict() for w in self.blend_weights],
            "audits": [a.__dict__ for a in self.audits],
            "skipped": self.skipped,
            "timings_seconds": {k: round(v, 2) for k, v in self.timings.items()},
        }


def bootstrap_ratio_ci(
    numerator: npt.ArrayLike,
    denominator: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(ratio of means, low, high)``: percentile bootstrap of ``mean(num) / mean(den)`` over the
    same resampled customers (paired)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.shape != den.shape or num.size == 0:
        raise ValueError("numerator and denominator need the same non-zero length")
    ratio = float(num.mean() / den.mean()) if den.mean() > 0 else math.inf
    rng = np.random.default_rng(seed)
    n = num.size
    ratios = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        d = den[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[start:stop] = np.where(d > 0, num[idx].mean(axis=1) / d, np.inf)
    low, high = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return ratio, float(low), float(high)


# --------------------------------------------------------------------------- running


def _sources_for(
    ctx: _Context, names: Sequence[str], skipped: dict[str, str]
) -> dict[str, IntArray]:
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


def run_evaluation(
    dataset: Dataset | Prepared,
    config: EvalConfig | None = None,
    *,
    name: str | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate every method of ``config.methods`` on ``dataset`` under ``config.protocol``.

    Returns per-customer predictions and metrics with bootstrap CIs (see the module docstring for
    the protocol and why nothing dated on or after a customer's cutoff is used for them).
    """
    config = config or EvalConfig()
    t0 = time.perf_counter()
    prepared = dataset if isinstance(dataset, Prepared) else prepare(dataset, name)
    folds = (
        last_day_folds(prepared, config)
        if config.protocol == "last_day"
        else time_split_folds(prepared, config)
    )
    methods = list(config.methods)
    needed = sorted(
        {METHOD_SOURCE[m] for m in methods if m != "blend"}
        | (set(BLEND_SOURCES.values()) if "blend" in methods else set())
    )
    skipped: dict[str, str] = {}
    per_fold_predictions: dict[str, list[IntArray]] = {m: [] for m in methods}
    weights_used: list[BlendWeights] = []
    audits: list[FoldAudit] = []
    timings: dict[str, float] = {"prepare": time.perf_counter() - t0}
    k = config.k
    pooled: list[tuple[dict[str, IntArray], list[IntArray]]] = []
    for fold in folds:
        tf = time.perf_counter()
        weights = BlendWeights()
        if "blend" in methods and fold.validation is not None and len(fold.validation):
            vctx = _context(prepared, fold.validation, config, fold.index, "validation")
            audits.append(vctx.audit)
            vsources = _sources_for(vctx, sorted(set(BLEND_SOURCES.values())), skipped)
            rankings = {b: vsources[s] for b, s in BLEND_SOURCES.items() if s in vsources}
            # earlier folds' validation periods end before this fold's (folds are in cutoff
            # order), so pooling them reads nothing on or after this fold's training end
            pooled.append((rankings, list(fold.validation.truths)))
            used = pooled if config.pool_validation else pooled[-1:]
            names = set.intersection(*(set(r) for r, _ in used))
            weights = fit_blend_weights(
                {b: np.concatenate([r[b] for r, _ in used]) for b in sorted(names)},
                [t for _, truths in used for t in truths],
                k=k,
            )
            for key, value in vctx.timings.items():
                timings[f"validation_{key}"] = timings.get(f"validation_{key}", 0.0) + value
        ctx = _context(prepared, fold.test, config, fold.index, "test")
        audits.append(ctx.audit)
        sources = _sources_for(ctx, needed, skipped)
        popular = sources["popularity"] if "popularity" in sources else source_popularity(ctx)
        for method in methods:
            if method == "blend":
                rankings = {b: sources[s] for b, s in BLEND_SOURCES.items() if s in sources}
                fused, _ = fuse(rankings, weights, config.depth)
                per_fold_predictions[method].append(fill(fused, popular, k))
            elif METHOD_SOURCE[method] in sources:
                per_fold_predictions[method].append(
                    fill(sources[METHOD_SOURCE[method]], popular, k)
                )
        weights_used.append(weights)
        for key, value in ctx.timings.items():
            timings[key] = timings.get(key, 0.0) + value
            if key.endswith("_fit"):  # the slowest single fit (the largest training set)
                timings[f"{key}_max"] = max(timings.get(f"{key}_max", 0.0), value)
        logger.info(
            "fold %d/%d: %d customers, train before %s, cutoffs up to %s, %d training events (%.1fs)",
            fold.index + 1,
            len(folds),
            len(fold.test),
            pd.Timestamp(fold.test.train_end, unit="s").date(),
            pd.Timestamp(int(fold.test.cutoffs.max()), unit="s").date(),
            ctx.audit.train_events,
            time.perf_counter() - tf,
        )
    users = np.concatenate([f.test.users for f in folds]) if folds else np.empty(0, np.int64)
    cutoffs = np.concatenate([f.test.cutoffs for f in folds]) if folds else np.empty(0, np.int64)
    truths = [t for f in folds for t in f.test.truths]
    fold_of = (
        np.concatenate([np.full(len(f.test), f.index) for f in folds]).astype(np.int64)
        if folds
        else np.empty(0, np.int64)
    )
    warm = np.asarray(
        [len(prepared.history(int(u), int(c))) > 0 for u, c in zip(users, cutoffs, strict=True)],
        dtype=bool,
    )
    predictions = {
        m: np.concatenate(p) for m, p in per_fold_predictions.items() if p and m not in skipped
    }
    results: dict[str, MethodResult] = {}
    evaluated = np.asarray([len(t) > 0 for t in truths], dtype=bool)
    for i, (method, pred) in enumerate(predictions.items()):
        ap = np.asarray(
            [average_precision_at_k(t, p, k) for t, p in zip(truths, pred, strict=True)]
        )[evaluated]
        rec = np.asarray([user_recall_at_k(t, p, k) for t, p in zip(truths, pred, strict=True)])[
            evaluated
        ]
        ndcg = np.asarray([user_ndcg_at_k(t, p, k) for t, p in zip(truths, pred, strict=True)])[
            evaluated
        ]
        metrics = {
            key: bootstrap_ci(values, n_boot=config.n_boot, seed=config.seed + i)
            for key, values in (("map", ap), ("recall", rec), ("ndcg", ndcg))
        }
        results[method] = MethodResult(
            method, ap, rec, ndcg, catalog_coverage(pred, prepared.n_items, k), metrics
        )
    ratios: dict[str, tuple[float, float, float]] = {}
    if "blend" in results:
        others = [m for m in BASELINES if m in results]
        if others:
            best = max(others, key=lambda m: results[m].ap.mean())
            ratios[f"blend/{best}"] = bootstrap_ratio_ci(
                results["blend"].ap, results[best].ap, n_boot=config.n_boot, seed=config.seed
            )
    if "lstm" in results and "als" in results:
        ratios["lstm/als"] = bootstrap_ratio_ci(
            results["lstm"].ap, results["als"].ap, n_boot=config.n_boot, seed=config.seed
        )
    timings["total"] = time.perf_counter() - t0
    keep = evaluated  # customers whose truth is empty (unknown items only) are not scored
    return EvaluationResult(
        dataset=prepared.name,
        protocol=config.protocol,
        config=config,
        users=users[keep],
        cutoffs=cutoffs[keep],
        truths=[t for t, kept in zip(truths, keep, strict=True) if kept],
        warm=warm[keep],
        fold_of=fold_of[keep],
        predictions={m: p[keep] for m, p in predictions.items()},
        methods=results,
        ratios=ratios,
        blend_weights=weights_used,
        audits=audits,
        skipped=skipped,
        timings=timings,
        n_items=prepared.n_items,
    )


# --------------------------------------------------------------------------- data and reports


RTR_FILE = "cleandata.parquet"
_RTR_CATEGORY = {
    "dress": "dress",
    "gown": "dress",
    "sheath": "dress",
    "shift": "dress",
    "jumpsuit": "dress",
    "romper": "dress",
    "maxi": "dress",
    "midi": "dress",
    "mini": "dress",
    "frock": "dress",
    "caftan": "dress",
    "kaftan": "dress",
    "ballgown": "dress",
    "shirtdress": "dress",
    "top": "top",
    "blouse": "top",
    "shirt": "top",
    "sweater": "top",
    "tee": "top",
    "tank": "top",
    "cami": "top",
    "sweatshirt": "top",
    "turtleneck": "top",
    "pullover": "top",
    "knit": "top",
    "tunic": "top",
    "skirt": "bottom",
    "pants": "bottom",
    "jeans": "bottom",
    "culottes": "bottom",
    "trousers": "bottom",
    "leggings": "bottom",
    "trouser": "bottom",
    "pant": "bottom",
    "skirts": "bottom",
    "legging": "bottom",
    "jacket": "outerwear",
    "coat": "outerwear",
    "blazer": "outerwear",
    "vest": "outerwear",
    "cardigan": "outerwear",
    "parka": "outerwear",
    "trench": "outerwear",
    "bomber": "outerwear",
    "peacoat": "outerwear",
    "poncho": "outerwear",
    "cape": "outerwear",
    "overcoat": "outerwear",
}


def load_rtr(path: Path) -> Dataset:
    """Rent the Runway (``cleandata.parquet``) as a :class:`Dataset`: each rental is a purchase
    dated by its review date, with the RTR size; items carry RTR's category as product type.

    Only item metadata that does not depend on time is kept (no popularity-derived attributes).
    """
    file = path / RTR_FILE if path.is_dir() else path
    raw = pd.read_parquet(file, columns=["user_id", "item_id", "category", "size", "review_date"])
    raw = raw.dropna(subset=["user_id", "item_id", "review_date"])
    category = raw.groupby("item_id")["category"].agg(lambda s: str(s.mode().iloc[0]))
    items = pd.DataFrame(
        {
            ItemCols.ID: category.index.astype(str),
            ItemCols.NAME: [f"RTR {c} {i}" for i, c in zip(category.index, category, strict=True)],
            ItemCols.CATEGORY: [_RTR_CATEGORY.get(str(c).lower(), "other") for c in category],
            ItemCols.PRODUCT_TYPE: category.astype(str).to_numpy(),
            ItemCols.PRICE: np.nan,
        }
    )
    interactions = pd.DataFrame(
        {
            InteractionCols.CUSTOMER_ID: raw["user_id"].astype("int64").astype(str).to_numpy(),
            InteractionCols.ITEM_ID: raw["item_id"].astype("int64").astype(str).to_numpy(),
            InteractionCols.TYPE: InteractionType.PURCHASE.value,
            InteractionCols.TIMESTAMP: pd.to_datetime(raw["review_date"], utc=True).to_numpy(),
            InteractionCols.SIZE: raw["size"].astype("Int64").astype(str).to_numpy(),
        }
    )
    interactions[InteractionCols.TIMESTAMP] = pd.to_datetime(
        interactions[InteractionCols.TIMESTAMP], utc=True
    )
    customers = pd.DataFrame(
        {CustomerCols.ID: pd.unique(interactions[InteractionCols.CUSTOMER_ID])}
    )
    return Dataset(
        items=items, interactions=interactions, customers=customers, source=f"rtr:{path}"
    )


def load_for_evaluation(path: Path) -> tuple[Dataset, str]:
    """``(dataset, default protocol)``: Rent the Runway (``time_split``) or anything
    :func:`feature_store.loaders.load_dataset` reads (``last_day``)."""
    from feature_store.loaders import load_dataset

    if (path / RTR_FILE).is_file() or path.name == RTR_FILE:
        return load_rtr(path), "time_split"
    return load_dataset(path), "last_day"


def plot_results(results: Sequence[EvaluationResult], path: Path, metric: str = "map") -> bool:
    """A PNG of ``metric`` with its 95% CI per method, one panel per dataset. Returns False (and
    logs why) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.2), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        names = list(result.methods)
        means = [result.methods[n].metrics[metric][0] for n in names]
        lows = [
            result.methods[n].metrics[metric][0] - result.methods[n].metrics[metric][1]
            for n in names
        ]
        highs = [
            result.methods[n].metrics[metric][2] - result.methods[n].metrics[metric][0]
            for n in names
        ]
        colours = ["#c0392b" if n in ("lstm", "blend") else "#7f8c8d" for n in names]
        ax.bar(range(len(names)), means, yerr=[lows, highs], capsize=4, color=colours)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel(f"{metric.upper()}@{result.config.k} (95% bootstrap CI)")
        ax.set_title(f"{result.dataset}: {result.protocol}, {len(result.users)} customers")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _md_table(result: EvaluationResult) -> list[str]:
    k = result.config.k
    lines = [
        f"| method | MAP@{k} [95% CI] | Recall@{k} [95% CI] | NDCG@{k} [95% CI] | coverage | MAP@{k} warm |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in result.methods.items():
        cells = " | ".join(
            f"{m.metrics[key][0]:.4f} [{m.metrics[key][1]:.4f}, {m.metrics[key][2]:.4f}]"
            for key in ("map", "recall", "ndcg")
        )
        warm = float(m.ap[result.warm].mean()) if result.warm.any() else float("nan")
        lines.append(f"| {name} | {cells} | {m.coverage:.4f} | {warm:.4f} |")
    return lines


def write_report(
    results: Sequence[EvaluationResult], out: Path, *, command: str = ""
) -> dict[str, Path]:
    """``report.md``, ``results.json`` and ``map_at_k.png`` (when matplotlib is available) in
    ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "results.json"}
    lines = ["# Lookbook offline evaluation", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [f"Generated {pd.Timestamp.now(tz='UTC').isoformat(timespec='seconds')}.", ""]
    for result in results:
        lines += [
            f"## {result.dataset} — protocol `{result.protocol}`",
            "",
            f"{len(result.users)} customers evaluated ({int(result.warm.sum())} with history "
            f"before their cutoff), {result.n_items} items, k={result.config.k}, "
            f"{len(result.blend_weights)} fold(s), {result.config.n_boot} bootstrap resamples. "
            "Every list is topped up with popularity as of the customer's cutoff.",
            "",
            *_md_table(result),
            "",
        ]
        if result.ratios:
            lines += ["Ratios of MAP@k (paired bootstrap over customers):", ""]
            for label, (mean, low, high) in result.ratios.items():
                target = 1.3 if label.startswith("blend/") else 1.5
                verdict = "met" if mean >= target and low > 1.0 else "NOT met"
                lines.append(
                    f"- `{label}` = {mean:.3f} [95% CI {low:.3f}, {high:.3f}] — target ≥ {target} "
                    f"with CI above 1.0: **{verdict}**"
                )
            lines.append("")
        if result.skipped:
            lines += [f"- skipped `{n}`: {why}" for n, why in result.skipped.items()] + [""]
        pooled = " and every earlier fold's" if result.config.pool_validation else ""
        lines += [f"Blend weights per fold (fitted on the fold's{pooled} validation period):", ""]
        for f, w in enumerate(result.blend_weights):
            weights = ", ".join(f"{s}={v:g}" for s, v in sorted(w.weights.items()))
            lines.append(
                f"- fold {f}: {weights}, rrf_k={w.rrf_k:g}, fitted={w.fitted}, "
                f"validation customers={w.validation_customers}, validation MAP="
                f"{'n/a' if w.validation_map is None else f'{w.validation_map:.4f}'}"
            )
        lines += ["", "Leak audit (every fold checked: training < train_end <= cutoffs):", ""]
        for a in result.audits:
            lines.append(
                f"- fold {a.fold} {a.kind}: train_end {pd.Timestamp(a.train_end, unit='s').date()}, "
                f"{a.train_events} training events, {a.customers} customers, cutoffs "
                f"{'-' if a.min_cutoff is None else pd.Timestamp(a.min_cutoff, unit='s').date()}"
                f"..{'-' if a.max_cutoff is None else pd.Timestamp(a.max_cutoff, unit='s').date()}"
            )
        timing = ", ".join(f"{k}={v:.1f}s" for k, v in result.timings.items())
        lines += ["", f"Timings: {timing}", ""]
    if plot_results(results, out / "map_at_k.png"):
        paths["plot"] = out / "map_at_k.png"
        lines += ["![MAP@k with 95% CI](map_at_k.png)", ""]
    paths["markdown"].write_text("\n".join(lines))
    paths["json"].write_text(
        json.dumps(
            {"command": command, "results": [r.summary() for r in results]},
            indent=2,
            default=_json_default,
        )
    )
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def preset_config(
    protocol: str,
    *,
    n_interactions: int = 0,
    seed: int = 42,
    **overrides: Any,
) -> EvalConfig:
    """The configuration ``lookbook evaluate`` and ``benchmarks/offline_hm.py`` use: the defaults,
    and for large ``time_split`` data (more than 100k interactions, e.g. Rent the Runway's 192k)
    fewer, larger LSTM and SASRec steps and a 3,000-customer sample, so a run takes minutes on two
    cores; the LSTM trains on one thread otherwise. ``overrides`` are :class:`EvalConfig` fields
    (``lstm_epochs`` sets the LSTM's)."""
    lstm_epochs = overrides.pop("lstm_epochs", None)
    large = protocol == "time_split" and n_interactions > 100_000
    sequence = (
        SequenceConfig(epochs=3, batch_size=256, learning_rate=1e-2, seed=seed)
        if large
        # one torch thread: on the shared 2-core machine two threads contend with every other
        # process (largest H&M fold, same load: 50 s with one thread, 182 s with two)
        else SequenceConfig(seed=seed, num_threads=1)
    )
    if lstm_epochs is not None:
        sequence = sequence.replace(epochs=int(lstm_epochs))
    values: dict[str, Any] = {"protocol": protocol, "seed": seed, "sequence": sequence}
    if large:
        values.update(peer=PeerParams(epochs=2, batch_size=256), max_customers=3000)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EvalConfig(**values)


def evaluate_command(
    data: Sequence[Path],
    out: Path,
    *,
    protocol: str | None = None,
    folds: int = 6,
    methods: Sequence[str] | None = None,
    k: int = 12,
    test_days: int = 28,
    max_customers: int | None = None,
    n_boot: int = 1000,
    seed: int = 42,
    lstm_epochs: int | None = None,
    command: str = "",
) -> list[EvaluationResult]:
    """What ``lookbook evaluate`` runs: evaluate each data folder (H&M-style folders with the
    ``last_day`` protocol, Rent the Runway with ``time_split`` unless ``protocol`` says otherwise;
    :func:`preset_config`), log the tables, and write ``report.md``, ``results.json`` and
    ``map_at_k.png`` into ``out``. Returns the results (the caller prints ``result.table()``)."""
    results = []
    for path in data:
        dataset, default_protocol = load_for_evaluation(Path(path))
        config = preset_config(
            protocol or default_protocol,
            n_interactions=dataset.n_interactions,
            seed=seed,
            folds=folds,
            methods=tuple(methods) if methods else None,
            k=k,
            test_days=test_days,
            max_customers=max_customers,
            n_boot=n_boot,
            lstm_epochs=lstm_epochs,
        )
        result = run_evaluation(dataset, config, name=Path(path).name)
        logger.info("\n%s", result.table())
        results.append(result)
    write_report(results, out, command=command)
    return results


def fit_served_blend(
    dataset: Dataset | Prepared,
    config: EvalConfig | None = None,
    *,
    validation_days: int = 28,
) -> BlendWeights:
    """Blend weights for a bundle trained on all of ``dataset``: the validation period is the last
    ``validation_days`` days of the data, held out by the ``last_day`` protocol, with the sources
    fitted on the events before it (what :func:`run_evaluation` does per fold). The result goes in
    the bundle manifest for the service's personalized pipeline (and as the bandit's prior)."""
    config = config or EvalConfig()
    prepared = dataset if isinstance(dataset, Prepared) else prepare(dataset)
    end = (int(prepared.data.timestamps.max()) // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
    holdout = _validation(prepared, end, validation_days)
    if holdout is None or not len(holdout):
        return BlendWeights()
    ctx = _context(prepared, holdout, config, 0, "validation")
    sources = _sources_for(ctx, sorted(set(BLEND_SOURCES.values())), {})
    rankings = {b: sources[s] for b, s in BLEND_SOURCES.items() if s in sources}
    return fit_blend_weights(rankings, holdout.truths, k=config.k)
