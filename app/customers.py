"""What a request knows about a customer, gathered once.

:meth:`Customers.read` makes the one online-store call of a request
(:meth:`~feature_store.online_store.OnlineStore.customer_state`: consent, profile state, recent
events, purchases) and derives the customer's consent and live profile from it; the
:class:`CustomerView` it returns is passed down the request. :meth:`Customers.context` turns a
view into the pipeline's :class:`~app.pipeline.Context` (history, exclusions, the customer's
vector, sequence and purchases). While the online store is down a view holds the bundle's
knowledge alone.

In Redis, a cached list's lookup also reads the customer's state in the same round trip
(:meth:`Customers.prefetch`, from :meth:`app.response_cache.ResponseCache.get_or_compute`): within
the computation of the list, :meth:`Customers.read` takes that state instead of reading it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np

from app.metrics import Metrics
from app.outage_log import OutageWarning
from app.pipeline import Context, PurchaseHistory, Returned, SequenceHistory
from app.privacy import PrivacyLedger
from app.runtime import BundleManager, LoadedBundle
from app.strategies import segment_of
from feature_store.errors import StoreUnavailable, UnknownCustomer
from feature_store.online_store import CustomerState, OnlineStore
from feature_store.profiles import LiveProfiles, preferred_size
from feature_store.redis_batch import Pending, RedisBatch
from feature_store.schema import (
    INTERACTION_WEIGHTS,
    SIZE_RETURN_REASONS,
    Interaction,
    InteractionType,
    ReturnReason,
)

logger = logging.getLogger("lookbook.app")
_store_down = OutageWarning(logger)

TYPE_ORDER: list[InteractionType] = list(InteractionType)  # the sequence model's type codes
#: Event types that are not steps of a sequence (the model is trained without them).
NOT_SEQUENCE_STEPS = frozenset({InteractionType.IMPRESSION, InteractionType.RETURN})


class Clock:
    """The service's wall clock (replaceable, e.g. to serve as of a bundle's last day)."""

    def __init__(self) -> None:
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now()

    def set(self, now: Callable[[], datetime]) -> None:
        self.now = now


@dataclass(frozen=True, slots=True)
class CustomerView:
    """One customer as one request sees them."""

    customer_id: str
    index: int | None  # the customer's row in the bundle (None: unknown or erased)
    consent: bool  # personalization consent
    profile: dict[str, Any] | None  # the live profile (None: unknown, or no profiles in the bundle)
    recent: list[Interaction]  # online events, newest first (empty while the store is down)

    @property
    def personal_profile(self) -> dict[str, Any] | None:
        """The profile when it may personalize (consent), else None."""
        return self.profile if self.consent else None


class PrefetchedState:
    """A customer's state read ahead in another part's round trip; within ``with`` it is what
    :meth:`Customers.read` of that customer takes (this thread and context only)."""

    def __init__(self, customer_id: str, pending: Pending[CustomerState]) -> None:
        self.customer_id = customer_id
        self.pending = pending
        self._tokens: list[Token[PrefetchedState | None]] = []

    def __enter__(self) -> PrefetchedState:
        self._tokens.append(_prefetched.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _prefetched.reset(self._tokens.pop())


_prefetched: ContextVar[PrefetchedState | None] = ContextVar("lookbook_prefetched", default=None)


class Customers:
    """Reads customers once per request; owns the live profiles over the served bundle."""

    def __init__(
        self,
        bundles: BundleManager,
        store: OnlineStore,
        metrics: Metrics,
        ledger: PrivacyLedger,
        clock: Clock,
        *,
        recent_events: int = 100,
    ) -> None:
        self.bundles = bundles
        self.store = store
        self.metrics = metrics
        self.ledger = ledger
        self.clock = clock
        self.recent_events = recent_events
        self._live: LiveProfiles | None = None
        self._live_version: str | None = None
        self._live_lock = threading.Lock()

    # -- time and profiles ----------------------------------------------------------------------

    def now(self, bundle: LoadedBundle | None = None) -> datetime:
        """Wall-clock time, never before the bundle's data (profiles are not read in the past)."""
        now = self.clock()
        if bundle is not None and bundle.profiles is not None:
            now = max(now, bundle.profiles.as_of)
        return now

    def now_seconds(self, bundle: LoadedBundle) -> int:
        """ "Now" for time-decayed scores (epoch seconds), never before the bundle's data."""
        return int(max(self.now(bundle), bundle.trained_until).timestamp())

    def profiles(self, bundle: LoadedBundle | None = None) -> LiveProfiles | None:
        """The live profiles over the served bundle's batch (swapped when the bundle changes)."""
        bundle = bundle if bundle is not None else self.bundles.current
        batch = bundle.profiles
        if batch is None:
            return None
        with self._live_lock:
            if self._live is None or self._live_version != bundle.version:
                for customer_id, erased_at in self.ledger.snapshot().items():
                    if batch.as_of < erased_at:  # the batch predates the erasure
                        batch.erase(customer_id)
                if self._live is None:
                    self._live = LiveProfiles(batch, states=self.store.profile_states)
                else:
                    self._live.swap(batch)
                self._live_version = bundle.version
            return self._live

    def loaded_profiles(self) -> LiveProfiles | None:
        """The live profiles, or None while no bundle is loaded."""
        return self.profiles() if self.bundles.loaded else None

    # -- erasures through other replicas --------------------------------------------------------

    def learn_erasure(self, customer_id: str, erased_at: datetime) -> None:
        """Honour an erasure (another replica's, possibly): the ledger, and this replica's copy
        of the batch profiles when they predate it."""
        if not self.ledger.learn(customer_id, erased_at):
            return
        live = self.loaded_profiles()
        if live is not None and live.batch.as_of < erased_at:
            live.batch.erase(customer_id)
        logger.info("honouring an erasure made through another replica")

    def check_erasure(self, customer_id: str) -> None:
        """Ask the online store whether the customer was erased (by any replica)."""
        erased_at = self.store.erased_at(customer_id)
        if erased_at is not None:
            self.learn_erasure(customer_id, erased_at)

    def sync_erasures(self, erased: Mapping[str, datetime]) -> int:
        """Honour every erasure of ``erased`` (the event log's tombstones); how many were new."""
        before = len(self.ledger.erased)
        for customer_id, erased_at in erased.items():
            self.learn_erasure(customer_id, erased_at)
        return len(self.ledger.erased) - before

    # -- one read per request -------------------------------------------------------------------

    def prefetch(self, batch: RedisBatch, customer_id: str) -> PrefetchedState | None:
        """The customer's state queued on ``batch`` (when the online store shares its client),
        for :meth:`read` to take within ``with`` once the batch has run; None otherwise."""
        pending = self.store.queue_customer_state(batch, customer_id, self.recent_events)
        return None if pending is None else PrefetchedState(customer_id, pending)

    def read(self, bundle: LoadedBundle, customer_id: str) -> CustomerView:
        """The customer from one online-store read (or the one :meth:`prefetch` queued); from
        the bundle alone while it is down."""
        state: CustomerState | None = None
        prefetched = _prefetched.get()
        try:
            if prefetched is not None and prefetched.customer_id == customer_id:
                state = prefetched.pending.result()
            else:
                state = self.store.customer_state(customer_id, self.recent_events)
        except StoreUnavailable as exc:
            self.metrics.online_store_errors.inc()
            _store_down.warn(
                "online store unavailable, serving from the bundle alone "
                "(batch profile, consent from this replica): %s",
                exc,
            )
        if state is not None and state.erased_at is not None:
            self.learn_erasure(customer_id, state.erased_at)
        profile = self._profile(bundle, customer_id, state)
        recorded = None if profile is None else bool(profile.get("personalization_consent", True))
        consent = self.ledger.consent(
            customer_id,
            None if state is None else state.consent,
            store_down=state is None,
            recorded=recorded,
        )
        return CustomerView(
            customer_id=customer_id,
            index=self.ledger.bundle_index(bundle, customer_id),
            consent=consent,
            profile=profile,
            recent=[] if state is None else list(state.recent),
        )

    def _profile(
        self, bundle: LoadedBundle, customer_id: str, state: CustomerState | None
    ) -> dict[str, Any] | None:
        """The live profile: the online state when it is over the served batch, else the batch's."""
        live = self.profiles(bundle)
        if live is None:
            return None
        online = None if state is None else state.profile_state
        return live.profile_from(customer_id, online, self.now(bundle))

    def profile_body(self, customer_id: str) -> dict[str, Any]:
        """``GET /v1/customers/{id}/profile``: the live profile with consent, segment, version."""
        bundle = self.bundles.current
        view = self.read(bundle, customer_id)
        if view.profile is None:
            raise UnknownCustomer(customer_id)
        profile = view.profile
        profile["personalization_consent"] = view.consent
        profile["segment"] = segment_of(profile) if view.consent else "default"
        profile["model_version"] = bundle.version
        return profile

    # -- the pipeline's context -----------------------------------------------------------------

    def context(
        self, bundle: LoadedBundle, view: CustomerView, *, k: int, category: str | None
    ) -> Context:
        """History, exclusions and the customer's vector: the trained one, or folded in afresh
        from training history plus events that arrived since (so every event counts at once)."""
        ctx = Context(bundle=bundle, k=k, category=category, customer_id=view.customer_id)
        idx = view.index
        ctx.customer_index = idx
        ctx.now = self.now_seconds(bundle)
        items = np.empty(0, dtype=np.int64)
        weights = np.empty(0, dtype=np.float32)
        exclude: set[int] = set()
        if idx is not None:
            items, weights = bundle.history(idx)
            exclude.update(int(i) for i in bundle.purchased(idx))
        recent = view.recent
        ctx.recent = recent
        ctx.sequence = customer_sequence(bundle, idx, recent)
        ctx.purchases = customer_purchases(bundle, idx, recent)
        if recent:
            new_items, new_weights, bought, returned = encode_events(bundle, recent)
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
            ctx.trained_vector = True
        ctx.history = items
        ctx.returned, ctx.considered = customer_items(
            bundle, idx, recent, view.personal_profile, ctx.sequence
        )
        exclude.update(ctx.never_again())
        ctx.exclude = exclude
        return ctx

    def items_of(
        self, bundle: LoadedBundle, view: CustomerView
    ) -> tuple[dict[int, Returned], set[int]]:
        """:func:`customer_items` of a customer who consented (nothing otherwise)."""
        if not view.consent:
            return {}, set()
        sequence = customer_sequence(bundle, view.index, view.recent)
        return customer_items(bundle, view.index, view.recent, view.personal_profile, sequence)


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
    kept = 0
    if customer is not None and customer < model.n_users:
        kept_items, kept_sizes, kept_types, kept_times = model.history_of(customer)
        items, sizes = kept_items.tolist(), list(kept_sizes)
        types, times = kept_types.tolist(), kept_times.tolist()
        kept = len(items)
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
        trained_customer=customer if kept and len(items) == kept else None,
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


