"""Event ingestion: validate, append durably, update the online store and live profiles, and
invalidate the lists of every customer concerned (``POST /v1/events``).

Events accepted while the online store is unreachable are durable (the event log) and also kept
in memory, in order, in a bounded backlog (``MAX_BACKLOG`` events; beyond it the oldest are dropped
from the backlog, counted and logged — they stay in the durable log for training). The backlog is
recorded into the online store, before the new events, by the next ingestion that finds the store
reachable. Outage warnings are logged once per outage and store, with the count when it ends.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from pydantic import ValidationError

from app.attribution import Attribution
from app.customers import Customers
from app.metrics import Metrics
from app.privacy import Privacy
from app.response_cache import ResponseCache
from app.runtime import BundleManager
from feature_store.errors import StoreUnavailable
from feature_store.event_store import EventStore
from feature_store.online_store import OnlineStore
from feature_store.schema import Interaction

logger = logging.getLogger("lookbook.app")


class _OutageLog:
    """One warning when a store becomes unavailable, one line with the count when it is back."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._lock = threading.Lock()
        self._failures = 0

    def failed(self, consequence: str, exc: Exception) -> None:
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        if first:
            logger.warning("%s unavailable; %s: %s", self.what, consequence, exc)

    def succeeded(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            logger.warning("%s is back after %d failed ingestions", self.what, failures)


class Ingest:
    """Accepts interaction events."""

    #: Events kept for the online store while it is unreachable (beyond: the oldest are dropped).
    MAX_BACKLOG: Final = 100_000

    def __init__(
        self,
        bundles: BundleManager,
        store: OnlineStore,
        event_log: EventStore,
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
        self._backlog: deque[Interaction] = deque()
        self._backlog_lock = threading.Lock()
        self.backlog_dropped = 0  # events dropped from a full backlog since start
        self._store_outage = _OutageLog("online store")
        self._attribution_outage = _OutageLog("attribution store")
        self._profiles_outage = _OutageLog("profile states")

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
            try:
                self.event_log.append(valid)  # durable before acknowledged
            except StoreUnavailable:
                self.metrics.event_store_errors.labels(operation="append").inc()
                raise  # 503 with Retry-After: nothing of the batch was acknowledged
            self._record(valid)
            self._attribute(valid)
            version = self.bundles.current.version if self.bundles.loaded else "none"
            for customer in {event.customer_id for event in valid}:
                self.responses.invalidate_customer(customer, [version])
            self._update_profiles(valid)
        self.metrics.events.labels(outcome="accepted").inc(len(valid))
        self.metrics.events.labels(outcome="rejected").inc(len(rejected))
        return len(valid), rejected

    def _record(self, events: Sequence[Interaction]) -> None:
        """Record the backlog, then ``events``, into the online store; while it is unreachable,
        keep them (in order) in the bounded backlog."""
        with self._backlog_lock:  # one writer at a time keeps the order of the backlog
            pending = [*self._backlog, *events]
            try:
                self.store.record(pending)
            except StoreUnavailable as exc:
                self.metrics.online_store_errors.inc()
                self._backlog.extend(events)
                overflow = len(self._backlog) - self.MAX_BACKLOG
                for _ in range(max(overflow, 0)):
                    self._backlog.popleft()
                if overflow > 0:
                    self.backlog_dropped += overflow
                    logger.warning(
                        "online store backlog full: %d oldest events dropped from it (they are "
                        "in the durable log)",
                        overflow,
                    )
                self._store_outage.failed(
                    f"{len(self._backlog)} events kept to replay (and in the durable log)", exc
                )
                return
            replayed = len(self._backlog)
            self._backlog.clear()
        self._store_outage.succeeded()
        if replayed:
            logger.warning("online store: %d events accepted during its outage applied", replayed)

    def backlog(self) -> int:
        """Accepted events not yet in the online store."""
        with self._backlog_lock:
            return len(self._backlog)

    def _attribute(self, events: Sequence[Interaction]) -> None:
        """Credit the events to the lists that led to them (app/attribution.py); an outage of
        the attribution store is logged: the events are durable, their credit is lost."""
        if self.attribution is None:
            return
        try:
            self.attribution.attribute(events)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            self._attribution_outage.failed("events not attributed", exc)
            return
        self._attribution_outage.succeeded()

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
                    self.customers.check_erasure(event.customer_id)  # by another replica?
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
            self._profiles_outage.failed("events are in the durable log", exc)
            return
        self._profiles_outage.succeeded()
