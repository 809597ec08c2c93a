"""Fitting the size-fit model (:mod:`models.size_fit`) on a retailer's own data.

In Lookbook's format fit feedback is purchases and returns: a purchase in a size that was kept
says the size fitted, a return with ``too_small`` / ``too_large`` says it did not (returns for
other reasons say nothing about fit and are left out). Sizes are placed on the catalog's size
scales (:class:`~models.size_fit.SizeScales`); an item's fallback offset is its product type's.
Customers who opted out of personalization lend their feedback to the items' offsets, but their
own true sizes are not kept in the bundle. The small / fit / large classifier
(:mod:`models.size_fit_ranker`) is trained on the same verdicts over the latent model (a seeded
share held out for early stopping), keeping no statistics of opted-out customers either.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from feature_store.dataset import Dataset
from feature_store.schema import InteractionCols, InteractionType, ItemCols, ReturnReason
from models.size_fit import (
    FIT,
    LARGE,
    SMALL,
    FitObservations,
    ItemSizing,
    SizeFitConfig,
    SizeFitModel,
    SizeScales,
)
from models.size_fit_ranker import MIN_OBSERVATIONS, SizeFitRanker, SizeFitRankerConfig
from training.data import IdMaps, encode

logger = logging.getLogger("lookbook.training")


def catalog_sizing(items: pd.DataFrame) -> tuple[SizeScales, ItemSizing]:
    """The size scales of a catalog (``items`` in item-index order) and each item's scale,
    product-type group and each scale's centre."""
    categories = items[ItemCols.CATEGORY].astype(str).tolist()
    kinds = (
        (
            items[ItemCols.PRODUCT_TYPE]
            .astype(object)
            .where(items[ItemCols.PRODUCT_TYPE].notna(), "")
            if ItemCols.PRODUCT_TYPE in items.columns
            else pd.Series("", index=items.index)
        )
        .astype(str)
        .tolist()
    )
    sizes = (
        [_labels(v) for v in items[ItemCols.SIZES]]
        if ItemCols.SIZES in items.columns
        else [() for _ in range(len(items))]
    )
    scales = SizeScales.from_catalog(categories, kinds, sizes)
    scale = np.array(
        [scales.scale_of(c, k, s) for c, k, s in zip(categories, kinds, sizes, strict=True)],
        dtype=np.int64,
    )
    group = np.array([f"{c}/{k}" for c, k in zip(categories, kinds, strict=True)], dtype=np.str_)
    _, group_codes = np.unique(group, return_inverse=True)
    centre = np.array([(len(labels) - 1) / 2 for labels in scales.labels], dtype=np.float64)
    return scales, ItemSizing(scale=scale, group=group_codes.astype(np.int64), scale_centre=centre)


