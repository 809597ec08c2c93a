"""Issue "Fast at full size": with Redis, a list costs two round trips — one read (cache lookup,
the group's generation and the customer's online state), one write (the cache set, the
showing's served-list record and the bandit's impressions) — awaited on the event loop when every
part shares the cache's client, and keeps every guarantee: no list computed before an
invalidation is cached after it, a Redis outage never fails a request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from app.cache import RedisCache
from app.main import create_app
from app.metrics import Metrics
from app.response_cache import FeedKey, ResponseCache
from app.served_lists import Served, ServedLists
from app.service import RecommendationService
from app.settings import Settings
from feature_store import redis_batch
from feature_store.attribution_store import RedisAttributionStore
from feature_store.bandit_state import ArmStats, RedisBanditState
from feature_store.errors import StoreUnavailable
from feature_store.online_store import CustomerState, RedisOnlineStore
from feature_store.redis_batch import Pending, RedisBatch, ScriptCall, async_twin
from feature_store.schema import Interaction, InteractionType
from feature_store.served_lists import template
from helpers import RedisServer, free_port, personalized_request
from models.bandit import Bandit, BanditConfig

#: What sends a round trip: the blocking client (the thread pool) and the asyncio one (awaited on
#: the event loop).
_BLOCKING = [
    (redis.Redis, "execute_command"),
    (redis.client.Pipeline, "execute"),
    (redis.client.Pipeline, "immediate_execute_command"),
]
_AWAITED = [
    (redis.asyncio.Redis, "execute_command"),
    (redis.asyncio.client.Pipeline, "execute"),
    (redis.asyncio.client.Pipeline, "immediate_execute_command"),
    (redis_batch, "_round_trip"),  # a batch's commands straight on a pooled connection
]


class Sent:
    """Round trips counted so far; calling it gives them all."""

    def __init__(self) -> None:
        self.blocking = 0
        self.awaited = 0

    def __call__(self) -> int:
        return self.blocking + self.awaited


@contextmanager
def round_trips() -> Iterator[Sent]:
    """Count Redis round trips as ``benchmarks/feed_cost.py`` does (a pipeline is one, and so is
    each command a pipeline sends on its own before it, such as ``SCRIPT EXISTS``), from the
    blocking client and the asyncio one."""
    sent = Sent()
    patched = [(owner, name, getattr(owner, name)) for owner, name in _BLOCKING + _AWAITED]

    def counted(original: Callable[..., Any], kind: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            setattr(sent, kind, getattr(sent, kind) + 1)
            return original(*args, **kwargs)  # an asyncio call's coroutine, awaited there

        return call

    for owner, name, original in patched:
        kind = "blocking" if (owner, name) in _BLOCKING else "awaited"
        setattr(owner, name, counted(original, kind))
    try:
        yield sent
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)


@pytest.fixture(scope="module")
def customer(retailer: tuple[Path, Path]) -> str:
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    return str(frame["customer_id"].value_counts().idxmax())


@pytest.fixture(scope="module")
def item(retailer: tuple[Path, Path]) -> str:
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    return str(frame["item_id"].value_counts().idxmax())


def _settings(bundles: Path, tmp_path: Path, url: str, prefix: str = "lb:") -> Settings:
    return Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=url,
        redis_prefix=prefix,
    )


# -- the service: two round trips a list ----------------------------------------------------------


@pytest.mark.redis
def test_a_list_costs_one_read_and_one_write_round_trip(
    retailer: tuple[Path, Path],
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    customer: str,
    item: str,
) -> None:
    _, bundles = retailer
    with TestClient(create_app(_settings(bundles, tmp_path, redis_url, redis_prefix))) as c:
        service = c.app.state.service  # type: ignore[attr-defined]
        # the cache and the attribution store ride on the online store's client
        assert service.cache.client is service.store.client
        assert service.attribution_store._client is service.store.client
        raw = redis.Redis.from_url(redis_url)
        # the first use of a script on a Redis loads it (NOSCRIPT, SCRIPT LOAD, again)
        c.get(f"/v1/customers/{customer}/recommendations?k=3")
        urls = [
            f"/v1/customers/{customer}/recommendations?k=6",
            f"/v1/items/{item}/similar?k=6&customer_id={customer}",
            f"/v1/items/{item}/similar?k=6",
        ]
        for url in urls:
            with round_trips() as sent:
                miss = c.get(url)
                assert miss.status_code == 200, miss.text
                assert sent() == 2, f"{url}: a miss reads everything, then writes everything"
            record = raw.get(f"{redis_prefix}served:{miss.json()['recommendation_id']}")
            assert record is not None, "the served-list record is kept before the response"
            with round_trips() as sent:
                hit = c.get(url)
                assert sent() == 2, f"{url}: a hit reads, then records its showing"
            assert hit.json()["items"] == miss.json()["items"]
            assert raw.exists(f"{redis_prefix}served:{hit.json()['recommendation_id']}")
        cache = service.cache.stats()
        assert cache["hits"] == 3 and cache["errors"] == 0


@pytest.mark.redis
def test_the_prefetched_state_is_the_one_the_list_is_computed_from(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str, customer: str
) -> None:
    """An event since the bundle counts at once: the purchase read in the lookup's round trip
    leaves the feed, and the online store is not read again."""
    _, bundles = retailer
    with TestClient(create_app(_settings(bundles, tmp_path, redis_url, redis_prefix))) as c:
        url = f"/v1/customers/{customer}/recommendations?k=6"
        top = c.get(url).json()["items"][0]["item_id"]
        event = {"customer_id": customer, "item_id": top, "type": "purchase"}
        assert c.post("/v1/events", json=event).json()["accepted"] == 1
        store = c.app.state.service.store  # type: ignore[attr-defined]
        own_reads: list[str] = []
        original = store.customer_state

        def customer_state(customer_id: str, n_recent: int = 50) -> CustomerState:
            own_reads.append(customer_id)
            return original(customer_id, n_recent)

        store.customer_state = customer_state
        with round_trips() as sent:
            after = c.get(url).json()
            assert sent() == 2
        assert own_reads == [], "the state read with the lookup was used"
        assert top not in {it["item_id"] for it in after["items"]}


@pytest.mark.redis
def test_with_redis_a_list_is_computed_on_the_event_loop_and_its_round_trips_awaited(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str, customer: str
) -> None:
    """Every part on the cache's client: nothing blocks, so the route neither hops to the thread
    pool nor holds the loop on a socket — both round trips go through the asyncio client."""
    _, bundles = retailer
    with TestClient(create_app(_settings(bundles, tmp_path, redis_url, redis_prefix))) as c:
        feeds = c.app.state.service.feeds  # type: ignore[attr-defined]
        responses = feeds.responses
        assert responses.on_loop and not responses.in_process
        c.get(f"/v1/customers/{customer}/recommendations?k=3")  # scripts loaded
        key, compute = personalized_request(feeds, customer, k=9)
        threads: list[threading.Thread] = []

        def traced() -> Served:
            threads.append(threading.current_thread())
            return compute()

        async def answer() -> tuple[bytes, threading.Thread]:
            try:
                return await responses.respond(key, traced), threading.current_thread()
            finally:
                await responses.aclose()  # this loop's asyncio client

        with round_trips() as sent:
            body, loop_thread = asyncio.run(answer())
            assert (sent.blocking, sent.awaited) == (0, 2)
        assert threads == [loop_thread], "computed once, on the event loop"
        shown = orjson.loads(body)
        assert len(shown["items"]) == 9
        assert redis.Redis.from_url(redis_url).exists(
            f"{redis_prefix}served:{shown['recommendation_id']}"
        ), "the record is kept before the answer"
        with round_trips() as sent:
            again, _ = asyncio.run(answer())
            assert (sent.blocking, sent.awaited) == (0, 2), "a hit: the read and the record"
        assert threads == [loop_thread], "the second answer is the cached list"
        assert orjson.loads(again)["items"] == shown["items"]


@pytest.mark.redis
def test_the_bandits_impressions_join_the_write_round_trip(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str, customer: str
) -> None:
    _, bundles = retailer
    settings = _settings(bundles, tmp_path, redis_url, redis_prefix).model_copy(
        update={"bandit": BanditConfig(enabled=True)}
    )
    with TestClient(create_app(settings)) as c:
        service = c.app.state.service  # type: ignore[attr-defined]
        state = service.bandit.bandit.state
        assert isinstance(state, RedisBanditState) and state.client is service.store.client
        assert service.responses.on_loop
        c.get(f"/v1/customers/{customer}/recommendations?k=3")  # scripts loaded
        before = _impressions(state)
        for k in (4, 5):  # a miss, then a hit: each showing counts its impressions
            with round_trips() as sent:
                response = c.get(f"/v1/customers/{customer}/recommendations?k={k}")
                assert response.status_code == 200, response.text
                assert sent() == 2, "the read, then one write with the bandit's impressions"
            record = service.attribution_store.get_served(response.json()["recommendation_id"])
            assert record is not None and record.policy == "bandit"
            after = _impressions(state)
            assert after == pytest.approx(before + k), "each shown position counted once"
            before = after


def _impressions(state: RedisBanditState) -> float:
    return sum(
        stats.impressions for sums in state.arms(time.time()).values() for stats in sums.values()
    )


@pytest.mark.redis
def test_a_part_on_another_client_keeps_the_list_off_the_event_loop(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """A bandit state on a Redis client of its own could not join the request's batches: its
    blocking call must not hold the loop, so the list is computed in the thread pool."""
    _, bundles = retailer
    config = BanditConfig(enabled=True)
    own_state = RedisBanditState(config.half_life_seconds, url=redis_url, prefix=redis_prefix)
    app = create_app(_settings(bundles, tmp_path, redis_url, redis_prefix))
    service = app.state.service
    assert service.responses.on_loop
    rebuilt = RecommendationService(
        service.bundles,
        service.store,
        service.event_log,
        service.cache,
        Metrics(),
        cache_ttl_seconds=60,
        attribution_store=service.attribution_store,
        attribution_window_seconds=3600,
        bandit=Bandit(config, own_state),
    )
    assert not rebuilt.responses.on_loop
    own_state.close()


# -- the generation guarantee across the combined read and write ----------------------------------


@pytest.fixture
def shared(redis_url: str, redis_prefix: str) -> Iterator[tuple[RedisOnlineStore, ResponseCache]]:
    store = RedisOnlineStore(url=redis_url, prefix=redis_prefix)
    cache = RedisCache(client=store.client, prefix=f"{redis_prefix}cache:")
    attribution = RedisAttributionStore(
        store.client, prefix=redis_prefix, served_ttl_seconds=60, touch_ttl_seconds=60
    )

    @contextmanager
    def active(pending: Pending[CustomerState]) -> Iterator[None]:
        seen.append(pending)
        yield

    def prefetch(batch: RedisBatch, customer_id: str) -> Any:
        pending = store.queue_customer_state(batch, customer_id, 10)
        return None if pending is None else active(pending)

    seen: list[Pending[CustomerState]] = []
    responses = ResponseCache(
        cache,
        Metrics(),
        ttl_seconds=60,
        served=ServedLists(attribution, None, Metrics()),
        prefetch=prefetch,
    )
    responses.prefetched = seen  # type: ignore[attr-defined]
    yield store, responses
    store.close()


def _served(customer_id: str, body: bytes) -> Served:
    return Served(
        body,
        template(
            surface="personalized",
            segment="default",
            variant=None,
            customer_id=customer_id,
            model_version="v1",
            positions=[("i1", "als", 1.0)],
        ),
    )


@pytest.mark.redis
def test_an_invalidation_between_the_combined_read_and_the_write_makes_the_write_a_no_op(
    shared: tuple[RedisOnlineStore, ResponseCache], redis_url: str, redis_prefix: str
) -> None:
    store, responses = shared
    now = datetime.now(UTC)
    store.record(
        [Interaction(customer_id="c1", item_id="i9", type=InteractionType.VIEW, timestamp=now)]
    )
    other_replica = RedisCache(redis_url, prefix=f"{redis_prefix}cache:")
    key = FeedKey("v1", "c1", 5, None, True, "home", False, None)
    warm = FeedKey("v1", "c0", 5, None, True, "home", False, None)
    responses.get_or_compute(warm, lambda: _served("c0", b"{}"))  # the scripts are loaded
    states: list[CustomerState] = []

    def compute_then_event() -> Served:
        states.append(responses.prefetched[-1].result())  # type: ignore[attr-defined]
        other_replica.invalidate(key.group)  # an event lands on another replica meanwhile
        return _served("c1", b'{"items":["stale"]}')

    with round_trips() as sent:
        body = orjson.loads(responses.get_or_compute(key, compute_then_event))
        # read (lookup, generation, state), the other replica's invalidation, write (set, record)
        assert sent() == 3
    assert body["items"] == ["stale"]
    assert [e.item_id for e in states[0].recent] == ["i9"], "the state came with the lookup"
    assert responses.cache.get(key.group, key.field) is None, "the stale list is not cached"
    assert store.client.exists(f"{redis_prefix}served:{body['recommendation_id']}")
    with round_trips() as sent:
        fresh = orjson.loads(
            responses.get_or_compute(key, lambda: _served("c1", b'{"items":["fresh"]}'))
        )
        assert sent() == 2
    assert responses.cache.get(key.group, key.field) is not None, "no event: cached"
    assert fresh["items"] == ["fresh"]
    other_replica.close()


def _execute(batch: RedisBatch, awaited: bool) -> None:
    """Run ``batch`` blocking, or awaited through an asyncio twin of its client."""
    if not awaited:
        batch.execute()
        return

    async def run() -> None:
        client = async_twin(batch.client)
        try:
            await batch.execute_async(client)
        finally:
            await client.aclose()

    asyncio.run(run())


@pytest.mark.redis
@pytest.mark.parametrize("awaited", [False, True], ids=["blocking", "awaited"])
def test_a_batch_reloads_scripts_redis_lost(redis_server: RedisServer, awaited: bool) -> None:
    """After a SCRIPT FLUSH (or a restart) the batched EVALSHA gets NOSCRIPT: the script is
    loaded and the call made again, and no SCRIPT EXISTS precedes each batch."""
    client = redis.Redis.from_url(redis_server.url)
    script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
    client.script_flush()
    batch = RedisBatch(client)
    pending = batch.add([ScriptCall(script, ["k"], ["v"]), ("GET", "k")], lambda o: o)
    with round_trips() as sent:
        _execute(batch, awaited)
        assert sent() == 3, "the batch, SCRIPT LOAD, the script again"
        assert (sent.awaited > 0) == awaited and (sent.blocking > 0) != awaited
    assert client.get("k") == b"v"
    replies = pending.result()
    assert not isinstance(replies, BaseException) and replies[0] == b"OK"
    again = RedisBatch(client)
    again.add([ScriptCall(script, ["k"], ["w"])], lambda o: o)
    with round_trips() as sent:
        _execute(again, awaited)
        assert sent() == 1
    assert client.get("k") == b"w"
    client.close()


@pytest.mark.redis
def test_an_awaited_batch_gives_every_part_what_a_blocking_one_gives(
    redis_url: str, redis_prefix: str
) -> None:
    """Replies with redis-py's response callbacks, a refused command as its error; an argument
    redis-py's encoder refuses (a bool) fails the whole batch alike."""
    client = redis.Redis.from_url(redis_url)
    key = f"{redis_prefix}h"
    client.hset(key, mapping={"a": "1", "b": "2.5"})

    def run(awaited: bool) -> list[Any]:
        batch = RedisBatch(client)
        parts = [
            batch.add([("HGETALL", key), ("HGET", key, "a")], lambda o: o),
            batch.add([("SET", f"{key}:s", 1.25), ("GET", f"{key}:s")], lambda o: o),
            batch.add([("INCRBY", f"{key}:n", 3)], lambda o: o),
            batch.add([("LPUSH", key, "x")], lambda o: o),  # a hash: refused
            batch.add([("EXISTS", key, f"{key}:none")], lambda o: o),
        ]
        _execute(batch, awaited)
        return [part.result() for part in parts]

    blocking, awaited = run(False), run(True)

    def shown(replies: list[Any]) -> list[Any]:
        return [(type(r), str(r)) if isinstance(r, Exception) else r for r in replies]

    for part, (mine, theirs) in enumerate(zip(awaited, blocking, strict=True)):
        assert not isinstance(mine, BaseException) and not isinstance(theirs, BaseException)
        if part != 2:  # the counter moved on between the two runs
            assert shown(mine) == shown(theirs)
    assert awaited[0] == [{b"a": b"1", b"b": b"2.5"}, b"1"]
    assert awaited[1] == [True, b"1.25"]
    assert awaited[2] == [6] and blocking[2] == [3], "the same increment, sent twice"
    assert isinstance(awaited[3][0], redis.ResponseError)
    assert awaited[4] == [1]
    refused = []
    for awaited_run in (False, True):
        batch = RedisBatch(client)
        part = batch.add([("SET", f"{key}:b", True)], lambda o: o)
        _execute(batch, awaited_run)
        refused.append(part.result())
    assert all(isinstance(r, redis.DataError) for r in refused), refused
    assert not client.exists(f"{key}:b")
    client.delete(key, f"{key}:s", f"{key}:n")
    client.close()


