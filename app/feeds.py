"""The three ranked feeds: a customer's personalized feed, an anonymous session, similar items.

Each feed validates its request, then (for the cached ones, through
:meth:`~app.response_cache.ResponseCache.get_or_compute`) gathers what it knows — the customer
once, :meth:`~app.customers.Customers.read` — builds the pipeline's context, and
:meth:`Feeds._serve` blends the candidates (:meth:`~app.pipeline.Pipeline.run`) and renders the
list. Every served ranked list passes through :meth:`Feeds._serve`: a step that acts on each
blended list (reranking it, recording what was served) belongs there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.customers import TYPE_ORDER, Clock, Customers
from app.errors import CustomerRequired, UnknownStore
from app.experiments import SESSION_SURFACE, Assignment, Experiments, experiments_now
from app.list_options import NO_OPTIONS, ListOptions
from app.outfit_sources import look_sources, with_look_sources
from app.pipeline import (
    AttributeSimilarSource,
    CandidateSource,
    Context,
    Pipeline,
    PopularitySource,
    Reranker,
    Returned,
    SequenceHistory,
    SequenceSource,
    SimilarItemsSource,
)
from app.rendering import Renderer
from app.response_cache import FeedKey, ResponseCache, SimilarKey
from app.runtime import BundleManager, LoadedBundle
from app.served_lists import Served
from app.strategies import StrategyConfig, resolve_weights, segment_of
from app.strategy_sources import NEW_ITEM_DAYS, build_sources
from feature_store.errors import UnknownItem
from feature_store.schema import Category, InteractionType
from feature_store.served_lists import template

SIMILAR_EVIDENCE_HALF = 5.0
CONSIDERING = frozenset(
    {
        InteractionType.VIEW,
        InteractionType.CLICK,
        InteractionType.ADD_TO_CART,
        InteractionType.WISHLIST,
    }
)
NOT_CONSIDERING = frozenset(
    {InteractionType.PURCHASE, InteractionType.RETURN}
)  # an item bought by this many customers gets CF and content alike


class SessionStep(Protocol):
    item_id: str
    size: str | None
    type: InteractionType


class Feeds:
    """Personalized feeds (a strategy per segment and surface), sessions and similar items."""

    def __init__(
        self,
        bundles: BundleManager,
        customers: Customers,
        responses: ResponseCache,
        renderer: Renderer,
        clock: Clock,
        *,
        strategies_file: Path | None = None,
        experiments_file: Path | None = None,
        bandit: Reranker | None = None,
        new_item_days: float = NEW_ITEM_DAYS,
        learned_ranker: bool = False,
    ) -> None:
        self.bundles = bundles
        self.learned_ranker = learned_ranker  # the bundle's learned ranker fuses personalized feeds
        self.bandit = bandit  # ranks personalized feeds when on for the request
        self.customers = customers
        self.responses = responses
        self.renderer = renderer
        popular = PopularitySource()
        self.popular = popular
        self.non_personalized_pipeline = Pipeline(sources=[(popular, 1.0)], fallback=popular)
        self.session_source = SequenceSource()
        self.session_pipeline = Pipeline(sources=[(self.session_source, 1.0)], fallback=popular)
        self.similar_source = SimilarItemsSource()
        self.attribute_source = AttributeSimilarSource()
        sources = build_sources(new_item_days)  # ``new_arrivals``: the bandit's window
        sources["popular"] = popular
        # Complete the look and seasonal picks: nameable in a strategies file, and added to every
        # strategy at modest weights (app/outfit_sources.py) when it does not name them.
        self.look_sources = look_sources(clock)
        sources.update(self.look_sources)
        self.strategies = StrategyConfig.from_file(strategies_file, sources)
        self.clock = clock
        self.experiments = Experiments.from_file(
            experiments_file, sources, set(self.strategies.surfaces) | {SESSION_SURFACE}
        )

    def _check_store(self, bundle: LoadedBundle, store_id: str | None) -> None:
        if store_id is not None and store_id not in bundle.stock.store_code:
            raise UnknownStore(store_id)

    def _serve(
        self,
        pipeline: Pipeline,
        ctx: Context,
        *,
        surface: str,
        customer_id: str | None = None,
        item_id: str | None = None,
        extra: dict[str, Any] | None = None,
        fallback: bool = False,
        segment: str | None = None,
        strategy_surface: str | None = None,
        record_customer_id: str | None = None,
    ) -> Served:
        """Blend the candidates and render the list (a ``fallback`` one when the request had
        nothing to go on, whatever the pipeline found), with its served-list record template:
        per position the item, its source and the propensity the ranking step reported. The
        record names the customer (``record_customer_id``) only when their data made the list
        (consent, and a history or profile to use), so nothing is recorded of an erased one."""
        ranked = pipeline.run(ctx)
        ctx.fallback_used = ctx.fallback_used or fallback
        body = self.renderer.ranked_list(
            ranked, ctx, surface=surface, customer_id=customer_id, item_id=item_id, extra=extra
        )
        ids = ctx.bundle.catalog.ids
        record = template(
            surface=surface,
            model_version=ctx.bundle.version,
            positions=[(ids.id(c.item), c.source, c.propensity) for c in ranked],
            segment=segment,
            customer_id=record_customer_id,
            strategy_surface=strategy_surface,
            variant=ctx.variant,
            policy=ctx.policy,
        )
        return Served(body, record)

    # -- personalized ---------------------------------------------------------------------------

    def personalized(
        self,
        customer_id: str,
        *,
        k: int,
        category: Category | None,
        exclude_purchased: bool,
        surface: str = "home",
        in_stock_in_my_size: bool = False,
        store_id: str | None = None,
        options: ListOptions = NO_OPTIONS,
    ) -> bytes:
        key, compute = self.personalized_request(
            customer_id,
            k=k,
            category=category,
            exclude_purchased=exclude_purchased,
            surface=surface,
            in_stock_in_my_size=in_stock_in_my_size,
            store_id=store_id,
            options=options,
        )
        return self.responses.get_or_compute(key, compute)

    def personalized_request(
        self,
        customer_id: str,
        *,
        k: int,
        category: Category | None,
        exclude_purchased: bool,
        surface: str,
        in_stock_in_my_size: bool,
        store_id: str | None,
        options: ListOptions,
    ) -> tuple[FeedKey, Callable[[], Served]]:
        """The cache key of a personalized list and the computation of the list, for a route's
        :meth:`ResponseCache.respond` (on the event loop, or in the thread pool when a part it
        touches would block)."""
        bundle = self.bundles.current
        self._check_store(bundle, store_id)
        self.strategies.for_segment(surface, "default")  # unknown surface → 422 before caching
        cat = category.value if category is not None else None
        assignment = self.experiments.assign(surface, customer_id, experiments_now(self.clock))
        key = FeedKey(
            version=bundle.version,
            customer_id=customer_id,
            k=k,
            category=cat,
            exclude_purchased=exclude_purchased,
            surface=surface,
            in_stock_in_my_size=in_stock_in_my_size,
            store_id=store_id,
            options=options,
            variant=assignment.label if assignment is not None else None,
        )

        def compute() -> Served:
            view = self.customers.read(bundle, customer_id)
            # a customer without personalization consent is in no experiment
            in_experiment = assignment if view.consent else None
            if view.consent:
                ctx = self.customers.context(bundle, view, k=k, category=cat)
                ctx.profile = view.profile
                segment = segment_of(view.profile)
                ctx.surface, ctx.segment = surface, segment
                strategy, rrf_k = resolve_weights(
                    self._strategy(surface, segment, in_experiment), bundle.blend
                )
                # the look sources join first, so a variant can reweight them too
                strategy = with_look_sources(strategy, self.look_sources)
                if in_experiment is not None:
                    in_experiment.apply(ctx)
                    strategy, rrf_k = in_experiment.reweighted(strategy, rrf_k)
                pipeline = Pipeline(
                    sources=strategy,
                    fallback=self.popular,
                    rrf_k=rrf_k,
                    reranker=self.bandit,
                    learned_ranker=self.learned_ranker,
                )
            else:  # no consent: a non-personalized list, nothing of theirs is used
                ctx = Context(bundle=bundle, k=k, category=cat, customer_id=customer_id)
                segment = "default"
                pipeline = self.non_personalized_pipeline
            ctx.in_stock_in_my_size = in_stock_in_my_size
            ctx.store_id = store_id
            used_their_data = view.consent and (ctx.customer_index is not None or bool(ctx.recent))
            options.apply(ctx)
            if not exclude_purchased:  # what they returned stays out unless in another size
                ctx.exclude = ctx.never_again()
            return self._serve(
                pipeline,
                ctx,
                surface="personalized",
                customer_id=customer_id,
                extra={
                    "segment": segment,
                    "personalized": view.consent,
                    "strategy_surface": surface,
                    **_experiment_field(in_experiment),
                },
                fallback=ctx.user_vector is None,  # nothing to personalize
                segment=segment,
                strategy_surface=surface,
                record_customer_id=customer_id if used_their_data else None,
            )

        return key, compute

    def _strategy(
        self, surface: str, segment: str, assignment: Assignment | None
    ) -> list[tuple[CandidateSource, float | None]]:
        """The surface's strategy for the segment, or the assigned variant's override of it."""
        strategy = self.strategies.for_segment(surface, segment)
        return strategy if assignment is None else assignment.strategy(segment, strategy)

    # -- anonymous sessions ---------------------------------------------------------------------

    def session(
        self,
        steps: Sequence[SessionStep],
        *,
        k: int,
        category: Category | None = None,
        exclude_seen: bool = True,
        options: ListOptions = NO_OPTIONS,
        session_id: str | None = None,
    ) -> bytes:
        """Recommendations for an anonymous session (item ids in time order, optionally with the
        size and event type of each step) from the LSTM sequence model; best sellers fill in when
        the bundle has no sequence model or the list comes up short. With a ``session_id`` the
        session takes part in the experiment running on the ``session`` surface, if any."""
        bundle = self.bundles.current
        catalog = bundle.catalog
        items: list[int] = []
        for step in steps:
            item = catalog.ids.index(step.item_id)
            if item is None:
                raise UnknownItem(step.item_id)
            items.append(item)
        now = self.customers.now_seconds(bundle)
        history = SequenceHistory(
            items=np.asarray(items, dtype=np.int64),
            sizes=[step.size for step in steps],
            types=[TYPE_ORDER.index(step.type) for step in steps],
            timestamps=np.full(len(items), now, dtype=np.int64),
        )
        cat = category.value if category is not None else None
        ctx = options.apply(Context(bundle=bundle, k=k, category=cat, sequence=history, now=now))
        # looked at in this session (viewed, clicked, carted, wishlisted), not bought
        looked = {i for i, s in zip(items, steps, strict=True) if s.type in CONSIDERING}
        ctx.considered = looked - {
            i for i, s in zip(items, steps, strict=True) if s.type in NOT_CONSIDERING
        }
        if exclude_seen:
            ctx.exclude = set(items)
        assignment = self.experiments.assign(
            SESSION_SURFACE, session_id, experiments_now(self.clock)
        )
        pipeline = self.session_pipeline
        if assignment is not None:
            assignment.apply(ctx)
            default: list[tuple[CandidateSource, float | None]] = [(self.session_source, 1.0)]
            strategy, rrf_k = resolve_weights(assignment.strategy("default", default), bundle.blend)
            strategy, rrf_k = assignment.reweighted(strategy, rrf_k)
            pipeline = Pipeline(sources=strategy, fallback=self.popular, rrf_k=rrf_k)
        served = self._serve(
            pipeline,
            ctx,
            surface="session",
            fallback=bundle.sequence is None,
            extra=_experiment_field(assignment),
        )
        return self.responses.show(served)

    # -- similar --------------------------------------------------------------------------------

    def similar(
        self,
        item_id: str,
        *,
        k: int,
        customer_id: str | None = None,
        in_stock_in_my_size: bool = False,
        store_id: str | None = None,
        options: ListOptions = NO_OPTIONS,
    ) -> bytes:
        key, compute = self.similar_request(
            item_id,
            k=k,
            customer_id=customer_id,
            in_stock_in_my_size=in_stock_in_my_size,
            store_id=store_id,
            options=options,
        )
        return self.responses.get_or_compute(key, compute)

    def similar_request(
        self,
        item_id: str,
        *,
        k: int,
        customer_id: str | None,
        in_stock_in_my_size: bool,
        store_id: str | None,
        options: ListOptions,
    ) -> tuple[SimilarKey, Callable[[], Served]]:
        """The cache key of a similar-items list and its computation (see
        :meth:`personalized_request`)."""
        bundle = self.bundles.current
        item = bundle.catalog.ids.index(item_id)
        if item is None:
            raise UnknownItem(item_id)
        self._check_store(bundle, store_id)
        if in_stock_in_my_size and customer_id is None:
            raise CustomerRequired("in_stock_in_my_size needs customer_id (whose size?)")
        # Customer-specific lists (sizes) are cached with the customer's lists, so their events,
        # consent changes and erasure drop them too.
        key = SimilarKey(
            version=bundle.version,
            item_id=item_id,
            k=k,
            store_id=store_id,
            customer_id=customer_id,
            in_stock_in_my_size=in_stock_in_my_size,
            options=options,
        )

        def compute() -> Served:
            profile = None
            returned: dict[int, Returned] = {}
            considered: set[int] = set()
            if customer_id is not None:
                view = self.customers.read(bundle, customer_id)
                profile = view.personal_profile
                returned, considered = self.customers.items_of(bundle, view)
            ctx = Context(
                bundle=bundle,
                k=k,
                anchor_item=item,
                exclude={item},
                customer_id=customer_id,
                profile=profile,
                in_stock_in_my_size=in_stock_in_my_size,
                store_id=store_id,
                returned=returned,
                considered=considered,
            )
            options.apply(ctx)
            ctx.exclude |= ctx.never_again()
            return self._serve(
                self.similar_pipeline(bundle, item),
                ctx,
                surface="similar",
                item_id=item_id,
                customer_id=customer_id,
                record_customer_id=customer_id if profile is not None else None,
            )

        return key, compute

    def prior_weights(self) -> dict[tuple[str, str], dict[str, float]]:
        """Per (strategy surface, segment): each source's resolved weight, as the bandit's prior
        is given it (empty before a bundle is loaded)."""
        if not self.bundles.loaded:
            return {}
        blend = self.bundles.current.blend
        out: dict[tuple[str, str], dict[str, float]] = {}
        for surface, table in self.strategies.surfaces.items():
            for segment, strategy in table.items():
                resolved, _ = resolve_weights(strategy, blend)
                weights: dict[str, float] = {}
                for source, weight in with_look_sources(resolved, self.look_sources):
                    if weight > 0:
                        weights[source.name] = max(weights.get(source.name, 0.0), weight)
                out[(surface, segment)] = weights
        return out

    def similar_pipeline(self, bundle: LoadedBundle, item: int) -> Pipeline:
        """Collaborative similarity weighted by how much evidence the anchor item has; content
        similarity carries items with little or no history."""
        evidence = float(bundle.item_evidence[item])
        cf_weight = evidence / (evidence + SIMILAR_EVIDENCE_HALF)
        return Pipeline(
            sources=[(self.similar_source, cf_weight), (self.attribute_source, 1.0 - cf_weight)],
            fallback=self.popular,
        )


def _experiment_field(assignment: Assignment | None) -> dict[str, Any]:
    """The body's ``experiment`` field, only when the request is in an experiment (bodies
    outside experiments stay as they were)."""
    return {} if assignment is None else {"experiment": assignment.body()}
