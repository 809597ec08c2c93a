"""The calibrated small / fit / large classifier over size-fit features: gradient boosting
(LightGBM) on what the verdicts say about an item, an item in a size and a customer.

For a (customer, item, size position) the features are (:data:`FEATURES`):

* the item's verdicts: how many, its smoothed shares of too-small and too-large verdicts, the
  mean and spread of the sizes it was bought in, the mean size it fitted in;
* the item in this size: how many verdicts, its smoothed small / large shares;
* the customer's own verdicts on the item's size scale: how many, the mean / smallest / largest
  size, smoothed small / large shares, the size relative to the size each item fits people in
  (and that moved a step by a too-small / too-large verdict: the customer's size on a scale
  comparable across items), the mean size that fitted;
* the size against those (size − usual size, − the size the item fits in …), the item's product
  type group (categorical) and the customer's body measurements (standardised, from the latent
  model :class:`models.size_fit.SizeFitModel`, which forgets opted-out customers').

The reference tables (:class:`FitTables`) are built from verdicts in dense-index form
(:class:`~models.size_fit.FitObservations`): offline for a batch and at serving time for one triple
through the same :func:`features`. Training rows get their features out-of-fold (never from their
own verdict); early stopping on a held-out share. The served tables keep the customers' own
statistics only for consented customers (:meth:`SizeFitRanker.forget_customers`).

Saved as LightGBM's text model (``booster.txt``), ``arrays.npz`` and ``config.json``; no pickle.
Deterministic (``deterministic``, one thread, seeded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field

from feature_store.config import StrictConfig
from feature_store.errors import BundleError
from models.base import load_arrays, read_model_config, save_arrays, write_config
from models.size_fit import FIT, LARGE, SMALL, FitObservations, ItemSizing, SizeFitModel

logger = logging.getLogger("lookbook.models")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

ITEM_STATS: Final = ("i_n", "i_mean", "i_std", "i_small", "i_large", "i_fit_mean")
ITEM_SIZE_STATS: Final = ("is_n", "is_small", "is_large")
CUSTOMER_STATS: Final = (
    "u_n", "u_mean", "u_min", "u_max", "u_small", "u_large", "u_rel", "u_true_rel", "u_fit_mean",
)  # fmt: skip
DERIVED: Final = ("d_user", "d_user_fit", "d_item", "d_item_fit", "d_rel", "d_true_rel")
#: Feature names before the body measurements (``body_0`` …) and the group (categorical, last).
FEATURES: Final = ("size", *ITEM_STATS, *ITEM_SIZE_STATS, *CUSTOMER_STATS, *DERIVED)
#: Verdicts needed to train the classifier (fewer: the latent model's probabilities serve).
MIN_OBSERVATIONS: Final = 500
#: Item-in-size keys: item · 2²⁰ + position in thousandths (offset so negatives fit).
_POS_SCALE: Final = 1000.0
_POS_SHIFT: Final = 1 << 19
_ITEM_STRIDE: Final = 1 << 20
BOOSTER_FILE: Final = "booster.txt"


class SizeFitRankerConfig(StrictConfig):
    """The out-of-fold statistics and the gradient boosting of the size-fit classifier."""

    model_config = ConfigDict(frozen=True)

    seed: int = 0
    folds: int = Field(5, ge=2, description="folds of the training rows' out-of-fold statistics")
    smoothing: float = Field(5.0, ge=0, description="prior count of the smoothed shares")
    validation_share: float = Field(
        0.1, gt=0, lt=1, description="share held out (seeded) for early stopping"
    )
    rounds: int = Field(600, ge=1)
    learning_rate: float = Field(0.15, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(40, ge=1)
    early_stopping: int = Field(30, ge=1)
    threads: int = Field(1, ge=1)
    max_train_rows: int | None = Field(
        500_000,
        ge=1,
        description="the boosting learns from a seeded sample of this many training rows (their "
        "out-of-fold features still come from all of them; None: every row)",
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SizeFitRankerConfig:
        """The config of a saved model; keys this version does not know are ignored."""
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})


def _item_size_keys(items: IntArray, positions: FloatArray) -> IntArray:
    pos = np.rint(np.asarray(positions, np.float64) * _POS_SCALE).astype(np.int64) + _POS_SHIFT
    return np.asarray(items, np.int64) * _ITEM_STRIDE + np.clip(pos, 0, _ITEM_STRIDE - 1)


def _lookup(keys: IntArray, query: IntArray) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Rows of ``query`` in the sorted ``keys`` and whether they were found."""
    if not len(keys):
        return np.zeros(len(query), np.int64), np.zeros(len(query), bool)
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return at.astype(np.int64), keys[at] == query


