"""The one request pipeline: candidate sources → filters → scoring → response items.

Every list the service returns is made here. A *source* proposes candidates with its own scores and
reasons; *filters* drop what must not be shown; the *blender* fuses the sources' rankings
(weighted reciprocal-rank fusion: :func:`models.bundle.rrf_fuse_row`, the one-request form of the
:func:`models.bundle.rrf_fuse` the trainer's blend fit uses — with weights per source so a bandit
can move them) and a fallback source
tops the list up when filters leave too few. New sources (sequence model, complementary,
seasonal) and rerankers plug in by adding to the lists a :class:`Pipeline` is built with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from app.runtime import LoadedBundle
from feature_store.profiles import preferred_size
from feature_store.schema import SIZE_RETURN_REASONS, Interaction, InteractionType, ReturnReason
from models.bandit import Reranked
from models.base import top_n
from models.bundle import DEFAULT_RRF_K, rrf_fuse_row
from models.candidates import neighbour_ranking, repeat_ranking, repurchase_ranking
from models.diversity import candidate_pool, diversify
from models.index import answer_from_pool
from models.ranker_features import candidate_union, ranker_features


def price_mask(
    prices: npt.NDArray[np.float64], low: float | None, high: float | None
) -> npt.NDArray[np.bool_]:
    """Per price: within ``[low, high]`` (an open end where None)."""
    keep = np.ones(len(prices), dtype=bool)
    if low is not None:
        keep &= prices >= low
    if high is not None:
        keep &= prices <= high
    return keep


@dataclass(slots=True)
class Candidate:
    """An item a source proposes, with its score, the source's name and the reason shown for it.

    The reason may be given as a function that makes it (``Candidate(item, score, source,
    make_reason)``): a source proposes three or more times the items a list shows, so its reasons
    are made when first read (:attr:`reason`), for the items shown."""

    item: int
    score: float
    source: str
    _reason: str | Callable[[], str]
    # the probability with which the ranking step chose ``source`` for this position (the fixed
    # fusion is deterministic: 1.0; a sampling reranker sets it); kept in the served-list record
    propensity: float = 1.0

    @property
    def reason(self) -> str:
        reason = self._reason
        if not isinstance(reason, str):
            reason = self._reason = reason()
        return reason


@dataclass(frozen=True, slots=True)
class Returned:
    """An item the customer returned and has not bought again: the size returned (None when
    unknown), the reason given (None when unknown) and the size to try instead (None: the item is
    not recommended again)."""

    size: str | None
    reason: ReturnReason | None
    retry: str | None

    def explain(self) -> str:
        """The reason shown when the item is recommended again, in the other size."""
        why = ""
        if self.reason in SIZE_RETURN_REASONS:
            why = " as too small" if self.reason is ReturnReason.TOO_SMALL else " as too large"
        return f"Try it in {self.retry}: you returned the {self.size}{why}"


@dataclass
class SequenceHistory:
    """A shopper's interactions in time order, as the sequence model reads them: item indices,
    the size of each (None when unknown), event types (indices into
    :class:`~feature_store.schema.InteractionType` in declaration order) and epoch seconds."""

    items: npt.NDArray[np.int64]
    sizes: list[str | None]
    types: list[int]
    timestamps: npt.NDArray[np.int64]
    #: the training customer whose kept history this is, unchanged (no steps since training):
    #: the bundle's precomputed LSTM pool answers for it. None otherwise.
    trained_customer: int | None = None

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class PurchaseHistory:
    """A customer's purchases (item indices, epoch seconds, confidence weights)."""

    items: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Context:
    """What one request knows, shared by every stage."""

    bundle: LoadedBundle
    k: int
    category: str | None = None
    customer_id: str | None = None
    user_vector: npt.NDArray[np.float32] | None = None
    # user_vector is the customer's trained ALS factor (no events since training): the bundle's
    # precomputed ALS pool answers for it
    trained_vector: bool = False
    history: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    exclude: set[int] = field(default_factory=set)
    anchor_item: int | None = None
    fallback_used: bool = False
    # Customer intelligence: the rendered profile (None: unknown or no consent), the customer's
    # recent online events, and the size-aware filter (in stock in the customer's size).
    profile: dict[str, Any] | None = None
    customer_index: int | None = None  # the customer's row in the bundle (None: unknown/erased)
    recent: list[Interaction] = field(default_factory=list)
    in_stock_in_my_size: bool = False
    store_id: str | None = None
    # The sequence model's input (a known customer's history plus their online events, or an
    # anonymous session), the customer's purchases with their times, and "now" (epoch seconds).
    sequence: SequenceHistory | None = None
    purchases: PurchaseHistory | None = None
    now: int | None = None
    # Price range (inclusive; None: open) and the diversity rerank's strength (0: none … 1).
    min_price: float | None = None
    max_price: float | None = None
    diversity: float = 0.0
    # The experiment variant the request was assigned to (None: none) and what a variant may
    # override in the reranking stage: the bandit on or off, and its exploration (None: the
    # service's configured default).
    variant: str | None = None
    bandit_enabled: bool | None = None
    # the learned ranker as the fusion stage: on / off for this request (None: the pipeline's own)
    ranker_enabled: bool | None = None
    exploration: float | None = None
    # What the customer did with items, for honest reasons (:meth:`reason_for`): the items they
    # returned (and did not buy again), and the items they only considered — viewed, clicked,
    # carted or wishlisted, never bought.
    returned: dict[int, Returned] = field(default_factory=dict)
    considered: set[int] = field(default_factory=set)
    # The strategy surface and segment of a personalized feed (the bandit's arms are per
    # (surface, segment, source)), and the policy that ranked the list ("bandit", or None for the
    # fixed fusion), which the served-list record carries.
    surface: str | None = None
    segment: str | None = None
    policy: str | None = None
    _sizes: dict[int, str | None] = field(default_factory=dict)

    def size_for(self, item: int) -> str | None:
        """The customer's size for ``item`` (the size to try instead for an item they returned;
        their size of its category the item offers; the only size of a one-size item), or None
        when unknown."""
        if item in self._sizes:
            return self._sizes[item]
        back = self.returned.get(item)
        if back is not None and back.retry is not None:
            self._sizes[item] = back.retry
            return back.retry
        catalog = self.bundle.catalog
        offered = catalog.sizes[item]
        size: str | None = None
        if self.profile is not None:
            found = preferred_size(self.profile, str(catalog.categories[item]), offered)
            size = None if found is None else found[0]
        if size is None and len(offered) == 1:
            size = offered[0]
        self._sizes[item] = size
        return size

    def in_stock_in_size(self, item: int) -> bool:
        size = self.size_for(item)
        return size is not None and self.bundle.stock.quantity(item, size, self.store_id) > 0

    def kept_purchases(self, *, bundle_order: Literal["index", "engagement"]) -> list[int]:
        """What the customer bought and kept: their online purchases newest first (a purchase
        returned later is left out), then the bundle's kept purchases in ``bundle_order`` —
        item index, or most engaged first. With ``"engagement"`` only online events after the
        bundle's data count (earlier ones are in the bundle already). Empty for an unknown
        customer without online purchases."""
        bundle = self.bundle
        out: list[int] = []
        returned: set[int] = set()
        for event in self.recent:  # newest first
            if bundle_order == "engagement" and event.timestamp <= bundle.trained_until:
                continue
            item = bundle.catalog.ids.index(event.item_id)
            if item is None:
                continue
            if event.type is InteractionType.RETURN:
                returned.add(item)
            elif (
                event.type is InteractionType.PURCHASE and item not in returned and item not in out
            ):
                out.append(item)
        if self.customer_index is None:
            return out
        bought = bundle.purchased(self.customer_index).tolist()
        if bundle_order == "engagement" and bought:
            items, weights = bundle.history(self.customer_index)
            weight = dict(zip(items.tolist(), weights.tolist(), strict=True))
            bought = sorted(bought, key=lambda i: (-weight.get(i, 0.0), i))
        out.extend(int(i) for i in bought if i not in returned and i not in out)
        return out

    @property
    def price_filtered(self) -> bool:
        return self.min_price is not None or self.max_price is not None

    def in_price_range(self, item: int) -> bool:
        price = float(self.bundle.catalog.prices[item])
        return (self.min_price is None or price >= self.min_price) and (
            self.max_price is None or price <= self.max_price
        )

    def within_price(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``items`` (order kept) whose price is in the request's range."""
        if not self.price_filtered or len(items) == 0:
            return items
        return items[price_mask(self.bundle.catalog.prices[items], self.min_price, self.max_price)]

    def never_again(self) -> set[int]:
        """Items the customer returned that are not to be recommended again (no other size to
        try): excluded from every list, whatever ``exclude_purchased`` says."""
        return {item for item, back in self.returned.items() if back.retry is None}

    def reason_for(self, item: int, reason: str) -> str:
        """The reason shown for ``item``: what the customer did with the item itself when that
        says more than the source's reason — a returned item offered in another size says so, an
        item only looked at says "Still thinking about …?"."""
        back = self.returned.get(item)
        if back is not None and back.retry is not None:
            return back.explain()
        if item in self.considered and not reason.startswith(STILL_THINKING):
            return f"{STILL_THINKING} the {self.bundle.catalog.names[item]}?"
        return reason

    def may_cite(self, item: int, evidence: int) -> bool:
        """Whether ``evidence`` may explain ``item``: another item, under another name (a reason
        naming the item it explains says nothing), and not one the customer returned."""
        names = self.bundle.catalog.names
        return evidence != item and names[evidence] != names[item] and evidence not in self.returned

    def allowed_items(self) -> npt.NDArray[np.int64] | None:
        """Item indices the request is restricted to, ascending (``None`` = the whole catalog):
        the category's items, within the price range."""
        if self.category is None and not self.price_filtered:
            return None
        catalog = self.bundle.catalog
        if self.category is None:
            return self.within_price(np.arange(len(catalog.prices), dtype=np.int64))
        return self.within_price(
            catalog.by_category.get(self.category, np.empty(0, dtype=np.int64))
        )


class CandidateSource(Protocol):
    name: str

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        """Up to ``n`` candidates, best first."""
        ...


class Filter(Protocol):
    def applies(self, ctx: Context) -> bool:
        """Whether the filter can drop anything in this request (checked once per request, so
        a request without a category, price range or size filter pays nothing for them)."""
        ...

    def keep(self, ctx: Context, candidate: Candidate) -> bool: ...


STILL_THINKING: Final = "Still thinking about"
#: The service's source names the learned ranker knows under another name.
RANKER_ALIASES: Final = {"popular": "popularity"}
RECENT_ACTIVITY: Final = "Picked for your recent activity"


class Reranker(Protocol):
    """A ranking step that replaces the fixed fusion for some requests (the bandit,
    :class:`app.bandit.BanditStage`)."""

    def active(self, ctx: Context) -> bool:
        """Whether it ranks this request."""
        ...

    def extra_sources(self, ctx: Context, names: Sequence[str]) -> Sequence[CandidateSource]:
        """Sources it adds to a request it ranks that are not among the strategy's ``names``
        (the bandit's new-items list); they compete at the mean of the strategy's weights."""
        ...

    def rerank(
        self,
        ctx: Context,
        sources: Sequence[str],
        lists: Sequence[Sequence[int]],
        weights: Mapping[str, float],
        k: int,
    ) -> Reranked:
        """The top ``k`` of ``lists`` (``lists[s]`` from ``sources[s]``), each position with its
        source and the propensity of that choice."""
        ...


class _ByHistory:
    """The reasons of a list of items, each made when asked (:meth:`reason`, for the items
    shown): the history item it is most similar to — never the item itself, one of the same
    name or one the customer returned (:meth:`Context.may_cite`); an item with no such evidence
    gets a reason that names no item. The similarities of all the items are computed once, at
    the first reason asked for."""

    def __init__(self, ctx: Context, items: npt.NDArray[np.int64]) -> None:
        self.ctx = ctx
        self.items = items
        evidence = ctx.history
        if ctx.returned:
            evidence = evidence[~np.isin(evidence, sorted(ctx.returned))]
        self.evidence = evidence
        self._sims: npt.NDArray[np.float32] | None = None
        self._best: list[int] = []

    def reason(self, row: int) -> str:
        ctx, evidence = self.ctx, self.evidence
        if len(evidence) == 0:
            return RECENT_ACTIVITY
        if self._sims is None:
            vectors = ctx.bundle.als.item_vectors()
            self._sims = vectors[self.items] @ vectors[evidence].T
            self._best = evidence[np.argmax(self._sims, axis=1)].tolist()
        item = int(self.items[row])
        cited: int | None = self._best[row]
        if not ctx.may_cite(item, self._best[row]):  # the item itself, or one of the same name
            cited = next(
                (
                    int(evidence[at])
                    for at in np.argsort(-self._sims[row], kind="stable").tolist()
                    if ctx.may_cite(item, int(evidence[at]))
                ),
                None,
            )
        if cited is None:
            return RECENT_ACTIVITY
        return f"Because you liked the {ctx.bundle.catalog.names[cited]}"


class ALSSource:
    """Collaborative filtering: inner product of the customer's vector with item vectors (FAISS)."""

    name = "als"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        if ctx.user_vector is None:
            return []
        bundle = ctx.bundle
        allowed = ctx.allowed_items()
        exclude = sorted(ctx.exclude)
        if allowed is not None:
            if len(allowed) == 0:
                return []
            scores = bundle.als.item_factors[allowed] @ ctx.user_vector
            if exclude:
                scores[np.isin(allowed, exclude)] = -np.inf
            top, values = top_n(scores, n)
            items = allowed[top]
        else:
            pooled = None
            pool = bundle.als_pool
            if pool is not None and ctx.trained_vector and ctx.customer_index is not None:
                blocked = np.asarray(exclude, dtype=np.int64)
                pooled = answer_from_pool(pool.row(ctx.customer_index), blocked, n)
            if pooled is not None:
                items = pooled
                values = bundle.als.item_factors[items] @ ctx.user_vector
            else:
                found, found_scores = bundle.index.search(
                    ctx.user_vector, n, exclude=[exclude] if exclude else None
                )
                items = np.asarray(found).reshape(-1).astype(np.int64)
                values = np.asarray(found_scores).reshape(-1)
        explain = _ByHistory(ctx, items).reason
        return [
            Candidate(i, s, self.name, partial(explain, row))
            for row, (i, s) in enumerate(zip(items.tolist(), values.tolist(), strict=True))
        ]


class SequenceSource:
    """The LSTM sequence model: what tends to come next after the shopper's recent interactions
    (item, size and event type of each step), retrieved through the model's FAISS index, plus the
    model's learned repeat term for items already in the history."""

    name = "sequence"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        model = ctx.bundle.sequence
        history = ctx.sequence
        if model is None or history is None or len(history) == 0:
            return []
        exclude = np.fromiter(ctx.exclude, dtype=np.int64, count=len(ctx.exclude))
        allowed = ctx.allowed_items()
        if allowed is None:
            pool, sessions = ctx.bundle.sequence_pool, ctx.bundle.sequence_sessions
            trained = history.trained_customer  # None: events since training, run the LSTM
            items, values = model.recommend_from_sequence(
                history.items,
                history.sizes,
                k=n,
                exclude=exclude,
                event_types=history.types,
                timestamps=history.timestamps,
                now=ctx.now,
                candidates=None if pool is None or trained is None else pool.row(trained),
                session=None if sessions is None or trained is None else sessions.row(trained),
            )
        else:  # one category: score its items exactly
            if len(allowed) == 0:
                return []
            session = model.session_vector(history.items, history.sizes, history.types)
            scores = model.item_vectors()[allowed] @ session
            repeat_items, boost = model.repeat_scores(
                history.items, history.sizes, history.types, history.timestamps, ctx.now
            )
            at = np.searchsorted(allowed, repeat_items)
            inside = (at < len(allowed)) & (
                allowed[np.minimum(at, len(allowed) - 1)] == repeat_items
            )
            scores[at[inside]] += boost[inside]
            if len(exclude):
                scores[np.isin(allowed, exclude)] = -np.inf
            top, values = top_n(scores, n)
            items = allowed[top]
        latest_first = history.items[::-1].tolist()
        said: dict[int | None, str] = {}  # the reason citing each step, made once
        return [
            Candidate(i, v, self.name, partial(_recent_pick, ctx, latest_first, i, said))
            for i, v in zip(items.tolist(), values.tolist(), strict=True)
            if math.isfinite(v)
        ]


def _recent_pick(
    ctx: Context, latest_first: list[int], item: int, said: dict[int | None, str]
) -> str:
    """The sequence model's reason for ``item``: the latest step of the history that may explain
    it (:meth:`Context.may_cite`), or no item named when none may (``said``: the reasons made so
    far, by the step cited)."""
    cited = next((step for step in latest_first if ctx.may_cite(item, step)), None)
    reason = said.get(cited)
    if reason is None:
        reason = said[cited] = (
            "Goes with what you picked recently"
            if cited is None
            else f"Goes with what you picked recently: the {ctx.bundle.catalog.names[cited]}"
        )
    return reason


def _own_items(
    ctx: Context,
    items: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float64],
    source: str,
    reason: str,
    n: int,
) -> list[Candidate]:
    """Up to ``n`` candidates of a ranking over the customer's own purchases (or their variants),
    skipping excluded items; ``reason`` is formatted with the item's ``name``."""
    names = ctx.bundle.catalog.names
    out: list[Candidate] = []
    for item, score in zip(items.tolist(), scores.tolist(), strict=True):
        if item in ctx.exclude:
            continue
        out.append(Candidate(item, score, source, reason.format(name=names[item])))
        if len(out) >= n:
            break
    return out


