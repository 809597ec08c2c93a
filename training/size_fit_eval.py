"""Measuring size-fit models on Rent the Runway: small / fit / large of a rental, and the size to
recommend.

The task of Misra, Wan & McAuley (RecSys 2018): given a customer, an item and the size rented,
predict the verdict (``small`` / ``fit`` / ``large``); the measure is the average over the three
classes of the one-vs-rest AUC. Their best model on Rent the Runway, K-LF-ML, reached 0.719 (their
1-LV-LR baseline 0.61) on a random 80/10/10 split. Measured here on that split and on a time
split (by review date), with, in the same run:

* ``customer's usual size`` — the size against the customer's mean size in training (larger:
  more likely too large); no fitting;
* ``item only`` — the item's shares of small / fit / large verdicts in training (smoothed);
* ``latent sizes`` — :class:`models.size_fit.SizeFitModel`: true sizes of customers, items'
  offsets, body measurements for customers without history, calibrated on held-out feedback;
* ``gradient boosting`` — LightGBM over the customer's past verdicts relative to size, the
  item's (and the item-in-this-size's) share of small / large verdicts, the size against the
  customer's usual size and against the size the item fits its renters in, category, occasion,
  body measurements, and the latent model's outputs. Everything learnt from verdicts is computed
  out-of-fold for the training rows (never from the row itself) and from the whole training part
  for validation and test rows; early stopping on the validation part;
* ``blend`` — the two learnt models' probabilities averaged with a weight chosen on validation.

The recommended size of a rental that fitted: the item's size (among those it was rented in) with
the highest probability of fitting for that customer; reported is how often it is the size the
customer rented and kept ("fit"), beside the customer's usual size and the item's most-kept size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from feature_store.config import StrictConfig
from feature_store.rent_the_runway import BODY_COLUMNS, FIT_VERDICTS, FitCols
from models.size_fit import FitObservations, ItemSizing, SizeFitConfig, SizeFitModel
from training.churn_eval import auc

logger = logging.getLogger("lookbook.training")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: RTR's size numbers run in steps of about 4 per dress size (0, 4, 8 … with odd in-betweens).
RTR_SIZE_STEP: Final = 4.0
#: Published results on the random split (Misra, Wan & McAuley, RecSys 2018, Table 3).
PAPER_AUC: Final = {"1-LV-LR (paper)": 0.61, "K-LF-ML (paper)": 0.719}

CATEGORICAL: Final = (FitCols.PRODUCT_TYPE, FitCols.BODY_TYPE, FitCols.RENTED_FOR)


class SizeFitEvalConfig(StrictConfig):
    """Splits, out-of-fold statistics and the gradient-boosting settings of the evaluation."""

    seed: int = 0
    folds: int = Field(5, ge=2, description="folds of the out-of-fold statistics")
    latent_folds: int = Field(2, ge=2, description="folds of the latent model's features")
    smoothing: float = Field(5.0, ge=0, description="prior count of the smoothed shares")
    rounds: int = Field(2000, ge=1)
    learning_rate: float = Field(0.03, gt=0)
    num_leaves: int = Field(63, ge=2)
    min_child_samples: int = Field(40, ge=1)
    early_stopping: int = Field(100, ge=1)
    threads: int = Field(2, ge=1)
    latent: SizeFitConfig = Field(
        default_factory=lambda: SizeFitConfig(max_iter=150, calibration_share=0.0)
    )
    latent_features: bool = Field(
        False, description="give the boosting the latent model's out-of-fold outputs too"
    )


# -- splits -----------------------------------------------------------------------------------


def random_split(n: int, seed: int) -> tuple[IntArray, IntArray, IntArray]:
    """Rows of a seeded random 80/10/10 split (train, validation, test)."""
    order = np.random.default_rng(seed).permutation(n)
    a, b = int(0.8 * n), int(0.9 * n)
    return np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])


def time_split(dates: pd.Series) -> tuple[IntArray, IntArray, IntArray]:
    """Rows by review date (ties in file order): the oldest 80 % train, the next 10 %
    validation, the newest 10 % test."""
    order = np.argsort(dates.to_numpy(), kind="stable")
    n = len(order)
    a, b = int(0.8 * n), int(0.9 * n)
    return np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:])


# -- measures ---------------------------------------------------------------------------------


def verdict_codes(frame: pd.DataFrame) -> IntArray:
    """0 small, 1 fit, 2 large."""
    codes = pd.Categorical(frame[FitCols.FIT], categories=list(FIT_VERDICTS)).codes
    return np.asarray(codes, dtype=np.int64)


def average_auc(y: IntArray, scores: FloatArray) -> float:
    """The mean over the three verdicts of the one-vs-rest AUC of ``scores[:, k]``."""
    return float(np.mean([auc(y == k, scores[:, k]) for k in range(3)]))


# -- features ---------------------------------------------------------------------------------


def _smoothed(hits: pd.Series, total: pd.Series, prior: float, strength: float) -> pd.Series:
    return (hits + strength * prior) / (total + strength)


@dataclass
class _Reference:
    """Statistics of a reference part of the rentals (never the rows they describe)."""

    user: pd.DataFrame
    item: pd.DataFrame
    item_size: pd.DataFrame
    prior: FloatArray  # share of small / fit / large


def _reference(ref: pd.DataFrame, y: IntArray, smoothing: float) -> _Reference:
    prior = np.bincount(y, minlength=3) / max(len(y), 1)
    frame = pd.DataFrame(
        {
            "u": ref[FitCols.CUSTOMER_ID].to_numpy(),
            "i": ref[FitCols.ITEM_ID].to_numpy(),
            "s": ref[FitCols.SIZE].to_numpy(dtype=np.float64),
            "small": (y == 0).astype(np.float64),
            "large": (y == 2).astype(np.float64),
            "fit": (y == 1).astype(np.float64),
        }
    )
    frame["s_fit"] = frame["s"].where(frame["fit"] > 0)
    item = frame.groupby("i").agg(
        i_n=("s", "size"),
        i_mean=("s", "mean"),
        i_std=("s", "std"),
        i_small=("small", "sum"),
        i_large=("large", "sum"),
        i_fit_mean=("s_fit", "mean"),
    )
    item["i_fit_mean"] = item["i_fit_mean"].fillna(item["i_mean"])
    item["i_small"] = _smoothed(item["i_small"], item["i_n"], prior[0], smoothing)
    item["i_large"] = _smoothed(item["i_large"], item["i_n"], prior[2], smoothing)
    # A rental's size relative to the size its item fits renters in, and that moved by the
    # verdict (too small: the customer's size is a step larger): the customer's own size on a
    # scale that is comparable across items.
    fit_mean = frame["i"].map(item["i_fit_mean"])
    frame["rel"] = frame["s"] - fit_mean
    frame["true_rel"] = frame["rel"] + RTR_SIZE_STEP * (frame["small"] - frame["large"])
    user = frame.groupby("u").agg(
        u_n=("s", "size"),
        u_mean=("s", "mean"),
        u_min=("s", "min"),
        u_max=("s", "max"),
        u_small=("small", "sum"),
        u_large=("large", "sum"),
        u_rel=("rel", "mean"),
        u_true_rel=("true_rel", "mean"),
        u_fit_mean=("s_fit", "mean"),
    )
    user["u_small"] = _smoothed(user["u_small"], user["u_n"], prior[0], smoothing)
    user["u_large"] = _smoothed(user["u_large"], user["u_n"], prior[2], smoothing)
    item_size = frame.groupby(["i", "s"]).agg(
        is_n=("s", "size"), is_small=("small", "sum"), is_large=("large", "sum")
    )
    item_size["is_small"] = _smoothed(item_size["is_small"], item_size["is_n"], prior[0], smoothing)
    item_size["is_large"] = _smoothed(item_size["is_large"], item_size["is_n"], prior[2], smoothing)
    return _Reference(user=user, item=item, item_size=item_size, prior=prior)


def _features(query: pd.DataFrame, ref: _Reference) -> pd.DataFrame:
    """The statistics of ``ref`` joined to the rentals of ``query`` (whose own size is used)."""
    u = query[FitCols.CUSTOMER_ID].to_numpy()
    i = query[FitCols.ITEM_ID].to_numpy()
    s = query[FitCols.SIZE].to_numpy(dtype=np.float64)
    out = pd.DataFrame(index=query.index)
    out["size"] = s
    user = ref.user.reindex(u)
    item = ref.item.reindex(i)
    pair = ref.item_size.reindex(pd.MultiIndex.from_arrays([i, s]))
    for frame in (user, item, pair):
        for column in frame.columns:
            out[column] = frame[column].to_numpy()
    out["u_n"] = out["u_n"].fillna(0.0)
    out["i_n"] = out["i_n"].fillna(0.0)
    out["is_n"] = out["is_n"].fillna(0.0)
    for column, k in (("u_small", 0), ("u_large", 2), ("i_small", 0), ("i_large", 2)):
        out[column] = out[column].fillna(ref.prior[k])
    out["is_small"] = out["is_small"].fillna(out["i_small"])
    out["is_large"] = out["is_large"].fillna(out["i_large"])
    out["d_user"] = s - out["u_mean"]
    out["d_user_fit"] = s - out["u_fit_mean"]
    out["d_item"] = s - out["i_mean"]
    out["d_item_fit"] = s - out["i_fit_mean"]
    out["d_rel"] = out["d_item_fit"] - out["u_rel"]
    out["d_true_rel"] = out["d_item_fit"] - out["u_true_rel"]
    for column in BODY_COLUMNS:
        out[column] = query[column].to_numpy(dtype=np.float64)
    for column in CATEGORICAL:
        out[column] = query[column].to_numpy()
    return out


def _categorical(features: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame:
    out = features.copy()
    for column in CATEGORICAL:
        out[column] = pd.Categorical(out[column].astype(object), categories=levels[column])
    return out


# -- the latent model on a frame --------------------------------------------------------------


@dataclass
class _Catalog:
    """Dense indices of customers and items of all rentals (ids are not targets), the items'
    groups and the customers' body measurements (their latest given)."""

    customers: pd.Index
    items: pd.Index
    sizing: ItemSizing
    body: FloatArray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Catalog:
        customers = pd.Index(pd.unique(frame[FitCols.CUSTOMER_ID]))
        items = pd.Index(pd.unique(frame[FitCols.ITEM_ID]))
        kind = frame.groupby(FitCols.ITEM_ID)[FitCols.PRODUCT_TYPE].agg(
            lambda v: str(v.mode().iloc[0])
        )
        _, group = np.unique(kind.reindex(items).astype(str).to_numpy(), return_inverse=True)
        centre = float(np.median(frame[FitCols.SIZE])) / RTR_SIZE_STEP
        sizing = ItemSizing(
            scale=np.zeros(len(items), np.int64),
            group=group.astype(np.int64),
            scale_centre=np.array([centre]),
        )
        ordered = frame.sort_values(FitCols.DATE, kind="stable")
        body = (
            ordered.groupby(FitCols.CUSTOMER_ID)[list(BODY_COLUMNS)]
            .last()  # the latest non-null value of each measurement
            .reindex(customers)
            .to_numpy(dtype=np.float64)
        )
        return cls(customers=customers, items=items, sizing=sizing, body=body)

    def observations(self, frame: pd.DataFrame) -> FitObservations:
        return FitObservations(
            customer=self.customers.get_indexer(pd.Index(frame[FitCols.CUSTOMER_ID])).astype(
                np.int64
            ),
            item=self.items.get_indexer(pd.Index(frame[FitCols.ITEM_ID])).astype(np.int64),
            position=frame[FitCols.SIZE].to_numpy(dtype=np.float64) / RTR_SIZE_STEP,
            verdict=verdict_codes(frame).astype(np.int8),
        )

    def fit(self, frame: pd.DataFrame, config: SizeFitConfig) -> SizeFitModel:
        return SizeFitModel(config).fit(
            self.observations(frame), self.sizing, len(self.customers), self.body
        )


