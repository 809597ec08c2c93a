"""Attribution: which source, surface and experiment variant gets the credit for an event.

* A click, add-to-cart or purchase that echoes ``recommendation_id`` and ``position`` is credited
  to the source that filled that position of that served list (its record in the attribution
  store), on the list's surface and variant — provided the position exists and holds the event's
  item. An echo of an unknown or expired id, without a position, of a position outside the list or
  of another item is accepted like any event and left unattributed, but counted by reason
  (``unknown_id``, ``no_position``, ``bad_position``, ``other_item``).
* A purchase without a usable echo is credited when the same customer had an attributed click or
  add-to-cart of the same item within the attribution window before it (event times; the window
  is ``LOOKBOOK_ATTRIBUTION_WINDOW_DAYS``, default 7 days): the latest such touch gets the credit.
* Every other event stays unattributed. Returns do not take revenue back.
* An event credited to a position of a list the bandit ranked is also the bandit's reward for that
  position's arm (:meth:`app.bandit.BanditStage.reward_arm`) — a purchase credited through the
  window too: the touch keeps the bandit's (strategy surface, segment).

Counters per credit — impressions (counted when a list is shown, :mod:`app.served_lists`),
clicks, add-to-carts, purchases and revenue (the event's ``price``, else the catalog price) — are
kept in the attribution store (Redis hash increments when Redis is configured, so replicas add
up), exported to Prometheus and reported by :meth:`Attribution.report`
(``GET /v1/admin/attribution``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from app.bandit import BanditStage
from app.metrics import Metrics
from app.runtime import BundleManager
from feature_store.attribution_store import COUNTS, AttributionStore, Credit, Touch
from feature_store.schema import Interaction, InteractionType
from feature_store.served_lists import ServedList
from feature_store.timeutils import SECONDS_PER_DAY

#: The events attribution credits, and the counter each one increments.
ATTRIBUTED: Final = {
    InteractionType.CLICK: "clicks",
    InteractionType.ADD_TO_CART: "add_to_carts",
    InteractionType.PURCHASE: "purchases",
}
_TOUCHES: Final = (InteractionType.CLICK, InteractionType.ADD_TO_CART)
#: The counters the attribution report shows (the sum of squared revenue serves experiments).
REPORTED: Final = tuple(name for name in COUNTS if name != "revenue_squares")


class Attribution:
    """Credits accepted events and reports the counters."""

    def __init__(
        self,
        store: AttributionStore,
        metrics: Metrics,
        bundles: BundleManager,
        *,
        window_seconds: float,
        bandit: BanditStage | None = None,
    ) -> None:
        self.store = store
        self.bandit = bandit
        self.metrics = metrics
        self.bundles = bundles
        self.window_seconds = window_seconds

    def attribute(self, events: Sequence[Interaction]) -> int:
        """Credit what can be credited (in batch order: a click earlier in the batch credits a
        purchase later in it); return how many events were attributed. Raises
        :class:`StoreUnavailable` when the store cannot be reached (the caller logs it: the events
        are durable already)."""
        counts: dict[Credit, dict[str, float]] = {}
        attributed = 0
        for event in events:
            counter = ATTRIBUTED.get(event.type)
            if counter is None:
                continue
            echoed = self._echoed(event) if event.recommendation_id is not None else None
            credit = echoed[0] if echoed is not None else None
            at = event.timestamp.timestamp()
            arm = BanditStage.arm_of(echoed[1]) if echoed is not None else None
            if credit is None and event.type is InteractionType.PURCHASE:
                touch = self.store.touch(event.customer_id, event.item_id)
                if touch is not None and 0.0 <= at - touch.at <= self.window_seconds:
                    credit, arm = touch.credit, touch.arm
            if credit is None:
                continue
            attributed += 1
            row = counts.setdefault(credit, {})
            row[counter] = row.get(counter, 0.0) + 1.0
            source, surface, variant = credit
            labels = {"source": source, "surface": surface, "variant": variant or "none"}
            self.metrics.attributed_events.labels(type=event.type.value, **labels).inc()
            revenue = 0.0
            if event.type is InteractionType.PURCHASE:
                revenue = self._price(event)
                row["revenue"] = row.get("revenue", 0.0) + revenue
                row["revenue_squares"] = row.get("revenue_squares", 0.0) + revenue * revenue
                self.metrics.attributed_revenue.labels(**labels).inc(revenue)
            elif event.type in _TOUCHES:
                self.store.remember_touch(
                    event.customer_id, event.item_id, Touch(source, surface, variant, at, arm)
                )
            if arm is not None and self.bandit is not None:
                self.bandit.reward_arm(arm, source, event.type, at, revenue)
        if counts:
            self.store.add(counts)
        return attributed

    def _echoed(self, event: Interaction) -> tuple[Credit, ServedList] | None:
        """The credit of the position the event echoes and the list's record, or None (counted
        by reason)."""
        assert event.recommendation_id is not None
        record = self.store.get_served(event.recommendation_id)
        if record is None:
            self._unattributed("unknown_id")
            return None
        if event.position is None:
            self._unattributed("no_position")
            return None
        if event.position >= len(record.items):
            self._unattributed("bad_position")
            return None
        position = record.items[event.position]
        if position.item_id != event.item_id:
            self._unattributed("other_item")
            return None
        return (position.source, record.surface, record.variant), record

    def _unattributed(self, reason: str) -> None:
        self.metrics.unattributed_echoes.labels(reason=reason).inc()
        self.store.count_unattributed(reason)

    def _price(self, event: Interaction) -> float:
        if event.price is not None:
            return float(event.price)
        if not self.bundles.loaded:
            return 0.0
        catalog = self.bundles.current.catalog
        item = catalog.ids.index(event.item_id)
        return float(catalog.prices[item]) if item is not None else 0.0

    def report(self) -> dict[str, Any]:
        """One row per source × surface × variant (counts, click-through rate = clicks /
        impressions, add-to-cart rate and conversion rate = purchases / impressions; rates are
        None without impressions), the unattributed echoes by reason, and the window."""
        rows = []
        for (source, surface, variant), values in sorted(
            self.store.counts().items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "")
        ):
            row: dict[str, Any] = {"source": source, "surface": surface, "variant": variant}
            for name in REPORTED:
                row[name] = round(values[name], 2) if name == "revenue" else int(values[name])
            shown = row["impressions"]
            row["click_through_rate"] = row["clicks"] / shown if shown else None
            row["add_to_cart_rate"] = row["add_to_carts"] / shown if shown else None
            row["conversion_rate"] = row["purchases"] / shown if shown else None
            rows.append(row)
        return {
            "attribution_window_days": self.window_seconds / SECONDS_PER_DAY,
            "rows": rows,
            "unattributed": self.store.unattributed(),
        }

    def erase_customer(self, customer_id: str) -> None:
        """Forget the customer's touches (part of erasure; raises :class:`StoreUnavailable` like
        the online store's erasure does)."""
        self.store.erase_customer(customer_id)