class RepurchaseSource:
    """Buy again: the customer's own purchases by recency-decayed count (the same ranking the
    offline harness measures, :func:`models.candidates.repurchase_ranking`). Items already bought
    are excluded unless the request asks ``exclude_purchased=false``."""

    name = "repurchase"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bought = ctx.purchases
        if bought is None or len(bought) == 0:
            return []
        now = ctx.now if ctx.now is not None else int(bought.timestamps.max())
        items, scores = repurchase_ranking(bought.items, bought.timestamps, bought.weights, now)
        return _own_items(ctx, items, scores, self.name, "Buy again: the {name}", n)


class RepeatSource:
    """Buy again, the often-rebought first: the customer's purchases by a short-memory decayed
    count times their product type's rebuy rate squared (:func:`models.candidates.repeat_ranking`
    with the bundle's rates, as the offline harness measures it). Like ``repurchase``, these are
    items already bought: they survive only with ``exclude_purchased=false``."""

    name = "repeat"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bought, rates = ctx.purchases, ctx.bundle.repeat_rates
        if bought is None or len(bought) == 0 or rates is None:
            return []
        now = ctx.now if ctx.now is not None else int(bought.timestamps.max())
        items, scores = repeat_ranking(bought.items, bought.timestamps, bought.weights, now, rates)
        return _own_items(ctx, items, scores, self.name, "Time for another: the {name}", n)


