"""The candidate sources a segment strategy (:mod:`app.strategies`) can name.

* ``starter`` — best sellers priced at or below their category's median ("Best seller to start
  with"): approachable basics for new customers.
* ``new_in_style`` — items launched in the newest window of the catalog whose style tags match the
  customer's style affinities ("New arrival in your style: casual").
* ``new_arrivals`` — every item launched within ``new_item_days`` (``BanditConfig``, default 14)
  of the catalog's newest launch that is in stock, by early popularity ("New in: Dresses,
  launched 2024-09-12"); the bandit's new-items source (:class:`app.bandit.BanditStage` adds it to
  a feed it ranks when ``new_items_share`` > 0), and nameable in a strategy like any other.
* ``complementary`` — items of *other* categories bought by the customers who bought what this
  customer kept (basket co-occurrence) ("Completes your look with the ...").
* ``bundles`` — items of any category most often bought together with what the customer kept
  ("Bundle: often bought with the ...").
* ``step_up`` — popular items in the customer's categories priced 1.25–2.5x what they usually pay,
  in their style when known ("Step up: ...").
* ``win_back`` — items the customer looked at (or the nearest neighbours of what they bought) that
  are now cheaper than the price they saw, or in stock in their size ("Now cheaper: ...",
  "In your size M and in stock: ...").
* ``als`` and ``popular`` — the collaborative and best-seller sources of every feed.
* ``sequence`` — the LSTM sequence model over the customer's recent steps (training history plus
  online events since) ("Goes with what you picked recently: ...").
* ``repurchase`` — the customer's own purchases by recency-decayed count ("Buy again: ..."); they
  survive only when the request asks ``exclude_purchased=false``.
* ``repeat`` — the same items, the often-rebought product types and the very recent first ("Time
  for another: ..."); also only with ``exclude_purchased=false``.
* ``siblings`` — other colours / variants of the products the customer bought ("Another colour:
  ..."), from the catalog's optional ``product_code``.

:func:`build_sources` maps every name a strategy may use to its source; :func:`bundle_stats` holds
the per-bundle tables they share (warmed when a bundle loads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from app.pipeline import (
    STILL_THINKING,
    ALSSource,
    Candidate,
    CandidateSource,
    Context,
    PopularitySource,
    RepeatSource,
    RepurchaseSource,
    SequenceSource,
    SiblingsSource,
)
from app.runtime import LoadedBundle
from feature_store.schema import InteractionType, ItemCols
from feature_store.timeutils import SECONDS_PER_DAY
from models.base import top_n

NEW_ARRIVAL_DAYS: Final = 60.0
#: The ``new_arrivals`` window when none is configured (``BanditConfig.new_item_days``' default).
NEW_ITEM_DAYS: Final = 14
NEW_ARRIVAL_MIN_SHARE: Final = 0.1  # the window widens to at least the newest 10 % of the catalog
STEP_UP_RANGE: Final = (1.25, 2.5)
CO_PURCHASE_ANCHORS: Final = 10
CO_PURCHASE_BUYERS: Final = 200  # buyers of an anchor sampled (in index order) per request
STEP_UP_POOL: Final = 2000  # most popular items of a category considered for a step up


class _BundleStats:
    """Per-bundle tables the strategy sources share (computed once per bundle version)."""

    def __init__(self, bundle: LoadedBundle) -> None:
        catalog = bundle.catalog
        n = len(catalog.names)
        self.median_price: dict[str, float] = {
            cat: float(np.median(catalog.prices[rows])) for cat, rows in catalog.by_category.items()
        }
        frame = catalog.frame
        if ItemCols.STYLES in frame.columns:
            self.styles: list[frozenset[str]] = [
                frozenset(str(t) for t in v)
                if isinstance(v, list | tuple | np.ndarray)
                else frozenset()
                for v in frame[ItemCols.STYLES]
            ]
        else:
            self.styles = [frozenset()] * n
        vocab = sorted({tag for tags in self.styles for tag in tags})
        self.style_vocab: dict[str, int] = {tag: i for i, tag in enumerate(vocab)}
        rows = [r for r, tags in enumerate(self.styles) for _ in tags]
        cols = [self.style_vocab[t] for tags in self.styles for t in sorted(tags)]
        self.style_matrix: sp.csr_matrix = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(vocab))
        )
        launch = catalog.launch
        known = ~np.isnan(launch)
        self.new_items = np.empty(0, dtype=np.int64)
        if known.any():
            newest = float(np.nanmax(launch))
            window_start = newest - NEW_ARRIVAL_DAYS * float(SECONDS_PER_DAY)
            share_start = float(np.quantile(launch[known], 1.0 - NEW_ARRIVAL_MIN_SHARE))
            start = min(window_start, share_start)
            self.new_items = np.flatnonzero(known & (launch >= start)).astype(np.int64)
        self.purchases_csc: sp.csc_matrix = bundle.purchases.tocsc()
        self.new_style_matrix: sp.csr_matrix = self.style_matrix[self.new_items]
        self._bundle = bundle
        self._launched: dict[float, npt.NDArray[np.int64]] = {}

    def launched_within(self, days: float) -> npt.NDArray[np.int64]:
        """The in-stock items launched within ``days`` of the newest launch (launches after now
        are not out yet and do not count), best first: by time-decayed popularity (their early
        sales), then the newer launch, then the index. With no stock table every item counts
        as in stock. Computed once per bundle and window."""
        found = self._launched.get(days)
        if found is not None:
            return found
        bundle = self._bundle
        launch = bundle.catalog.launch
        out = np.empty(0, dtype=np.int64)
        launched = ~np.isnan(launch) & (launch <= time.time())
        if launched.any():
            newest = float(launch[launched].max())
            window = launched & (launch >= newest - days * float(SECONDS_PER_DAY))
            if not bundle.stock.empty:
                window &= bundle.stock.in_stock_items()
            items = np.flatnonzero(window).astype(np.int64)
            order = np.lexsort((items, -launch[items], -bundle.popularity.scores[items]))
            out = items[order]
        self._launched[days] = out
        return out

    def style_weights(self, styles: Mapping[str, float]) -> npt.NDArray[np.float32]:
        weights = np.zeros(len(self.style_vocab), dtype=np.float32)
        for tag, value in styles.items():
            col = self.style_vocab.get(tag)
            if col is not None:
                weights[col] = value
        return weights


_STATS_LOCK: Final = threading.Lock()
_STATS: dict[str, _BundleStats] = {}


def bundle_stats(bundle: LoadedBundle) -> _BundleStats:
    with _STATS_LOCK:
        stats = _STATS.get(bundle.version)
        if stats is None:
            _STATS.clear()  # one bundle is served at a time
            stats = _STATS[bundle.version] = _BundleStats(bundle)
        return stats


def _top_styles(ctx: Context) -> dict[str, float]:
    if ctx.profile is None:
        return {}
    return {
        str(a["value"]): float(a["score"])
        for a in ctx.profile.get("affinities", {}).get("style", [])
    }


def _allowed(ctx: Context, item: int) -> bool:
    if item in ctx.exclude or item == ctx.anchor_item:
        return False
    return ctx.category is None or ctx.bundle.catalog.categories[item] == ctx.category


class StarterSource:
    """Approachable best sellers: popular items at or below their category's median price."""

    name = "starter"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bundle = ctx.bundle
        stats = bundle_stats(bundle)
        order = bundle.popular_in(ctx.category)
        scores = bundle.popularity.scores
        out: list[Candidate] = []
        for raw in order:
            if len(out) >= n:
                break
            item = int(raw)
            category = str(bundle.catalog.categories[item])
            if (
                not _allowed(ctx, item)
                or bundle.catalog.prices[item] > stats.median_price[category]
            ):
                continue
            out.append(
                Candidate(
                    item, float(scores[item]), self.name, f"Best seller to start with: {category}"
                )
            )
        return out


