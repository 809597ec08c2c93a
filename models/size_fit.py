"""The size-fit model: for a customer, an item and a size, the probability that the size is too
small, fits or is too large.

A latent-size ordinal model in the spirit of K-LF-ML (Misra, Wan & McAuley, RecSys 2018):

* every customer has a **true size per size scale** ``t[u, g]`` (a scale is a category's ladder of
  size labels: tops in XS..XXL, jeans in waist sizes …), and every item an **offset** ``o[i]`` in
  sizes (positive: runs small, the size that fits is larger than usual);
* a size at position ``p`` on the item's scale is ``η = a · (p − t[u, g] − o[i])`` sizes off, and the
  verdict is ordinal: ``P(too small) = σ(θ₁ − η)``, ``P(too large) = 1 − σ(θ₂ − η)``, fits in
  between (``θ₁ < θ₂``);
* fallbacks are the priors the fit shrinks towards: a customer without feedback in a scale has the
  scale's mean size moved by their **body measurements** where given (a linear map fitted with
  everything else), an item without feedback its **product type's offset** (itself shrunk to 0).
  Each estimate carries an approximate posterior variance (prior precision plus the evidence's
  Fisher information), which widens the predicted probabilities of little-known customers and items.

Fitted by L-BFGS on the penalised likelihood with analytic gradients; deterministic. Sizes are
mapped to positions by :class:`SizeScales` (labels in size order per category, from the catalog's
size lists). Saved as ``arrays.npz`` + ``config.json`` (no pickle).
"""

from __future__ import annotations

import graphlib
import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, Self

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field
from scipy.optimize import OptimizeResult, minimize
from scipy.special import expit

from feature_store.config import StrictConfig
from feature_store.errors import BundleError
from models.base import load_arrays, read_model_config, save_arrays, write_config

logger = logging.getLogger("lookbook.models")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Verdict codes, in ordinal order: the size was too small, fitted, was too large.
SMALL: Final = 0
FIT: Final = 1
LARGE: Final = 2
VERDICTS: Final = ("small", "fit", "large")
#: Held-out verdicts needed to recalibrate the verdict curve (fewer: the fitted curve is kept).
MIN_CALIBRATION: Final = 1000
#: Product types of a category share a size scale when their label sets overlap this much.
MERGE_JACCARD: Final = 0.5
#: Iterations over which the fit's loss must improve by ``ftol`` (relative) to go on.
FTOL_WINDOW: Final = 5
#: Corrections L-BFGS keeps: each costs two passes over the ~n parameters per iteration, and
#: beyond 5 they saved no iteration (10M interactions: 45 iterations at 5, 10 and 20; the fit
#: 12.7 s, 14.8 s, 19.2 s. Rent the Runway: 91 / 90 iterations, the same loss).
LBFGS_MEMORY: Final = 5


class SizeFitConfig(StrictConfig):
    """Priors (as precisions) and the optimiser of the size-fit model."""

    model_config = ConfigDict(frozen=True)

    l2_customer: float = Field(
        0.5, gt=0, description="prior precision of a true size around its prior"
    )
    l2_item: float = Field(4.0, gt=0, description="prior precision of an item's offset")
    l2_type: float = Field(4.0, gt=0, description="prior precision of a product type's offset")
    l2_body: float = Field(1.0, gt=0, description="penalty of the body-measurement weights")
    slope: float | None = Field(
        6.0,
        gt=0,
        description="verdict logits per size off (None: learnt; a fixed slope keeps the latent "
        "sizes in size units, where the joint fit would trade a flat slope for shrunk sizes)",
    )
    cut: float | None = Field(
        0.5,
        gt=0,
        description="a size fits within this many sizes of the one that fits best: the verdict "
        "curve's cut points, fixed with a fixed slope (None: learnt); the probabilities are "
        "then recalibrated on held-out feedback",
    )
    choice_precision: float = Field(
        2.0, gt=0, description="precision of a size a new customer picked, as their true size"
    )
    calibration_share: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of the feedback held out (seeded) to calibrate the probabilities on "
        "verdicts the latent sizes were not fitted to; 0: no calibration",
    )
    calibration_max_observations: int | None = Field(
        500_000,
        ge=1,
        description="the calibration stage (a fit that only serves the verdict curve) runs on a "
        "seeded sample of customers with about this many verdicts (None: on all of them)",
    )
    seed: int = 0
    max_iter: int = Field(400, ge=1)
    tol: float = Field(1e-7, gt=0, description="L-BFGS stops at this projected gradient")
    ftol: float = Field(
        1e-9,
        ge=0,
        description=f"L-BFGS stops when {FTOL_WINDOW} iterations improved the loss by less than "
        "this, relative (0: only ``tol`` and ``max_iter`` stop it)",
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SizeFitConfig:
        """The config of a saved model; keys this version does not know are ignored."""
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})


# -- size scales ------------------------------------------------------------------------------