class SiblingsSource:
    """Other colours and variants (same product code) of what the customer bought, the recent
    purchases first (:func:`models.candidates.neighbour_ranking` over the bundle's siblings)."""

    name = "siblings"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bought, table = ctx.purchases, ctx.bundle.siblings
        if bought is None or len(bought) == 0 or table is None:
            return []
        now = ctx.now if ctx.now is not None else int(bought.timestamps.max())
        items, scores = neighbour_ranking(
            bought.items,
            bought.timestamps,
            bought.weights,
            now,
            table,
            item_scores=ctx.bundle.popularity.scores,
            depth=n + len(ctx.exclude),
        )
        return _own_items(ctx, items, scores, self.name, "Another colour: {name}", n)


class PopularitySource:
    """Time-decayed best sellers (in the requested category)."""

    name = "popular"

    def __init__(self, reason: str = "Popular right now") -> None:
        self.reason = reason

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        bundle = ctx.bundle
        order = ctx.within_price(bundle.popular_in(ctx.category))
        exclude = ctx.exclude
        # the first n not excluded lie within the first n + |exclude|
        picked = [i for i in order[: n + len(exclude)].tolist() if i not in exclude][:n]
        scores = bundle.popularity.scores[picked].tolist()
        categories = bundle.catalog.categories[picked].tolist()
        return [
            Candidate(i, float(score), self.name, f"{self.reason} in {category}")
            for i, score, category in zip(picked, scores, categories, strict=True)
        ]