class NewInStyleSource:
    """New arrivals whose style tags match the customer's style affinities."""

    name = "new_in_style"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        styles = _top_styles(ctx)
        if not styles:
            return []
        bundle = ctx.bundle
        stats = bundle_stats(bundle)
        if len(stats.new_items) == 0:
            return []
        weights = stats.style_weights(styles)
        popularity = bundle.popularity.scores
        top = bundle.popularity_top
        match = stats.new_style_matrix @ weights  # summed affinity of each new item's styles
        score = np.where(match > 0, match + 1e-3 * popularity[stats.new_items] / top, -np.inf)
        order, values = top_n(score, n + len(ctx.exclude) + 1)
        out: list[Candidate] = []
        for pos, value in zip(order.tolist(), values.tolist(), strict=True):
            item = int(stats.new_items[pos])
            if not _allowed(ctx, item):
                continue
            best = max(stats.styles[item] & styles.keys(), key=lambda t: (styles[t], t))
            out.append(Candidate(item, value, self.name, f"New arrival in your style: {best}"))
            if len(out) >= n:
                break
        return out


class NewArrivalsSource:
    """In-stock items launched within ``days`` of the catalog's newest launch, by early
    popularity (:meth:`_BundleStats.launched_within`): the bandit's new-items source."""

    def __init__(self, days: float = NEW_ITEM_DAYS, name: str = "new_arrivals") -> None:
        self.days = float(days)
        self.name = name

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bundle = ctx.bundle
        catalog = bundle.catalog
        items = ctx.within_price(bundle_stats(bundle).launched_within(self.days))
        scores = bundle.popularity.scores
        out: list[Candidate] = []
        for raw in items.tolist():
            if len(out) >= n:
                break
            item = int(raw)
            if not _allowed(ctx, item):
                continue
            day = datetime.fromtimestamp(float(catalog.launch[item]), UTC).date().isoformat()
            reason = f"New in: {catalog.categories[item]}, launched {day}"
            out.append(Candidate(item, float(scores[item]), self.name, reason))
        return out


