"""Prometheus metrics of the service, on a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "lookbook_request_latency_seconds",
            "Request latency per route template, method and status class.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache_requests = Counter(
            "lookbook_cache_requests_total",
            "Cache lookups by kind of list and result (hit or miss).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.cache_errors = Gauge(
            "lookbook_cache_errors",
            "Cache backend errors seen so far (Redis unreachable, timeouts).",
            registry=self.registry,
        )
        self.events = Counter(
            "lookbook_events_total",
            "Interaction events received, by outcome (accepted or rejected).",
            ["outcome"],
            registry=self.registry,
        )
        self.online_store_errors = Counter(
            "lookbook_online_store_errors_total",
            "Online store operations that failed (the request was answered without it).",
            registry=self.registry,
        )
        self.event_store_errors = Counter(
            "lookbook_event_store_errors_total",
            "Event store operations that failed (store unreachable: events and consent or "
            "erasure changes refused with a 503), by operation (append, consent, erase, read, "
            "compact).",
            ["operation"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "lookbook_model_info",
            "The loaded model bundle (value 1 for the version being served).",
            ["version"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "lookbook_model_loaded", "1 when a model bundle is loaded.", registry=self.registry
        )
        self.bundle_rejected = Counter(
            "lookbook_bundle_rejected",
            "Published bundles refused because they could not be loaded (the served one stays).",
            registry=self.registry,
        )
        self.recommendations = Counter(
            "lookbook_recommendations_total",
            "Lists served, by surface and whether the fallback filled them.",
            ["surface", "fallback"],
            registry=self.registry,
        )

        # Attribution (app/served_lists.py, app/attribution.py); variant "none" outside experiments
        self.impressions = Counter(
            "lookbook_impressions_total",
            "Positions shown in served lists, by the source that filled them, surface and variant.",
            ["source", "surface", "variant"],
            registry=self.registry,
        )
        self.attributed_events = Counter(
            "lookbook_attributed_events_total",
            "Clicks, add-to-carts and purchases credited to a source, surface and variant.",
            ["type", "source", "surface", "variant"],
            registry=self.registry,
        )
        self.attributed_revenue = Counter(
            "lookbook_attributed_revenue_total",
            "Revenue of attributed purchases (event price, else catalog price).",
            ["source", "surface", "variant"],
            registry=self.registry,
        )
        self.unattributed_echoes = Counter(
            "lookbook_unattributed_echoes_total",
            "Events echoing a recommendation that could not be attributed, by reason "
            "(unknown_id: unknown or expired; bad_position; other_item; no_position).",
            ["reason"],
            registry=self.registry,
        )
        self.served_list_errors = Counter(
            "lookbook_served_list_errors_total",
            "Served-list records not kept in the online store (store unavailable) or not "
            "queued for the impression log (queue full).",
            ["where"],
            registry=self.registry,
        )

        # The bandit (app/bandit.py)
        self.bandit_weight = Gauge(
            "lookbook_bandit_weight",
            "Each bandit arm's current posterior mean reward per impression (set when a "
            "posterior or the admin report is computed).",
            ["surface", "segment", "source"],
            registry=self.registry,
        )
        self.bandit_errors = Counter(
            "lookbook_bandit_errors_total",
            "Bandit state operations that failed (read: ranked with the prior; impressions, "
            "event: the evidence was dropped).",
            ["where"],
            registry=self.registry,
        )

    def set_model(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)
        self.model_loaded.set(1)