class SimilarItemsSource:
    """Items whose vectors are nearest to the anchor item's (FAISS)."""

    name = "similar"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        if ctx.anchor_item is None:
            return []
        bundle = ctx.bundle
        anchor = ctx.anchor_item
        anchor_name = bundle.catalog.names[anchor]
        exclude = ctx.exclude | {anchor}
        if n + len(exclude) <= bundle.neighbour_ids.shape[1]:  # precomputed at training time
            items = bundle.neighbour_ids[anchor]
            values = bundle.neighbour_scores[anchor]
        else:  # longer lists than precomputed: search live
            vectors = bundle.als.item_vectors()
            found, scores = bundle.similar_index.search(
                vectors[anchor], n, exclude=[sorted(exclude)]
            )
            items, values = np.asarray(found).reshape(-1), np.asarray(scores).reshape(-1)
        names = bundle.catalog.names
        return [
            Candidate(
                int(i),
                float(s),
                self.name,
                f"Shoppers who liked the {anchor_name} chose this"
                if names[int(i)] != anchor_name
                else "Shoppers who liked this one chose this too",
            )
            for i, s in zip(items, values, strict=True)
            if i >= 0 and int(i) not in exclude
        ][:n]


class AttributeSimilarSource:
    """Content similarity within the anchor's category: product type, styles, colour, material,
    pattern and price. Works for items nobody has bought yet (a new collection on day one)."""

    name = "attributes"

    def candidates(self, ctx: Context, n: int) -> list[Candidate]:
        if ctx.anchor_item is None:
            return []
        catalog = ctx.bundle.catalog
        anchor = ctx.anchor_item
        category = str(catalog.categories[anchor])
        pool = catalog.by_category.get(category, np.empty(0, np.int64))
        if len(pool) == 0:
            return []
        query = catalog.attributes[anchor].toarray().ravel()
        score = catalog.attributes_by_category[category] @ query
        log_prices, tie_break = ctx.bundle.category_content[category]
        score -= 0.5 * np.abs(log_prices - catalog.log_prices[anchor])
        score += tie_break
        # the anchor and excluded items of the pool (ascending: found by binary search)
        gone = np.fromiter((anchor, *ctx.exclude), np.int64, 1 + len(ctx.exclude))
        at = np.searchsorted(pool, gone)
        inside = at < len(pool)
        at = at[inside]
        score[at[pool[at] == gone[inside]]] = -np.inf
        top, values = top_n(score, n)
        anchor_name = catalog.names[anchor]
        return [
            Candidate(
                int(pool[t]),
                float(v),
                self.name,
                f"Same look as the {anchor_name}"
                if catalog.names[int(pool[t])] != anchor_name
                else "Same look, another version",
            )
            for t, v in zip(top, values, strict=True)
        ]