@pytest.mark.redis
def test_an_awaited_batch_heals_a_connection_redis_closed(redis_server: RedisServer) -> None:
    """A pooled connection broken by a Redis restart is retried once on a fresh one."""
    client = redis.Redis.from_url(redis_server.url)

    async def run() -> list[Any]:
        twin = async_twin(client)
        try:
            first = RedisBatch(client)
            first.add([("SET", "k", "v")], lambda o: o)
            await first.execute_async(twin)  # the pool now holds an open connection
            redis_server.kill()
            redis_server.start()
            again = RedisBatch(client)
            pending = again.add([("PING",), ("GET", "k")], lambda o: o)
            await again.execute_async(twin)
            return pending.result()  # type: ignore[no-any-return]
        finally:
            await twin.aclose()

    assert asyncio.run(run()) == [True, None], "answered by the restarted (empty) Redis"
    client.close()


def test_an_awaited_batch_that_cannot_reach_redis_hands_every_part_the_error() -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    batch = RedisBatch(client)
    first = batch.add([("GET", "a")], lambda o: o)
    second = batch.add([("GET", "b"), ("GET", "c")], lambda o: o)
    ran: list[str] = []
    batch.after(lambda: ran.append("after"))
    _execute(batch, awaited=True)
    assert isinstance(first.result(), redis.ConnectionError)
    assert second.result() is first.result(), "one failed round trip, every part's outcome"
    assert ran == ["after"]
    client.close()


