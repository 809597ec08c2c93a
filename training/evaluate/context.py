"""What one holdout may see: :func:`fold_context` builds it, :class:`FoldAudit` proves it.

For a holdout with training end ``T``, every model that learns across customers is fitted on the
events dated strictly before ``T``; each customer is represented by their *own* events before
their cutoff (which may lie after ``T``, as events arriving after training do in the service),
and popularity is counted as of each cutoff day. Nothing dated on or after a customer's cutoff,
of theirs or of anyone, reaches what is used for them; :meth:`FoldAudit.check` raises when it
would. Item features too: an item's price (the LSTM's price band, the learned ranker's price
features) is the median price paid *before the training end* (:attr:`FoldContext.stats`), never the
catalog's price column, which a loader may derive from the whole history;
:func:`check_item_prices` recomputes the prices a fold uses from the events before its training
end and raises on any other value (a planted or whole-history price).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.schema import ItemCols
from models.base import IntArray, TrainingData
from models.candidates import build_repeat_rates
from models.popularity import PopularityRecommender
from models.ranker_features import ItemStats, item_stats, product_index
from models.sequence import ItemFeatures
from training.blend import Holdout
from training.data import PURCHASE_CODE
from training.evaluate.config import EvalConfig
from training.evaluate.prepared import Prepared, subset

__all__ = [
    "FoldAudit",
    "FoldContext",
    "check_item_prices",
    "fold_context",
    "fold_item_features",
    "fold_item_stats",
]


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
    #: the time the item features (prices, popularity, first sale) are computed as of
    features_as_of: int | None = None
    #: the latest event the item prices were computed from, minus the earliest cutoff
    max_price_timestamp_minus_cutoff: int | None = None

    def check(self) -> None:
        """Raise ``RuntimeError`` if anything dated on/after a cutoff was used."""
        trained, first = self.max_train_timestamp, self.min_cutoff
        if trained is not None and first is not None and not trained < self.train_end <= first:
            raise RuntimeError(f"look-ahead: training events reach a cutoff: {self}")
        if self.features_as_of is not None and self.features_as_of > self.train_end:
            raise RuntimeError(f"look-ahead: item features computed after training end: {self}")
        gap = self.max_price_timestamp_minus_cutoff
        if gap is not None and gap >= 0:
            raise RuntimeError(f"look-ahead: item prices read events at/after a cutoff: {self}")
        for gap in (
            self.max_history_timestamp_minus_cutoff,
            self.max_popularity_timestamp_minus_cutoff,
        ):
            if gap is not None and gap >= 0:
                raise RuntimeError(f"look-ahead: history or popularity reach a cutoff: {self}")


@dataclass
class FoldContext:
    """A holdout with what its sources may read: training events, histories, popularity."""

    prepared: Prepared
    holdout: Holdout
    config: EvalConfig
    histories: list[IntArray]  # event indices per holdout customer, before their cutoff
    train: TrainingData
    popularity: dict[int, IntArray]  # cutoff -> top ``depth`` items as of that day
    audit: FoldAudit
    timings: dict[str, float]
    cache: dict[str, Any] = field(default_factory=dict)
    #: item statistics (prices, popularity, first sale, rebuy rates) as of ``holdout.train_end``
    stats: ItemStats | None = None

    @property
    def item_stats(self) -> ItemStats:
        if self.stats is None:
            self.stats = fold_item_stats(self.prepared, self.train, self.holdout.train_end)
        return self.stats

    @property
    def item_features(self) -> ItemFeatures:
        """The LSTM's item side features with price bands from :attr:`item_stats`' prices."""
        if "item_features" not in self.cache:
            features = fold_item_features(self.prepared, self.item_stats)
            check_item_prices(self.prepared, self.item_stats.price, self.holdout.train_end)
            self.cache["item_features"] = features
        out: ItemFeatures = self.cache["item_features"]
        return out


def _price_events(prepared: Prepared, as_of: int) -> npt.NDArray[np.bool_]:
    data = prepared.data
    return np.asarray(
        (data.event_types == PURCHASE_CODE) & (data.timestamps < int(as_of)), dtype=bool
    )


def fold_item_stats(prepared: Prepared, train: TrainingData, as_of: int) -> ItemStats:
    """:func:`models.ranker_features.item_stats` of the purchases before ``as_of`` (prices from
    the events' own prices; rebuy rates from ``train``'s purchases)."""
    data = prepared.data
    bought = train.event_types == PURCHASE_CODE
    groups = prepared.groups if len(prepared.groups) else np.zeros(prepared.n_items, np.int64)
    rebuy = build_repeat_rates(
        train.user_idx[bought], train.item_idx[bought], train.timestamps[bought], groups
    )
    prices = prepared.prices if len(prepared.prices) else np.full(len(data.item_idx), np.nan)
    mask = _price_events(prepared, as_of)
    return item_stats(
        data.item_idx[mask],
        data.timestamps[mask],
        data.weights[mask],
        prices[mask],
        as_of=int(as_of),
        groups=groups,
        products=product_index(prepared.product_codes or [None] * prepared.n_items),
        rebuy=rebuy,
    )


def fold_item_features(prepared: Prepared, stats: ItemStats) -> ItemFeatures:
    """The catalog's side features with the price (and the price band derived from it) replaced
    by ``stats.price``: the catalog's own price column is never read."""
    items = prepared.items.copy()
    if not len(items):
        return prepared.features
    by_id = pd.Series(stats.price, index=[str(i) for i in prepared.maps.items.ids()])
    items[ItemCols.PRICE] = items[ItemCols.ID].astype(str).map(by_id).astype("float64")
    items[ItemCols.PRICE_BAND] = pd.Series([None] * len(items), dtype="object")
    return ItemFeatures.from_frame(items, prepared.maps.items.ids())