class ExcludeFilter:
    """Drops excluded items (already bought, the anchor item, returned items with no other size
    to try: :meth:`Context.never_again`)."""

    def applies(self, ctx: Context) -> bool:
        return True

    def keep(self, ctx: Context, candidate: Candidate) -> bool:
        return candidate.item not in ctx.exclude and candidate.item != ctx.anchor_item


class CategoryFilter:
    def applies(self, ctx: Context) -> bool:
        return ctx.category is not None

    def keep(self, ctx: Context, candidate: Candidate) -> bool:
        return ctx.category is None or ctx.bundle.catalog.categories[candidate.item] == ctx.category


class SizeStockFilter:
    """With ``in_stock_in_my_size``: only items in stock (in ``store_id``, or anywhere) in the
    customer's size for the item's category; items whose size is unknown are dropped."""

    def applies(self, ctx: Context) -> bool:
        return ctx.in_stock_in_my_size

    def keep(self, ctx: Context, candidate: Candidate) -> bool:
        return not ctx.in_stock_in_my_size or ctx.in_stock_in_size(candidate.item)


class PriceFilter:
    """With ``min_price`` / ``max_price``: only items priced within the range (inclusive)."""

    def applies(self, ctx: Context) -> bool:
        return ctx.price_filtered

    def keep(self, ctx: Context, candidate: Candidate) -> bool:
        return not ctx.price_filtered or ctx.in_price_range(candidate.item)


