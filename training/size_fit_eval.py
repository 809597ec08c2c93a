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
* ``latent sizes (size_fit model alone)`` — :meth:`models.size_fit.SizeFitModel.latent_proba`:
  true sizes of customers, items' offsets, body measurements for customers without history;
* ``served classifier`` — :meth:`models.size_fit.SizeFitModel.predict_proba` with the classifier
  the bundle serves attached (:class:`models.size_fit_ranker.SizeFitRanker`, the same class and
  features ``lookbook train`` fits: LightGBM over the item's, the item-in-this-size's and the
  customer's verdict statistics, the size against them, the product type and body
  measurements; out-of-fold statistics for the training rows, the training part's for validation
  and test rows; early stopping on the validation part);
* ``served, made ordinal`` — those probabilities as the size advice shows them: computed for every
  size the item is offered in and made ordinal over the sizes
  (:func:`models.size_fit_ranker.ordinal`), read at the size rented;
* ``blend`` — the classifier's and the latent model's probabilities averaged with a weight chosen
  on validation.

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

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from feature_store.config import StrictConfig
from feature_store.rent_the_runway import BODY_COLUMNS, FIT_VERDICTS, FitCols
from models.size_fit import FitObservations, ItemSizing, SizeFitConfig, SizeFitModel
from models.size_fit_ranker import SizeFitRanker, SizeFitRankerConfig, feature_names, ordinal
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
    """The latent model and the served classifier as the evaluation fits them."""

    seed: int = 0
    latent: SizeFitConfig = Field(
        default_factory=lambda: SizeFitConfig(max_iter=150, calibration_share=0.0)
    )
    ranker: SizeFitRankerConfig = Field(default_factory=SizeFitRankerConfig)


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


SERVED: Final = "served classifier (size_fit_ranker)"
LATENT: Final = "latent sizes (size_fit model alone)"
ADVICE: Final = "served, made ordinal over the item's sizes (as the size advice shows it)"


def evaluate_split(
    frame: pd.DataFrame,
    parts: tuple[IntArray, IntArray, IntArray],
    name: str,
    config: SizeFitEvalConfig,
    progress: Progress = logger.info,
) -> SplitResult:
    """Every model and baseline of the module on one split of ``frame`` (from
    :func:`feature_store.rent_the_runway.load_rtr_fit`): the latent model fitted on the training
    part, the served classifier (:class:`models.size_fit_ranker.SizeFitRanker`, the class the
    bundle serves) trained on it with early stopping on the validation part."""
    train_rows, val_rows, test_rows = parts
    train = frame.iloc[train_rows].reset_index(drop=True)
    val = frame.iloc[val_rows].reset_index(drop=True)
    test = frame.iloc[test_rows].reset_index(drop=True)
    y_val, y_test = verdict_codes(val), verdict_codes(test)
    catalog = _Catalog.of(frame)
    obs_train, obs_val, obs_test = (catalog.observations(f) for f in (train, val, test))

    progress(f"[{name}] latent sizes on the whole training part")
    latent = catalog.fit(train, config.latent)
    progress(f"[{name}]   {latent.training}")
    progress(f"[{name}] the served classifier (out-of-fold statistics, LightGBM)")
    ranker = SizeFitRanker(config.ranker).fit(obs_train, latent, obs_val, show_progress=True)
    progress(f"[{name}]   {ranker.training}")
    latent.classifier = ranker
    served_val = latent.predict_proba(*_triple(obs_val))
    served_test = latent.predict_proba(*_triple(obs_test))
    lat_prob_val = latent.latent_proba(*_triple(obs_val), chosen=True)
    lat_prob_test = latent.latent_proba(*_triple(obs_test), chosen=True)
    weights = np.linspace(0.0, 1.0, 11)
    blend_auc = [average_auc(y_val, w * served_val + (1 - w) * lat_prob_val) for w in weights]
    w_best = float(weights[int(np.argmax(blend_auc))])
    x_test = _named(ranker, latent, obs_test)
    advice_test = _advice_proba(frame, test, catalog, latent)

    scores = {
        "customer's usual size": _usual_size_scores(x_test),
        "item only": np.stack(
            [x_test["i_small"], 1.0 - x_test["i_small"] - x_test["i_large"], x_test["i_large"]],
            axis=1,
        ),
        LATENT: lat_prob_test,
        SERVED: served_test,
        ADVICE: advice_test,
        f"blend (w={w_best:.1f} on the classifier)": w_best * served_test
        + (1 - w_best) * lat_prob_test,
    }
    aucs = {label: average_auc(y_test, s) for label, s in scores.items()}
    for label, value in aucs.items():
        progress(f"[{name}] {label}: average AUC {value:.4f}")

    progress(f"[{name}] recommended sizes")
    recommend, n_rec = _recommend(frame, test, y_test, catalog, latent, ranker, w_best)
    return SplitResult(
        name=name,
        rows={"train": len(train), "validation": len(val), "test": len(test)},
        auc=aucs,
        recommend=recommend,
        recommend_rows=n_rec,
        extra={
            "classifier_rounds": ranker.training.get("rounds"),
            "blend_weight": w_best,
            "latent_curve": [round(v, 4) for v in latent.curve],
            "per_class_auc_classifier": [
                round(auc(y_test == k, served_test[:, k]), 4) for k in range(3)
            ],
        },
    )