@pytest.mark.redis
def test_a_batched_bandit_update_adds_what_a_direct_one_adds(
    redis_url: str, redis_prefix: str
) -> None:
    now = time.time()
    update = {"als": ArmStats(impressions=3, clicks=1), "repeat": ArmStats(impressions=2)}
    direct = RedisBanditState(3600.0, url=redis_url, prefix=f"{redis_prefix}a:")
    batched = RedisBanditState(3600.0, url=redis_url, prefix=f"{redis_prefix}b:")
    direct.add("home", "default", update, now)
    batch = RedisBatch(batched.client)
    pending = batched.add("home", "default", update, now, batch)
    assert pending is not None and len(batch) == 1, "one script call on the batch"
    batch.execute()
    pending.result()
    assert batched.read("home", "default", now) == direct.read("home", "default", now)
    direct.close()
    batched.close()


def test_a_batched_bandit_update_that_was_not_kept_says_so() -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    state = RedisBanditState(None, client)
    batch = RedisBatch(client)
    pending = state.add("home", "default", {"als": ArmStats(impressions=2)}, time.time(), batch)
    assert pending is not None
    batch.execute()
    with pytest.raises(StoreUnavailable, match="bandit state"):
        pending.result()
    client.close()


@pytest.mark.redis
def test_the_asyncio_twin_talks_to_the_same_database_with_the_same_settings(
    redis_url: str, redis_prefix: str
) -> None:
    blocking = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3", socket_timeout=0.07)
    twin = async_twin(blocking)
    settings = twin.connection_pool.connection_kwargs
    assert settings["db"] == 3 and settings["socket_timeout"] == 0.07

    async def write() -> None:
        try:
            await twin.set(f"{redis_prefix}twin", b"1")
        finally:
            await twin.aclose()

    asyncio.run(write())
    assert blocking.get(f"{redis_prefix}twin") == b"1"
    blocking.delete(f"{redis_prefix}twin")
    blocking.close()


