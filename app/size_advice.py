"""Size advice for an item, for any surface (web, app, kiosk): which size to take, how likely each
offered size fits, whether the item runs small or large (with the evidence), the neighbouring size
worth bringing along, the stock of each size, and a reason in words.

:class:`SizeAdvisor` answers ``GET /v1/items/{id}/size-advice``. The customer's size in the item's
category comes from their live profile (:mod:`app.customers`; only with personalization consent);
the item's fit from the bundle's returns log (the share of its purchases returned as too small /
too large); a size the shopper tried in the fitting room (:class:`TriedSize`) moves the advice.
Per size, the probabilities of running small / fitting / running large come from an ordinal
(cumulative-logit) curve around the size the advice centres on.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from app.customers import Customers
from app.runtime import BundleManager, LoadedBundle
from feature_store.errors import InvalidRequest, UnknownItem
from feature_store.profiles import preferred_size
from feature_store.schema import ONLINE_STORE, ReturnReason

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
#: A neighbouring size is worth bringing along when its fit probability is at least this.
BRING_ALONG_MIN = 0.2


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


class SizeAdvisor:
    """Size advice over the served bundle and the customers' live profiles."""

    def __init__(self, bundles: BundleManager, customers: Customers) -> None:
        self.bundles = bundles
        self.customers = customers
        self._stats: ItemFitStats | None = None
        self._stats_version: str | None = None
        self._lock = threading.Lock()

    def stats(self, bundle: LoadedBundle) -> ItemFitStats:
        """The item fit counts of the bundle (computed once per bundle version)."""
        with self._lock:
            if self._stats is None or self._stats_version != bundle.version:
                self._stats = ItemFitStats.of(bundle)
                self._stats_version = bundle.version
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
        runs, evidence = self.stats(bundle).runs(item)
        usual: str | None = None
        confidence = 0.0
        personal = False
        if customer_id is not None:
            view = self.customers.read(bundle, customer_id)
            profile = view.personal_profile
            personal = profile is not None
            found = None if profile is None else preferred_size(profile, category, offered)
            if found is not None:
                usual, confidence = found
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
        stock = bundle.stock
        where = store_id if store_id is not None else ONLINE_STORE
        options = []
        for position, size in enumerate(offered):
            p_small, p_fit, p_large = ordinal_probabilities(position - centre, spread)
            options.append(
                SizeOption(
                    size=size,
                    p_small=round(p_small, 4),
                    p_fit=round(p_fit, 4),
                    p_large=round(p_large, 4),
                    stock=None if stock.empty else stock.quantity(item, size, where),
                )
            )
        best = max(range(len(options)), key=lambda i: (options[i].p_fit, -i))
        recommended = options[best]
        neighbours = [i for i in (best - 1, best + 1) if 0 <= i < len(options)]
        along = max(neighbours, key=lambda i: options[i].p_fit, default=None)
        bring_along = (
            options[along].size
            if along is not None and options[along].p_fit >= BRING_ALONG_MIN
            else None
        )
        reason = _reason(
            runs=runs,
            recommended=recommended.size,
            usual=usual,
            category=category,
            tried=tried,
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


def _plural(category: str) -> str:
    return category if category.endswith("s") or category == "outerwear" else f"{category}s"


def _reason(
    *, runs: Runs, recommended: str, usual: str | None, category: str, tried: TriedSize | None
) -> str:
    """One sentence saying why ``recommended``."""
    if tried is not None:
        said = {"too_small": "was too small", "fits": "fitted", "too_large": "was too large"}
        return f"You tried {tried.size} and it {said[tried.fit]}: take {recommended}"
    note = {"small": "Runs small", "large": "Runs large", "true_to_size": "True to size"}[runs]
    if usual is None:
        return f"{note}: {recommended} fits most customers"
    if usual == recommended:
        return f"{note}: you usually wear {usual} in {_plural(category)}"
    return f"{note}: you usually wear {usual} in {_plural(category)}, take {recommended}"
