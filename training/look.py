"""Training of the "complete the look" (complementary) and seasonal models for the bundle.

``lookbook train`` calls :func:`fit_look_models` after the collaborative models: the complementary
model learns from the retailer's same-day baskets (:func:`feature_store.outfits.baskets_from_dataset`)
and the seasonal model from its purchases (a return cancels the customer's purchases of the item).

Cost is capped for large retailers: at most ``max_baskets`` customer-days are drawn (seeded) from
the last ``basket_days`` days *before* the baskets are built, and the complementary model runs a
few epochs. Its co-occurrence statistics (:func:`event_cooccurrence`) come from *every*
customer-day of that window in the event stream — same-day purchases, add-to-carts and views, each
kind with its weight, recency-weighted — and from recency-weighted sales; the model blends them
with its learned compatibility (weights chosen on the H&M validation cut-offs of
``benchmarks/complete_the_look.py``). Everything is deterministic under the training seed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from feature_store.config import StrictConfig
from feature_store.dataset import Dataset
from feature_store.outfits import Outfits, baskets_from_dataset
from feature_store.schema import InteractionCols, InteractionType
from feature_store.timeutils import SECONDS_PER_DAY
from models.base import TrainingData
from models.complementary import ComplementaryModel
from models.cooccurrence import CoOccurrence
from models.seasonal import SeasonalModel
from training.data import IdMaps, encode, never_returned_purchases

logger = logging.getLogger("lookbook.training")


class ComplementaryConfig(StrictConfig):
    """Complementary ("complete the look") model settings for ``lookbook train``."""

    enabled: bool = True
    max_baskets: int = Field(
        100_000, ge=1, description="at most this many same-day baskets are sampled (seeded)"
    )
    basket_days: int | None = Field(
        365, ge=1, description="baskets of the last this many days only (None: all history)"
    )
    cross_category_only: bool = Field(
        True, description="ignore baskets whose items all share one category"
    )
    epochs: int = Field(3, ge=1, le=100)
    dim: int = Field(32, ge=2, le=512)
    attr_dim: int = Field(16, ge=1, le=256)
    hidden: int = Field(64, ge=1, le=1024)
    batch_size: int = Field(512, ge=8, le=65_536)
    negatives: int = Field(32, ge=1, le=1024)
    lr: float = Field(3e-3, gt=0)
    cooc_weight: float = Field(
        1.0, ge=0, description="weight of log(1 + co-occurrence with the set) in every score"
    )
    popularity_weight: float = Field(
        2.0, ge=0, description="weight of log(1 + recency-weighted sales) in every score"
    )
    cooc_half_life_days: float | None = Field(
        None, gt=0, description="half-life of a co-occurrence (None: no decay)"
    )
    popularity_half_life_days: float = Field(28.0, gt=0)
    purchase_weight: float = Field(1.0, ge=0, description="weight of a same-day co-purchase")
    cart_weight: float = Field(0.5, ge=0, description="weight of a same-day co-add-to-cart")
    view_weight: float = Field(0.1, ge=0, description="weight of a same-day co-view / co-click")


class SeasonalConfig(StrictConfig):
    """Seasonal / trending model settings for ``lookbook train``."""

    enabled: bool = True
    half_life_days: float = Field(90.0, gt=0)
    trend_weight: float = Field(0.0, ge=0, le=4)
    hemisphere: str = Field("north", pattern="^(north|south)$")
    level_mode: str = Field(
        "sales",
        pattern="^(sales|rate)$",
        description="item level: deseasonalised recency-weighted sales, or the exposure rate",
    )
    affinity_strength: float = Field(
        1.0, ge=0, description="weight of a customer's attribute shares in their seasonal picks"
    )


def sample_baskets(
    dataset: Dataset,
    maps: IdMaps,
    config: ComplementaryConfig,
    *,
    now: pd.Timestamp,
    seed: int,
) -> tuple[Outfits, dict[str, Any]]:
    """Same-day baskets of the last ``basket_days`` days, at most ``max_baskets`` of them.

    Customer-days with two or more purchase rows are counted with integer keys first; when there
    are more than ``max_baskets``, a seeded sample of them is drawn and only their rows (plus the
    returns of their customers, so returned items leave their baskets) go to
    :func:`baskets_from_dataset`. Building baskets for every customer-day of a 10M-interaction
    retailer would otherwise cost more than fitting on them.
    """
    inter = dataset.interactions
    start = None if config.basket_days is None else now - pd.Timedelta(days=config.basket_days)
    types = inter[InteractionCols.TYPE].astype(str).to_numpy()
    stamps = inter[InteractionCols.TIMESTAMP]
    in_window = np.ones(len(inter), dtype=bool)
    if start is not None:
        in_window = (stamps >= start).to_numpy()
    is_purchase = (types == InteractionType.PURCHASE.value) & in_window
    is_return = (types == InteractionType.RETURN.value) & in_window
    customers = encode(inter[InteractionCols.CUSTOMER_ID], maps.customers)
    days = stamps.dt.as_unit("s").astype("int64").to_numpy() // SECONDS_PER_DAY
    rows = np.flatnonzero(is_purchase & (customers >= 0))
    n_customers = max(len(maps.customers), 1)
    keys = days[rows] * n_customers + customers[rows]
    uniq, counts = np.unique(keys, return_counts=True)
    candidates = uniq[counts >= 2]
    summary: dict[str, Any] = {
        "window_start": None if start is None else str(start),
        "customer_days_with_2plus_purchases": len(candidates),
    }
    if len(candidates) > config.max_baskets:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(candidates, size=config.max_baskets, replace=False))
        rows = rows[np.isin(keys, chosen)]
    else:
        rows = rows[np.isin(keys, candidates)]
    picked_customers = np.unique(customers[rows])
    return_rows = np.flatnonzero(is_return & np.isin(customers, picked_customers))
    subset = inter.iloc[np.sort(np.concatenate([rows, return_rows]))]
    reduced = Dataset(
        items=dataset.items,
        interactions=subset.reset_index(drop=True),
        source=dataset.source,
    )
    baskets = baskets_from_dataset(
        reduced, start=start, cross_category_only=config.cross_category_only
    )
    summary["baskets"] = len(baskets)
    return baskets, summary


def event_cooccurrence(
    dataset: Dataset,
    maps: IdMaps,
    config: ComplementaryConfig,
    *,
    now: pd.Timestamp,
) -> tuple[CoOccurrence, dict[str, Any]]:
    """Co-occurrence over the customer-days of the last ``basket_days`` days: one set per
    (customer, day, kind) — purchases, add-to-carts, views and clicks — weighted by its kind
    (``purchase_weight`` / ``cart_weight`` / ``view_weight``) and its age; popularity from the
    window's purchases. Items are in ``maps.items`` order."""
    inter = dataset.interactions
    kinds = {
        InteractionType.PURCHASE.value: (0, config.purchase_weight),
        InteractionType.ADD_TO_CART.value: (1, config.cart_weight),
        InteractionType.VIEW.value: (2, config.view_weight),
        InteractionType.CLICK.value: (2, config.view_weight),
    }
    kind = (
        inter[InteractionCols.TYPE]
        .astype(str)
        .map({t: k for t, (k, _) in kinds.items()})
        .fillna(-1)
        .to_numpy(dtype=np.int64)
    )
    weight_of = np.zeros(3)
    for k, w in kinds.values():
        weight_of[k] = w
    stamps = inter[InteractionCols.TIMESTAMP]
    seconds = stamps.dt.as_unit("s").astype("int64").to_numpy()
    now_s = int(pd.Timestamp(now).timestamp())
    age_days = (now_s - seconds) / SECONDS_PER_DAY
    customers = encode(inter[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(inter[InteractionCols.ITEM_ID], maps.items)
    keep = (kind >= 0) & (customers >= 0) & (items >= 0) & (age_days >= 0)
    if config.basket_days is not None:
        keep &= age_days < config.basket_days
    keep &= weight_of[np.clip(kind, 0, 2)] > 0
    rows = np.flatnonzero(keep)
    days = seconds[rows] // SECONDS_PER_DAY
    n_customers = max(len(maps.customers), 1)
    keys = (days * n_customers + customers[rows]) * 3 + kind[rows]
    uniq, set_of, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    multi = sizes[set_of] >= 2  # a set of one item co-occurs with nothing
    uniq_multi, set_of = np.unique(set_of[multi], return_inverse=True)
    set_keys = uniq[uniq_multi]
    set_days = (set_keys // 3) // n_customers
    set_ages = (now_s / SECONDS_PER_DAY - (set_days + 0.5)).clip(min=0.0)
    purchase_rows = rows[kind[rows] == 0]
    stats = CoOccurrence(
        half_life_days=config.cooc_half_life_days,
        popularity_half_life_days=config.popularity_half_life_days,
    ).fit_pairs(
        len(maps.items),
        set_of,
        items[rows][multi],
        n_sets=len(set_keys),
        set_ages_days=set_ages,
        set_weights=weight_of[set_keys % 3],
        events=items[purchase_rows],
        event_ages_days=age_days[purchase_rows],
    )
    per_kind = np.bincount(set_keys % 3, minlength=3)
    summary = {
        "cooccurrence_sets": {"purchase": int(per_kind[0]), "cart": int(per_kind[1]),
                              "view": int(per_kind[2])},
        "cooccurrence_pairs": int(stats.matrix_.nnz),
    }  # fmt: skip
    return stats, summary


def fit_complementary(
    dataset: Dataset,
    maps: IdMaps,
    config: ComplementaryConfig,
    *,
    now: pd.Timestamp,
    seed: int,
    index_kind: str = "auto",
) -> tuple[ComplementaryModel | None, dict[str, Any]]:
    """The complementary model fitted on sampled same-day baskets, or ``None`` (with the reason
    in the summary) when the data has no basket of two or more items."""
    t = time.perf_counter()
    baskets, summary = sample_baskets(dataset, maps, config, now=now, seed=seed)
    summary["basket_seconds"] = round(time.perf_counter() - t, 3)
    model = ComplementaryModel(
        dim=config.dim,
        attr_dim=config.attr_dim,
        hidden=config.hidden,
        epochs=config.epochs,
        batch_size=config.batch_size,
        negatives=config.negatives,
        lr=config.lr,
        index_kind=index_kind,
        cooc_weight=config.cooc_weight,
        popularity_weight=config.popularity_weight,
        seed=seed,
        threads=1,
    )
    t = time.perf_counter()
    stats, stats_summary = event_cooccurrence(dataset, maps, config, now=now)
    summary.update(stats_summary)
    summary["cooccurrence_seconds"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    try:
        # Baskets are the only sets here, so they are the "outfits" (weight 1).
        model.fit(dataset.items.reset_index(drop=True), baskets, cooccurrence=stats)
    except ValueError as exc:
        logger.warning("complementary model not fitted: %s", exc)
        summary["skipped"] = str(exc)
        return None, summary
    summary["fit_seconds"] = round(time.perf_counter() - t, 3)
    summary["epochs"] = config.epochs
    summary["final_loss"] = round(model.loss_history_[-1], 4) if model.loss_history_ else None
    summary["items_with_history"] = int(model.history_.sum())
    return model, summary


def fit_seasonal(
    dataset: Dataset, data: TrainingData, config: SeasonalConfig
) -> tuple[SeasonalModel | None, dict[str, Any]]:
    """The seasonal model fitted on ``data``'s purchases (``data.now`` ends the period)."""
    t = time.perf_counter()
    items, seconds = never_returned_purchases(data)
    if len(items) == 0:
        logger.warning("seasonal model not fitted: no purchases")
        return None, {"skipped": "no purchases"}
    model = SeasonalModel(
        half_life_days=config.half_life_days,
        trend_weight=config.trend_weight,
        hemisphere=config.hemisphere,
        level_mode=config.level_mode,
        affinity_strength=config.affinity_strength,
    )
    model.fit_events(dataset.items.reset_index(drop=True), items, seconds, now=int(data.now))
    return model, {
        "purchases": len(items),
        "trending": int(model.trending_.sum()),
        "evergreen": int(model.evergreen_.sum()),
        "fit_seconds": round(time.perf_counter() - t, 3),
    }