def encode_events(
    bundle: LoadedBundle, events: Sequence[Interaction]
) -> tuple[list[int], list[float], set[int], set[int]]:
    """Online events newer than the bundle, as item indices with confidence weights, and the
    items bought and returned (a later return undoes a purchase)."""
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


def customer_items(
    bundle: LoadedBundle,
    customer: int | None,
    recent: Sequence[Interaction],
    profile: dict[str, Any] | None,
    sequence: SequenceHistory | None,
) -> tuple[dict[int, Returned], set[int]]:
    """What the customer did with items, for honest reasons: the items they returned and did
    not buy again (with the size to try instead, if any: :func:`retry_size`), and the items they
    only considered (viewed, clicked, carted, wishlisted — never bought).

    From the bundle (a purchase in ``purchase_history.npz`` not among the kept purchases of
    ``purchases.npz`` was returned; its size and reason from ``returns.npz``, or for bundles
    without it the size bought from the sequence model's steps) and from the online events since
    training (their size and ``return_reason``). Proportional to the customer's history, not
    the catalog."""
    catalog = bundle.catalog
    bought: set[int] = set()
    returned: set[int] = set()
    engaged: set[int] = set()
    sizes: dict[int, str | None] = {}  # the size of the latest purchase (or return) of an item
    reasons: dict[int, ReturnReason | None] = {}
    if customer is not None and bundle.purchase_log is not None:  # older bundles: no returns
        ever = set(bundle.purchase_events(customer)[0].tolist())
        bought |= ever
        returned |= ever - set(bundle.purchased(customer).tolist())
        engaged.update(bundle.history(customer)[0].tolist())
    if sequence is not None:  # sizes bought (bundles without a returns log)
        purchase = TYPE_ORDER.index(InteractionType.PURCHASE)
        for item, size, kind in zip(
            sequence.items.tolist(), sequence.sizes, sequence.types, strict=True
        ):
            if kind == purchase and size is not None:
                sizes[int(item)] = size
    if customer is not None:  # the size and reason of each return in training
        for item, size, why in bundle.returns(customer):
            if size is not None:
                sizes[item] = size
            reasons[item] = _return_reason(why)
    for event in reversed(recent):  # oldest first: a later purchase undoes a return
        item = catalog.ids.index(event.item_id)
        if item is None:
            continue
        new = event.timestamp > bundle.trained_until  # older events are in the bundle already
        if event.type is InteractionType.RETURN:
            if event.size is not None:
                sizes[item] = event.size
            reasons[item] = event.return_reason
            if new:
                returned.add(item)
                bought.add(item)
        elif event.type is InteractionType.PURCHASE:
            if event.size is not None:
                sizes[item] = event.size
            if new:
                bought.add(item)
                returned.discard(item)
                reasons.pop(item, None)
        elif new and INTERACTION_WEIGHTS[event.type] > 0:
            engaged.add(item)
    out = {
        item: Returned(
            size=sizes.get(item),
            reason=reasons.get(item),
            retry=retry_size(bundle, item, sizes.get(item), reasons.get(item), profile),
        )
        for item in sorted(returned)
    }
    return out, engaged - bought


