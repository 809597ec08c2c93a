"""Size advice for an item, for any surface (web, app, kiosk): which size to take, how likely each
offered size fits, whether the item runs small or large (with the evidence), the neighbouring size
worth bringing along, the stock of each size, and a reason in words.

:class:`SizeAdvisor` answers ``GET /v1/items/{id}/size-advice``. The customer's size comes from
the bundle's size-fit model (:mod:`models.size_fit`: their learnt true size in the item's size
scale) or their live profile (:mod:`app.customers`) — only with personalization consent; the
item's fit from the model's offset for it, with the evidence of its size returns; a size the
shopper tried in the fitting room (:class:`TriedSize`) moves the advice by Bayes' rule. Bundles
without the model (or sizes on no learnt scale) get a simple rule instead (see
:class:`SizeAdvisor`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from app.customers import Customers
from app.runtime import BundleManager, LoadedBundle
from feature_store.errors import InvalidRequest, UnknownItem
from feature_store.profiles import preferred_size
from feature_store.schema import ONLINE_STORE, ReturnReason
from models.size_fit import SizeFitModel

FloatArray = npt.NDArray[np.float64]

FitVerdict = Literal["too_small", "fits", "too_large"]
Runs = Literal["small", "true_to_size", "large"]


class TriedSize(NamedTuple):
    """What the shopper tried in the fitting room."""

    size: str
    fit: FitVerdict


@dataclass(frozen=True)
class SizeOption:
    """One offered size of the item."""

    size: str
    p_small: float  # the size runs small on this customer (too small)
    p_fit: float
    p_large: float  # the three sum to 1
    stock: int | None  # units in the asked store (no store asked: online); None without stock data


@dataclass(frozen=True)
class SizeAdvice:
    """The answer of :meth:`SizeAdvisor.advise`."""

    item_id: str
    personal: bool  # False: no customer, unknown customer or no consent
    sizes: list[SizeOption]  # every offered size, smallest first (empty for one-size items)
    recommended: str | None  # the size to take (None only for one-size items)
    fit_probability: float | None
    bring_along: str | None  # the neighbouring size worth bringing too (None when not useful)
    runs: Runs
    evidence: str  # e.g. "38% of size returns said too small (21 of 55)"
    reason: str  # one sentence
    model_version: str | None = None  # the bundle the advice came from


class UnknownStoreParam(InvalidRequest):
    """A ``store_id`` the stock table does not know (422 ``unknown_store``)."""

    code = "unknown_store"

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        super().__init__(f"store_id: unknown store {store_id!r}")


#: Size returns of an item needed before it is said to run small or large.
MIN_SIZE_RETURNS = 5
#: Share of an item's size returns on one side above which it runs small / large ...
RUNS_SHARE = 0.65
#: ... when its size returns are also at least this share of its purchases.
RUNS_RETURN_RATE = 0.04
#: Spread of the ordinal curve (in sizes): sure of the customer's size / not.
SPREAD_PERSONAL = 0.3
SPREAD_UNKNOWN = 0.6
TRIED_LEAK = 1e-4
#: How much a customer's fitting size varies from item to item beyond the items' offsets
#: (sizes²), added to the uncertainty of their learnt true size.
ITEM_VARIANCE = 0.25
#: A neighbouring size is worth bringing along when its fit probability is at least this.
BRING_ALONG_MIN = 0.2
#: The learnt model says an item runs small / large when its offset is at least this many
#: sizes and this many standard deviations off zero.
RUNS_OFFSET = 0.4
RUNS_Z = 2.0
#: Variance (in sizes²) of a true size known only from the profile, before its confidence.
PROFILE_VARIANCE = 0.15
#: Step of the grid the shopper's true size is weighed on, in sizes.
GRID_STEP = 0.05


@dataclass(frozen=True)
class ItemFitStats:
    """Per item of a bundle: purchases, and returns said too small / too large."""

    bought: npt.NDArray[np.int64]
    too_small: npt.NDArray[np.int64]
    too_large: npt.NDArray[np.int64]

    @classmethod
    def of(cls, bundle: LoadedBundle) -> ItemFitStats:
        n = len(bundle.catalog.ids)
        if bundle.purchase_log is not None:
            bought = np.bincount(bundle.purchase_log["items"].astype(np.int64), minlength=n)
        else:
            bought = np.diff(bundle.purchases.tocsc().indptr).astype(np.int64)
        small = np.zeros(n, np.int64)
        large = np.zeros(n, np.int64)
        log = bundle.return_log
        if log is not None and len(log["items"]):
            items = log["items"].astype(np.int64)
            reasons = log["reasons"].astype(str)
            small = np.bincount(items[reasons == ReturnReason.TOO_SMALL.value], minlength=n)
            large = np.bincount(items[reasons == ReturnReason.TOO_LARGE.value], minlength=n)
        return cls(bought=bought[:n], too_small=small[:n], too_large=large[:n])

    def runs(self, item: int) -> tuple[Runs, str]:
        """Whether the item runs small / large / true to size, and the evidence in words."""
        small, large = int(self.too_small[item]), int(self.too_large[item])
        bought = int(self.bought[item])
        size_returns = small + large
        if size_returns == 0:
            return "true_to_size", f"no size returns among {bought} purchases"
        share_small = small / size_returns
        runs: Runs = "true_to_size"
        if size_returns >= MIN_SIZE_RETURNS and size_returns >= RUNS_RETURN_RATE * bought:
            if share_small >= RUNS_SHARE:
                runs = "small"
            elif 1 - share_small >= RUNS_SHARE:
                runs = "large"
        if runs == "large":
            return runs, (
                f"{round(100 * (1 - share_small))}% of size returns said too large "
                f"({large} of {size_returns})"
            )
        return runs, (
            f"{round(100 * share_small)}% of size returns said too small ({small} of {size_returns})"
        )


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def ordinal_probabilities(offset: float, spread: float) -> tuple[float, float, float]:
    """(p_small, p_fit, p_large) of a size ``offset`` sizes above the one that fits: an
    ordinal curve with cut points at ±½ size."""
    p_small = _sigmoid((-offset - 0.5) / spread)
    p_large = _sigmoid((offset - 0.5) / spread)
    p_fit = max(0.0, 1.0 - p_small - p_large)
    total = p_small + p_fit + p_large
    return p_small / total, p_fit / total, p_large / total


@dataclass(frozen=True)
class _Known:
    """What the advice starts from about the shopper's size in the item's scale."""

    usual: str | None  # the customer's usual size label on the item, when known
    centre: float | None  # their true size (position on the item's scale), when known
    variance: float


class SizeAdvisor:
    """Size advice over the served bundle and the customers' live profiles.

    With the bundle's size-fit model (:mod:`models.size_fit`): the shopper's true size on the
    item's scale is a distribution over positions — the customer's learnt size (or their profile's
    size), else the spread of every customer's true size in that scale — moved by a size tried on
    (Bayes' rule with the model's verdict curve); each offered size's probabilities are that
    distribution pushed through the verdict curve at the item's offset, and the item runs small /
    large when its offset is clearly off zero. Without the model (older bundles, sizes on no
    scale): the rule of :func:`ordinal_probabilities` around the profile's size, moved by the
    item's balance of size returns."""

    def __init__(self, bundles: BundleManager, customers: Customers) -> None:
        self.bundles = bundles
        self.customers = customers
        self._stats: ItemFitStats | None = None
        self._stats_version: str | None = None
        self._population: dict[int, tuple[FloatArray, FloatArray]] = {}
        self._lock = threading.Lock()

    def stats(self, bundle: LoadedBundle) -> ItemFitStats:
        """The item fit counts of the bundle (computed once per bundle version)."""
        with self._lock:
            if self._stats is None or self._stats_version != bundle.version:
                self._stats = ItemFitStats.of(bundle)
                self._stats_version = bundle.version
                self._population = {}
            return self._stats

    def advise(
        self,
        item_id: str,
        customer_id: str | None = None,
        store_id: str | None = None,
        tried: TriedSize | None = None,
    ) -> SizeAdvice:
        """The size advice for ``item_id`` (for ``customer_id`` when they consented), with the
        stock of ``store_id`` (online when None); ``tried`` moves the advice."""
        bundle = self.bundles.current
        item = bundle.catalog.ids.index(item_id)
        if item is None:
            raise UnknownItem(item_id)
        if store_id is not None and store_id not in bundle.stock.store_code:
            raise UnknownStoreParam(store_id)
        offered = list(bundle.catalog.sizes[item])
        if tried is not None and tried.size not in offered:
            raise InvalidRequest(
                f"tried_size: {item_id!r} is not offered in {tried.size!r} "
                f"(sizes: {', '.join(offered) or 'one size'})"
            )
        category = str(bundle.catalog.categories[item])
        stats = self.stats(bundle)
        runs, evidence = stats.runs(item)
        profile: dict[str, Any] | None = None
        index: int | None = None
        personal = False
        if customer_id is not None:
            view = self.customers.read(bundle, customer_id)
            profile = view.personal_profile
            personal = profile is not None
            index = view.index if personal else None
        if len(offered) <= 1:  # one-size item
            return SizeAdvice(
                item_id=item_id,
                personal=personal,
                sizes=[],
                recommended=None,
                fit_probability=None,
                bring_along=None,
                runs=runs,
                evidence=evidence,
                reason="One size.",
                model_version=bundle.version,
            )
        learnt = self._from_model(bundle, item, offered, category, profile, index, tried)
        if learnt is not None:
            probs, runs, known, offset, best = learnt
            if abs(offset) >= 0.05:
                evidence = f"{evidence}; fits {abs(offset):.1f} sizes {_way(offset)}"
        else:
            probs, known = _from_rule(offered, category, profile, runs, tried)
            best = max(range(len(offered)), key=lambda i: (probs[i, 1], -i))
        stock = bundle.stock
        where = store_id if store_id is not None else ONLINE_STORE
        options = [
            SizeOption(
                size=size,
                p_small=round(float(probs[k, 0]), 4),
                p_fit=round(float(probs[k, 1]), 4),
                p_large=round(float(probs[k, 2]), 4),
                stock=None if stock.empty else stock.quantity(item, size, where),
            )
            for k, size in enumerate(offered)
        ]
        recommended = options[best]
        neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(options)]
        along = max(neighbours, key=lambda i: probs[i, 1], default=None)
        bring_along = (
            options[along].size
            if along is not None and probs[along, 1] >= BRING_ALONG_MIN
            else None
        )
        reason = _reason(
            runs=runs,
            recommended=recommended.size,
            usual=known.usual,
            category=category,
            tried=tried,
            personal=personal,
        )
        return SizeAdvice(
            item_id=item_id,
            personal=personal,
            sizes=options,
            recommended=recommended.size,
            fit_probability=recommended.p_fit,
            bring_along=bring_along,
            runs=runs,
            evidence=evidence,
            reason=reason,
            model_version=bundle.version,
        )

    # -- the learnt model ---------------------------------------------------------------------

    def _from_model(
        self,
        bundle: LoadedBundle,
        item: int,
        offered: list[str],
        category: str,
        profile: dict[str, Any] | None,
        index: int | None,
        tried: TriedSize | None,
    ) -> tuple[FloatArray, Runs, _Known, float, int] | None:
        """(probabilities per offered size, runs, what was known, the item's offset, the offered
        size most likely nearest to the size that fits) from the size-fit model; None when the
        bundle has none or the item's sizes are on no scale."""
        model = bundle.size_fit
        if model is None or model.scales is None or model.sizing is None:
            return None
        if item >= model.n_items or int(model.sizing.scale[item]) < 0:
            return None
        scale = int(model.sizing.scale[item])
        ranks = [model.scales.rank(scale, size) for size in offered]
        if any(r is None for r in ranks):
            return None
        positions = np.asarray(ranks, dtype=np.float64)
        offset_a, var_a, _ = model.offset(np.array([item]))
        offset, var_o = float(offset_a[0]), float(var_a[0])
        known = _Known(usual=None, centre=None, variance=0.0)
        if index is not None:
            size, var, count = model.true_size(np.array([index]), np.array([scale]))
            if count[0] > 0:
                known = _Known(None, float(size[0]), float(var[0]) + ITEM_VARIANCE)
        if profile is not None:
            found = preferred_size(profile, category, offered)
            if found is not None:
                at = offered.index(found[0])
                if known.centre is None:
                    spread = PROFILE_VARIANCE + ITEM_VARIANCE + (1.0 - found[1])
                    known = _Known(found[0], float(positions[at]), spread)
                else:
                    known = _Known(found[0], known.centre, known.variance)
        grid, weights = self._prior(model, scale, known)
        curve = model.curve
        if tried is not None:
            at = offered.index(tried.size)
            said = {"too_small": 0, "fits": 1, "too_large": 2}[tried.fit]
            like = _tried_likelihood(positions[at] - grid - offset)[:, said]
            weights = weights * like
            weights = weights / max(float(weights.sum()), 1e-300)
        dist = positions[:, None] - grid[None, :] - offset  # sizes x grid
        per = _curve_at(dist.ravel(), var_o, curve).reshape(len(offered), len(grid), 3)
        probs = np.einsum("sgk,g->sk", per, weights)
        probs = probs / probs.sum(axis=1, keepdims=True)
        sd = math.sqrt(max(var_o, 1e-12))
        runs: Runs = "true_to_size"
        if offset >= RUNS_OFFSET and offset >= RUNS_Z * sd:
            runs = "small"
        elif offset <= -RUNS_OFFSET and -offset >= RUNS_Z * sd:
            runs = "large"
        if known.usual is None and known.centre is not None:
            nearest = int(np.argmin(np.abs(positions - known.centre)))
            known = _Known(offered[nearest], known.centre, known.variance)
        # The offered size most likely to be the nearest to the size that fits (true size +
        # offset): after "M was too small" that is never M.
        nearest = np.argmin(np.abs(positions[:, None] - (grid[None, :] + offset)), axis=0)
        mass = np.bincount(nearest, weights=weights, minlength=len(offered))
        best = int(np.argmax(mass))
        return np.asarray(probs, dtype=np.float64), runs, known, offset, best

    def _prior(
        self, model: SizeFitModel, scale: int, known: _Known
    ) -> tuple[FloatArray, FloatArray]:
        """The shopper's true size as weights over a grid of positions: theirs when known, else
        the spread of every customer's learnt true size in the scale."""
        assert model.scales is not None
        n_labels = len(model.scales.labels[scale])
        grid = np.arange(-2.0, n_labels + 2.0, GRID_STEP)
        if known.centre is not None:
            var = max(known.variance, GRID_STEP**2)
            weights = np.exp(-0.5 * (grid - known.centre) ** 2 / var)
            return grid, weights / weights.sum()
        with self._lock:
            cached = self._population.get(scale)
        if cached is not None:
            return cached
        in_scale = (model.pair_keys % max(len(model.scales), 1)) == scale
        sizes = model.pair_size[in_scale]
        if len(sizes) == 0:
            centre = float(model.scale_mean[scale])
            weights = np.exp(-0.5 * (grid - centre) ** 2 * model.config.l2_customer)
        else:
            width = max(float(np.std(sizes)) * len(sizes) ** -0.2, GRID_STEP)  # Silverman-ish
            weights = np.exp(-0.5 * ((grid[:, None] - sizes[None, :]) / width) ** 2).sum(axis=1)
        result = (grid, weights / weights.sum())
        with self._lock:
            self._population[scale] = result
        return result