def _count(rows: IntArray, weights: FloatArray, n: int) -> FloatArray:
    return np.bincount(rows, weights=weights, minlength=n).astype(np.float64)


def _smoothed(hits: FloatArray, total: FloatArray, prior: float, strength: float) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):  # no verdicts and no smoothing: NaN
        return np.asarray((hits + strength * prior) / (total + strength), dtype=np.float64)


@dataclass
class FitTables:
    """Verdict statistics of a reference set of verdicts: per item (dense), per item in a size
    and per (customer, size scale) (sorted keys), and the overall shares of the verdicts."""

    prior: FloatArray  # share of small / fit / large
    item: FloatArray  # n_items x len(ITEM_STATS); NaN (counts 0) without verdicts
    item_size_keys: IntArray
    item_size: FloatArray  # x len(ITEM_SIZE_STATS)
    customer_keys: IntArray  # customer * n_scales + scale
    customer: FloatArray  # x len(CUSTOMER_STATS)

    @classmethod
    def build(cls, obs: FitObservations, item_scale: IntArray, smoothing: float) -> FitTables:
        """The statistics of ``obs`` (items on no scale, ``item_scale`` -1, are left out)."""
        item_scale = np.asarray(item_scale, np.int64)
        n_items, n_scales = len(item_scale), int(item_scale.max(initial=-1)) + 1
        obs = obs.take(item_scale[obs.item] >= 0) if len(obs) else obs
        y = obs.verdict.astype(np.int64)
        prior = np.bincount(y, minlength=3).astype(np.float64) / max(len(y), 1)
        small, large = (y == SMALL).astype(np.float64), (y == LARGE).astype(np.float64)
        fit = (y == FIT).astype(np.float64)
        p, i = obs.position.astype(np.float64), obs.item.astype(np.int64)

        def per_item(weights: FloatArray | None = None) -> FloatArray:
            return np.bincount(i, weights=weights, minlength=n_items).astype(np.float64)

        n = per_item()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = per_item(p) / n
            var = (per_item(p * p) - n * mean**2) / (n - 1)
            std = np.sqrt(np.maximum(var, 0.0))
            std[n < 2] = np.nan
            n_fit = per_item(fit)
            fit_mean = np.where(n_fit > 0, per_item(p * fit) / n_fit, mean)
        item = np.stack(
            [
                n,
                mean,
                std,
                _smoothed(per_item(small), n, prior[SMALL], smoothing),
                _smoothed(per_item(large), n, prior[LARGE], smoothing),
                fit_mean,
            ],
            axis=1,
        )
        item[n == 0, 1:] = np.nan

        is_keys, is_row = np.unique(_item_size_keys(i, p), return_inverse=True)
        is_n = np.bincount(is_row, minlength=len(is_keys)).astype(np.float64)
        item_size = np.stack(
            [
                is_n,
                _smoothed(_count(is_row, small, len(is_keys)), is_n, prior[SMALL], smoothing),
                _smoothed(_count(is_row, large, len(is_keys)), is_n, prior[LARGE], smoothing),
            ],
            axis=1,
        )

        rel = p - fit_mean[i] if len(i) else np.empty(0)
        true_rel = rel + small - large  # a size too small: the customer's size is a step up
        keys = obs.customer.astype(np.int64) * max(n_scales, 1) + item_scale[i]
        c_keys, row = np.unique(keys, return_inverse=True)
        m = len(c_keys)

        def per_customer(weights: FloatArray | None = None) -> FloatArray:
            return np.bincount(row, weights=weights, minlength=m).astype(np.float64)

        u_n = per_customer()
        low, high = np.full(m, np.inf), np.full(m, -np.inf)
        np.minimum.at(low, row, p)
        np.maximum.at(high, row, p)
        u_fit = per_customer(fit)
        with np.errstate(invalid="ignore", divide="ignore"):
            u_fit_mean = np.where(u_fit > 0, per_customer(p * fit) / u_fit, np.nan)
        customer = np.stack(
            [
                u_n,
                per_customer(p) / np.maximum(u_n, 1),
                low,
                high,
                _smoothed(per_customer(small), u_n, prior[SMALL], smoothing),
                _smoothed(per_customer(large), u_n, prior[LARGE], smoothing),
                per_customer(rel) / np.maximum(u_n, 1),
                per_customer(true_rel) / np.maximum(u_n, 1),
                u_fit_mean,
            ],
            axis=1,
        )
        return cls(
            prior=prior,
            item=item,
            item_size_keys=is_keys.astype(np.int64),
            item_size=item_size.reshape(-1, len(ITEM_SIZE_STATS)),
            customer_keys=c_keys.astype(np.int64),
            customer=customer.reshape(-1, len(CUSTOMER_STATS)),
        )

    def forget_customers(self, customers: IntArray, n_scales: int) -> None:
        """Drop these customers' own statistics (what they taught about items stays)."""
        drop = np.isin(self.customer_keys // max(n_scales, 1), np.asarray(customers, np.int64))
        self.customer_keys = self.customer_keys[~drop]
        self.customer = self.customer[~drop]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "prior": self.prior,
            "item": self.item,
            "item_size_keys": self.item_size_keys,
            "item_size": self.item_size,
            "customer_keys": self.customer_keys,
            "customer": self.customer,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FitTables:
        return cls(
            prior=arrays["prior"].astype(np.float64),
            item=arrays["item"].astype(np.float64),
            item_size_keys=arrays["item_size_keys"].astype(np.int64),
            item_size=arrays["item_size"].astype(np.float64),
            customer_keys=arrays["customer_keys"].astype(np.int64),
            customer=arrays["customer"].astype(np.float64),
        )


def features(
    tables: FitTables,
    latent: SizeFitModel,
    customers: IntArray,
    items: IntArray,
    positions: FloatArray,
    body: FloatArray | None = None,
) -> FloatArray:
    """``n x (len(FEATURES) + body + 1)`` features of (customer, item, size position) triples:
    :data:`FEATURES`, the customer's standardised body measurements (NaN unknown; ``body``: raw
    measurements of the rows, e.g. a new customer's, else those the latent model keeps) and the
    item's group. Customer -1: a customer without statistics."""
    sizing = _sizing(latent)
    customers = np.asarray(customers, np.int64)
    items = np.asarray(items, np.int64)
    s = np.asarray(positions, np.float64)
    n = len(items)
    scale = np.maximum(sizing.scale[items], 0)
    item = tables.item[items]
    at, found = _lookup(tables.item_size_keys, _item_size_keys(items, s))
    pair = np.where(found[:, None], tables.item_size[at], np.nan) if n else np.empty((0, 3))
    keys = customers * max(sizing.n_scales, 1) + scale
    at, found = _lookup(tables.customer_keys, keys)
    found &= customers >= 0
    user = np.where(found[:, None], tables.customer[at], np.nan) if n else np.empty((0, 9))
    item[:, 0] = np.nan_to_num(item[:, 0])
    pair[:, 0] = np.nan_to_num(pair[:, 0])
    user[:, 0] = np.nan_to_num(user[:, 0])
    for block, column, k in (
        (item, 3, SMALL),
        (item, 4, LARGE),
        (user, 4, SMALL),
        (user, 5, LARGE),
    ):
        block[:, column] = np.where(np.isnan(block[:, column]), tables.prior[k], block[:, column])
    pair[:, 1] = np.where(np.isnan(pair[:, 1]), item[:, 3], pair[:, 1])
    pair[:, 2] = np.where(np.isnan(pair[:, 2]), item[:, 4], pair[:, 2])
    i_mean, i_fit_mean = item[:, 1], item[:, 5]
    u_mean, u_rel, u_true_rel, u_fit_mean = user[:, 1], user[:, 6], user[:, 7], user[:, 8]
    d_item_fit = s - i_fit_mean
    derived = np.stack(
        [
            s - u_mean,
            s - u_fit_mean,
            s - i_mean,
            d_item_fit,
            d_item_fit - u_rel,
            d_item_fit - u_true_rel,
        ],
        axis=1,
    )
    return np.hstack(
        [s[:, None], item, pair, user, derived, _body(latent, customers, body),
         sizing.group[items].astype(np.float64)[:, None]]
    )  # fmt: skip


def _sizing(latent: SizeFitModel) -> ItemSizing:
    if latent.sizing is None:
        raise ValueError("the size-fit model is not fitted")
    return latent.sizing


def _body(latent: SizeFitModel, customers: IntArray, body: FloatArray | None) -> FloatArray:
    """Standardised body measurements per row (NaN unknown)."""
    n_feat = len(latent.body_mean)
    if not n_feat:
        return np.empty((len(customers), 0))
    if body is not None:
        return (np.asarray(body, np.float64) - latent.body_mean) / latent.body_std
    out = np.full((len(customers), n_feat), np.nan)
    if latent.body is not None:
        known = (customers >= 0) & (customers < len(latent.body))
        rows = latent.body[customers[known]]
        out[known] = np.where(rows[:, n_feat:] > 0, np.nan, rows[:, :n_feat])
    return out


def feature_names(latent: SizeFitModel) -> list[str]:
    """The names of :func:`features`' columns."""
    return [*FEATURES, *(f"body_{k}" for k in range(len(latent.body_mean))), "group"]


def _decreasing(values: FloatArray) -> FloatArray:
    """The closest non-increasing sequence (least squares: pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in values.tolist():
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            (m2, n2), (m1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2])
    return np.repeat([b[0] for b in blocks], [int(b[1]) for b in blocks]).astype(np.float64)


def ordinal(probs: FloatArray) -> FloatArray:
    """One item's ``sizes x 3`` probabilities (sizes in size order) made ordinal: a larger size
    is never more likely too small nor less likely too large (the closest such shares, fits the
    rest)."""
    probs = np.asarray(probs, np.float64)
    if len(probs) < 2:
        return probs.copy()
    small = _decreasing(probs[:, SMALL])
    large = -_decreasing(-probs[:, LARGE])
    total = np.maximum(small + large, 1.0)
    small, large = small / total, large / total
    return np.stack([small, 1.0 - small - large, large], axis=1)


class SizeFitRanker:
    """LightGBM over size-fit features: calibrated p(small), p(fit), p(large) of a size."""

    name = "size_fit_ranker"

    def __init__(self, config: SizeFitRankerConfig | None = None) -> None:
        self.config = config or SizeFitRankerConfig()
        self.tables: FitTables | None = None
        self.booster: lgb.Booster | None = None
        self.n_scales = 0
        self.training: dict[str, Any] = {}

    def _params(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "objective": "multiclass",
            "num_class": 3,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "seed": cfg.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": cfg.threads,
            "verbose": -1,
        }

    def fit(
        self,
        obs: FitObservations,
        latent: SizeFitModel,
        valid: FitObservations | None = None,
        *,
        show_progress: bool = False,
    ) -> Self:
        """Learn from the verdicts ``obs`` (their features out-of-fold) with early stopping on
        ``valid`` (None: a seeded ``validation_share`` of ``obs``); the served tables are built
        from all of ``obs``. ``latent``: the latent model over the same catalog."""
        started = time.perf_counter()
        cfg = self.config
        sizing = _sizing(latent)
        self.n_scales = sizing.n_scales
        obs = obs.take(sizing.scale[obs.item] >= 0)
        rng = np.random.default_rng(cfg.seed)
        if valid is None:
            held = rng.random(len(obs)) < cfg.validation_share
            train, valid = obs.take(~held), obs.take(held)
        else:
            train, valid = obs, valid.take(sizing.scale[valid.item] >= 0)
        fold = rng.integers(0, cfg.folds, len(train))
        x_train = np.empty((len(train), len(feature_names(latent))))
        for k in range(cfg.folds):
            rows = np.flatnonzero(fold == k)
            ref = FitTables.build(train.take(fold != k), sizing.scale, cfg.smoothing)
            part = train.take(rows)
            x_train[rows] = features(ref, latent, part.customer, part.item, part.position)
        ref = FitTables.build(train, sizing.scale, cfg.smoothing)
        x_valid = features(ref, latent, valid.customer, valid.item, valid.position)
        y_train = train.verdict
        if cfg.max_train_rows is not None and len(train) > cfg.max_train_rows:
            # The boosting's cost grows with its rows; past a few hundred thousand verdicts more
            # rows barely move it, while the tables behind the features keep all of them.
            rows = np.sort(rng.choice(len(train), cfg.max_train_rows, replace=False))
            x_train, y_train = x_train[rows], y_train[rows]
        names = feature_names(latent)
        group = [len(names) - 1]
        callbacks: list[Callable[..., Any]] = [
            lgb.early_stopping(cfg.early_stopping, verbose=False)
        ]
        if show_progress:
            callbacks.append(lgb.log_evaluation(50))
        booster = lgb.train(
            self._params(),
            lgb.Dataset(x_train, y_train, feature_name=names, categorical_feature=group),
            num_boost_round=cfg.rounds,
            valid_sets=[
                lgb.Dataset(x_valid, valid.verdict, feature_name=names, categorical_feature=group)
            ],
            callbacks=callbacks,
        )
        best = int(booster.best_iteration) or booster.current_iteration()
        # Served exactly as saved: the text model of the best iteration.
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        self.tables = FitTables.build(obs, sizing.scale, cfg.smoothing)
        self.training = {
            "observations": len(train),
            "boosted_rows": len(y_train),
            "validation": len(valid),
            "rounds": best,
            "validation_loss": float(booster.best_score["valid_0"]["multi_logloss"])
            if booster.best_score
            else None,
        }
        if show_progress:
            logger.info(
                "size-fit classifier: %s, %.1f s", self.training, time.perf_counter() - started
            )
        return self

    def check(self, latent: SizeFitModel) -> None:
        """Raise :class:`BundleError` unless this classifier reads the features of ``latent``
        (the size-fit model it was trained over: its items and body measurements)."""
        sizing = _sizing(latent)
        if self.booster is None or self.tables is None:
            raise BundleError("the size-fit classifier is not fitted")
        if self.booster.num_feature() != len(feature_names(latent)):
            raise BundleError("the size-fit classifier's features disagree with the size-fit model")
        if len(self.tables.item) != sizing.n_items or self.n_scales != sizing.n_scales:
            raise BundleError("the size-fit classifier's catalog disagrees with the size-fit model")

    def forget_customers(self, customers: IntArray) -> None:
        """Keep no statistics of these customers' own verdicts."""
        if self.tables is not None:
            self.tables.forget_customers(customers, self.n_scales)

    def features(
        self,
        latent: SizeFitModel,
        customers: IntArray,
        items: IntArray,
        positions: FloatArray,
        body: FloatArray | None = None,
    ) -> FloatArray:
        """The features of triples over the served tables (see :func:`features`)."""
        if self.tables is None:
            raise ValueError("the size-fit classifier is not fitted")
        return features(self.tables, latent, customers, items, positions, body)

    def predict_proba(
        self,
        latent: SizeFitModel,
        customers: IntArray,
        items: IntArray,
        positions: FloatArray,
        body: FloatArray | None = None,
    ) -> FloatArray:
        """``n x 3`` probabilities (too small, fits, too large) of (customer, item, position)
        triples (customer -1: a new customer)."""
        if self.booster is None:
            raise ValueError("the size-fit classifier is not fitted")
        x = self.features(latent, customers, items, positions, body)
        if not len(x):
            return np.empty((0, 3))
        return np.asarray(self.booster.predict(x), dtype=np.float64).reshape(-1, 3)

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        if self.booster is None or self.tables is None:
            raise ValueError("the size-fit classifier is not fitted")
        path = Path(path)
        save_arrays(path, **self.tables.to_arrays())
        (path / BOOSTER_FILE).write_text(self.booster.model_to_string())
        write_config(
            path,
            {
                "model": self.name,
                "config": self.config.model_dump(),
                "n_scales": self.n_scales,
                "n_features": self.booster.num_feature(),
                "training": self.training,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        config = read_model_config(path, cls.name)
        model = cls(SizeFitRankerConfig.from_dict(config.get("config", {})))
        try:
            model.tables = FitTables.from_arrays(load_arrays(path))
            model.booster = lgb.Booster(model_str=(path / BOOSTER_FILE).read_text())
            model.n_scales = int(config["n_scales"])
        except (KeyError, OSError, ValueError, lgb.basic.LightGBMError) as exc:
            raise BundleError(f"{path}: size-fit classifier is incomplete: {exc}") from exc
        if model.booster.num_feature() != int(config.get("n_features", -1)):
            raise BundleError(f"{path}: size-fit classifier's features disagree with its config")
        model.training = dict(config.get("training", {}))
        return model


__all__ = [
    "FEATURES",
    "MIN_OBSERVATIONS",
    "FitTables",
    "SizeFitRanker",
    "SizeFitRankerConfig",
    "feature_names",
    "features",
    "ordinal",
]
