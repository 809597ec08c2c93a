"""App factory: ``create_app()`` builds a FastAPI app whose lifespan loads the newest bundle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import redis
from fastapi import FastAPI
from redis.connection import parse_url
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import threadpool_limits

from app.auth import SCOPE_RESPONSES, AuthMiddleware, require_scope
from app.auth import Scope as ApiScope  # starlette.types.Scope is the ASGI scope
from app.body_limit import BodyLimitMiddleware
from app.bundle_probe import FeedProbe
from app.cache import Cache, InProcessCache, RedisCache
from app.erasure import compact_periodically, install_access_log_redaction
from app.errors import install_error_handlers
from app.metrics import Metrics
from app.outage_log import OutageWarning
from app.privacy import load_erasures
from app.request_log import RequestLogMiddleware
from app.routes import (
    admin,
    complementary,
    customers,
    events,
    health,
    items,
    kiosk,
    profiles,
    seasonal,
    segments,
    sessions,
)
from app.runtime import BundleManager
from app.service import RecommendationService
from app.settings import Settings
from app.strategy_sources import bundle_stats
from feature_store.attribution_store import (
    AttributionStore,
    InMemoryAttributionStore,
    RedisAttributionStore,
)
from feature_store.bandit_state import BanditState, InMemoryBanditState, RedisBanditState
from feature_store.errors import LookbookError, StoreUnavailable
from feature_store.event_store import EventStore, open_event_store
from feature_store.impression_log import ImpressionLog
from feature_store.online_store import InMemoryOnlineStore, OnlineStore, RedisOnlineStore
from feature_store.timeutils import SECONDS_PER_DAY
from models.bandit import Bandit
from models.index import ItemIndex

logger = logging.getLogger("lookbook.app")
_erasures_down = OutageWarning(logger)


class LatencyMiddleware:
    """Pure ASGI middleware: one histogram observation per request, labelled by route template,
    and a ``Server-Timing: app;dur=<ms>`` header (time until the response starts)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed_ms = (time.perf_counter() - start) * 1000.0
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(
                route=template, method=scope.get("method", ""), status=f"{status // 100}xx"
            ).observe(time.perf_counter() - start)


def build_store(settings: Settings) -> OnlineStore:
    """The online store (with the customers' profile states): in Redis when ``REDIS_URL`` is set
    (shared by replicas; profile states at ``{prefix}profile:{customer_id}``), else in this
    process."""
    if settings.redis_url:
        return RedisOnlineStore(
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            max_recent=settings.recent_events_per_customer,
        )
    return InMemoryOnlineStore(
        max_recent=settings.recent_events_per_customer,
        max_customers=settings.online_max_customers,
    )


def shared_redis_client(settings: Settings, store: OnlineStore | None) -> redis.Redis | None:
    """The online store's Redis client when it is the Redis at ``REDIS_URL``: the response cache
    and the attribution store use it too, so one round trip (a
    :class:`~feature_store.redis_batch.RedisBatch`) can carry the commands of all three."""
    if not settings.redis_url or not isinstance(store, RedisOnlineStore):
        return None
    wanted = parse_url(settings.redis_url)
    kwargs = store.client.connection_pool.connection_kwargs
    same = all(
        kwargs.get(name, default) == wanted.get(name, default)
        for name, default in (("host", "localhost"), ("port", 6379), ("db", 0), ("path", None))
    )
    return store.client if same else None


def build_attribution_store(
    settings: Settings, store: OnlineStore | None = None
) -> AttributionStore:
    """Served-list records, attributed touches and attribution counters: in Redis when
    ``REDIS_URL`` is set (replicas add up; on the online store's client when it is that Redis),
    else in this process (bounded)."""
    window = settings.attribution_window_days * SECONDS_PER_DAY
    if settings.redis_url:
        client = shared_redis_client(settings, store)
        return RedisAttributionStore(
            client,
            url=None if client is not None else settings.redis_url,
            prefix=settings.redis_prefix,
            served_ttl_seconds=settings.served_list_ttl_seconds,
            touch_ttl_seconds=window,
        )
    return InMemoryAttributionStore(
        served_ttl_seconds=settings.served_list_ttl_seconds,
        touch_ttl_seconds=window,
        max_records=settings.served_list_max_records,
        max_touches=settings.served_list_max_records,
    )