def _triple(obs: FitObservations) -> tuple[IntArray, IntArray, FloatArray]:
    return obs.customer, obs.item, obs.position


def _named(ranker: SizeFitRanker, latent: SizeFitModel, obs: FitObservations) -> pd.DataFrame:
    """The served classifier's features of ``obs`` by name (the baselines read some)."""
    return pd.DataFrame(ranker.features(latent, *_triple(obs)), columns=feature_names(latent))


def _advice_proba(
    frame: pd.DataFrame, rentals: pd.DataFrame, catalog: _Catalog, latent: SizeFitModel
) -> FloatArray:
    """The probabilities of each rental's size as the size advice shows them: the served
    model's over every size the item is offered in (rented in, here), made ordinal
    (:func:`models.size_fit_ranker.ordinal`), at the size rented."""
    sizes = frame.groupby(FitCols.ITEM_ID)[FitCols.SIZE].unique()
    offered = [np.sort(s) for s in sizes.reindex(rentals[FitCols.ITEM_ID]).to_numpy()]
    counts = np.array([len(s) for s in offered], dtype=np.int64)
    candidates = rentals.iloc[np.repeat(np.arange(len(rentals)), counts)].reset_index(drop=True)
    candidates[FitCols.SIZE] = np.concatenate(offered).astype(np.int64)
    probs = latent.predict_proba(*_triple(catalog.observations(candidates)))
    rented = rentals[FitCols.SIZE].to_numpy(dtype=np.int64)
    out = np.empty((len(rentals), 3))
    start = 0
    for k, n in enumerate(counts.tolist()):
        block = ordinal(probs[start : start + n])
        out[k] = block[int(np.searchsorted(offered[k], rented[k]))]
        start += n
    return out


def _usual_size_scores(x: pd.DataFrame) -> FloatArray:
    """Larger than the customer's usual size: more likely too large (no history: a tie)."""
    d = x["d_user"].fillna(0.0).to_numpy(dtype=np.float64)
    return np.stack([-d, -np.abs(d), d], axis=1)


def _recommend(
    frame: pd.DataFrame,
    test: pd.DataFrame,
    y_test: IntArray,
    catalog: _Catalog,
    latent: SizeFitModel,
    ranker: SizeFitRanker,
    w_blend: float,
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
    obs = catalog.observations(candidates)
    x = _named(ranker, latent, obs)
    p_served = latent.predict_proba(*_triple(obs))[:, 1]
    p_lat = latent.latent_proba(*_triple(obs))[:, 1]  # sizes not picked: no choice evidence
    size = obs.position
    usual = x["u_mean"].to_numpy(dtype=np.float64)
    fit_share = 1.0 - x["is_small"].to_numpy() - x["is_large"].to_numpy()
    item_kept = (x["is_n"].to_numpy() * fit_share).astype(np.float64)
    rules = {
        "customer's usual size (nearest offered)": -np.abs(size - np.nan_to_num(usual, nan=-1e9)),
        "item's most-kept size": item_kept,
        f"{LATENT} (the advice's choice)": p_lat,
        SERVED: p_served,
        "blend": w_blend * p_served + (1 - w_blend) * p_lat,
    }

    truth = kept[FitCols.SIZE].to_numpy(dtype=np.float64) / RTR_SIZE_STEP
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
    "ADVICE",
    "LATENT",
    "PAPER_AUC",
    "RTR_SIZE_STEP",
    "SERVED",
    "SizeFitEvalConfig",
    "SplitResult",
    "average_auc",
    "evaluate_split",
    "random_split",
    "table",
    "time_split",
    "verdict_codes",
]
