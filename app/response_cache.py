"""The response cache: typed keys for every cached list and one read-through helper.

Each kind of list has its key type (:class:`FeedKey`, :class:`SimilarKey`,
:class:`ComplementaryKey`, :class:`SeasonalKey`); a key names its cache group and its field in it.
A list that depends on a customer sits in that customer's group (:func:`customer_group`), and
:meth:`ResponseCache.invalidate_customer` drops that group, so an event, a consent change or an
erasure drops every list of theirs. Every cached surface goes through
:meth:`ResponseCache.get_or_compute`; bodies are stored without ``recommendation_id`` and served
with a fresh one — with the list's served-list record template beside them
(:func:`app.served_lists.pack`), so every showing, a cache hit too, is recorded under its own id
(:meth:`ResponseCache.show`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Protocol

from redis.asyncio import Redis as AsyncRedis
from starlette.concurrency import run_in_threadpool

from app.cache import Cache, InProcessCache
from app.list_options import NO_OPTIONS, ListOptions
from app.metrics import Metrics
from app.rendering import new_recommendation_id, with_recommendation_id
from app.served_lists import Served, ServedLists, pack, unpack
from feature_store.redis_batch import RedisBatch, async_twin

#: Queues the read of a customer's online state on a batch (``app.customers.Customers.prefetch``):
#: a context manager within which the request's read of that customer is the queued one, or None
#: when it cannot join the batch.
Prefetch = Callable[[RedisBatch, str], AbstractContextManager[object] | None]


def customer_group(version: str, customer_id: str) -> str:
    """The group of everything cached about one customer for one bundle version."""
    return f"{version}:c:{customer_id}"


class CacheKey(Protocol):
    kind: ClassVar[str]  # the ``kind`` label of ``lookbook_cache_requests_total``

    @property
    def customer_id(self) -> str | None:
        """The customer whose lists these are (their online state is read to compute one)."""
        ...

    @property
    def group(self) -> str: ...

    @property
    def field(self) -> str: ...


@dataclass(frozen=True, slots=True)
class FeedKey:
    """A customer's personalized feed."""

    kind: ClassVar[str] = "personalized"
    version: str
    customer_id: str
    k: int
    category: str | None
    exclude_purchased: bool
    surface: str
    in_stock_in_my_size: bool
    store_id: str | None
    options: ListOptions = NO_OPTIONS
    variant: str | None = None  # the experiment variant's label: variants never share a body

    @property
    def group(self) -> str:
        return customer_group(self.version, self.customer_id)

    @property
    def field(self) -> str:
        return (
            f"rec:{self.k}:{self.category or ''}:{int(self.exclude_purchased)}:{self.surface}:"
            f"{int(self.in_stock_in_my_size)}:{self.store_id or ''}{self.options.key}"
            f"{'' if self.variant is None else ':x' + self.variant}"
        )


@dataclass(frozen=True, slots=True)
class SimilarKey:
    """Items similar to an item; with a customer (their sizes) it is one of the customer's lists."""

    kind: ClassVar[str] = "similar"
    version: str
    item_id: str
    k: int
    store_id: str | None
    customer_id: str | None = None
    in_stock_in_my_size: bool = False
    options: ListOptions = NO_OPTIONS

    @property
    def group(self) -> str:
        if self.customer_id is not None:
            return customer_group(self.version, self.customer_id)
        return f"{self.version}:i:{self.item_id}"

    @property
    def field(self) -> str:
        if self.customer_id is not None:
            return (
                f"sim:{self.item_id}:{self.k}:{int(self.in_stock_in_my_size)}:{self.store_id or ''}"
                f"{self.options.key}"
            )
        return f"sim:{self.k}:{self.store_id or ''}{self.options.key}"