def _number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class SizeScales:
    """Size ladders of a catalog: which items share a size scale, and each label's rank on it.

    A scale is the sizes of one category's product types that size alike: product types of a
    category are merged when their sets of labels mostly agree (Jaccard ≥ :data:`MERGE_JACCARD`),
    so tops in XS..XXL share one scale while jeans in waist sizes and trousers in EU sizes (a few
    numbers in common) keep their own. Labels are ordered by value when all numeric, else by the
    order items list them (a merge of the lists); a label's position is its rank."""

    categories: list[str]  # per scale
    labels: list[tuple[str, ...]]  # per scale, in size order
    kinds: dict[tuple[str, str], int]  # (category, product type) → scale
    _rank: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for g, labels in enumerate(self.labels):
            for rank, label in enumerate(labels):
                self._rank[(g, label)] = rank

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def from_catalog(
        cls,
        categories: Sequence[str],
        product_types: Sequence[str],
        sizes: Sequence[Sequence[str]],
    ) -> SizeScales:
        """The scales of a catalog: per item its category, product type and offered sizes (in
        size order); items offering fewer than two sizes define no order."""
        lists: dict[tuple[str, str], list[tuple[str, ...]]] = defaultdict(list)
        for category, kind, offered in zip(categories, product_types, sizes, strict=True):
            labels = tuple(str(s) for s in offered)
            if len(labels) >= 2:
                lists[(str(category), str(kind))].append(labels)
        by_category: dict[str, list[str]] = defaultdict(list)
        for category, kind in sorted(lists):
            by_category[category].append(kind)
        out_categories: list[str] = []
        out_labels: list[tuple[str, ...]] = []
        kinds: dict[tuple[str, str], int] = {}
        for category, members in by_category.items():
            label_sets = [{x for labels in lists[(category, k)] for x in labels} for k in members]
            group = list(range(len(members)))
            for a, b in itertools.combinations(range(len(members)), 2):
                union = label_sets[a] | label_sets[b]
                if len(label_sets[a] & label_sets[b]) >= MERGE_JACCARD * len(union):
                    ra, rb = _root(group, a), _root(group, b)
                    group[max(ra, rb)] = min(ra, rb)
            roots = sorted({_root(group, k) for k in range(len(members))})
            for root in roots:
                kinds_here = [m for k, m in enumerate(members) if _root(group, k) == root]
                scale_lists = [labels for k in kinds_here for labels in lists[(category, k)]]
                for k in kinds_here:
                    kinds[(category, k)] = len(out_labels)
                out_categories.append(category)
                out_labels.append(_order(scale_lists))
        return cls(out_categories, out_labels, kinds)

    def scale_of(self, category: str, product_type: str, offered: Sequence[str]) -> int:
        """The scale of an item (-1: one size, or a kind of item no scale was built for)."""
        if len(offered) < 2:
            return -1
        return self.kinds.get((str(category), str(product_type)), -1)

    def rank(self, scale: int, label: str) -> int | None:
        """The position of a size label on a scale (None: not on it)."""
        return self._rank.get((int(scale), str(label)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        flat = [label for labels in self.labels for label in labels]
        keys = sorted(self.kinds)
        return {
            "scale_categories": np.asarray(self.categories, dtype=np.str_),
            "scale_lengths": np.asarray([len(x) for x in self.labels], dtype=np.int64),
            "scale_labels": np.asarray(flat, dtype=np.str_),
            "kind_categories": np.asarray([c for c, _ in keys], dtype=np.str_),
            "kind_types": np.asarray([k for _, k in keys], dtype=np.str_),
            "kind_scales": np.asarray([self.kinds[k] for k in keys], dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SizeScales:
        lengths = arrays["scale_lengths"].astype(np.int64)
        flat = [str(x) for x in arrays["scale_labels"].tolist()]
        bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        labels = [tuple(flat[bounds[k] : bounds[k + 1]]) for k in range(len(lengths))]
        kinds = {
            (str(c), str(k)): int(s)
            for c, k, s in zip(
                arrays["kind_categories"].tolist(),
                arrays["kind_types"].tolist(),
                arrays["kind_scales"].tolist(),
                strict=True,
            )
        }
        return cls([str(c) for c in arrays["scale_categories"].tolist()], labels, kinds)


def _root(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def _order(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The labels of size lists in size order: by value when all are numbers, else a merge of
    the lists (by mean relative rank where the lists disagree); ties by first appearance."""
    first_seen: dict[str, int] = {}
    for labels in lists:
        for label in labels:
            first_seen.setdefault(label, len(first_seen))
    members = list(first_seen)
    values = [_number(m) for m in members]
    if all(v is not None for v in values):
        return tuple(m for _, m in sorted(zip(values, members, strict=True)))
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for m in members:
        sorter.add(m)
    for labels in lists:
        for a, b in itertools.pairwise(labels):
            sorter.add(b, a)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        rank: dict[str, list[float]] = defaultdict(list)
        for labels in lists:
            for k, label in enumerate(labels):
                rank[label].append(k / max(len(labels) - 1, 1))
        return tuple(sorted(members, key=lambda m: (float(np.mean(rank[m])), first_seen[m])))
    out: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=first_seen.__getitem__)
        out.extend(ready)
        sorter.done(*ready)
    return tuple(out)


# -- observations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FitObservations:
    """Fit feedback in dense-index form: who (customer), what (item), which size (its position on
    the item's scale) and the verdict (:data:`SMALL`, :data:`FIT`, :data:`LARGE`)."""

    customer: IntArray
    item: IntArray
    position: FloatArray
    verdict: npt.NDArray[np.int8]

    def __post_init__(self) -> None:
        n = len(self.customer)
        if not (len(self.item) == len(self.position) == len(self.verdict) == n):
            raise ValueError("fit observations: arrays of different lengths")

    def __len__(self) -> int:
        return len(self.customer)

    def take(self, rows: IntArray | npt.NDArray[np.bool_]) -> FitObservations:
        return FitObservations(
            self.customer[rows], self.item[rows], self.position[rows], self.verdict[rows]
        )


@dataclass(frozen=True)
class ItemSizing:
    """What the model knows of every item of the catalog: its size scale (-1: one size) and its
    product-type group (the fallback of an item without feedback), and per scale a typical centre
    (the fallback true size of a scale nobody gave feedback in)."""

    scale: IntArray
    group: IntArray
    scale_centre: FloatArray

    @property
    def n_items(self) -> int:
        return len(self.scale)

    @property
    def n_scales(self) -> int:
        return len(self.scale_centre)

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0


def _curve(
    dist: FloatArray, var: FloatArray, curve: tuple[float, float, float, float]
) -> FloatArray:
    """``n x 3`` verdict probabilities at ``dist`` sizes off with variance ``var``: cumulative
    logits ``cut − slope·dist / sqrt(1 + widening·var)`` (a logistic over a normal, probit-style)."""
    slope, widening, cut1, cut2 = curve
    eta = slope * dist / np.sqrt(1.0 + widening * np.maximum(var, 0.0))
    small = expit(cut1 - eta)
    upto_fit = expit(cut2 - eta)
    out = np.stack([small, np.maximum(upto_fit - small, 1e-12), 1.0 - upto_fit], axis=1)
    return np.asarray(out / out.sum(axis=1, keepdims=True), dtype=np.float64)


def _calibrate(
    dist: FloatArray,
    var: FloatArray,
    verdict: npt.NDArray[np.int8],
    slope: float,
    cuts: tuple[float, float],
) -> tuple[float, float, float, float]:
    """The verdict curve refitted (maximum likelihood) on held-out ``verdict``s."""
    y = verdict.astype(np.int64)
    rows = np.arange(len(y))

    def loss(v: FloatArray) -> float:
        curve = (math.exp(v[0]), math.exp(v[1]), float(v[2]), float(v[2]) + math.exp(v[3]))
        probs = _curve(dist, var, curve)
        return -float(np.log(np.maximum(probs[rows, y], 1e-12)).mean())

    start = np.array(
        [math.log(slope), math.log(math.pi / 8.0 * slope**2), cuts[0], math.log(cuts[1] - cuts[0])]
    )
    found = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 2000, "xatol": 1e-4})
    v = np.asarray(found.x, dtype=np.float64)
    return (math.exp(v[0]), math.exp(v[1]), float(v[2]), float(v[2]) + math.exp(v[3]))


# -- the fit ----------------------------------------------------------------------------------


def calibration_sample(obs: FitObservations, cap: int | None, seed: int) -> FitObservations:
    """The feedback of a seeded sample of customers holding about ``cap`` verdicts (customers
    in a seeded random order, as many as fit under the cap, at least one); all of ``obs`` when it
    holds no more than ``cap`` (or ``cap`` is None)."""
    if cap is None or len(obs) <= cap:
        return obs
    customers, counts = np.unique(obs.customer, return_counts=True)
    order = np.random.default_rng([seed, 1]).permutation(len(customers))
    n = max(int(np.searchsorted(np.cumsum(counts[order]), cap, side="right")), 1)
    return obs.take(np.isin(obs.customer, customers[order[:n]]))


@dataclass(frozen=True)
class _Estimates:
    """A fit's estimates, to start another fit from (:meth:`SizeFitModel._fit_map`)."""

    pair_keys: IntArray
    pair_size: FloatArray
    item_offset: FloatArray
    group_offset: FloatArray
    scale_mean: FloatArray
    body_weights: FloatArray
    slope: float
    cuts: tuple[float, float]


class _Stop:
    """L-BFGS callback: stop once the last :data:`FTOL_WINDOW` iterations together improved the
    loss by less than ``ftol`` relative (scipy's own ``ftol`` looks at a single iteration)."""

    def __init__(self, ftol: float) -> None:
        self.ftol = ftol
        self.losses: list[float] = []
        self.converged = False

    def __call__(self, intermediate_result: OptimizeResult) -> None:
        loss = float(intermediate_result.fun)
        self.losses.append(loss)
        if (
            self.ftol > 0
            and len(self.losses) > FTOL_WINDOW
            and self.losses[-1 - FTOL_WINDOW] - loss <= self.ftol * max(abs(loss), 1.0)
        ):
            self.converged = True
            raise StopIteration


# -- the model --------------------------------------------------------------------------------


def _standardise(body: FloatArray, mean: FloatArray, std: FloatArray) -> FloatArray:
    """Body measurements standardised, missing values at the mean, plus missing indicators."""
    z = (body - mean) / std
    missing = np.isnan(z)
    return np.hstack([np.where(missing, 0.0, z), missing.astype(np.float64)])


class VerdictClassifier(Protocol):
    """A classifier of verdicts over the latent model's catalog (the bundle's is
    :class:`models.size_fit_ranker.SizeFitRanker`)."""

    def predict_proba(
        self,
        latent: SizeFitModel,
        customers: IntArray,
        items: IntArray,
        positions: FloatArray,
        body: FloatArray | None = None,
    ) -> FloatArray: ...

    def save(self, path: Path) -> None: ...


class SizeFitModel:
    """True sizes of customers per scale and items' offsets, with an ordinal verdict model;
    with a :attr:`classifier` attached, that gives the verdict probabilities."""

    name = "size_fit"

    def __init__(self, config: SizeFitConfig | None = None) -> None:
        self.config = config or SizeFitConfig()
        self.sizing: ItemSizing | None = None
        self.scales: SizeScales | None = None  # size labels → positions (None: positions given)
        self.pair_keys = np.empty(0, np.int64)  # sorted customer * n_scales + scale
        self.pair_size = np.empty(0, np.float64)
        self.pair_var = np.empty(0, np.float64)
        self.pair_n = np.empty(0, np.float64)
        self.item_offset = np.empty(0, np.float64)
        self.item_var = np.empty(0, np.float64)
        self.item_n = np.empty(0, np.float64)
        self.group_offset = np.empty(0, np.float64)
        self.scale_mean = np.empty(0, np.float64)
        self.body_weights = np.empty((0, 0), np.float64)  # n_scales x 2F
        self.body_mean = np.empty(0, np.float64)
        self.body_std = np.empty(0, np.float64)
        self.body: FloatArray | None = None  # standardised, n_customers x 2F (None: none given)
        self.slope = 2.0
        self.cuts = (-1.5, 1.5)
        self.training: dict[str, Any] = {}
        # The verdict curve refitted on held-out feedback: (slope, widening, cut 1, cut 2).
        self.calibration: tuple[float, float, float, float] | None = None
        # The small / fit / large classifier (saved in its own folder), when attached.
        self.classifier: VerdictClassifier | None = None

    # -- fitting ------------------------------------------------------------------------------

    def fit(
        self,
        obs: FitObservations,
        sizing: ItemSizing,
        n_customers: int,
        body: FloatArray | None = None,
        *,
        scales: SizeScales | None = None,
        show_progress: bool = False,
    ) -> Self:
        """Learn from ``obs`` over a catalog described by ``sizing``; ``body`` (optional,
        ``n_customers x F`` with NaN for unknown) are the customers' body measurements;
        ``scales`` (optional) the size labels the positions stand for, kept with the model.

        With ``calibration_share`` > 0 the latent sizes are first fitted without a seeded share
        of the feedback, and the verdict curve (slope on the size difference, how much the
        sizes' uncertainty widens it, cut points) is refitted on that share; then everything is
        fitted on all the feedback (started from the first fit's estimates) and keeps that
        curve. The first fit only serves the curve: with more than
        ``calibration_max_observations`` verdicts it runs on the feedback of a seeded sample of
        customers holding about that many."""
        cfg = self.config
        self.scales = scales
        self.calibration = None
        share = cfg.calibration_share
        warm: _Estimates | None = None
        first: dict[str, Any] = {}
        if share > 0:
            sample = calibration_sample(obs, cfg.calibration_max_observations, cfg.seed)
            if share * len(sample) >= MIN_CALIBRATION:
                rng = np.random.default_rng(cfg.seed)
                held = rng.random(len(sample)) < share
                self._fit_map(
                    sample.take(~held), sizing, n_customers, body, show_progress, "calibration"
                )
                part = sample.take(held)
                part = part.take(sizing.scale[part.item] >= 0)
                dist, var = self.distance(part.customer, part.item, part.position)
                self.calibration = _calibrate(dist, var, part.verdict, self.slope, self.cuts)
                warm = self._estimates()
                first = self.training
        self._fit_map(obs, sizing, n_customers, body, show_progress, "final", warm)
        if warm is not None:
            self.training["calibration_fit"] = {
                k: first[k] for k in ("observations", "iterations", "evaluations", "converged")
            }
        return self

    def _estimates(self) -> _Estimates:
        return _Estimates(
            self.pair_keys,
            self.pair_size,
            self.item_offset,
            self.group_offset,
            self.scale_mean,
            self.body_weights,
            self.slope,
            self.cuts,
        )

    def _fit_map(
        self,
        obs: FitObservations,
        sizing: ItemSizing,
        n_customers: int,
        body: FloatArray | None,
        show_progress: bool,
        stage: str = "final",
        warm: _Estimates | None = None,
    ) -> None:
        """The penalised-likelihood fit of every latent size and the verdict curve (``warm``:
        start from these estimates where they apply, e.g. a fit on part of the feedback)."""
        started = time.perf_counter()
        cfg = self.config
        if len(obs) and (obs.item.min() < 0 or obs.item.max() >= sizing.n_items):
            raise ValueError("fit observations name items outside the catalog")
        keep = sizing.scale[obs.item] >= 0
        obs = obs.take(keep)
        self.sizing = sizing
        n_scales, n_items, n_groups = sizing.n_scales, sizing.n_items, max(sizing.n_groups, 1)
        scale = sizing.scale[obs.item]
        keys = obs.customer.astype(np.int64) * n_scales + scale
        self.pair_keys, pair = np.unique(keys, return_inverse=True)
        pair = pair.ravel().astype(np.int64)
        n_pairs = len(self.pair_keys)
        pair_customer = self.pair_keys // n_scales
        pair_scale = self.pair_keys % n_scales
        if body is not None:
            body = np.asarray(body, dtype=np.float64)
            if body.shape[0] != n_customers:
                raise ValueError("body measurements: one row per customer")
            self.body_mean = np.nanmean(body, axis=0) if len(body) else np.zeros(body.shape[1])
            self.body_mean = np.nan_to_num(self.body_mean)
            std = np.nanstd(body, axis=0) if len(body) else np.ones(body.shape[1])
            self.body_std = np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)
            self.body = _standardise(body, self.body_mean, self.body_std)
        else:
            self.body = None
            self.body_mean = np.empty(0)
            self.body_std = np.empty(0)
        n_feat = 0 if self.body is None else self.body.shape[1]
        x_pair = (
            self.body[pair_customer] if self.body is not None else np.zeros((n_pairs, 0))
        )  # n_pairs x 2F
        scale_rows = [np.flatnonzero(pair_scale == g) for g in range(n_scales)]
        centre = sizing.scale_centre.astype(np.float64).copy()
        sums = np.bincount(scale, weights=obs.position, minlength=n_scales)
        counts = np.bincount(scale, minlength=n_scales)
        centre = np.where(counts > 0, sums / np.maximum(counts, 1), centre)
        group = sizing.group.astype(np.int64)
        # The observations sorted by verdict (then by customer scale, for memory locality): each
        # verdict's rows are one contiguous slice, so an evaluation needs no masks.
        order = np.lexsort((pair, obs.verdict))
        p = obs.position[order].astype(np.float64)
        y = obs.verdict[order]
        item = obs.item[order].astype(np.int64)
        pair = pair[order]
        n_obs = len(p)
        n_small, n_fit = int((y == SMALL).sum()), int((y == FIT).sum())
        rows_small = slice(0, n_small)
        rows_fit = slice(n_small, n_small + n_fit)
        rows_large = slice(n_small + n_fit, n_obs)

        sizes = [n_pairs, n_items, n_groups, n_scales, n_scales * n_feat, 1, 1, 1]
        bounds_index = np.cumsum([0, *sizes])

        def unpack(v: FloatArray) -> list[FloatArray]:
            return [v[bounds_index[k] : bounds_index[k + 1]] for k in range(len(sizes))]

        def objective(v: FloatArray) -> tuple[float, FloatArray]:
            t, o, d, m, w, log_a, th1, log_gap = unpack(v)
            a = math.exp(float(log_a[0]))
            gap = math.exp(float(log_gap[0]))
            w2 = w.reshape(n_scales, n_feat)
            eta = p - t[pair]
            eta -= o[item]
            eta *= a
            big_a = float(th1[0]) - eta  # the verdict's logits: A = θ₁ − η, B = A + gap
            g_sum = np.empty(n_obs)  # d ll / d θ₁ per observation; d ll / d η = −g_sum
            # log σ(x) = min(x, 0) − log1p(e), σ(x) = (x ≥ 0 ? 1 : e) / (1 + e), e = exp(−|x|)
            # too small: ll = log σ(A), d ll / d A = σ(−A)
            x = big_a[rows_small]
            e = np.exp(-np.abs(x))
            ll = float(np.minimum(x, 0.0).sum()) - float(np.log1p(e).sum())
            g_sum[rows_small] = np.where(x >= 0, e, 1.0) / (1.0 + e)
            # fits: ll = log σ(B) + log σ(−A) + log(1 − e^−gap); d/dA = −σ(A) − inv,
            # d/dB = σ(−B) + inv (inv = 1 / expm1(gap))
            xa = big_a[rows_fit]
            xb = xa + gap
            ea = np.exp(-np.abs(xa))
            eb = np.exp(-np.abs(xb))
            ll += float(np.minimum(xb, 0.0).sum()) + float(np.minimum(-xa, 0.0).sum())
            ll -= float(np.log1p(ea).sum()) + float(np.log1p(eb).sum())
            ll += n_fit * math.log(-math.expm1(-gap))
            sig_nb = np.where(xb >= 0, eb, 1.0) / (1.0 + eb)
            g_sum[rows_fit] = sig_nb - np.where(xa >= 0, 1.0, ea) / (1.0 + ea)
            g_b = float(sig_nb.sum()) + n_fit / math.expm1(gap)
            # too large: ll = log σ(−B), d ll / d B = −σ(B)
            x = big_a[rows_large] + gap
            e = np.exp(-np.abs(x))
            ll += float(np.minimum(-x, 0.0).sum()) - float(np.log1p(e).sum())
            sig_b = np.where(x >= 0, 1.0, e) / (1.0 + e)
            g_sum[rows_large] = -sig_b
            g_b -= float(sig_b.sum())
            prior_t = m[pair_scale] + (
                np.einsum("pf,pf->p", x_pair, w2[pair_scale]) if n_feat else 0.0
            )
            r_t = t - prior_t
            r_o = o - d[group]
            loss = (
                -ll
                + 0.5 * cfg.l2_customer * float(r_t @ r_t)
                + 0.5 * cfg.l2_item * float(r_o @ r_o)
                + 0.5 * cfg.l2_type * float(d @ d)
                + 0.5 * cfg.l2_body * float(w @ w)
                + 0.5 * 1e-3 * float((m - centre) @ (m - centre))
            )
            d_dist = a * g_sum  # d(−ll)/d t per observation = −(d ll / d η)(−a)… = −a·g_sum
            grad_t = -np.bincount(pair, weights=d_dist, minlength=n_pairs) + cfg.l2_customer * r_t
            grad_o = -np.bincount(item, weights=d_dist, minlength=n_items) + cfg.l2_item * r_o
            grad_d = -cfg.l2_item * np.bincount(group, weights=r_o, minlength=n_groups)
            grad_d += cfg.l2_type * d
            grad_m = -cfg.l2_customer * np.bincount(pair_scale, weights=r_t, minlength=n_scales)
            grad_m += 1e-3 * (m - centre)
            if n_feat:
                per_scale = np.stack(
                    [-cfg.l2_customer * (r_t[rows] @ x_pair[rows]) for rows in scale_rows]
                )
                grad_w = per_scale.ravel() + cfg.l2_body * w
            else:
                grad_w = np.empty(0)
            grad_log_a = float(g_sum @ eta)
            grad_th1 = -float(g_sum.sum())
            grad_gap = -g_b * gap
            grad = np.concatenate(
                [grad_t, grad_o, grad_d, grad_m, grad_w, [grad_log_a], [grad_th1], [grad_gap]]
            )
            return loss, grad

        # Start each true size at the mean of the sizes the customer said fitted (a size too
        # small says one up).
        said = p + np.where(y == SMALL, 1.0, np.where(y == LARGE, -1.0, 0.0))
        n_pair = np.bincount(pair, minlength=n_pairs)
        t0 = np.bincount(pair, weights=said, minlength=n_pairs) / np.maximum(n_pair, 1)
        slope0 = cfg.slope if cfg.slope is not None else 3.0
        cut0 = cfg.cut if cfg.cut is not None else 1.0
        v0 = np.concatenate(
            [
                t0,
                np.zeros(n_items),
                np.zeros(n_groups),
                centre,
                np.zeros(n_scales * n_feat),
                [math.log(slope0)],
                [-slope0 * cut0],
                [math.log(2.0 * slope0 * cut0)],
            ]
        )
        fixed = [5] if cfg.slope is not None else []
        if cfg.slope is not None and cfg.cut is not None:
            fixed += [6, 7]
        if warm is not None:
            # Known customer scales start at the earlier fit's sizes, new ones at what their
            # verdicts say given the earlier item offsets; the rest at the earlier estimates.
            t, o, d, m, w, log_a, th1, log_gap = unpack(v0)  # views: written in place
            if len(o) == len(warm.item_offset) and w.size == warm.body_weights.size:
                o[:] = warm.item_offset
                d[:] = warm.group_offset
                m[:] = warm.scale_mean
                w[:] = warm.body_weights.ravel()
                t[:] = np.bincount(pair, weights=said - o[item], minlength=n_pairs) / np.maximum(
                    n_pair, 1
                )
            if len(warm.pair_keys):
                at = np.minimum(
                    np.searchsorted(warm.pair_keys, self.pair_keys), len(warm.pair_keys) - 1
                )
                known = warm.pair_keys[at] == self.pair_keys
                t[known] = warm.pair_size[at[known]]
            if 5 not in fixed:
                log_a[0] = math.log(warm.slope)
            if 6 not in fixed:
                th1[0] = warm.cuts[0]
                log_gap[0] = math.log(warm.cuts[1] - warm.cuts[0])
        # Diagonal preconditioning: L-BFGS works on v / s, with s ≈ the inverse square root of
        # the objective's curvature per parameter (its prior precision plus the Fisher
        # information of its observations at the start). A customer with one verdict and an
        # item with thousands differ in curvature by orders of magnitude; unscaled, L-BFGS
        # spends hundreds of iterations on that conditioning alone.
        info0 = 0.2 * slope0**2  # a logistic verdict's information about eta, about 0.2, times a²
        n_item = np.bincount(item, minlength=n_items).astype(np.float64)
        per_group = np.bincount(group, minlength=n_groups).astype(np.float64)
        per_scale = np.bincount(pair_scale, minlength=n_scales).astype(np.float64)
        body_sq = np.array([(x_pair[rows] ** 2).sum(axis=0) for rows in scale_rows])
        curvature = np.concatenate(
            [
                cfg.l2_customer + info0 * n_pair,
                cfg.l2_item + info0 * n_item,
                cfg.l2_type + cfg.l2_item * per_group,
                1e-3 + cfg.l2_customer * per_scale,
                # a body weight moves the prior of every customer scale of its scale
                cfg.l2_body + cfg.l2_customer * body_sq.ravel(),
                np.full(3, 1.0 + 0.2 * len(p)),
            ]
        )
        s = 1.0 / np.sqrt(curvature)
        # Fixed parameters (the curve's, when given) are left out of the search vector rather
        # than bounded: L-BFGS-B's handling of a million-entry bounds list costs seconds.
        free = np.ones(len(v0), dtype=bool)
        for block in fixed:
            free[int(bounds_index[block])] = False
        s_free = s[free]

        def scaled(u: FloatArray) -> tuple[float, FloatArray]:
            v = v0.copy()
            v[free] = u * s_free
            loss, grad = objective(v)
            return loss, grad[free] * s_free

        stop = _Stop(cfg.ftol)
        result = minimize(
            scaled,
            v0[free] / s_free,
            jac=True,
            method="L-BFGS-B",
            callback=stop,
            options={
                "maxiter": cfg.max_iter,
                "gtol": cfg.tol,
                "ftol": 1e-12,
                "maxcor": LBFGS_MEMORY,
            },
        )
        v_found = v0.copy()
        v_found[free] = np.asarray(result.x, dtype=np.float64) * s_free
        t, o, d, m, w, log_a, th1, log_gap = unpack(v_found)
        self.slope = math.exp(float(log_a[0]))
        self.cuts = (float(th1[0]), float(th1[0]) + math.exp(float(log_gap[0])))
        self.pair_size = t.copy()
        self.item_offset = o.copy()
        self.group_offset = d.copy()
        self.scale_mean = m.copy()
        self.body_weights = w.reshape(n_scales, n_feat).copy()
        # Approximate posterior variances: prior precision + the evidence's Fisher information.
        info = self._information(p - t[pair] - o[item])
        a2 = self.slope**2
        self.pair_n = n_pair.astype(np.float64)
        self.item_n = n_item
        self.pair_var = np.asarray(
            1.0 / (cfg.l2_customer + a2 * np.bincount(pair, weights=info, minlength=n_pairs)),
            dtype=np.float64,
        )
        self.item_var = np.asarray(
            1.0 / (cfg.l2_item + a2 * np.bincount(item, weights=info, minlength=n_items)),
            dtype=np.float64,
        )
        iterations = int(result.nit)
        seconds = time.perf_counter() - started
        self.training = {
            "observations": len(obs),
            "customers_scales": n_pairs,
            "iterations": iterations,
            "evaluations": int(result.nfev),
            "converged": bool(result.success) or stop.converged,
            "loss_per_observation": float(result.fun) / max(len(obs), 1),
            "warm_start": warm is not None,
        }  # no timings: saved with the model, which stays the same for the same data
        if show_progress:
            logger.info(
                "size-fit model, %s fit: %d observations, %d customer scales, %d iterations "
                "(%d evaluations%s), loss %.6f per observation, %.1f s",
                stage,
                len(obs),
                n_pairs,
                iterations,
                result.nfev,
                ", converged" if self.training["converged"] else ", not converged",
                self.training["loss_per_observation"],
                seconds,
            )

    def forget_customers(self, customers: IntArray) -> None:
        """Drop what the model learnt of these customers' own sizes (they fall back to the
        priors); what their feedback taught about items stays."""
        if self.sizing is None or not len(customers) or not len(self.pair_keys):
            return
        drop = np.isin(self.pair_keys // self.sizing.n_scales, np.asarray(customers, np.int64))
        keep = ~drop
        self.pair_keys = self.pair_keys[keep]
        self.pair_size = self.pair_size[keep]
        self.pair_var = self.pair_var[keep]
        self.pair_n = self.pair_n[keep]
        if self.body is not None:
            rows = np.asarray(customers, np.int64)
            rows = rows[(rows >= 0) & (rows < len(self.body))]
            n_feat = self.body.shape[1]
            self.body[rows, : n_feat // 2] = 0.0
            self.body[rows, n_feat // 2 :] = 1.0

    def _information(self, dist: FloatArray) -> FloatArray:
        """Fisher information of one verdict about ``dist`` (per unit slope²)."""
        eta = self.slope * dist
        s1 = expit(self.cuts[0] - eta)
        s2 = expit(self.cuts[1] - eta)
        return np.asarray(s1 * (1 - s1) + s2 * (1 - s2), dtype=np.float64)

    # -- reading ------------------------------------------------------------------------------

    def _need(self) -> ItemSizing:
        if self.sizing is None:
            raise ValueError("the size-fit model is not fitted")
        return self.sizing

    @property
    def n_items(self) -> int:
        return self._need().n_items

    def true_size(
        self, customers: IntArray, scales: IntArray, body: FloatArray | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(true size, its variance, feedback count) per (customer, scale); a customer index of
        -1 (or one without feedback in the scale) gets the scale's prior — moved by ``body``
        (raw measurements, NaN unknown) when given, else by the body known at fitting."""
        sizing = self._need()
        customers = np.asarray(customers, dtype=np.int64)
        scales = np.asarray(scales, dtype=np.int64)
        n_scales = sizing.n_scales
        keys = customers * n_scales + scales
        at = np.searchsorted(self.pair_keys, keys)
        at_c = np.minimum(at, max(len(self.pair_keys) - 1, 0))
        found = (
            (customers >= 0)
            & (at < len(self.pair_keys))
            & (self.pair_keys[at_c] == keys if len(self.pair_keys) else False)
        )
        prior = self.scale_mean[scales].copy()
        n_feat = self.body_weights.shape[1]
        if n_feat:
            if body is not None:
                x = _standardise(np.asarray(body, np.float64), self.body_mean, self.body_std)
            elif self.body is not None:
                known = (customers >= 0) & (customers < len(self.body))
                x = np.zeros((len(customers), n_feat))
                x[known] = self.body[customers[known]]
                x[~known, n_feat // 2 :] = 1.0  # every measurement missing
            else:
                x = np.zeros((len(customers), n_feat))
            prior += np.einsum("nf,nf->n", x, self.body_weights[scales])
        size = np.where(found, self.pair_size[at_c] if len(self.pair_size) else 0.0, prior)
        var = np.where(
            found, self.pair_var[at_c] if len(self.pair_var) else 0.0, 1.0 / self.config.l2_customer
        )
        count = np.where(found, self.pair_n[at_c] if len(self.pair_n) else 0.0, 0.0)
        return size, var, count

    def offset(self, items: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(offset in sizes, its variance, feedback count) per item (+: runs small)."""
        items = np.asarray(items, dtype=np.int64)
        return self.item_offset[items], self.item_var[items], self.item_n[items]

    def predict_proba(
        self,
        customers: IntArray,
        items: IntArray,
        positions: FloatArray,
        body: FloatArray | None = None,
        *,
        chosen: bool = False,
    ) -> FloatArray:
        """``n x 3`` probabilities (too small, fits, too large) of each (customer, item, size
        position); customer -1 is a new customer (``body``: their measurements, optional).

        The attached :attr:`classifier`'s when there is one, else :meth:`latent_proba`'s
        (``chosen`` applies to the latter only)."""
        if self.classifier is not None:
            out = self.classifier.predict_proba(self, customers, items, positions, body)
            out[self._need().scale[np.asarray(items, np.int64)] < 0] = (0.0, 1.0, 0.0)
            return out
        return self.latent_proba(customers, items, positions, body, chosen=chosen)

    def latent_proba(
        self,
        customers: IntArray,
        items: IntArray,
        positions: FloatArray,
        body: FloatArray | None = None,
        *,
        chosen: bool = False,
    ) -> FloatArray:
        """``n x 3`` probabilities of the latent sizes' verdict curve.

        ``chosen``: the sizes are ones the customers picked themselves (a rental, a purchase), so
        for a customer without feedback the size is evidence of their true size too (with the
        precision ``choice_precision``, beside the prior's)."""
        sizing = self._need()
        items = np.asarray(items, dtype=np.int64)
        dist, var = self.distance(customers, items, positions, body, chosen=chosen)
        out = _curve(dist, var, self.curve)
        out[sizing.scale[items] < 0] = (0.0, 1.0, 0.0)  # one size fits
        return out

    @property
    def curve(self) -> tuple[float, float, float, float]:
        """(slope, widening, cut 1, cut 2) of the verdict curve :func:`_curve`."""
        if self.calibration is not None:
            return self.calibration
        return (self.slope, math.pi / 8.0 * self.slope**2, self.cuts[0], self.cuts[1])

    def raw_curve_proba(self, dist: FloatArray, var: FloatArray) -> FloatArray:
        """Verdict probabilities of the curve fitted with the latent sizes (not recalibrated)."""
        return _curve(dist, var, (self.slope, math.pi / 8.0 * self.slope**2, *self.cuts))

    def distance(
        self,
        customers: IntArray,
        items: IntArray,
        positions: FloatArray,
        body: FloatArray | None = None,
        *,
        chosen: bool = False,
    ) -> tuple[FloatArray, FloatArray]:
        """Sizes between each position and the size that fits (customer's true size + item
        offset), and the variance of that size (``chosen``: see :meth:`predict_proba`)."""
        sizing = self._need()
        items = np.asarray(items, dtype=np.int64)
        positions = np.asarray(positions, np.float64)
        scales = np.maximum(sizing.scale[items], 0)
        size, var_t, count = self.true_size(customers, scales, body)
        if chosen:
            new = count == 0
            lam, lam_c = 1.0 / var_t[new], self.config.choice_precision
            size[new] = (lam * size[new] + lam_c * positions[new]) / (lam + lam_c)
            var_t[new] = 1.0 / (lam + lam_c)
        offset, var_o, _ = self.offset(items)
        return positions - size - offset, var_t + var_o

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        sizing = self._need()
        arrays: dict[str, np.ndarray] = {
            "item_scale": sizing.scale,
            "item_group": sizing.group,
            "scale_centre": sizing.scale_centre,
            "pair_keys": self.pair_keys,
            "pair_size": self.pair_size,
            "pair_var": self.pair_var,
            "pair_n": self.pair_n,
            "item_offset": self.item_offset,
            "item_var": self.item_var,
            "item_n": self.item_n,
            "group_offset": self.group_offset,
            "scale_mean": self.scale_mean,
            "body_weights": self.body_weights,
            "body_mean": self.body_mean,
            "body_std": self.body_std,
            "body": self.body if self.body is not None else np.zeros((0, 0)),
        }
        if self.scales is not None:
            arrays.update(self.scales.to_arrays())
        save_arrays(Path(path), **arrays)
        write_config(
            Path(path),
            {
                "model": self.name,
                "config": self.config.model_dump(),
                "slope": self.slope,
                "cuts": list(self.cuts),
                "calibration": None if self.calibration is None else list(self.calibration),
                "has_body": self.body is not None,
                "training": self.training,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        config = read_model_config(path, cls.name)
        arrays = load_arrays(path)
        model = cls(SizeFitConfig.from_dict(config.get("config", {})))
        try:
            model.sizing = ItemSizing(
                scale=arrays["item_scale"].astype(np.int64),
                group=arrays["item_group"].astype(np.int64),
                scale_centre=arrays["scale_centre"].astype(np.float64),
            )
            for name in (
                "pair_size",
                "pair_var",
                "pair_n",
                "item_offset",
                "item_var",
                "item_n",
                "group_offset",
                "scale_mean",
                "body_mean",
                "body_std",
            ):
                setattr(model, name, arrays[name].astype(np.float64))
            model.pair_keys = arrays["pair_keys"].astype(np.int64)
            model.body_weights = arrays["body_weights"].astype(np.float64)
            model.body = arrays["body"].astype(np.float64) if config.get("has_body") else None
            model.scales = SizeScales.from_arrays(arrays) if "scale_lengths" in arrays else None
            model.slope = float(config["slope"])
            model.cuts = (float(config["cuts"][0]), float(config["cuts"][1]))
            curve = config.get("calibration")
            model.calibration = (
                None
                if curve is None
                else (float(curve[0]), float(curve[1]), float(curve[2]), float(curve[3]))
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: size-fit model is incomplete: {exc}") from exc
        model.training = dict(config.get("training", {}))
        if len(model.item_offset) != model.sizing.n_items:
            raise BundleError(f"{path}: size-fit model arrays disagree on the number of items")
        return model


__all__ = [
    "FIT",
    "LARGE",
    "SMALL",
    "VERDICTS",
    "FitObservations",
    "ItemSizing",
    "SizeFitConfig",
    "SizeFitModel",
    "SizeScales",
    "VerdictClassifier",
]