def _curve_at(dist: FloatArray, var: float, curve: tuple[float, float, float, float]) -> FloatArray:
    """The verdict curve's probabilities ``n x 3`` at ``dist`` with a common variance."""
    slope, widening, cut1, cut2 = curve
    eta = slope * np.asarray(dist, np.float64) / math.sqrt(1.0 + widening * max(var, 0.0))
    small = 1.0 / (1.0 + np.exp(-(cut1 - eta)))
    upto = 1.0 / (1.0 + np.exp(-(cut2 - eta)))
    out = np.stack([small, np.maximum(upto - small, 1e-12), 1.0 - upto], axis=1)
    return np.asarray(out / out.sum(axis=1, keepdims=True), dtype=np.float64)


def _tried_likelihood(dist: FloatArray) -> FloatArray:
    """``n x 3`` likelihoods of a fitting-room verdict on a size ``dist`` sizes off the one that
    fits: the shopper's own try-on is near-certain evidence (unlike a return's reason) — "too
    small" means the size that fits is over half a size larger, "fits" within half a size; a
    verdict against that keeps :data:`TRIED_LEAK` (a mistaken or contradictory try-on)."""
    d = np.asarray(dist, dtype=np.float64)
    small = np.where(d <= -0.5, 1.0, TRIED_LEAK)
    large = np.where(d >= 0.5, 1.0, TRIED_LEAK)
    fit = np.where(np.abs(d) < 0.5, 1.0, TRIED_LEAK)
    return np.stack([small, fit, large], axis=1)