def _return_reason(value: str | None) -> ReturnReason | None:
    try:
        return None if value is None else ReturnReason(value)
    except ValueError:  # a reason this version does not know
        return ReturnReason.OTHER


def retry_size(
    bundle: LoadedBundle,
    item: int,
    size: str | None,
    reason: ReturnReason | None,
    profile: dict[str, Any] | None,
) -> str | None:
    """The size of a returned item worth trying instead, or None (not to be recommended again).

    Returned as too small / too large: the next larger / smaller size the item offers (the size
    profile moves its vote the same way). Reason unknown (a return in the training data): the
    customer's size of the item's category from their profile, when it is another size than the
    one returned. Any other reason (quality, not as described, changed mind …), an unknown size
    or a one-size item: None. With a stock table, the size must be in stock somewhere."""
    offered = list(bundle.catalog.sizes[item])
    if size is None or size not in offered:
        return None
    target: str | None = None
    if reason in SIZE_RETURN_REASONS:
        at = offered.index(size) + (1 if reason is ReturnReason.TOO_SMALL else -1)
        target = offered[at] if 0 <= at < len(offered) else None
    elif reason is None and profile is not None:
        found = preferred_size(profile, str(bundle.catalog.categories[item]), offered)
        target = found[0] if found is not None and found[0] != size else None
    if target is None:
        return None
    if not bundle.stock.empty and bundle.stock.quantity(item, target) <= 0:
        return None
    return target