DEFAULT_FILTERS: tuple[Filter, ...] = (
    ExcludeFilter(),
    CategoryFilter(),
    SizeStockFilter(),
    PriceFilter(),
)


@dataclass
class Pipeline:
    """Sources with weights, filters, a fallback source used when the list comes up short, and
    the diversity rerank (:func:`models.diversity.diversify`, when ``ctx.diversity`` > 0) of the
    fused candidates: a pool of :func:`models.diversity.candidate_pool` of them, fallback
    included, reranked down to ``k``.

    With a ``reranker`` (the bandit) that is active for the request, it fills the list from the
    sources' kept lists instead of the fixed fusion — the strategy's sources and any the reranker
    adds (:meth:`Reranker.extra_sources`, the new-items list) — each position with its
    propensity, and ``ctx.policy`` names it. A request with ``diversity`` > 0 is always ranked by the fixed
    fusion: diversity reorders and drops the pool's candidates, so a logged propensity would no
    longer be the probability of what was shown at that position (``docs/bandit.md``)."""

    sources: Sequence[tuple[CandidateSource, float]]
    filters: Sequence[Filter] = DEFAULT_FILTERS
    fallback: CandidateSource | None = None
    oversample: int = 3
    rrf_k: float = DEFAULT_RRF_K  # the fusion constant (the trainer fits it with the weights)
    reranker: Reranker | None = None
    #: rank with the bundle's learned ranker (when it has one) instead of the fixed fusion;
    #: ``Context.ranker_enabled`` (an experiment variant) overrides it per request
    learned_ranker: bool = False

    def run(self, ctx: Context) -> list[Candidate]:
        if ctx.diversity <= 0:
            return self._ranked(ctx)
        k = ctx.k
        ctx.k = candidate_pool(k)
        try:
            pool = self._ranked(ctx, short=k)
        finally:
            ctx.k = k
        picked = diversify([c.item for c in pool], k, ctx.diversity, ctx.bundle.item_similarity)
        return [pool[int(p)] for p in picked]

    def _ranked(self, ctx: Context, short: int | None = None) -> list[Candidate]:
        """The fused top ``ctx.k`` topped up from the fallback when fewer than ``short`` (default
        ``ctx.k``) survive the filters. Each source proposes as many candidates as for a list of
        ``short`` (the fusion of the same lists: a diversity pool's first ``short`` items are the
        list without diversity)."""
        short = ctx.k if short is None else short
        n = max(short * self.oversample, short + 8, ctx.k)
        if ctx.in_stock_in_my_size:  # the size filter drops many: look further down each list
            n *= 4
        names: list[str] = []
        weights: list[float] = []
        lists: list[list[Candidate]] = []
        keep = self._keeper(ctx)
        for source, weight in self.sources:
            if weight <= 0:
                continue
            names.append(source.name)
            weights.append(weight)
            lists.append(keep(source.candidates(ctx, n)))
        reranker = self.reranker
        if reranker is not None and ctx.diversity <= 0 and reranker.active(ctx):
            mean = sum(weights) / len(weights) if weights else 1.0
            for source in reranker.extra_sources(ctx, names):
                names.append(source.name)
                weights.append(mean)
                lists.append(keep(source.candidates(ctx, n)))
        else:
            reranker = None
        if reranker is not None and any(lists):
            ranked = self._rerank(reranker, ctx, names, lists, weights, ctx.k)
        elif self._learned_active(ctx) and any(lists):
            ranked = self._learned(ctx, names, lists, ctx.k)
        else:
            ranked = self._fuse(lists, weights, ctx.k)
        if len(ranked) < short and self.fallback is not None:
            taken = {c.item for c in ranked}
            lowest = ranked[-1].score if ranked else 1.0 / self.rrf_k
            extra = [
                c
                for c in keep(
                    self.fallback.candidates(
                        ctx, (ctx.k + len(taken)) * (10 if ctx.in_stock_in_my_size else 1)
                    )
                )
                if c.item not in taken
            ]
            for rank, cand in enumerate(extra[: ctx.k - len(ranked)]):
                ranked.append(Candidate(cand.item, lowest / (2.0 + rank), cand.source, cand.reason))
            ctx.fallback_used = bool(extra)
        return ranked

    def _keeper(self, ctx: Context) -> Callable[[list[Candidate]], list[Candidate]]:
        """The request's filtering of a source's list: only the filters that apply to it, and
        for the common request (nothing to drop but excluded items) a plain membership test."""
        active = [f for f in self.filters if f.applies(ctx)]
        if len(active) == 1 and isinstance(active[0], ExcludeFilter):
            exclude, anchor = ctx.exclude, ctx.anchor_item
            return lambda found: [c for c in found if c.item not in exclude and c.item != anchor]
        return lambda found: [c for c in found if all(f.keep(ctx, c) for f in active)]

    def _learned_active(self, ctx: Context) -> bool:
        wanted = self.learned_ranker if ctx.ranker_enabled is None else ctx.ranker_enabled
        return bool(wanted) and ctx.bundle.ranker is not None and ctx.diversity <= 0

    def _learned(
        self, ctx: Context, names: list[str], lists: list[list[Candidate]], k: int
    ) -> list[Candidate]:
        """The top ``k`` of the sources' kept lists by the bundle's learned ranker
        (:mod:`models.ranker_features` over the customer's purchases and the bundle's item
        statistics, the features the trainer computed), each with the source and reason of the
        source that ranked it best and a score falling with the position on the fusion's scale.
        Candidates of sources the ranker does not know are left out."""
        model = ctx.bundle.ranker
        assert model is not None and model.stats is not None
        by_source: dict[str, list[Candidate]] = {}
        for name, kept in zip(names, lists, strict=True):
            by_source.setdefault(RANKER_ALIASES.get(name, name), kept)
        items, ranks = candidate_union(
            {s: np.fromiter((c.item for c in kept), np.int64) for s, kept in by_source.items()},
            depth=max(len(kept) for kept in lists),
        )
        if len(items) == 0:
            return self._fuse(lists, [1.0] * len(lists), k)
        bought = ctx.purchases
        now = ctx.now if ctx.now is not None else model.stats.as_of
        x = ranker_features(
            items,
            ranks,
            bought.items if bought is not None else np.empty(0, np.int64),
            bought.timestamps if bought is not None else np.empty(0, np.int64),
            now,
            model.stats,
            model.blend_weights,
            model.blend_rrf_k,
        )
        top, _ = model.rank(items, x, k)
        best: dict[int, Candidate] = {}
        for kept in by_source.values():
            for position, cand in enumerate(kept):
                seen = best.get(cand.item)
                if seen is None or position < seen.score:
                    best[cand.item] = Candidate(cand.item, position, cand.source, cand.reason)
        out = [
            Candidate(int(item), 1.0 / (self.rrf_k + 1 + p), best[int(item)].source,
                      best[int(item)].reason)
            for p, item in enumerate(top.tolist())
        ]  # fmt: skip
        ctx.policy = "ranker"
        return out

    def _fuse(self, lists: list[list[Candidate]], weights: list[float], k: int) -> list[Candidate]:
        """The top ``k`` of the sources' kept lists by :func:`models.bundle.rrf_fuse_row`, each with
        the source and reason of the source that ranked it best (the evidence of all summed)."""
        if not any(lists):
            return []
        fused = rrf_fuse_row([[c.item for c in kept] for kept in lists], weights, self.rrf_k, k)
        out: list[Candidate] = []
        for item, score, s in fused:
            best = next(c for c in lists[s] if c.item == item)
            out.append(Candidate(item, score, best.source, best.reason))
        return out

    def _rerank(
        self,
        reranker: Reranker,
        ctx: Context,
        names: list[str],
        lists: list[list[Candidate]],
        weights: list[float],
        k: int,
    ) -> list[Candidate]:
        """The top ``k`` by ``reranker``: each item with the candidate (reason) of the source that
        filled its position, the propensity of that choice, and a score falling with the position
        on the fusion's scale."""
        prior: dict[str, float] = {}
        for name, weight in zip(names, weights, strict=True):
            prior[name] = max(prior.get(name, 0.0), weight)
        shown = reranker.rerank(ctx, names, [[c.item for c in kept] for kept in lists], prior, k)
        out: list[Candidate] = []
        for position, (item, s, propensity) in enumerate(
            zip(shown.items, shown.sources, shown.propensities, strict=True)
        ):
            found = next(c for c in lists[s] if c.item == item)
            score = 1.0 / (self.rrf_k + 1 + position)
            out.append(Candidate(item, score, found.source, found.reason, propensity))
        ctx.policy = "bandit"
        return out