class CoPurchaseSource:
    """Items most often bought by the customers who bought what this customer kept.

    ``other_categories=True`` keeps only items of categories other than the anchor's
    (complementary pieces); False keeps any (bundles)."""

    def __init__(self, name: str, *, other_categories: bool) -> None:
        self.name = name
        self.other_categories = other_categories

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        anchors = ctx.kept_purchases(bundle_order="index")[:CO_PURCHASE_ANCHORS]
        if not anchors:
            return []
        bundle = ctx.bundle
        catalog = bundle.catalog
        # Only the items the anchors' buyers bought are scored (sorted, so ties still go to the
        # lower item): the work grows with those purchases, never with the catalog.
        items, per_anchor = _co_purchases(bundle, anchors, self.other_categories)
        totals = per_anchor.sum(axis=0)
        gone = np.isin(items, anchors)  # what they own
        if ctx.exclude:
            gone |= np.isin(items, np.fromiter(ctx.exclude, np.int64, len(ctx.exclude)))
        totals[gone] = 0.0
        totals[totals <= 0] = -np.inf
        at, values = top_n(totals, n + 1)
        order = items[at]
        out = []
        for column, item, score in zip(at.tolist(), order.tolist(), values.tolist(), strict=True):
            if not _allowed(ctx, item):
                continue
            # the anchor that contributed most and may be named (not one of the item's name)
            cited = [
                (float(per_anchor[row, column]), -row)
                for row, anchor in enumerate(anchors)
                if per_anchor[row, column] > 0 and ctx.may_cite(item, anchor)
            ]
            if cited:
                anchor_name = catalog.names[anchors[-max(cited)[1]]]
                reason = (
                    f"Completes your look with the {anchor_name}"
                    if self.other_categories
                    else f"Bundle: often bought with the {anchor_name}"
                )
            else:
                reason = (
                    "Completes your look"
                    if self.other_categories
                    else "Bundle: often bought together"
                )
            out.append(Candidate(item, score, self.name, reason))
            if len(out) >= n:
                break
        return out


def _co_purchases(
    bundle: LoadedBundle, anchors: list[int], other_categories: bool
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``(items, per_anchor)``: the items bought by the first :data:`CO_PURCHASE_BUYERS`
    buyers (in index order) of each anchor, ascending, and per anchor (rows) each item's
    purchase count among its buyers over the square root of their number — of other categories
    than the anchor's only with ``other_categories``."""
    purchases = bundle.purchases
    csc = bundle_stats(bundle).purchases_csc
    categories = bundle.catalog.categories
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float32]] = []
    buyer_counts: dict[int, int] = {}
    for row, anchor in enumerate(anchors):
        buyers = csc.indices[csc.indptr[anchor] : csc.indptr[anchor + 1]][:CO_PURCHASE_BUYERS]
        if len(buyers) == 0:
            continue
        starts, ends = purchases.indptr[buyers], purchases.indptr[buyers + 1]
        lengths = ends - starts
        at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        bought = purchases.indices[at].astype(np.int64)
        count = purchases.data[at].astype(np.float32)
        if other_categories:
            other = categories[bought] != categories[anchor]
            bought, count = bought[other], count[other]
        rows.append(np.full(len(bought), row, np.int64))
        cols.append(bought)
        values.append(count)
        buyer_counts[row] = len(buyers)
    if not cols:
        return np.empty(0, np.int64), np.zeros((len(anchors), 0), np.float32)
    items, column = np.unique(np.concatenate(cols), return_inverse=True)
    per_anchor = np.zeros((len(anchors), len(items)), dtype=np.float32)
    np.add.at(per_anchor, (np.concatenate(rows), column), np.concatenate(values))
    for row, n_buyers in buyer_counts.items():
        per_anchor[row] = per_anchor[row] / np.sqrt(n_buyers)
    return items, per_anchor