def check_item_prices(prepared: Prepared, prices: npt.ArrayLike, as_of: int) -> None:
    """Raise ``RuntimeError`` unless ``prices`` (one per item) are the median prices paid before
    ``as_of`` (NaN for an item unsold by then): the leak audit of the price features."""
    data = prepared.data
    mask = _price_events(prepared, as_of)
    paid = prepared.prices if len(prepared.prices) else np.full(len(data.item_idx), np.nan)
    frame = pd.DataFrame({"item": data.item_idx[mask], "price": paid[mask]}).dropna()
    expected = np.full(prepared.n_items, np.nan)
    median = frame.groupby("item")["price"].median()
    expected[median.index.to_numpy(np.int64)] = median.to_numpy(np.float64)
    got = np.asarray(prices, dtype=np.float64)
    bad = ~np.isclose(got, expected, rtol=1e-9, atol=0.0, equal_nan=True)
    if bad.any():
        item = int(np.flatnonzero(bad)[0])
        raise RuntimeError(
            f"look-ahead: item {prepared.maps.items.ids()[item]!r} is priced {got[item]!r}, "
            f"but the median price paid before {pd.Timestamp(int(as_of), unit='s')} is "
            f"{expected[item]!r} ({int(bad.sum())} items differ)"
        )


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


def fold_context(
    prepared: Prepared, holdout: Holdout, config: EvalConfig, fold: int, kind: str
) -> FoldContext:
    """The context of ``holdout`` (fold ``fold``, ``kind`` "test" or "validation"), audited."""
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
    stats = fold_item_stats(prepared, train, holdout.train_end)
    priced = _price_events(prepared, stats.as_of)
    audit.features_as_of = stats.as_of
    if priced.any() and len(holdout):
        audit.max_price_timestamp_minus_cutoff = int(data.timestamps[priced].max()) - int(
            holdout.cutoffs.min()
        )
    audit.check()
    ctx = FoldContext(prepared, holdout, config, histories, train, popularity, audit, {})
    ctx.stats = stats
    return ctx
