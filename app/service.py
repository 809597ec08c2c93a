"""The recommendation service: glues bundle, online store, event log, cache and pipeline together.

Routes call this; it never speaks HTTP. Lists are cached per customer (or item) as serialised bytes
without the ``recommendation_id``, which is spliced in fresh for every response.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from app.cache import Cache
from app.metrics import Metrics
from app.pipeline import (
    ALSSource,
    AttributeSimilarSource,
    Candidate,
    Context,
    Pipeline,
    PopularitySource,
    SimilarItemsSource,
)
from app.runtime import BundleManager, LoadedBundle
from feature_store.errors import StoreUnavailable, UnknownItem
from feature_store.event_log import EventLog
from feature_store.online_store import OnlineStore
from feature_store.schema import INTERACTION_WEIGHTS, Category, Interaction, InteractionType

logger = logging.getLogger("lookbook.app")

SIMILAR_EVIDENCE_HALF = 5.0  # an item bought by this many customers gets CF and content alike


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

    # -- personalized ---------------------------------------------------------------------------

    def personalized(
        self, customer_id: str, *, k: int, category: Category | None, exclude_purchased: bool
    ) -> bytes:
        bundle = self.bundles.current
        cat = category.value if category is not None else None
        group = f"{bundle.version}:c:{customer_id}"
        key = f"rec:{k}:{cat or ''}:{int(exclude_purchased)}"
        rid = new_recommendation_id()
        cached = self.cache.get(group, key)
        if cached is not None:
            self.metrics.cache_requests.labels(kind="personalized", result="hit").inc()
            return with_recommendation_id(cached, rid)
        self.metrics.cache_requests.labels(kind="personalized", result="miss").inc()
        ctx = self._customer_context(bundle, customer_id, k=k, category=cat)
        if not exclude_purchased:
            ctx.exclude = set()
        ranked = self.personalized_pipeline.run(ctx)
        ctx.fallback_used = ctx.fallback_used or ctx.user_vector is None  # nothing to personalize
        body = self._render(bundle, ranked, ctx, surface="personalized", customer_id=customer_id)
        self.cache.set(group, key, body, self.cache_ttl)
        return with_recommendation_id(body, rid)

    def _customer_context(
        self, bundle: LoadedBundle, customer_id: str, *, k: int, category: str | None
    ) -> Context:
        """History, exclusions and the customer's vector: the trained one, or folded in afresh
        from training history plus events that arrived since (so every event counts at once)."""
        ctx = Context(bundle=bundle, k=k, category=category, customer_id=customer_id)
        idx = bundle.customers.index(customer_id)
        items = np.empty(0, dtype=np.int64)
        weights = np.empty(0, dtype=np.float32)
        exclude: set[int] = set()
        if idx is not None:
            items, weights = bundle.history(idx)
            exclude.update(int(i) for i in bundle.purchased(idx))
        recent = self._recent(customer_id)
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

    def similar(self, item_id: str, *, k: int) -> bytes:
        bundle = self.bundles.current
        item = bundle.catalog.ids.index(item_id)
        if item is None:
            raise UnknownItem(item_id)
        group = f"{bundle.version}:i:{item_id}"
        key = f"sim:{k}"
        rid = new_recommendation_id()
        cached = self.cache.get(group, key)
        if cached is not None:
            self.metrics.cache_requests.labels(kind="similar", result="hit").inc()
            return with_recommendation_id(cached, rid)
        self.metrics.cache_requests.labels(kind="similar", result="miss").inc()
        ctx = Context(bundle=bundle, k=k, anchor_item=item, exclude={item})
        ranked = self._similar_pipeline(bundle, item).run(ctx)
        body = self._render(bundle, ranked, ctx, surface="similar", item_id=item_id)
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
        self.metrics.events.labels(outcome="accepted").inc(len(valid))
        self.metrics.events.labels(outcome="rejected").inc(len(rejected))
        return len(valid), rejected

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
            items.append(entry)
        body: dict[str, Any] = {
            "model_version": bundle.version,
            "surface": surface,
            "customer_id": customer_id,
            "item_id": item_id,
            "fallback": ctx.fallback_used,
            "items": items,
        }
        return orjson.dumps(body)