def _labels(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(str(v) for v in value)
    return ()


def fit_observations(
    interactions: pd.DataFrame, sizing: ItemSizing, maps: IdMaps, scales: SizeScales
) -> FitObservations:
    """The fit feedback of ``interactions``: per (customer, item, size) bought, as many
    ``too_small`` / ``too_large`` verdicts as such returns, and the purchases not returned (for
    any reason) as fits. A return without a size counts against the customer's latest purchase
    size of the item. Purchases in sizes on no scale (one size, unknown labels) are left out."""
    kind = interactions[InteractionCols.TYPE].astype(str)
    cols = [InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID, InteractionCols.SIZE]
    if InteractionCols.SIZE not in interactions.columns:
        return _empty()
    bought = interactions.loc[kind == InteractionType.PURCHASE.value, cols].copy()
    bought = bought[bought[InteractionCols.SIZE].notna()]
    for column in cols:
        bought[column] = bought[column].astype(str)
    if bought.empty:
        return _empty()
    returned = interactions.loc[kind == InteractionType.RETURN.value].copy()
    reason = (
        returned[InteractionCols.RETURN_REASON].astype(object)
        if InteractionCols.RETURN_REASON in returned.columns
        else pd.Series(None, index=returned.index, dtype=object)
    )
    returned = returned.assign(_reason=reason.where(reason.notna(), "").astype(str))
    for column in cols[:2]:
        returned[column] = returned[column].astype(str)
    latest = bought.groupby(cols[:2], sort=False)[InteractionCols.SIZE].last()
    size = returned[InteractionCols.SIZE].astype(object)
    fallback = pd.Series(
        latest.reindex(pd.MultiIndex.from_frame(returned[cols[:2]])).to_numpy(),
        index=returned.index,
    )
    returned[InteractionCols.SIZE] = size.where(size.notna(), fallback).astype(str)
    n_bought = bought.groupby(cols, sort=False).size().rename("bought")
    n_ret = returned.groupby([*cols, "_reason"], sort=False).size().unstack("_reason")
    table = pd.concat([n_bought, n_ret], axis=1).fillna(0.0)
    table = table[table["bought"] > 0]
    small = table.get(ReturnReason.TOO_SMALL.value, pd.Series(0.0, index=table.index))
    large = table.get(ReturnReason.TOO_LARGE.value, pd.Series(0.0, index=table.index))
    returns_total = table.drop(columns="bought").sum(axis=1)
    n = table["bought"].to_numpy(dtype=np.float64)
    n_small = np.minimum(small.to_numpy(dtype=np.float64), n)
    n_large = np.minimum(large.to_numpy(dtype=np.float64), n - n_small)
    n_fit = np.maximum(n - returns_total.to_numpy(dtype=np.float64), 0.0)
    keys = table.index.to_frame(index=False)
    customer = encode(keys[InteractionCols.CUSTOMER_ID], maps.customers)
    item = encode(keys[InteractionCols.ITEM_ID], maps.items)
    position = _positions(item, keys[InteractionCols.SIZE], sizing, scales)
    ok = (customer >= 0) & (item >= 0) & (position >= 0)
    counts = np.stack([n_small, n_fit, n_large], axis=1).astype(np.int64)[ok]
    rows = np.repeat(np.flatnonzero(ok), counts.sum(axis=1))
    # Per kept row its small, fit and large verdicts, in that order (row-major over ``counts``).
    verdict = np.repeat(
        np.tile(np.array([SMALL, FIT, LARGE], dtype=np.int8), len(counts)), counts.ravel()
    )
    return FitObservations(
        customer=customer[rows].astype(np.int64),
        item=item[rows].astype(np.int64),
        position=position[rows].astype(np.float64),
        verdict=verdict.astype(np.int8),
    )


def _positions(
    item: npt.NDArray[np.int64], labels: pd.Series, sizing: ItemSizing, scales: SizeScales
) -> npt.NDArray[np.float64]:
    """The position of each (item, size label) on the item's scale (-1: the item has no scale,
    or the label is not on it); each distinct (scale, label) is ranked once."""
    position = np.full(len(item), -1.0)
    scale = np.where(item >= 0, sizing.scale[np.maximum(item, 0)], -1)
    on = np.flatnonzero(scale >= 0)
    if not len(on):
        return position
    codes, uniques = pd.factorize(labels.astype(str).to_numpy()[on])
    pair = scale[on] * len(uniques) + codes
    distinct, inverse = np.unique(pair, return_inverse=True)
    ranks = np.array(
        [
            -1 if (r := scales.rank(int(k // len(uniques)), str(uniques[k % len(uniques)]))) is None
            else r
            for k in distinct.tolist()
        ],
        dtype=np.float64,
    )  # fmt: skip
    position[on] = ranks[inverse.ravel()]
    return position


def _empty() -> FitObservations:
    return FitObservations(
        np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int8)
    )


def fit_size_model(
    dataset: Dataset,
    maps: IdMaps,
    opted_out: npt.NDArray[np.int64],
    config: SizeFitConfig | None = None,
    ranker: SizeFitRankerConfig | None = None,
    *,
    progress: bool = False,
) -> tuple[SizeFitModel, dict[str, Any]]:
    """The size-fit model of a retailer (items in ``maps`` order) and its summary; with a
    ``ranker`` config and at least :data:`~models.size_fit_ranker.MIN_OBSERVATIONS` verdicts,
    the small / fit / large classifier is trained over it and attached (``model.classifier``)."""
    order = pd.Index(dataset.items[ItemCols.ID].astype(str)).get_indexer(pd.Index(maps.items.ids()))
    items = dataset.items.iloc[order].reset_index(drop=True)
    started = time.perf_counter()
    scales, sizing = catalog_sizing(items)
    obs = fit_observations(dataset.interactions, sizing, maps, scales)
    if progress:
        logger.info(
            "size-fit observations: %d verdicts on %d size scales, %.1f s",
            len(obs),
            len(scales),
            time.perf_counter() - started,
        )
    model = SizeFitModel(config).fit(
        obs, sizing, len(maps.customers), scales=scales, show_progress=progress
    )
    classifier = None
    if ranker is not None and len(obs) >= MIN_OBSERVATIONS:
        classifier = SizeFitRanker(ranker).fit(obs, model, show_progress=progress)
        classifier.forget_customers(opted_out)
    model.forget_customers(opted_out)
    model.classifier = classifier
    verdicts = np.bincount(obs.verdict.astype(np.int64), minlength=3)
    summary = {
        "observations": len(obs),
        "verdicts": {"small": int(verdicts[SMALL]), "fit": int(verdicts[FIT]),
                     "large": int(verdicts[LARGE])},
        "scales": len(scales),
        "runs_small": int((model.item_offset >= 0.5).sum()),
        "runs_large": int((model.item_offset <= -0.5).sum()),
        "classifier": None if classifier is None else classifier.training,
    }  # fmt: skip
    logger.info("size-fit model: %s", summary)
    return model, summary
