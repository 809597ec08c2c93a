"""Event ingestion: validate, append durably, update the online store and live profiles, and
invalidate the lists of every customer concerned (``POST /v1/events``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from app.attribution import Attribution
from app.customers import Customers
from app.metrics import Metrics
from app.privacy import Privacy
from app.response_cache import ResponseCache
from app.runtime import BundleManager
from feature_store.errors import StoreUnavailable
from feature_store.event_log import EventLog
from feature_store.online_store import OnlineStore
from feature_store.schema import Interaction

logger = logging.getLogger("lookbook.app")


class Ingest:
    """Accepts interaction events."""

    def __init__(
        self,
        bundles: BundleManager,
        store: OnlineStore,
        event_log: EventLog,
        responses: ResponseCache,
        metrics: Metrics,
        customers: Customers,
        privacy: Privacy,
        attribution: Attribution | None = None,
    ) -> None:
        self.bundles = bundles
        self.store = store
        self.event_log = event_log
        self.responses = responses
        self.metrics = metrics
        self.customers = customers
        self.privacy = privacy
        self.attribution = attribution

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
            self._attribute(valid)
            version = self.bundles.current.version if self.bundles.loaded else "none"
            for customer in {event.customer_id for event in valid}:
                self.responses.invalidate_customer(customer, [version])
            self._update_profiles(valid)
        self.metrics.events.labels(outcome="accepted").inc(len(valid))
        self.metrics.events.labels(outcome="rejected").inc(len(rejected))
        return len(valid), rejected

    def _attribute(self, events: Sequence[Interaction]) -> None:
        """Credit the events to the lists that led to them (app/attribution.py); an outage of
        the attribution store is logged: the events are durable, their credit is lost."""
        if self.attribution is None:
            return
        try:
            self.attribution.attribute(events)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            logger.warning("attribution store unavailable; events not attributed: %s", exc)

    def _update_profiles(self, events: Sequence[Interaction]) -> None:
        """Fold accepted events into the live profiles (RFM, stage at once; sizes and affinities
        only with consent). A profile-store outage is logged: the event is already durable."""
        if not self.bundles.loaded:
            return
        bundle = self.bundles.current
        live = self.customers.profiles(bundle)
        if live is None:
            return
        now = self.customers.now(bundle)
        consent: dict[str, bool] = {}
        try:
            for event in events:
                if event.customer_id not in consent:
                    consent[event.customer_id] = self.privacy.consent(event.customer_id)
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
