"""The service's parts, wired together once per app (``app.state.service``).

* :class:`~app.feeds.Feeds` — personalized feeds, anonymous sessions, similar items;
* :class:`~app.look.LookService` — complete the look and seasonal picks;
* :class:`~app.customers.Customers` — what a request knows about a customer (one read), the
  live profiles, the profile endpoint;
* :class:`~app.privacy.Privacy` — consent and erasure;
* :class:`~app.ingest.Ingest` — interaction events;
* :class:`~app.response_cache.ResponseCache` — cached bodies under typed keys;
* :class:`~app.served_lists.ServedLists` — every showing's id and served-list record;
* :class:`~app.attribution.Attribution` — events credited to sources, surfaces and variants;
* :class:`~app.bandit.BanditStage` — the bandit: reranks personalized feeds when on, learns from
  the showings of the lists it ranked and from the events attributed to them;
* :class:`~app.size_advice.SizeAdvisor` — size advice for an item;
* :class:`~app.kiosk.KioskService` — the fitting-room kiosk's outfits and cart.

Routes take the part they need (``app.deps``); none of them speaks HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.attribution import Attribution
from app.bandit import BanditStage
from app.cache import Cache, InProcessCache, RedisCache
from app.customers import Clock, Customers
from app.feeds import Feeds
from app.ingest import Ingest
from app.kiosk import KioskService
from app.look import LookService
from app.metrics import Metrics
from app.privacy import Privacy, PrivacyLedger
from app.rendering import Renderer
from app.response_cache import ResponseCache
from app.runtime import BundleManager
from app.served_lists import ServedLists
from app.size_advice import SizeAdvisor
from feature_store.attribution_store import (
    AttributionStore,
    InMemoryAttributionStore,
    RedisAttributionStore,
)
from feature_store.bandit_state import BanditState, InMemoryBanditState, RedisBanditState
from feature_store.event_store import EventStore
from feature_store.impression_log import ImpressionLog
from feature_store.online_store import InMemoryOnlineStore, OnlineStore, RedisOnlineStore
from models.bandit import Bandit, BanditConfig


class RecommendationService:
    """Builds the parts over one bundle manager, online store, event log, cache, attribution
    store and impression log."""

    def __init__(
        self,
        bundles: BundleManager,
        store: OnlineStore,
        event_log: EventStore,
        cache: Cache,
        metrics: Metrics,
        *,
        cache_ttl_seconds: float,
        recent_events: int = 100,
        strategies_file: Path | None = None,
        experiments_file: Path | None = None,
        attribution_store: AttributionStore,
        impression_log: ImpressionLog | None = None,
        attribution_window_seconds: float,
        bandit: Bandit | None = None,
        bandit_seed: int | None = None,
        learned_ranker: bool = False,
    ) -> None:
        self.bundles = bundles
        self.store = store
        self.event_log = event_log
        self.cache = cache
        self.metrics = metrics
        self.clock = Clock()
        self.ledger = PrivacyLedger.load(event_log, metrics)
        self.attribution_store = attribution_store
        if bandit is None:  # off by default, in-process (an experiment may still turn it on)
            config = BanditConfig()
            bandit = Bandit(config, InMemoryBanditState(config.half_life_seconds))
        self.bandit = BanditStage(bandit, metrics, seed=bandit_seed)
        self.served_lists = ServedLists(
            attribution_store, impression_log, metrics, bandit=self.bandit
        )
        self.attribution = Attribution(
            attribution_store,
            metrics,
            bundles,
            window_seconds=attribution_window_seconds,
            bandit=self.bandit,
        )
        self.customers = Customers(
            bundles, store, metrics, self.ledger, self.clock, recent_events=recent_events
        )
        self.responses = ResponseCache(
            cache,
            metrics,
            ttl_seconds=cache_ttl_seconds,
            served=self.served_lists,
            prefetch=self.customers.prefetch,
            in_process=isinstance(cache, InProcessCache)
            and isinstance(store, InMemoryOnlineStore)
            and isinstance(attribution_store, InMemoryAttributionStore)
            and isinstance(bandit.state, InMemoryBanditState),
            on_loop=_joins_cache_batches(cache, store, attribution_store, bandit.state),
        )
        renderer = Renderer(metrics)
        self.privacy = Privacy(
            bundles,
            store,
            event_log,
            self.responses,
            metrics,
            self.ledger,
            self.customers.loaded_profiles,
            attribution_store,
        )
        self.ingest = Ingest(
            bundles,
            store,
            event_log,
            self.responses,
            metrics,
            self.customers,
            self.privacy,
            self.attribution,
        )
        self.feeds = Feeds(
            bundles,
            self.customers,
            self.responses,
            renderer,
            self.clock,
            strategies_file=strategies_file,
            experiments_file=experiments_file,
            bandit=self.bandit,
            new_item_days=bandit.config.new_item_days,
            learned_ranker=learned_ranker,
        )
        self.look = LookService(bundles, self.customers, self.responses, renderer, self.clock)
        self.size_advice = SizeAdvisor(bundles, self.customers)
        self.kiosk = KioskService(
            bundles,
            self.customers,
            self.responses,
            renderer,
            self.clock,
            self.size_advice,
            self.ingest,
        )

    def bandit_report(self) -> dict[str, Any]:
        """``GET /v1/admin/bandit``: every arm of every strategy (prior from its weights) and
        every arm with evidence."""
        return self.bandit.report(self.feeds.prior_weights())

    def close(self) -> None:
        """Write what is still queued for the impression log and close the event store (the
        app's shutdown)."""
        self.served_lists.close()
        self.event_log.close()


def _joins_cache_batches(
    cache: Cache, store: OnlineStore, attribution_store: AttributionStore, state: BanditState
) -> bool:
    """Whether the cache is in Redis and every other part a list's showing or computation touches
    is in this process or on the cache's Redis client — then each of its Redis commands joins
    one of the request's two batches, which :class:`ResponseCache` can await on the event loop."""
    if not isinstance(cache, RedisCache):
        return False
    client = cache.client
    return (
        isinstance(store, RedisOnlineStore)
        and store.client is client
        and (
            isinstance(attribution_store, InMemoryAttributionStore)
            or (
                isinstance(attribution_store, RedisAttributionStore)
                and attribution_store.client is client
            )
        )
        and (
            isinstance(state, InMemoryBanditState)
            or (isinstance(state, RedisBanditState) and state.client is client)
        )
    )