def _way(offset: float) -> str:
    return "small" if offset > 0 else "large"


def _from_rule(
    offered: list[str],
    category: str,
    profile: dict[str, Any] | None,
    runs: Runs,
    tried: TriedSize | None,
) -> tuple[FloatArray, _Known]:
    """Probabilities per offered size from the rule: an ordinal curve around the profile's size
    (or the middle size), moved by the item's size returns or by a size tried on."""
    usual: str | None = None
    confidence = 0.0
    found = None if profile is None else preferred_size(profile, category, offered)
    if found is not None:
        usual, confidence = found
    shift = {"small": 1.0, "large": -1.0, "true_to_size": 0.0}[runs]
    if tried is not None:
        step = {"too_small": 1.0, "fits": 0.0, "too_large": -1.0}[tried.fit]
        centre = offered.index(tried.size) + step
        spread = SPREAD_PERSONAL
    elif usual is not None:
        centre = offered.index(usual) + shift
        spread = SPREAD_PERSONAL + (1.0 - confidence) * (SPREAD_UNKNOWN - SPREAD_PERSONAL)
    else:
        centre = (len(offered) - 1) / 2 + shift
        spread = SPREAD_UNKNOWN
    centre = min(max(centre, 0.0), len(offered) - 1.0)
    probs = np.array(
        [ordinal_probabilities(k - centre, spread) for k in range(len(offered))], dtype=np.float64
    )
    return probs, _Known(usual, None, 0.0)


def _plural(category: str) -> str:
    return category if category.endswith("s") or category == "outerwear" else f"{category}s"


def _reason(
    *,
    runs: Runs,
    recommended: str,
    usual: str | None,
    category: str,
    tried: TriedSize | None,
    personal: bool,
) -> str:
    """One sentence saying why ``recommended``."""
    if tried is not None:
        said = {"too_small": "was too small", "fits": "fitted", "too_large": "was too large"}
        return f"You tried {tried.size} and it {said[tried.fit]}: take {recommended}"
    note = {"small": "Runs small", "large": "Runs large", "true_to_size": "True to size"}[runs]
    where = _plural(category)
    if usual is None or not personal:
        if runs == "true_to_size":
            return f"{note}: {recommended} fits the most customers"
        step = "up" if runs == "small" else "down"
        return f"{note}: take one size {step} from your usual size in {where}"
    if usual == recommended:
        return f"{note}: you usually wear {usual} in {where}"
    if runs != "true_to_size":
        return f"{note}: customers who usually wear {usual} in {where} kept {recommended}"
    return f"{note}: you usually wear {usual} in {where}, and {recommended} fits you best here"