def _latent_features(model: SizeFitModel, obs: FitObservations) -> pd.DataFrame:
    """The latent model's view of rentals: sizes off, their variance, the item's offset, the
    customer's true size and the verdict probabilities of its own (uncalibrated) curve."""
    dist, var = model.distance(obs.customer, obs.item, obs.position, chosen=True)
    probs = model.raw_curve_proba(dist, var)
    size, _, count = model.true_size(obs.customer, np.zeros(len(obs), np.int64))
    offset, _, _ = model.offset(obs.item)
    return pd.DataFrame(
        {
            "lat_small": probs[:, 0],
            "lat_large": probs[:, 2],
            "lat_dist": dist,
            "lat_var": var,
            "lat_offset": offset,
            "lat_size": np.where(count > 0, size, np.nan),
        }
    )


# -- one split --------------------------------------------------------------------------------


@dataclass
class SplitResult:
    """AUCs, recommendation hit rates and sizes of one split."""

    name: str
    rows: dict[str, int]
    auc: dict[str, float]
    recommend: dict[str, float]
    recommend_rows: int
    extra: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[str], None]


def evaluate_split(
    frame: pd.DataFrame,
    parts: tuple[IntArray, IntArray, IntArray],
    name: str,
    config: SizeFitEvalConfig,
    progress: Progress = logger.info,
) -> SplitResult:
    """Every model and baseline of the module on one split of ``frame`` (from
    :func:`feature_store.rent_the_runway.load_rtr_fit`)."""
    train_rows, val_rows, test_rows = parts
    train = frame.iloc[train_rows].reset_index(drop=True)
    val = frame.iloc[val_rows].reset_index(drop=True)
    test = frame.iloc[test_rows].reset_index(drop=True)
    y_train, y_val, y_test = verdict_codes(train), verdict_codes(val), verdict_codes(test)
    catalog = _Catalog.of(frame)
    rng = np.random.default_rng(config.seed)

    progress(f"[{name}] out-of-fold statistics ({config.folds} folds)")
    fold = rng.integers(0, config.folds, len(train))
    pieces = []
    for k in range(config.folds):
        ref = _reference(train[fold != k], y_train[fold != k], config.smoothing)
        pieces.append(_features(train[fold == k], ref))
    x_train = pd.concat(pieces).sort_index()
    full_ref = _reference(train, y_train, config.smoothing)
    x_val, x_test = _features(val, full_ref), _features(test, full_ref)

    progress(f"[{name}] latent sizes on the whole training part")
    latent = catalog.fit(train, config.latent)
    progress(f"[{name}]   {latent.training}")
    if config.latent_features:
        progress(f"[{name}] latent sizes, out-of-fold ({config.latent_folds} folds)")
        oof_config = config.latent.model_copy(update={"calibration_share": 0.0})
        lat_fold = rng.integers(0, config.latent_folds, len(train))
        lat_pieces = []
        for k in range(config.latent_folds):
            model = catalog.fit(train[lat_fold != k], oof_config)
            held = lat_fold == k
            part = _latent_features(model, catalog.observations(train[held]))
            part.index = np.flatnonzero(held)
            lat_pieces.append(part)
            progress(f"[{name}]   fold {k + 1}/{config.latent_folds}: {model.training}")
        lat_train = pd.concat(lat_pieces).sort_index().reset_index(drop=True)
        x_train = pd.concat([x_train.reset_index(drop=True), lat_train], axis=1)
        x_val = pd.concat([x_val, _latent_features(latent, catalog.observations(val))], axis=1)
        x_test = pd.concat([x_test, _latent_features(latent, catalog.observations(test))], axis=1)
    else:
        x_train = x_train.reset_index(drop=True)
    levels = {
        c: sorted({str(v) for v in frame[c].dropna().unique()}) for c in CATEGORICAL
    }  # category names, not targets
    x_train, x_val, x_test = (_categorical(x, levels) for x in (x_train, x_val, x_test))

    progress(f"[{name}] gradient boosting on {x_train.shape[1]} features")
    params = {
        "objective": "multiclass",
        "num_class": 3,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.threads,
        "verbose": -1,
    }
    booster = lgb.train(
        params,
        lgb.Dataset(x_train, y_train),
        num_boost_round=config.rounds,
        valid_sets=[lgb.Dataset(x_val, y_val)],
        callbacks=[lgb.early_stopping(config.early_stopping, verbose=False)],
    )
    gbm_val = np.asarray(booster.predict(x_val, num_iteration=booster.best_iteration))
    gbm_test = np.asarray(booster.predict(x_test, num_iteration=booster.best_iteration))
    lat_prob_val = latent.predict_proba(*_triple(catalog.observations(val)), chosen=True)
    lat_prob_test = latent.predict_proba(*_triple(catalog.observations(test)), chosen=True)
    weights = np.linspace(0.0, 1.0, 11)
    blend_auc = [average_auc(y_val, w * gbm_val + (1 - w) * lat_prob_val) for w in weights]
    w_best = float(weights[int(np.argmax(blend_auc))])

    scores = {
        "customer's usual size": _usual_size_scores(x_test),
        "item only": x_test[["i_small", "i_large"]]
        .assign(i_fit=lambda f: 1.0 - f["i_small"] - f["i_large"])[["i_small", "i_fit", "i_large"]]
        .to_numpy(dtype=np.float64),
        "latent sizes (size_fit model)": lat_prob_test,
        "gradient boosting (LightGBM)": gbm_test,
        f"blend (w={w_best:.1f} on boosting)": w_best * gbm_test + (1 - w_best) * lat_prob_test,
    }
    aucs = {label: average_auc(y_test, s) for label, s in scores.items()}
    for label, value in aucs.items():
        progress(f"[{name}] {label}: average AUC {value:.4f}")

    progress(f"[{name}] recommended sizes")
    recommend, n_rec = _recommend(
        frame, test, y_test, full_ref, catalog, latent, booster, levels, w_best,
        config.latent_features,
    )  # fmt: skip
    return SplitResult(
        name=name,
        rows={"train": len(train), "validation": len(val), "test": len(test)},
        auc=aucs,
        recommend=recommend,
        recommend_rows=n_rec,
        extra={
            "boosting_rounds": int(booster.best_iteration),
            "blend_weight": w_best,
            "latent_curve": [round(v, 4) for v in latent.curve],
            "per_class_auc_boosting": [
                round(auc(y_test == k, gbm_test[:, k]), 4) for k in range(3)
            ],
        },
    )


