"""The recommendation service: glues bundle, online store, event log, cache and pipeline together.

Routes call this; it never speaks HTTP. Lists are cached per customer (or item) as serialised bytes
without the ``recommendation_id``, which is spliced in fresh for every response.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
from pydantic import ValidationError

from app.cache import Cache
from app.errors import CustomerRequired, UnknownStore
from app.look import LookService
from app.metrics import Metrics
from app.outfit_sources import look_sources, with_look_sources
from app.pipeline import (
    ALSSource,
    AttributeSimilarSource,
    Candidate,
    Context,
    Pipeline,
    PopularitySource,
    PurchaseHistory,
    SequenceHistory,
    SequenceSource,
    SimilarItemsSource,
)
from app.runtime import BundleManager, LoadedBundle
from app.strategies import StrategyConfig, build_sources, resolve_weights, segment_of
from feature_store.errors import StoreUnavailable, UnknownCustomer, UnknownItem
from feature_store.event_log import EventLog
from feature_store.online_store import OnlineStore
from feature_store.profiles import InMemoryProfileStates, LiveProfiles, ProfileStateStore
from feature_store.schema import INTERACTION_WEIGHTS, Category, Interaction, InteractionType
from training.bundle import list_bundles

logger = logging.getLogger("lookbook.app")

SIMILAR_EVIDENCE_HALF = 5.0  # an item bought by this many customers gets CF and content alike


TYPE_ORDER: list[InteractionType] = list(InteractionType)  # the sequence model's type codes
#: Event types that are not steps of a sequence (the model is trained without them).
NOT_SEQUENCE_STEPS = frozenset({InteractionType.IMPRESSION, InteractionType.RETURN})


class SessionStep(Protocol):
    item_id: str
    size: str | None
    type: InteractionType


def customer_sequence(
    bundle: LoadedBundle, customer: int | None, recent: Sequence[Interaction]
) -> SequenceHistory | None:
    """The sequence model's input for a customer: the history the model kept at training (for a
    customer in the bundle) followed by their online events since, oldest first; impressions and
    returns are not steps. None when the bundle has no sequence model."""
    model = bundle.sequence
    if model is None:
        return None
    items: list[int] = []
    sizes: list[str | None] = []
    types: list[int] = []
    times: list[int] = []
    if customer is not None and customer < model.n_users:
        kept_items, kept_sizes, kept_types, kept_times = model.history_of(customer)
        items, sizes = kept_items.tolist(), list(kept_sizes)
        types, times = kept_types.tolist(), kept_times.tolist()
    for event in reversed(recent):  # newest first → oldest first
        if event.timestamp <= bundle.trained_until or event.type in NOT_SEQUENCE_STEPS:
            continue
        item = bundle.catalog.ids.index(event.item_id)
        if item is None:
            continue
        items.append(item)
        sizes.append(event.size)
        types.append(TYPE_ORDER.index(event.type))
        times.append(int(event.timestamp.timestamp()))
    keep = slice(-model.config.max_len, None)
    return SequenceHistory(
        items=np.asarray(items[keep], dtype=np.int64),
        sizes=sizes[keep],
        types=types[keep],
        timestamps=np.asarray(times[keep], dtype=np.int64),
    )


def customer_purchases(
    bundle: LoadedBundle, customer: int | None, recent: Sequence[Interaction]
) -> PurchaseHistory:
    """The customer's purchases with their times: the bundle's, then online purchases since."""
    if customer is not None:
        items, times, weights = bundle.purchase_events(customer)
    else:
        items = np.empty(0, np.int64)
        times = np.empty(0, np.int64)
        weights = np.empty(0, np.float64)
    new = [
        (item, int(event.timestamp.timestamp()))
        for event in reversed(recent)
        if event.type is InteractionType.PURCHASE and event.timestamp > bundle.trained_until
        for item in [bundle.catalog.ids.index(event.item_id)]
        if item is not None
    ]
    if new:
        weight = float(INTERACTION_WEIGHTS[InteractionType.PURCHASE])
        items = np.concatenate([items, np.asarray([i for i, _ in new], np.int64)])
        times = np.concatenate([times, np.asarray([t for _, t in new], np.int64)])
        weights = np.concatenate([weights, np.full(len(new), weight, np.float64)])
    return PurchaseHistory(items=items, timestamps=times, weights=weights)


def new_recommendation_id() -> str:
    return uuid.uuid4().hex


def with_recommendation_id(body: bytes, recommendation_id: str) -> bytes:
    """Splice a fresh ``recommendation_id`` in front of a cached ``{...}`` body."""
    return b'{"recommendation_id":"' + recommendation_id.encode() + b'",' + body[1:]


class RecommendationService:
    def __init__(
        self,
        bundles: BundleManager,
        store: OnlineStore,
        event_log: EventLog,
        cache: Cache,
        metrics: Metrics,
        *,
        cache_ttl_seconds: float,
        recent_events: int = 100,
        profile_states: ProfileStateStore | None = None,
        strategies_file: Path | None = None,
    ) -> None:
        self.bundles = bundles
        self.store = store
        self.event_log = event_log
        self.cache = cache
        self.metrics = metrics
        self.cache_ttl = cache_ttl_seconds
        self.recent_events = recent_events
        popular = PopularitySource()
        self.popular = popular
        self.personalized_pipeline = Pipeline(
            sources=[(ALSSource(), 1.0), (popular, 0.2)], fallback=popular
        )
        self.similar_source = SimilarItemsSource()
        self.attribute_source = AttributeSimilarSource()
        self.non_personalized_pipeline = Pipeline(sources=[(popular, 1.0)], fallback=popular)
        self.session_pipeline = Pipeline(sources=[(SequenceSource(), 1.0)], fallback=popular)
        sources = build_sources()
        sources["popular"] = popular
        # Complete the look and seasonal picks: nameable in a strategies file, and added to every
        # strategy at modest weights (app/outfit_sources.py) when it does not name them.
        self.look_sources = look_sources(lambda: self.clock())
        sources.update(self.look_sources)
        self.look = LookService(self)
        self.strategies = StrategyConfig.from_file(strategies_file, sources)
        self.profile_states: ProfileStateStore = (
            profile_states if profile_states is not None else InMemoryProfileStates()
        )
        self.live: LiveProfiles | None = None
        self._live_version: str | None = None
        self._live_lock = threading.Lock()
        # Customers erased (tombstoned in the event log) and when: bundle data about them that
        # predates the erasure is never served.
        self.erased: dict[str, datetime] = event_log.erased_customers()
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # Revocations this replica has seen: honoured even while the online store is down.
        self._revoked: set[str] = set()

    # -- customer intelligence ------------------------------------------------------------------

    def now(self, bundle: LoadedBundle | None = None) -> datetime:
        """Wall-clock time, never before the bundle's data (profiles are not read in the past)."""
        now = self.clock()
        if bundle is not None and bundle.profiles is not None:
            now = max(now, bundle.profiles.as_of)
        return now

    def profiles(self, bundle: LoadedBundle | None = None) -> LiveProfiles | None:
        """The live profiles over the served bundle's batch (swapped when the bundle changes)."""
        bundle = bundle if bundle is not None else self.bundles.current
        batch = bundle.profiles
        if batch is None:
            return None
        with self._live_lock:
            if self.live is None or self._live_version != bundle.version:
                for customer_id, erased_at in self.erased.items():
                    if batch.as_of < erased_at:  # the batch predates the erasure
                        batch.erase(customer_id)
                if self.live is None:
                    self.live = LiveProfiles(batch, states=self.profile_states)
                else:
                    self.live.swap(batch)
                self._live_version = bundle.version
            return self.live

    def _bundle_index(self, bundle: LoadedBundle, customer_id: str) -> int | None:
        erased_at = self.erased.get(customer_id)
        if erased_at is not None and bundle.trained_until < erased_at:
            return None
        return bundle.customers.index(customer_id)

    def _profile(self, bundle: LoadedBundle, customer_id: str) -> dict[str, Any] | None:
        """The live profile; the batch one while the profile-state store is unreachable."""
        live = self.profiles(bundle)
        if live is None:
            return None
        now = self.now(bundle)
        try:
            return live.profile(customer_id, now)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            logger.warning("profile states unavailable, serving the batch profile: %s", exc)
            return live.batch.lookup(customer_id, now)

    def customer_profile(self, customer_id: str) -> dict[str, Any]:
        bundle = self.bundles.current
        profile = self._profile(bundle, customer_id)
        if profile is None:
            raise UnknownCustomer(customer_id)
        consent = self.consent(customer_id, profile)
        profile["personalization_consent"] = consent
        profile["segment"] = segment_of(profile) if consent else "default"
        profile["model_version"] = bundle.version
        return profile

    def consent(self, customer_id: str, profile: dict[str, Any] | None = None) -> bool:
        """Personalization consent: the flag set through the API (online store, shared by
        replicas), else the batch's (the retailer's customers table), else True. While the online
        store cannot be reached, revocations this replica has seen still count."""
        flag: bool | None = None
        try:
            flag = self.store.consent(customer_id)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            logger.warning("online store unavailable, consent from this replica only: %s", exc)
            if customer_id in self._revoked:
                return False
        if flag is not None:
            return flag
        if profile is not None:
            return bool(profile.get("personalization_consent", True))
        if self.bundles.loaded:
            live = self.profiles()
            if live is not None:
                state = live.batch.state(customer_id)
                if state is not None:
                    return bool(state.get("consent", True))
        return True

    def set_consent(self, customer_id: str, personalization: bool) -> dict[str, Any]:
        if personalization:
            self._revoked.discard(customer_id)
        else:
            self._revoked.add(customer_id)
        self.event_log.record_consent(customer_id, personalization)  # the trainer honours it
        self.store.set_consent(customer_id, personalization)
        if self.bundles.loaded:
            live = self.profiles()
            if live is not None:
                live.set_consent(customer_id, personalization)
        self._invalidate_customer(customer_id)
        return {"customer_id": customer_id, "personalization": personalization}

    def erase(self, customer_id: str) -> dict[str, Any]:
        """Erase a customer everywhere: a durable tombstone in the event log first (readers skip
        their events at once; compaction and the next training remove them physically), then the
        online store (recent events, purchases, consent), the profile states and batch profiles
        (so segments), and every cached list of theirs."""
        self.event_log.erase_customer(customer_id)
        self.erased[customer_id] = datetime.now(UTC)
        self._revoked.discard(customer_id)
        self.store.erase_customer(customer_id)
        self.profile_states.delete(customer_id)
        if self.bundles.loaded:
            live = self.profiles()
            if live is not None:
                live.erase(customer_id)
        self._invalidate_customer(customer_id)
        return {
            "customer_id": customer_id,
            "erased": True,
            "event_log": "tombstoned: removed from disk at the next compaction or training",
        }

    def _invalidate_customer(self, customer_id: str) -> None:
        versions = {info.version for info in list_bundles(self.bundles.bundle_dir)}
        if self.bundles.loaded:
            versions.add(self.bundles.current.version)
        versions.add("none")
        for version in versions:
            self.cache.invalidate(f"{version}:c:{customer_id}")

    def _check_store(self, bundle: LoadedBundle, store_id: str | None) -> None:
        if store_id is not None and store_id not in bundle.stock.store_code:
            raise UnknownStore(store_id)

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
    ) -> bytes:
        bundle = self.bundles.current
        self._check_store(bundle, store_id)
        self.strategies.for_segment(surface, "default")  # unknown surface → 422 before caching
        cat = category.value if category is not None else None
        group = f"{bundle.version}:c:{customer_id}"
        key = (
            f"rec:{k}:{cat or ''}:{int(exclude_purchased)}:{surface}:"
            f"{int(in_stock_in_my_size)}:{store_id or ''}"
        )
        rid = new_recommendation_id()
        cached = self.cache.get(group, key)
        if cached is not None:
            self.metrics.cache_requests.labels(kind="personalized", result="hit").inc()
            return with_recommendation_id(cached, rid)
        self.metrics.cache_requests.labels(kind="personalized", result="miss").inc()
        profile = self._profile(bundle, customer_id)
        consent = self.consent(customer_id, profile)
        if consent:
            ctx = self._customer_context(bundle, customer_id, k=k, category=cat)
            ctx.profile = profile
            segment = segment_of(profile)
            strategy, rrf_k = resolve_weights(
                self.strategies.for_segment(surface, segment), bundle.blend
            )
            pipeline = Pipeline(
                sources=with_look_sources(strategy, self.look_sources),
                fallback=self.popular,
                rrf_k=rrf_k,
            )
        else:  # no consent: a non-personalized list, nothing of theirs is used
            ctx = Context(bundle=bundle, k=k, category=cat, customer_id=customer_id)
            segment = "default"
            pipeline = self.non_personalized_pipeline
        ctx.in_stock_in_my_size = in_stock_in_my_size
        ctx.store_id = store_id
        if not exclude_purchased:
            ctx.exclude = set()
        ranked = pipeline.run(ctx)
        ctx.fallback_used = ctx.fallback_used or ctx.user_vector is None  # nothing to personalize
        body = self._render(
            bundle,
            ranked,
            ctx,
            surface="personalized",
            customer_id=customer_id,
            extra={"segment": segment, "personalized": consent, "strategy_surface": surface},
        )
        self.cache.set(group, key, body, self.cache_ttl)
        return with_recommendation_id(body, rid)

    def _customer_context(
        self, bundle: LoadedBundle, customer_id: str, *, k: int, category: str | None
    ) -> Context:
        """History, exclusions and the customer's vector: the trained one, or folded in afresh
        from training history plus events that arrived since (so every event counts at once)."""
        ctx = Context(bundle=bundle, k=k, category=category, customer_id=customer_id)
        idx = self._bundle_index(bundle, customer_id)
        ctx.customer_index = idx
        ctx.now = self._now_seconds(bundle)
        items = np.empty(0, dtype=np.int64)
        weights = np.empty(0, dtype=np.float32)
        exclude: set[int] = set()
        if idx is not None:
            items, weights = bundle.history(idx)
            exclude.update(int(i) for i in bundle.purchased(idx))
        recent = self._recent(customer_id)
        ctx.recent = recent
        ctx.sequence = customer_sequence(bundle, idx, recent)
        ctx.purchases = customer_purchases(bundle, idx, recent)
        if recent:
            new_items, new_weights, bought, returned = self._encode_events(bundle, recent)
            exclude.update(bought)
            exclude.difference_update(returned)
            if len(new_items):
                merged: dict[int, float] = dict(zip(items.tolist(), weights.tolist(), strict=True))
                for item, weight in zip(new_items, new_weights, strict=True):
                    merged[item] = merged.get(item, 0.0) + weight
                positive = [(i, w) for i, w in merged.items() if w > 0]
                items = np.array([i for i, _ in positive], dtype=np.int64)
                weights = np.array([w for _, w in positive], dtype=np.float32)
            if len(items):
                ctx.user_vector = bundle.als.user_vector(items, weights)
        elif idx is not None and len(items):
            ctx.user_vector = bundle.als.user_factors[idx]
        ctx.history = items
        ctx.exclude = exclude
        return ctx

    def _now_seconds(self, bundle: LoadedBundle) -> int:
        """ "Now" for time-decayed scores (epoch seconds), never before the bundle's data."""
        return int(max(self.now(bundle), bundle.trained_until).timestamp())

    # -- anonymous sessions ---------------------------------------------------------------------

    def session(
        self,
        steps: Sequence[SessionStep],
        *,
        k: int,
        category: Category | None = None,
        exclude_seen: bool = True,
    ) -> bytes:
        """Recommendations for an anonymous session (item ids in time order, optionally with the
        size and event type of each step) from the LSTM sequence model; best sellers fill in when
        the bundle has no sequence model or the list comes up short."""
        bundle = self.bundles.current
        catalog = bundle.catalog
        items: list[int] = []
        for step in steps:
            item = catalog.ids.index(step.item_id)
            if item is None:
                raise UnknownItem(step.item_id)
            items.append(item)
        now = self._now_seconds(bundle)
        history = SequenceHistory(
            items=np.asarray(items, dtype=np.int64),
            sizes=[step.size for step in steps],
            types=[TYPE_ORDER.index(step.type) for step in steps],
            timestamps=np.full(len(items), now, dtype=np.int64),
        )
        cat = category.value if category is not None else None
        ctx = Context(bundle=bundle, k=k, category=cat, sequence=history, now=now)
        if exclude_seen:
            ctx.exclude = set(items)
        ranked = self.session_pipeline.run(ctx)
        ctx.fallback_used = ctx.fallback_used or bundle.sequence is None
        return with_recommendation_id(
            self._render(bundle, ranked, ctx, surface="session"), new_recommendation_id()
        )

    def _recent(self, customer_id: str) -> list[Interaction]:
        try:
            return self.store.recent(customer_id, self.recent_events)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            logger.warning("online store unavailable, serving from the bundle alone: %s", exc)
            return []

    @staticmethod
    def _encode_events(
        bundle: LoadedBundle, events: Sequence[Interaction]
    ) -> tuple[list[int], list[float], set[int], set[int]]:
        """Online events newer than the bundle, as item indices with confidence weights."""
        items: list[int] = []
        weights: list[float] = []
        bought: set[int] = set()
        returned: set[int] = set()
        for event in reversed(events):  # oldest first, so a later return undoes a purchase
            if event.timestamp <= bundle.trained_until:
                continue
            item = bundle.catalog.ids.index(event.item_id)
            if item is None:
                continue
            weight = INTERACTION_WEIGHTS[event.type]
            if weight != 0:
                items.append(item)
                weights.append(weight)
            if event.type is InteractionType.PURCHASE:
                bought.add(item)
                returned.discard(item)
            elif event.type is InteractionType.RETURN:
                returned.add(item)
                bought.discard(item)
        return items, weights, bought, returned

    # -- similar --------------------------------------------------------------------------------

    def similar(
        self,
        item_id: str,
        *,
        k: int,
        customer_id: str | None = None,
        in_stock_in_my_size: bool = False,
        store_id: str | None = None,
    ) -> bytes:
        bundle = self.bundles.current
        item = bundle.catalog.ids.index(item_id)
        if item is None:
            raise UnknownItem(item_id)
        self._check_store(bundle, store_id)
        if in_stock_in_my_size and customer_id is None:
            raise CustomerRequired("in_stock_in_my_size needs customer_id (whose size?)")
        profile = None
        if customer_id is not None:
            # Customer-specific lists (sizes) are cached with the customer's lists, so their
            # events, consent changes and erasure drop them too.
            group = f"{bundle.version}:c:{customer_id}"
            key = f"sim:{item_id}:{k}:{int(in_stock_in_my_size)}:{store_id or ''}"
        else:
            group = f"{bundle.version}:i:{item_id}"
            key = f"sim:{k}:{store_id or ''}"
        rid = new_recommendation_id()
        cached = self.cache.get(group, key)
        if cached is not None:
            self.metrics.cache_requests.labels(kind="similar", result="hit").inc()
            return with_recommendation_id(cached, rid)
        self.metrics.cache_requests.labels(kind="similar", result="miss").inc()
        if customer_id is not None and self.consent(customer_id):
            profile = self._profile(bundle, customer_id)
        ctx = Context(
            bundle=bundle,
            k=k,
            anchor_item=item,
            exclude={item},
            customer_id=customer_id,
            profile=profile,
            in_stock_in_my_size=in_stock_in_my_size,
            store_id=store_id,
        )
        ranked = self._similar_pipeline(bundle, item).run(ctx)
        body = self._render(
            bundle, ranked, ctx, surface="similar", item_id=item_id, customer_id=customer_id
        )
        self.cache.set(group, key, body, self.cache_ttl)
        return with_recommendation_id(body, rid)

    def _similar_pipeline(self, bundle: LoadedBundle, item: int) -> Pipeline:
        """Collaborative similarity weighted by how much evidence the anchor item has; content
        similarity carries items with little or no history."""
        evidence = float(bundle.item_evidence[item])
        cf_weight = evidence / (evidence + SIMILAR_EVIDENCE_HALF)
        return Pipeline(
            sources=[(self.similar_source, cf_weight), (self.attribute_source, 1.0 - cf_weight)],
            fallback=self.popular,
        )

    # -- events ---------------------------------------------------------------------------------

    def ingest(self, raw_events: Sequence[Any]) -> tuple[int, list[dict[str, Any]]]:
        """Validate, append durably, update the online store and invalidate caches.

        Returns the number accepted and, for each rejected event, its index and error. Valid events
        are kept even when others in the batch are rejected.
        """
        valid: list[Interaction] = []
        rejected: list[dict[str, Any]] = []
        for index, raw in enumerate(raw_events):
            try:
                valid.append(Interaction.model_validate(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                message = f"{where}: {first['msg']}" if where else str(first["msg"])
                rejected.append({"index": index, "code": "invalid_event", "message": message})
        if valid:
            self.event_log.append(valid)  # durable before acknowledged
            try:
                self.store.record(valid)
            except StoreUnavailable as exc:
                self.metrics.online_store_errors.inc()
                logger.warning("online store unavailable; events are in the durable log: %s", exc)
            version = self.bundles.current.version if self.bundles.loaded else "none"
            for customer in {event.customer_id for event in valid}:
                self.cache.invalidate(f"{version}:c:{customer}")
            self._update_profiles(valid)
        self.metrics.events.labels(outcome="accepted").inc(len(valid))
        self.metrics.events.labels(outcome="rejected").inc(len(rejected))
        return len(valid), rejected

    def _update_profiles(self, events: Sequence[Interaction]) -> None:
        """Fold accepted events into the live profiles (RFM, stage at once; sizes and affinities
        only with consent). A profile-store outage is logged: the event is already durable."""
        if not self.bundles.loaded:
            return
        bundle = self.bundles.current
        live = self.profiles(bundle)
        if live is None:
            return
        now = self.now(bundle)
        consent: dict[str, bool] = {}
        try:
            for event in events:
                if event.customer_id not in consent:
                    consent[event.customer_id] = self.consent(event.customer_id)
                attrs: dict[str, Any] | None = None
                try:
                    attrs = self.store.get_item(event.item_id)
                except StoreUnavailable:
                    attrs = None
                if attrs is None:
                    item = bundle.catalog.ids.index(event.item_id)
                    attrs = bundle.catalog.record(item) if item is not None else None
                live.apply(event, attrs, now, personalization=consent[event.customer_id])
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            logger.warning("profile states unavailable; events are in the durable log: %s", exc)

    # -- rendering ------------------------------------------------------------------------------

    def _render(
        self,
        bundle: LoadedBundle,
        ranked: list[Candidate],
        ctx: Context,
        *,
        surface: str,
        customer_id: str | None = None,
        item_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        self.metrics.recommendations.labels(
            surface=surface, fallback=str(ctx.fallback_used).lower()
        ).inc()
        items = []
        for cand in ranked:
            entry: dict[str, Any] = {
                "item_id": bundle.catalog.ids.id(cand.item),
                "score": round(cand.score, 6),
                "source": cand.source,
                "reason": cand.reason,
            }
            described = bundle.catalog.describe(cand.item)
            del described["item_id"]
            entry.update(described)
            entry["size"] = ctx.size_for(cand.item)
            items.append(entry)
        body: dict[str, Any] = {
            "model_version": bundle.version,
            "surface": surface,
            "customer_id": customer_id,
            "item_id": item_id,
            "fallback": ctx.fallback_used,
            **(extra or {}),
            "items": items,
        }
        return orjson.dumps(body)
