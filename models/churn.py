"""Churn risk: the probability that a customer makes no purchase in the next ``N`` days.

A logistic regression (L2, fitted by Newton's method on standardised features; deterministic) over RFM
and behaviour features computed as of a *cutoff*, with the label taken from the ``N`` days after
it — a time split, never a hand-set rule:

* :func:`training_cutoffs` lays out snapshot dates so that every label window ends on or before
  a given date (the evaluation cutoff, or the end of the data when fitting for production);
* :meth:`ChurnModel.fit` stacks the snapshots (customers who purchased before each cutoff) and
  fits; :meth:`ChurnModel.predict_activity` scores the activity table of
  :class:`~feature_store.profiles.EventTable` — the
  :class:`~feature_store.profiles.ChurnScorer` that :func:`~feature_store.profiles.compute_profiles`
  takes.

Saved as ``arrays.npz`` + ``config.json`` (no pickle), like every Lookbook model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ConfigDict, Field
from scipy.special import expit

from feature_store.config import StrictConfig
from feature_store.dataset import Dataset
from feature_store.errors import BundleError
from feature_store.profiles import EventTable
from feature_store.timeutils import SECONDS_PER_DAY

from .base import load_arrays, read_model_config, save_arrays, write_config

logger = logging.getLogger("lookbook.models.churn")

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FEATURES: Final = (
    "log_recency",
    "log_recency_sq",
    "log_frequency",
    "one_order",
    "log_tenure",
    "log_gap",
    "overdue",
    "orders_30",
    "orders_90",
    "orders_180",
    "orders_365",
    "log_monetary",
    "log_aov",
    "log_spend_90",
    "items_per_order",
    "return_rate",
    "size_return_rate",
    "views_30",
    "views_90",
    "carts_30",
    "events_30",
    "events_90",
    "log_since_seen",
    "online_share",
)


class ChurnConfig(StrictConfig):
    """Horizon, snapshot layout and regularisation of the churn model."""

    model_config = ConfigDict(frozen=True)

    horizon_days: int = Field(90, ge=1)
    snapshots: int = Field(6, ge=1)
    snapshot_every_days: int = Field(30, ge=1)
    l2: float = Field(1.0, ge=0)
    max_iter: int = 100
    max_rows: int = Field(
        500_000, ge=2, description="stacked snapshot rows kept for fitting (seeded subsample)"
    )
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChurnConfig:
        """The config of a saved model; keys this version does not know are ignored."""
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def training_cutoffs(labels_end: datetime, config: ChurnConfig) -> list[datetime]:
    """Snapshot cutoffs, oldest first, whose label windows all end on or before ``labels_end``:
    ``labels_end − horizon − k × snapshot_every_days`` for ``k = 0 .. snapshots − 1``."""
    latest = _utc(labels_end) - timedelta(days=config.horizon_days)
    return [
        latest - timedelta(days=k * config.snapshot_every_days)
        for k in reversed(range(config.snapshots))
    ]


def churn_features(activity: pd.DataFrame, as_of: datetime) -> FloatArray:
    """The feature matrix (rows of ``activity``, columns :data:`FEATURES`) as of ``as_of``.

    ``activity`` is :meth:`EventTable.activity` at ``as_of`` (customers who purchased; others
    get recency etc. of 0 and should not be scored)."""
    now = _utc(as_of).timestamp()

    def col(name: str) -> FloatArray:
        return np.nan_to_num(activity[name].to_numpy(np.float64))

    last = activity["last_purchase"].to_numpy(np.float64)
    first = activity["first_purchase"].to_numpy(np.float64)
    seen = activity["last_seen"].to_numpy(np.float64)
    recency = np.nan_to_num(np.maximum((now - last) / SECONDS_PER_DAY, 0.0))
    tenure = np.nan_to_num(np.maximum((now - first) / SECONDS_PER_DAY, 0.0))
    since_seen = np.nan_to_num(np.maximum((now - seen) / SECONDS_PER_DAY, 0.0))
    freq = col("frequency")
    orders = np.maximum(freq, 1.0)
    gap = tenure / np.maximum(freq - 1.0, 1.0)
    purchases = np.maximum(col("n_purchases"), 1.0)
    log_recency = np.log1p(recency)
    columns = {
        "log_recency": log_recency,
        "log_recency_sq": log_recency**2,
        "log_frequency": np.log1p(freq),
        "one_order": (freq <= 1).astype(np.float64),
        "log_tenure": np.log1p(tenure),
        "log_gap": np.log1p(gap),
        "overdue": np.log1p(recency / (gap + 1.0)),
        "orders_30": np.log1p(col("orders_30")),
        "orders_90": np.log1p(col("orders_90")),
        "orders_180": np.log1p(col("orders_180")),
        "orders_365": np.log1p(col("orders_365")),
        "log_monetary": np.log1p(col("monetary")),
        "log_aov": np.log1p(col("monetary") / orders),
        "log_spend_90": np.log1p(col("spend_90")),
        "items_per_order": np.log1p(col("n_purchases") / orders),
        "return_rate": col("n_returns") / purchases,
        "size_return_rate": col("n_size_returns") / purchases,
        "views_30": np.log1p(col("views_30")),
        "views_90": np.log1p(col("views_90")),
        "carts_30": np.log1p(col("carts_30")),
        "events_30": np.log1p(col("events_30")),
        "events_90": np.log1p(col("events_90")),
        "log_since_seen": np.log1p(since_seen),
        "online_share": col("online_share"),
    }
    return np.column_stack([columns[name] for name in FEATURES]).astype(np.float64)


@dataclass(frozen=True)
class Snapshot:
    """Customers who had purchased by ``cutoff``: their ids, features, labels (1 = no purchase
    in the ``horizon_days`` after the cutoff) and days since their last purchase."""

    cutoff: datetime
    customer_ids: npt.NDArray[np.object_]
    features: FloatArray
    labels: npt.NDArray[np.int8]
    recency_days: FloatArray


def snapshot(events: EventTable, cutoff: datetime, horizon_days: int) -> Snapshot:
    """Features as of ``cutoff`` and labels from ``(cutoff, cutoff + horizon_days]``."""
    cutoff = _utc(cutoff)
    activity = events.activity(cutoff)
    base = activity["last_purchase"].notna().to_numpy()
    active = activity[base]
    bought = events.purchased_between(cutoff, cutoff + timedelta(days=horizon_days))[base]
    recency = (cutoff.timestamp() - active["last_purchase"].to_numpy(np.float64)) / SECONDS_PER_DAY
    return Snapshot(
        cutoff=cutoff,
        customer_ids=events.customer_ids[base],
        features=churn_features(active, cutoff),
        labels=(~bought).astype(np.int8),
        recency_days=np.maximum(recency, 0.0),
    )


def event_table(data: Dataset | EventTable) -> EventTable:
    """``data`` as an :class:`EventTable` (built once from a dataset)."""
    return data if isinstance(data, EventTable) else EventTable.from_dataset(data)


def _fit_logistic(
    x: FloatArray, y: FloatArray, l2: float, max_iter: int
) -> tuple[FloatArray, float]:
    """Weights and intercept minimising mean log-loss + ``l2 / (2n) · |w|²`` (intercept not
    penalised): Newton's method with a backtracking line search — a handful of iterations, each
    one pass for the gradient and one for the (d+1)² Hessian; deterministic."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(d + 1, l2 / n)
    penalty[d] = 0.0

    def loss(theta: FloatArray) -> float:
        z = design @ theta
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * float(penalty @ theta**2))

    prior = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    theta = np.zeros(d + 1)
    theta[d] = math.log(prior / (1 - prior))
    current = loss(theta)
    for _ in range(max_iter):
        prob = expit(design @ theta)
        grad = design.T @ (prob - y) / n + penalty * theta
        weights = prob * (1.0 - prob) / n
        hessian = (design * weights[:, None]).T @ design + np.diag(penalty + 1e-12)
        step = np.linalg.solve(hessian, grad)
        decrement = float(grad @ step)  # Newton decrement²: the predicted decrease × 2
        if decrement < 1e-14:
            break
        rate = 1.0
        while True:
            candidate = theta - rate * step
            value = loss(candidate)
            if value <= current - 1e-4 * rate * decrement or rate < 1e-6:
                break
            rate *= 0.5
        theta, current = candidate, value
    else:
        logger.warning("churn model: Newton stopped after %d iterations", max_iter)
    return theta[:d], float(theta[d])