# -- outages -----------------------------------------------------------------------------------------


def test_with_redis_unreachable_a_list_is_computed_and_served(redis_prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = RedisOnlineStore(url=url, prefix=redis_prefix)
    cache = RedisCache(client=store.client, prefix="t:", retry_interval=10)
    attribution = RedisAttributionStore(
        store.client, prefix="t:", served_ttl_seconds=60, touch_ttl_seconds=60
    )
    responses = ResponseCache(
        cache,
        Metrics(),
        ttl_seconds=60,
        served=ServedLists(attribution, None, Metrics()),
        prefetch=lambda batch, customer_id: None,
    )
    key = FeedKey("v1", "c1", 5, None, True, "home", False, None)
    started = time.perf_counter()
    for _ in range(3):
        body = orjson.loads(responses.get_or_compute(key, lambda: _served("c1", b'{"items":[1]}')))
        assert body["items"] == [1]
    assert time.perf_counter() - started < 3.0
    with pytest.raises(StoreUnavailable):
        store.customer_state("c1")
    store.close()


@pytest.mark.redis
def test_redis_down_mid_service_still_answers_every_list_from_the_bundle(
    retailer: tuple[Path, Path], tmp_path: Path, customer: str, item: str, redis_server: RedisServer
) -> None:
    _, bundles = retailer
    with TestClient(create_app(_settings(bundles, tmp_path, redis_server.url))) as c:
        urls = [
            f"/v1/customers/{customer}/recommendations?k=6",
            f"/v1/items/{item}/similar?k=6&customer_id={customer}",
        ]
        healthy = [c.get(url).json()["items"] for url in urls]
        redis_server.kill()
        started = time.perf_counter()
        for url, items in zip(urls, healthy, strict=True):
            for k in (6, 7):  # a cached list and one never computed
                response = c.get(url.replace("k=6", f"k={k}"))
                assert response.status_code == 200, response.text
                if k == 6:
                    assert response.json()["items"] == items, "the bundle's knowledge alone"
        assert time.perf_counter() - started < 5.0
        redis_server.start()
        deadline = time.monotonic() + 10
        while not c.get("/readyz").json()["cache_available"]:
            assert time.monotonic() < deadline, "the cache did not come back"
            time.sleep(0.2)
        time.sleep(1.1)  # the stores' circuit breaker probes again
        # the first request probes the stores with their own read (their breaker is still open)
        # and, as the next, loads the scripts the restarted Redis lost
        c.get(urls[0])
        c.get(urls[1])
        with round_trips() as sent:
            assert c.get(urls[0].replace("k=6", "k=8")).status_code == 200
            assert sent() == 2, "back to one read and one write"