def build_bandit(settings: Settings, store: OnlineStore) -> Bandit:
    """The bandit with its state: in Redis when ``REDIS_URL`` is set (the online store's client
    when it is the Redis one; replicas add up), else in this process."""
    config = settings.bandit
    state: BanditState
    if isinstance(store, RedisOnlineStore):
        state = RedisBanditState(config.half_life_seconds, store.client, prefix=store.prefix)
    elif settings.redis_url:
        state = RedisBanditState(
            config.half_life_seconds, url=settings.redis_url, prefix=settings.redis_prefix
        )
    else:
        state = InMemoryBanditState(config.half_life_seconds)
    return Bandit(config, state)


def build_event_store(settings: Settings) -> EventStore:
    """Events, consent and erasures: in PostgreSQL when ``LOOKBOOK_DATABASE_URL`` is set (every
    replica writes it), else the file log in ``event_log_dir``."""
    return open_event_store(
        settings.database_url or settings.event_log_dir,
        shared=True,  # the file log: a writer slot per process (workers, replicas)
        pool_size=settings.database_pool_size,
        timeout_seconds=settings.database_timeout_seconds,
    )


def build_cache(settings: Settings, store: OnlineStore | None = None) -> Cache:
    """The response cache: in Redis when ``REDIS_URL`` is set (on the online store's client when
    it is that Redis), else in this process."""
    if settings.redis_url:
        client = shared_redis_client(settings, store)
        if client is not None:
            return RedisCache(client=client, prefix=f"{settings.redis_prefix}cache:")
        return RedisCache(settings.redis_url, prefix=f"{settings.redis_prefix}cache:")
    return InProcessCache(max_groups=settings.cache_max_customers)


async def _watch_bundles(app: FastAPI, interval: float) -> None:
    bundles: BundleManager = app.state.bundles
    service: RecommendationService = app.state.service
    while True:
        await asyncio.sleep(interval)
        try:
            # on a thread of its own: checking a candidate never takes a request's worker thread
            await asyncio.to_thread(bundles.refresh)
        except Exception:  # the watcher must outlive any failure; bad bundles are rejected
            logger.exception("could not look for a newer bundle, still serving the old one")
        try:  # erasures made through other replicas (in the shared event store)
            await run_in_threadpool(
                lambda: service.customers.sync_erasures(service.event_log.erased_customers())
            )
        except StoreUnavailable as exc:
            _erasures_down.warn("event store unavailable, erasures not synchronised: %s", exc)
        except Exception:
            logger.exception("could not read the event store's erasures")