class StepUpSource:
    """Popular items in the customer's categories priced a notch above what they usually pay."""

    name = "step_up"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        kept = ctx.kept_purchases(bundle_order="index")
        if not kept:
            return []
        bundle = ctx.bundle
        catalog = bundle.catalog
        stats = bundle_stats(bundle)
        usual: dict[str, list[float]] = {}
        for item in kept:
            usual.setdefault(str(catalog.categories[item]), []).append(float(catalog.prices[item]))
        weights = stats.style_weights(_top_styles(ctx))
        low, high = STEP_UP_RANGE
        scores = bundle.popularity.scores
        top = bundle.popularity_top
        scored: list[tuple[float, int, str]] = []
        for category, prices in usual.items():
            if ctx.category is not None and category != ctx.category:
                continue
            typical = float(np.median(prices))
            pool = bundle.popular_in(category)
            pool = pool[:STEP_UP_POOL]
            price = catalog.prices[pool]
            pool = pool[(price >= low * typical) & (price <= high * typical)]
            if len(pool) == 0:
                continue
            value = stats.style_matrix[pool] @ weights + scores[pool] / top
            order, ranked = top_n(value, n + len(ctx.exclude) + 1)
            taken = 0
            for pos, v in zip(order.tolist(), ranked.tolist(), strict=True):
                item = int(pool[pos])
                if not _allowed(ctx, item):
                    continue
                scored.append((v, item, category))
                taken += 1
                if taken >= n:
                    break
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [
            Candidate(
                item,
                score,
                self.name,
                f"Step up: the {catalog.names[item]}, a notch above your usual {category}",
            )
            for score, item, category in scored[:n]
        ]


class WinBackSource:
    """For sleeping customers: what they looked at (and the nearest neighbours of what they
    bought) that is now cheaper than the price they saw, or in stock in their size."""

    name = "win_back"
    NEIGHBOURS: Final = 3

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bundle = ctx.bundle
        catalog = bundle.catalog
        seen_price: dict[int, float] = {}
        pool: dict[int, float] = {}  # item -> interest (recency rank based)
        for rank, event in enumerate(ctx.recent):  # newest first
            item = catalog.ids.index(event.item_id)
            if item is None:
                continue
            if event.price is not None:
                seen_price[item] = max(seen_price.get(item, 0.0), float(event.price))
            if event.type is not InteractionType.PURCHASE:
                pool.setdefault(item, 1.0 / (1.0 + rank))
        for rank, item in enumerate(ctx.history.tolist()):
            pool.setdefault(int(item), 0.5 / (1.0 + rank))
        for anchor in ctx.kept_purchases(bundle_order="index")[:CO_PURCHASE_ANCHORS]:
            for neighbour in bundle.neighbour_ids[anchor][: self.NEIGHBOURS].tolist():
                if neighbour >= 0:
                    pool.setdefault(int(neighbour), 0.25)
        out: list[Candidate] = []
        for item, interest in sorted(pool.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(out) >= n:
                break
            if not _allowed(ctx, item):
                continue
            now_price = float(catalog.prices[item])
            was = seen_price.get(item)
            name = catalog.names[item]
            # an item only looked at says so (the service shows "Still thinking about …?" for it)
            thinking = f"{STILL_THINKING} the {name}? " if item in ctx.considered else ""
            if was is not None and now_price < 0.99 * was:
                reason = (
                    f"{thinking}Now cheaper: was {was:.2f}, now {now_price:.2f}"
                    if thinking
                    else f"Now cheaper: the {name} you looked at, was {was:.2f}, now {now_price:.2f}"
                )
                out.append(Candidate(item, interest + 1.0, self.name, reason))
            elif ctx.in_stock_in_size(item):
                size = ctx.size_for(item)
                reason = (
                    f"{thinking}In your size {size} and in stock"
                    if thinking
                    else f"In your size {size} and in stock: the {name}"
                )
                out.append(Candidate(item, interest, self.name, reason))
        return out


def build_sources(new_item_days: float = NEW_ITEM_DAYS) -> dict[str, CandidateSource]:
    """Every source a strategy may name; ``new_arrivals`` over ``new_item_days``."""
    return {
        "als": ALSSource(),
        "popular": PopularitySource(),
        "repurchase": RepurchaseSource(),
        "repeat": RepeatSource(),
        "siblings": SiblingsSource(),
        "sequence": SequenceSource(),
        "starter": StarterSource(),
        "new_in_style": NewInStyleSource(),
        "new_arrivals": NewArrivalsSource(new_item_days),
        "complementary": CoPurchaseSource("complementary", other_categories=True),
        "bundles": CoPurchaseSource("bundles", other_categories=False),
        "step_up": StepUpSource(),
        "win_back": WinBackSource(),
    }