class ChurnModel:
    """P(no purchase in the next ``horizon_days``) from RFM and behaviour features."""

    name: ClassVar[str] = "churn"

    def __init__(self, config: ChurnConfig | None = None) -> None:
        self.config = config or ChurnConfig()
        self.coef: FloatArray | None = None
        self.intercept = 0.0
        self.mean: FloatArray = np.zeros(len(FEATURES))
        self.scale: FloatArray = np.ones(len(FEATURES))
        self.training: dict[str, Any] = {}

    @property
    def horizon_days(self) -> int:
        return self.config.horizon_days

    @property
    def fitted(self) -> bool:
        return self.coef is not None

    def fit(self, data: Dataset | EventTable, cutoffs: Sequence[datetime]) -> Self:
        """Fit on the stacked snapshots at ``cutoffs`` (each label window must lie inside the
        data: ``cutoff + horizon`` on or before the last event). More than ``max_rows`` stacked
        rows are subsampled with the config's seed (deterministic)."""
        if not cutoffs:
            raise ValueError("fit needs at least one cutoff")
        events = event_table(data)
        last_event = float(events.ts.max()) if len(events.ts) else -math.inf
        snaps = []
        for cutoff in sorted(_utc(c) for c in cutoffs):
            end = cutoff + timedelta(days=self.horizon_days)
            if end.timestamp() > last_event + SECONDS_PER_DAY:
                raise ValueError(
                    f"the label window of cutoff {cutoff.date()} ends {end.date()}, after the "
                    "last event of the data: its labels would be wrong"
                )
            snaps.append(snapshot(events, cutoff, self.horizon_days))
        x = np.concatenate([s.features for s in snaps])
        y = np.concatenate([s.labels for s in snaps]).astype(np.float64)
        stacked = len(y)
        if stacked > self.config.max_rows:
            rng = np.random.default_rng(self.config.seed)
            keep = np.sort(rng.choice(stacked, self.config.max_rows, replace=False))
            x, y = x[keep], y[keep]
        if len(y) == 0 or y.min() == y.max():
            raise ValueError(
                f"churn training data has {len(y)} rows with a single class: cannot fit"
            )
        self.fit_arrays(x, y)
        self.training = {
            "cutoffs": [s.cutoff.isoformat() for s in snaps],
            "snapshot_rows": stacked,
            "rows": len(y),
            "positive_rate": round(float(y.mean()), 4),
        }
        logger.info(
            "churn model: %d snapshot rows from %d cutoffs, %.1f%% without a purchase in %d days",
            len(y),
            len(snaps),
            100 * float(y.mean()),
            self.horizon_days,
        )
        return self

    def fit_until(self, data: Dataset | EventTable, labels_end: datetime) -> Self:
        """Fit on :func:`training_cutoffs` ending at ``labels_end`` (e.g. the data's last day)."""
        return self.fit(data, training_cutoffs(labels_end, self.config))

    def fit_arrays(self, features: FloatArray, labels: FloatArray) -> Self:
        """Fit on a ready feature matrix (columns :data:`FEATURES`) and 0/1 labels."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 1e-9, std, 1.0)
        self.coef, self.intercept = _fit_logistic(
            (x - self.mean) / self.scale, y, self.config.l2, self.config.max_iter
        )
        return self

    def predict_features(self, features: FloatArray) -> FloatArray:
        if self.coef is None:
            raise ValueError("the churn model is not fitted")
        z = ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.coef
        return np.asarray(expit(z + self.intercept), dtype=np.float64)

    def predict_activity(self, activity: pd.DataFrame, as_of: datetime) -> FloatArray:
        """Churn risk per row of an :meth:`EventTable.activity` table (the ChurnScorer hook)."""
        return self.predict_features(churn_features(activity, as_of))

    def predict(self, data: Dataset | EventTable, as_of: datetime) -> pd.Series:
        """Churn risk as of ``as_of`` of every customer who had purchased by then, by id."""
        events = event_table(data)
        activity = events.activity(_utc(as_of))
        base = activity["last_purchase"].notna().to_numpy()
        risk = self.predict_activity(activity[base], as_of)
        return pd.Series(risk, index=pd.Index(events.customer_ids[base], name="customer_id"))

    def coefficients(self) -> dict[str, float]:
        """Weight of each standardised feature (positive: more churn)."""
        if self.coef is None:
            return {}
        return {name: float(w) for name, w in zip(FEATURES, self.coef, strict=True)}

    def save(self, path: Path) -> None:
        if self.coef is None:
            raise ValueError("the churn model is not fitted")
        path = Path(path)
        save_arrays(
            path,
            coef=self.coef,
            intercept=np.array([self.intercept]),
            mean=self.mean,
            scale=self.scale,
        )
        write_config(
            path,
            {
                "model": self.name,
                "config": self.config.model_dump(),
                "features": list(FEATURES),
                "training": self.training,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        config = read_model_config(path, cls.name)
        if list(config.get("features", [])) != list(FEATURES):
            raise BundleError(f"{path}: churn model features differ from this version's")
        arrays = load_arrays(path)
        model = cls(ChurnConfig.from_dict(config.get("config", {})))
        model.coef = arrays["coef"].astype(np.float64)
        model.intercept = float(arrays["intercept"][0])
        model.mean = arrays["mean"].astype(np.float64)
        model.scale = arrays["scale"].astype(np.float64)
        model.training = dict(config.get("training", {}))
        return model


__all__ = [
    "FEATURES",
    "ChurnConfig",
    "ChurnModel",
    "Snapshot",
    "churn_features",
    "event_table",
    "snapshot",
    "training_cutoffs",
]
