"""Consent and erasure: what a customer allowed, and forgetting a customer everywhere.

:class:`PrivacyLedger` is this replica's memory of both (erasures from the event log's tombstones,
revocations it has seen) and decides a customer's consent from what the stores said.
:class:`Privacy` serves ``PUT /v1/customers/{id}/consent`` and ``DELETE /v1/customers/{id}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.metrics import Metrics
from app.outage_log import OutageWarning
from app.response_cache import ResponseCache
from app.runtime import BundleManager, LoadedBundle
from feature_store.attribution_store import AttributionStore
from feature_store.errors import StoreUnavailable
from feature_store.event_log import EventLog
from feature_store.event_store import EventStore
from feature_store.online_store import OnlineStore
from feature_store.profiles import LiveProfiles
from models.bundle import list_bundles

logger = logging.getLogger("lookbook.app")
_store_down = OutageWarning(logger)


class PrivacyLedger:
    """Customers erased (tombstoned in the event log) and when — bundle data about them that
    predates the erasure is never served — and the revocations this replica has seen, honoured
    even while the online store is down.

    Erasures through other replicas reach it through the online store (every customer read
    brings the customer's erasure time: :meth:`learn`) and the event log's tombstones."""

    def __init__(self, erased: dict[str, datetime], *, loaded: bool = True) -> None:
        self.erased = erased
        self.revoked: set[str] = set()
        self.loaded = loaded  # False: the event store's erasures could not be read yet
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, datetime]:
        """A copy of the erasures known now (safe to iterate while others learn more)."""
        with self._lock:
            return dict(self.erased)

    def learn(self, customer_id: str, erased_at: datetime) -> bool:
        """Record an erasure (possibly made by another replica); True when it is news."""
        with self._lock:
            known = self.erased.get(customer_id)
            if known is not None and known >= erased_at:
                return False
            self.erased[customer_id] = erased_at
            self.revoked.discard(customer_id)
            return True

    @classmethod
    def load(cls, event_store: EventStore, metrics: Metrics) -> PrivacyLedger:
        """The ledger of the erasures in ``event_store``; an empty one not ``loaded`` (to
        :meth:`reload` later) when the store is unreachable, so the service still starts."""
        ledger = cls({}, loaded=False)
        ledger.reload(event_store, metrics)
        return ledger

    def reload(self, event_store: EventStore, metrics: Metrics) -> bool:
        """Merge the erasures recorded in ``event_store`` (True when it could be read)."""
        try:
            erased = event_store.erased_customers()
        except StoreUnavailable as exc:
            metrics.event_store_errors.labels(operation="read").inc()
            _store_down.warn("event store unavailable, erasures not loaded yet: %s", exc)
            return False
        with self._lock:
            for customer_id, erased_at in erased.items():
                known = self.erased.get(customer_id)
                self.erased[customer_id] = erased_at if known is None else max(known, erased_at)
        self.loaded = True
        return True

    def bundle_index(self, bundle: LoadedBundle, customer_id: str) -> int | None:
        """The customer's row in the bundle; None when unknown or erased after its data."""
        erased_at = self.erased.get(customer_id)
        if erased_at is not None and bundle.trained_until < erased_at:
            return None
        return bundle.customers.index(customer_id)

    def consent(
        self, customer_id: str, flag: bool | None, *, store_down: bool, recorded: bool | None
    ) -> bool:
        """Personalization consent: the flag set through the API (``flag``, from the online store,
        shared by replicas), else the one in the customer's profile (``recorded``: the retailer's
        customers table), else True. While the store is down (``store_down``), revocations this
        replica has seen still count."""
        if flag is not None:
            return flag
        if store_down and customer_id in self.revoked:
            return False
        return True if recorded is None else recorded


class Privacy:
    """Consent changes and erasure, through every store that holds something of the customer."""

    def __init__(
        self,
        bundles: BundleManager,
        store: OnlineStore,
        event_log: EventStore,
        responses: ResponseCache,
        metrics: Metrics,
        ledger: PrivacyLedger,
        profiles: Callable[[], LiveProfiles | None],
        attribution: AttributionStore | None = None,
    ) -> None:
        self.bundles = bundles
        self.store = store
        self.event_log = event_log
        self.responses = responses
        self.metrics = metrics
        self.ledger = ledger
        self.profiles = profiles  # the live profiles of the served bundle (None: none loaded)
        self.attribution = attribution  # attributed touches (served-list records expire)

    def consent(self, customer_id: str) -> bool:
        """The customer's consent, from the online store's flag and the batch profiles."""
        flag: bool | None = None
        down = False
        try:
            flag = self.store.consent(customer_id)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            _store_down.warn("online store unavailable, consent from this replica only: %s", exc)
            down = True
        recorded: bool | None = None
        live = self.profiles() if flag is None else None
        if live is not None:
            state = live.batch.state(customer_id)
            if state is not None:
                recorded = bool(state.get("consent", True))
        return self.ledger.consent(customer_id, flag, store_down=down, recorded=recorded)

    def set_consent(self, customer_id: str, personalization: bool) -> dict[str, Any]:
        if personalization:
            self.ledger.revoked.discard(customer_id)
        else:
            self.ledger.revoked.add(customer_id)
        try:
            self.event_log.record_consent(customer_id, personalization)  # the trainer honours it
        except StoreUnavailable:
            self.metrics.event_store_errors.labels(operation="consent").inc()
            raise
        self.store.set_consent(customer_id, personalization)
        live = self.profiles()
        if live is not None:
            live.set_consent(customer_id, personalization)
        self._invalidate(customer_id)
        return {"customer_id": customer_id, "personalization": personalization}

    def erase(self, customer_id: str) -> dict[str, Any]:
        """Erase a customer everywhere: a durable tombstone in the event log first (readers skip
        their events at once; compaction and the next training remove them physically), then the
        online store (recent events, purchases, consent), the profile states and batch profiles
        (so segments), and every cached list of theirs."""
        try:
            self.event_log.erase_customer(customer_id)
        except StoreUnavailable:
            self.metrics.event_store_errors.labels(operation="erase").inc()
            raise
        erased_at = datetime.now(UTC)
        self.ledger.learn(customer_id, erased_at)
        self.store.erase_customer(customer_id, erased_at)  # other replicas learn it from there
        self.store.profile_states.delete(customer_id)
        if self.attribution is not None:
            self.attribution.erase_customer(customer_id)
        live = self.profiles()
        if live is not None:
            live.erase(customer_id)
        self._invalidate(customer_id)
        return {
            "customer_id": customer_id,
            "erased": True,
            "event_log": (
                "tombstoned: removed from disk at the next compaction or training"
                if isinstance(self.event_log, EventLog)
                else "deleted with the erasure record, in one transaction"
            ),
        }

    def _invalidate(self, customer_id: str) -> None:
        """Drop the customer's lists cached for any published bundle (and the one served)."""
        versions = {info.version for info in list_bundles(self.bundles.bundle_dir)}
        if self.bundles.loaded:
            versions.add(self.bundles.current.version)
        versions.add("none")
        self.responses.invalidate_customer(customer_id, versions)


async def load_erasures(ledger: PrivacyLedger, privacy: Privacy, interval: float) -> None:
    """Until the ledger holds the event store's erasures, try to read them every ``interval``
    seconds (the service started while the event store was unreachable)."""
    while not ledger.loaded:
        await asyncio.sleep(interval)
        if await run_in_threadpool(ledger.reload, privacy.event_log, privacy.metrics):
            logger.info("event store reachable: %d erasures loaded", len(ledger.erased))