@dataclass(frozen=True, slots=True)
class ComplementaryKey:
    """Complete the look of one item (``single``) or a basket, per customer when one is given."""

    kind: ClassVar[str] = "complementary"
    version: str
    item_ids: tuple[str, ...]  # as requested, duplicates removed
    k: int
    categories: tuple[str, ...] | None
    single: bool
    customer_id: str | None = None
    options: ListOptions = NO_OPTIONS

    @property
    def _basket(self) -> str:
        return "|".join(sorted(self.item_ids))

    @property
    def group(self) -> str:
        if self.customer_id is not None:
            return customer_group(self.version, self.customer_id)
        if self.single:
            return f"{self.version}:i:{self.item_ids[0]}"
        return f"{self.version}:b:{self._basket}"

    @property
    def field(self) -> str:
        cats = ",".join(self.categories) if self.categories is not None else ""
        if self.customer_id is not None:
            return f"cmp:{self._basket}:{self.k}:{cats}:{int(self.single)}{self.options.key}"
        return f"cmp:{self.k}:{cats}{self.options.key}"


@dataclass(frozen=True, slots=True)
class SeasonalKey:
    """Seasonal picks, per customer when one is given."""

    kind: ClassVar[str] = "seasonal"
    version: str
    day: date
    season: str | None
    weather: str | None
    category: str | None
    k: int
    customer_id: str | None = None
    options: ListOptions = NO_OPTIONS

    @property
    def group(self) -> str:
        if self.customer_id is not None:
            return customer_group(self.version, self.customer_id)
        return f"{self.version}:seasonal"

    @property
    def field(self) -> str:
        return (
            f"sea:{self.day:%Y-%m-%d}:{self.season or ''}:{self.weather or ''}:"
            f"{self.category or ''}:{self.k}{self.options.key}"
        )