def create_app(
    settings: Settings | None = None,
    *,
    store: OnlineStore | None = None,
    cache: Cache | None = None,
    attribution_store: AttributionStore | None = None,
) -> FastAPI:
    """Build the service. ``store``, ``cache`` and ``attribution_store`` override the ones the
    settings would choose."""
    settings = settings or Settings()
    metrics = Metrics()
    store = store if store is not None else build_store(settings)
    bundles = BundleManager(
        settings.bundle_dir,
        warmups=[
            bundle_stats,
            lambda bundle: bundle.item_similarity,
            lambda bundle: bundle.category_content,
        ],
        on_rejected=lambda _: metrics.bundle_rejected.inc(),
        probe_budget_seconds=settings.bundle_probe_budget_seconds,
        on_swapped=lambda b: metrics.set_model(b.version, b.manifest.created_timestamp),
    )
    event_log = build_event_store(settings)
    impression_log = ImpressionLog(
        settings.impressions_dir, flush_seconds=settings.impression_log_flush_seconds
    )
    service = RecommendationService(
        bundles,
        store,
        event_log,
        cache if cache is not None else build_cache(settings, store),
        metrics,
        cache_ttl_seconds=settings.cache_ttl_seconds,
        recent_events=settings.recent_events_per_customer,
        strategies_file=settings.strategies_file,
        experiments_file=settings.experiments_file,
        attribution_store=(
            attribution_store
            if attribution_store is not None
            else build_attribution_store(settings, store)
        ),
        impression_log=impression_log,
        attribution_window_seconds=settings.attribution_window_days * SECONDS_PER_DAY,
        bandit=build_bandit(settings, store),
        bandit_seed=settings.bandit_seed,
        learned_ranker=settings.learned_ranker,
    )
    bundles.probes.append(FeedProbe(service.feeds, service.customers))
    bundles.warmups.append(service.kiosk.warm)  # the kiosk's per-bundle tables

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One request = one small query: single-threaded FAISS and BLAS give the lowest latency
        # (and leave the other core to the event loop and other requests).
        ItemIndex.set_threads(1)
        blas_limit = threadpool_limits(limits=1, user_api="blas")
        # Routes are CPU-bound: a few pool threads keep both cores busy, while dozens of threads
        # fighting over the GIL double the cost of every request under overload.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        try:
            if await run_in_threadpool(bundles.refresh):
                await run_in_threadpool(service.customers.profiles)  # live profiles over the batch
        except LookbookError as exc:
            logger.error("no usable bundle at start-up: %s", exc)
        if not bundles.loaded:
            logger.warning("no bundle in %s yet: not ready until one appears", settings.bundle_dir)
        tasks = []
        if settings.bundle_poll_seconds > 0:
            tasks.append(asyncio.create_task(_watch_bundles(app, settings.bundle_poll_seconds)))
        if not service.ledger.loaded:  # the event store was unreachable: read them when back
            tasks.append(asyncio.create_task(load_erasures(service.ledger, service.privacy, 5.0)))
        if settings.compaction_seconds > 0:
            tasks.append(
                asyncio.create_task(
                    compact_periodically(event_log, impression_log, settings.compaction_seconds)
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            blas_limit.restore_original_limits()
            await service.responses.aclose()  # its asyncio Redis client, of this event loop
            await run_in_threadpool(service.close)  # the impression log's queued records

    app = FastAPI(
        title="Lookbook",
        version="0.1.0",
        summary="Recommendations for fashion retail",
        lifespan=lifespan,
    )
    install_access_log_redaction()  # uvicorn's access log never names a customer
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.bundles = bundles
    app.state.service = service
    app.state.api_keys = settings.keyring
    if settings.keyring.open:
        logger.warning(
            "no API keys configured (LOOKBOOK_API_KEYS_FILE, LOOKBOOK_API_KEYS): every endpoint "
            "is open to anyone who can reach this port; `lookbook keys new` makes a key"
        )
    install_error_handlers(app)
    # Every router gets its scope here (app/auth.py; tests/test_auth.py fails on a route without).
    for router, scope in (
        (customers.router, ApiScope.READ),
        (profiles.router, ApiScope.CUSTOMERS),
        (segments.router, ApiScope.CUSTOMERS),
        (items.router, ApiScope.READ),
        (complementary.router, ApiScope.READ),
        (seasonal.router, ApiScope.READ),
        (sessions.router, ApiScope.READ),
        (events.router, ApiScope.EVENTS),
        (kiosk.router, ApiScope.KIOSK),
        (admin.router, ApiScope.ADMIN),
    ):
        app.include_router(router, dependencies=[require_scope(scope)], responses=SCOPE_RESPONSES)
    app.include_router(health.router)  # open: liveness and readiness
    app.include_router(kiosk.page_router)  # open: the kiosk page's static files, no data
    app.include_router(
        health.metrics_router,
        dependencies=[require_scope(ApiScope.ADMIN)] if settings.metrics_require_key else [],
        responses=SCOPE_RESPONSES if settings.metrics_require_key else None,
    )
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            events.add_event_schemas(base_openapi())
        return app.openapi_schema or base_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        limits_by_path={"/v1/events": settings.max_events_body_bytes},
    )
    # Before the body limit: a request without a key is refused before its body is read.
    app.add_middleware(AuthMiddleware, keys=settings.keyring, routes=app.router)
    app.add_middleware(
        RequestLogMiddleware,
        metrics=metrics,
        model_version=lambda: bundles.current.version if bundles.loaded else None,
    )
    app.add_middleware(LatencyMiddleware, metrics=metrics)  # outermost: times the 413s too
    return app