def _triple(obs: FitObservations) -> tuple[IntArray, IntArray, FloatArray]:
    return obs.customer, obs.item, obs.position


def _usual_size_scores(x: pd.DataFrame) -> FloatArray:
    """Larger than the customer's usual size: more likely too large (no history: a tie)."""
    d = x["d_user"].fillna(0.0).to_numpy(dtype=np.float64)
    return np.stack([-d, -np.abs(d), d], axis=1)


def _recommend(
    frame: pd.DataFrame,
    test: pd.DataFrame,
    y_test: IntArray,
    ref: _Reference,
    catalog: _Catalog,
    latent: SizeFitModel,
    booster: lgb.Booster,
    levels: dict[str, list[str]],
    w_blend: float,
    latent_features: bool,
) -> tuple[dict[str, float], int]:
    """How often each way of recommending a size picks the size rented and kept ("fit")."""
    kept = test[y_test == 1].reset_index(drop=True)
    sizes = frame.groupby(FitCols.ITEM_ID)[FitCols.SIZE].unique()  # sizes offered
    offered = sizes.reindex(kept[FitCols.ITEM_ID]).to_numpy()
    counts = np.array([len(s) for s in offered])
    many = counts >= 2  # a one-size item needs no advice
    kept, offered, counts = kept[many].reset_index(drop=True), offered[many], counts[many]
    row = np.repeat(np.arange(len(kept)), counts)
    candidates = kept.iloc[row].reset_index(drop=True)
    candidates[FitCols.SIZE] = np.concatenate(list(offered)).astype(np.int64)
    x = _features(candidates, ref)
    obs = catalog.observations(candidates)
    if latent_features:
        x = pd.concat([x, _latent_features(latent, obs)], axis=1)
    x = _categorical(x, levels)
    p_gbm = np.asarray(booster.predict(x, num_iteration=booster.best_iteration))[:, 1]
    p_lat = latent.predict_proba(*_triple(obs))[:, 1]  # sizes not picked: no choice evidence
    size = candidates[FitCols.SIZE].to_numpy(dtype=np.float64)
    usual = x["u_mean"].to_numpy(dtype=np.float64)
    fit_share = 1.0 - x["is_small"].to_numpy() - x["is_large"].to_numpy()
    item_kept = (x["is_n"].to_numpy() * fit_share).astype(np.float64)
    rules = {
        "customer's usual size (nearest offered)": -np.abs(size - np.nan_to_num(usual, nan=-1e9)),
        "item's most-kept size": item_kept,
        "latent sizes (size_fit model)": p_lat,
        "gradient boosting (LightGBM)": p_gbm,
        "blend": w_blend * p_gbm + (1 - w_blend) * p_lat,
    }
    truth = kept[FitCols.SIZE].to_numpy(dtype=np.float64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = {}
    for label, score in rules.items():
        # first best per rental (ties: the smaller size, candidates are in first-seen order)
        chosen = np.empty(len(kept))
        for k, (a, n) in enumerate(zip(starts, counts, strict=True)):
            block = score[a : a + n]
            sizes_here = size[a : a + n]
            best = np.flatnonzero(block == block.max())
            chosen[k] = sizes_here[best].min()
        out[label] = float(np.mean(chosen == truth)) if len(kept) else math.nan
    return out, len(kept)


# -- the report -------------------------------------------------------------------------------


def table(results: list[SplitResult]) -> str:
    """One Markdown table: average AUC per model and split, and the recommendation hit rates."""
    labels: list[str] = []
    for result in results:
        labels += [k for k in result.auc if k not in labels]
    header = "| model | " + " | ".join(f"{r.name} split: avg AUC" for r in results) + " |"
    lines = [header, "|---|" + "---:|" * len(results)]
    for label, value in PAPER_AUC.items():
        cells = [f"{value:.3f}" if r.name == "random" else "" for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for label in labels:
        cells = [f"{r.auc[label]:.4f}" if label in r.auc else "" for r in results]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    rec_labels: list[str] = []
    for result in results:
        rec_labels += [k for k in result.recommend if k not in rec_labels]
    lines.append("")
    lines.append(
        "| recommended size = the size rented and kept | "
        + " | ".join(f"{r.name} ({r.recommend_rows} kept rentals)" for r in results)
        + " |"
    )
    lines.append("|---|" + "---:|" * len(results))
    for label in rec_labels:
        cells = [
            f"{100 * r.recommend[label]:.1f}%" if label in r.recommend else "" for r in results
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "PAPER_AUC",
    "RTR_SIZE_STEP",
    "SizeFitEvalConfig",
    "SplitResult",
    "average_auc",
    "evaluate_split",
    "random_split",
    "table",
    "time_split",
    "verdict_codes",
]