class ResponseCache:
    """Read-through caching of response bodies under typed keys."""

    def __init__(
        self,
        cache: Cache,
        metrics: Metrics,
        *,
        ttl_seconds: float,
        served: ServedLists | None = None,
        prefetch: Prefetch | None = None,
        in_process: bool = False,
        on_loop: bool = False,
    ) -> None:
        self.cache = cache
        self.metrics = metrics
        self.ttl = ttl_seconds
        self.served = served  # None: showings get ids but are not recorded
        self.prefetch = prefetch  # None: a customer's state is read by the computation alone
        #: every part a showing or a computation touches (cache, served records, bandit, the
        #: customers' online state) is in this process, so :meth:`respond` answers on the event
        #: loop
        self.in_process = in_process
        #: the cache is in Redis and every other part a showing or a computation touches is in
        #: this process or on the cache's Redis client (its commands join the request's batches):
        #: :meth:`respond` answers on the event loop, awaiting each round trip. One blocking read
        #: is left there: the bandit's evidence, read at most once a second per arm set
        #: (``app.bandit.POSTERIOR_SECONDS``) when the bandit is on with its state in Redis
        self.on_loop = on_loop
        self._twin: tuple[asyncio.AbstractEventLoop, AsyncRedis] | None = None

    def cached(self, key: CacheKey) -> bytes | None:
        """The list under ``key``, shown (:meth:`show`), when everything a showing touches is in
        this process and the cache holds it; None otherwise — then :meth:`get_or_compute`, off the
        event loop, reads (and counts) it. Nothing here blocks: a route may call it on the event
        loop and skip the thread-pool hop for a hit."""
        if not self.in_process or not isinstance(self.cache, InProcessCache):
            return None
        raw = self.cache.peek(key.group, key.field)
        if raw is None:
            return None
        self.metrics.cache_requests.labels(kind=key.kind, result="hit").inc()
        return self.show(unpack(raw))

    async def respond(self, key: CacheKey, compute: Callable[[], bytes | Served]) -> bytes:
        """A route's answer for ``key``: :meth:`get_or_compute`, on the event loop when nothing
        in it blocks — everything it touches is in this process, or in Redis on the cache's
        client (``on_loop``), whose round trips are then awaited — else in the thread pool.

        A computation is CPU-bound Python, which under one interpreter lock gains no
        parallelism from the thread pool; there it would cost a hop to a worker thread and back,
        and the loop and the worker would hand the lock to each other while it runs (measured
        with ``benchmarks/serve_latency.py``)."""
        body = self.cached(key)
        if body is not None:
            return body
        if self.in_process:
            return self.get_or_compute(key, compute)
        if self.on_loop:
            batch = self.cache.batch()
            if batch is not None:  # else Redis is down: the thread pool, as below
                return await self._answer_on_loop(key, compute, batch)
        return await run_in_threadpool(self.get_or_compute, key, compute)

    def get_or_compute(self, key: CacheKey, compute: Callable[[], bytes | Served]) -> bytes:
        """The cached list under ``key``, else ``compute()`` stored under it (with its record
        template); either way shown (:meth:`show`) with a fresh ``recommendation_id``.

        In Redis a miss costs two round trips: one reads the cached value, the group's generation
        and — for a customer's list — the customer's online state (which the computation then
        uses instead of reading it again); one stores the list, its showing's record and the
        bandit's impressions. A hit costs the read and the record."""
        steps = self._answer(key, compute, self.cache.batch())
        try:
            while True:
                next(steps).execute()
        except StopIteration as done:
            return done.value

    async def _answer_on_loop(
        self, key: CacheKey, compute: Callable[[], bytes | Served], batch: RedisBatch
    ) -> bytes:
        """:meth:`get_or_compute` with each round trip awaited on the event loop."""
        if self._twin is None or self._twin[0] is not asyncio.get_running_loop():
            self._twin = (asyncio.get_running_loop(), async_twin(batch.client))
        client = self._twin[1]
        steps = self._answer(key, compute, batch)
        try:
            while True:
                await next(steps).execute_async(client)
        except StopIteration as done:
            return done.value

    def _answer(
        self, key: CacheKey, compute: Callable[[], bytes | Served], batch: RedisBatch | None
    ) -> Generator[RedisBatch, None, bytes]:
        """:meth:`get_or_compute` without I/O: it yields each batch for the caller to execute
        (blocking or awaited), then carries on; ``batch`` is the first one (None: in process, or
        Redis down)."""
        customer_id = key.customer_id
        # the generation is read with the value, before the customer's state (queued first) and
        # the computation: an event invalidating the group meanwhile makes the store a no-op, so
        # a list computed before the event is never cached after it
        found = self.cache.lookup(key.group, key.field, batch)
        prefetched = None
        if batch is not None and customer_id is not None and self.prefetch is not None:
            prefetched = self.prefetch(batch, customer_id)
        if batch is not None:
            yield batch
        raw, generation = found.result()
        result = "hit" if raw is not None else "miss"
        self.metrics.cache_requests.labels(kind=key.kind, result=result).inc()
        batch = None
        if raw is not None:
            served = unpack(raw)
            if self.served is not None and served.template is not None:
                batch = self.cache.batch()  # the showing's record
        else:
            with prefetched if prefetched is not None else nullcontext():
                computed = compute()
            served = computed if isinstance(computed, Served) else Served(computed)
            batch = self.cache.batch()
            self.cache.set(
                key.group,
                key.field,
                pack(served),
                self.ttl,
                generation=generation,
                check=True,
                batch=batch,
            )
        body = self.show(served, batch)
        if batch is not None:
            yield batch  # the record is kept before the response is returned
        return body

    async def aclose(self) -> None:
        """Close the asyncio Redis client of :meth:`respond`, if this loop opened one."""
        if self._twin is not None and self._twin[0] is asyncio.get_running_loop():
            await self._twin[1].aclose()
        self._twin = None

    def show(self, served: Served, batch: RedisBatch | None = None) -> bytes:
        """One showing of a list: a fresh ``recommendation_id`` and, with a template, its record
        (queued on ``batch`` when given and the attribution store shares its client)."""
        if self.served is None:
            return with_recommendation_id(served.body, new_recommendation_id())
        return self.served.show(served, batch)

    def invalidate_customer(self, customer_id: str, versions: Iterable[str]) -> None:
        """Drop every list of the customer cached for any of the bundle ``versions``."""
        for version in versions:
            self.cache.invalidate(customer_group(version, customer_id))
