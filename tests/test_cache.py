"""Response cache: the same behaviour in memory and in Redis, and Redis outages survived."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date

import orjson
import pytest
import redis

from app.cache import Cache, InProcessCache, RedisCache
from app.metrics import Metrics
from app.response_cache import (
    CacheKey,
    ComplementaryKey,
    FeedKey,
    ResponseCache,
    SeasonalKey,
    SimilarKey,
    customer_group,
)
from helpers import RedisServer, free_port

# -- the shared contract ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        yield InProcessCache()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    redis_cache = RedisCache(url, prefix=f"{prefix}cache:")
    yield redis_cache
    redis_cache.close()


def test_is_a_cache(cache: Cache) -> None:
    assert isinstance(cache, Cache)
    assert cache.backend in ("memory", "redis")
    assert cache.available() is True


def test_miss_then_hit(cache: Cache) -> None:
    assert cache.get("customer:c1", "feed:v1") is None
    body = b'{"items":[1,2,3]}\x00\xff'
    cache.set("customer:c1", "feed:v1", body, 60)
    assert cache.get("customer:c1", "feed:v1") == body
    assert cache.get("customer:c1", "feed:v2") is None
    assert cache.get("customer:c2", "feed:v1") is None
    cache.set("customer:c1", "empty", b"", 60)
    assert cache.get("customer:c1", "empty") == b""
    cache.set("customer:c1", "feed:v1", b"replaced", 60)
    assert cache.get("customer:c1", "feed:v1") == b"replaced"


def test_entries_expire_one_by_one(cache: Cache) -> None:
    cache.set("g", "short", b"s", 0.15)
    cache.set("g", "long", b"l", 30)
    cache.set("h", "short", b"s", 0.15)
    assert cache.get("g", "short") == b"s"
    time.sleep(0.3)
    assert cache.get("g", "short") is None
    assert cache.get("h", "short") is None
    assert cache.get("g", "long") == b"l"


def test_non_positive_ttl_removes_the_entry(cache: Cache) -> None:
    cache.set("g", "k", b"v", 30)
    cache.set("g", "k", b"w", 0)
    assert cache.get("g", "k") is None


def test_invalidate_drops_the_whole_group_only(cache: Cache) -> None:
    for key in ("feed", "similar:i1", "seasonal"):
        cache.set("customer:c1", key, key.encode(), 60)
    cache.set("customer:c2", "feed", b"other", 60)
    cache.invalidate("customer:c1")
    for key in ("feed", "similar:i1", "seasonal"):
        assert cache.get("customer:c1", key) is None
    assert cache.get("customer:c2", "feed") == b"other"
    cache.invalidate("customer:never-cached")
    cache.set("customer:c1", "feed", b"fresh", 60)  # the group is usable again
    assert cache.get("customer:c1", "feed") == b"fresh"


def test_stats(cache: Cache) -> None:
    assert cache.stats() == {"hits": 0, "misses": 0, "errors": 0}
    cache.get("g", "k")
    cache.set("g", "k", b"v", 60)
    cache.get("g", "k")
    cache.get("g", "k")
    cache.invalidate("g")
    cache.get("g", "k")
    assert cache.stats() == {"hits": 2, "misses": 2, "errors": 0}


def test_concurrent_use(cache: Cache) -> None:
    failures: list[str] = []

    def worker(t: int) -> None:
        for k in range(100):
            group = f"c{k % 10}"
            cache.set(group, f"t{t}", f"{t}-{k}".encode(), 60)
            value = cache.get(group, f"t{t}")
            if value != f"{t}-{k}".encode():
                failures.append(f"{group}/t{t}: {value!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert cache.stats()["hits"] == 400


# -- in-process specifics --------------------------------------------------------------------------


def test_memory_cache_is_an_lru_over_groups() -> None:
    cache = InProcessCache(max_groups=3)
    for group in ("g1", "g2", "g3"):
        cache.set(group, "k", group.encode(), 60)
    assert cache.get("g1", "k") == b"g1"  # g1 is now the most recently used
    cache.set("g4", "k", b"g4", 60)  # evicts g2, the least recently used
    assert len(cache) == 3
    assert cache.get("g2", "k") is None
    assert [cache.get(g, "k") for g in ("g1", "g3", "g4")] == [b"g1", b"g3", b"g4"]
    cache.set("g3", "k2", b"x", 60)  # writing refreshes too
    cache.set("g5", "k", b"g5", 60)  # evicts g1 (used before g3, g4 were read)
    assert cache.get("g1", "k") is None
    assert cache.backend == "memory"
    with pytest.raises(ValueError):
        InProcessCache(max_groups=0)


def test_memory_cache_bounds_entries_per_group() -> None:
    cache = InProcessCache(max_entries_per_group=2)
    cache.set("g", "a", b"1", 60)
    cache.set("g", "b", b"2", 60)
    cache.set("g", "c", b"3", 60)
    assert cache.get("g", "a") is None
    assert cache.get("g", "b") == b"2" and cache.get("g", "c") == b"3"


# -- outages against a private redis-server ------------------------------------------------------

FAST = 0.5  # seconds: the most any cache call may take while Redis is down


def timed(call: Callable[[], object]) -> object:
    """Run ``call``; fail if it raises (it propagates) or takes ``FAST`` seconds or more."""
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < FAST, f"took {elapsed:.3f}s during the outage"
    return result


def wait_until_recovered(cache: RedisCache, timeout: float = 5.0) -> None:
    """Write and read back until the cache answers from Redis again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cache.set("probe", "k", b"alive", 60)
        if cache.get("probe", "k") == b"alive":
            return
        time.sleep(0.02)
    raise AssertionError(f"the cache did not recover within {timeout}s: {cache.stats()}")


def test_outage_kill_and_restart(redis_server: RedisServer) -> None:
    """Kill Redis: calls return fast and never raise. Restart it on the same port: the cache
    recovers by itself, and a group invalidated during the outage does not serve its old value
    even though another replica (unaware of the outage) wrote that value back."""
    cache = RedisCache(redis_server.url, prefix="lb:cache:", retry_interval=0.3)
    cache.set("customer:c1", "feed", b"old-c1", 60)
    cache.set("customer:c2", "feed", b"c2", 60)
    assert cache.get("customer:c1", "feed") == b"old-c1"
    assert cache.stats()["errors"] == 0

    redis_server.kill()
    assert timed(lambda: cache.get("customer:c1", "feed")) is None
    assert cache.is_down and cache.stats()["errors"] == 1
    timed(lambda: cache.set("customer:c2", "feed", b"during", 60))
    timed(lambda: cache.invalidate("customer:c1"))  # an event for c1 arrives during the outage
    assert timed(lambda: cache.get("customer:c2", "feed")) is None
    assert timed(cache.available) is False
    time.sleep(0.35)  # past retry_interval: the next call probes (and fails) again, quickly
    assert timed(lambda: cache.get("customer:c2", "feed")) is None
    assert cache.stats()["errors"] == 2

    redis_server.start()  # same port; this server starts empty
    other = RedisCache(redis_server.url, prefix="lb:cache:")
    other.set("customer:c1", "feed", b"old-c1", 60)  # a stale list that survived elsewhere
    other.set("customer:c2", "feed", b"c2", 60)

    time.sleep(0.35)
    wait_until_recovered(cache)
    assert not cache.is_down
    assert cache.available() is True
    assert cache.get("customer:c1", "feed") is None  # the remembered invalidation ran first
    assert other.get("customer:c1", "feed") is None  # ... in Redis itself, for every replica
    assert cache.get("customer:c2", "feed") == b"c2"
    cache.set("customer:c1", "feed", b"new-c1", 60)
    assert other.get("customer:c1", "feed") == b"new-c1"
    errors = cache.stats()["errors"]
    cache.get("customer:c2", "feed")
    assert cache.stats()["errors"] == errors
    cache.close()
    other.close()


def test_outage_hung_server(redis_server: RedisServer) -> None:
    """A Redis that stops answering (SIGSTOP) costs one socket timeout, then nothing until the
    retry interval; its data survives, and the group invalidated meanwhile is dropped on return."""
    cache = RedisCache(redis_server.url, prefix="lb:cache:", retry_interval=0.3)
    cache.set("customer:c1", "feed", b"old-c1", 60)
    cache.set("customer:c2", "feed", b"c2", 60)

    redis_server.pause()
    try:
        assert timed(lambda: cache.get("customer:c2", "feed")) is None  # one socket timeout
        assert cache.is_down
        started = time.monotonic()
        for _ in range(20):  # while down, nothing waits on Redis (each wait would be >= 50 ms)
            assert cache.get("customer:c2", "feed") is None
            cache.set("customer:c2", "feed", b"during", 60)
        cache.invalidate("customer:c1")
        assert time.monotonic() - started < 0.05
    finally:
        redis_server.resume()

    time.sleep(0.35)
    wait_until_recovered(cache)
    assert cache.get("customer:c1", "feed") is None  # still in Redis until the replayed DEL
    assert cache.get("customer:c2", "feed") == b"c2"  # survived; the skipped write did not land
    cache.close()


def test_too_many_pending_invalidations_drop_every_group(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RedisCache, "MAX_PENDING_INVALIDATIONS", 3)
    cache = RedisCache(redis_server.url, prefix="lb:cache:", retry_interval=0.2)
    for k in range(6):
        cache.set(f"customer:c{k}", "feed", b"v", 60)
    raw = redis.Redis.from_url(redis_server.url)
    raw.set("lb:other:untouched", b"1")

    redis_server.pause()
    try:
        cache.get("customer:c0", "feed")  # notices the outage
        for k in range(5):
            cache.invalidate(f"customer:c{k}")
    finally:
        redis_server.resume()
    time.sleep(0.25)
    wait_until_recovered(cache)
    assert cache.get("customer:c5", "feed") is None  # not invalidated, but dropped to be safe
    assert raw.get("lb:other:untouched") == b"1"  # other prefixes are left alone
    cache.close()
    raw.close()


def test_redis_cache_without_any_server_never_raises() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_interval=10)
    assert timed(lambda: cache.get("g", "k")) is None
    timed(lambda: cache.set("g", "k", b"v", 60))
    timed(lambda: cache.invalidate("g"))
    assert timed(cache.available) is False
    assert cache.stats() == {"hits": 0, "misses": 1, "errors": 1}
    cache.close()


# -- typed keys and the read-through helper (app.response_cache) -----------------------------------


def _keys_of(customer: str | None, version: str = "v1") -> list[CacheKey]:
    day = date(2026, 6, 15)
    return [
        *([FeedKey(version, customer, 5, None, True, "home", False, None)] if customer else []),
        SimilarKey(version, "i1", 5, None, customer_id=customer),
        ComplementaryKey(version, ("i1",), 3, None, single=True, customer_id=customer),
        ComplementaryKey(version, ("i2", "i1"), 3, ("shoes",), single=False, customer_id=customer),
        SeasonalKey(version, day, "winter", None, None, 5, customer_id=customer),
    ]


def test_typed_keys_keep_the_cache_layout() -> None:
    feed = FeedKey("v1", "c1", 5, "shoes", False, "email", True, "S1")
    assert (feed.group, feed.field) == ("v1:c:c1", "rec:5:shoes:0:email:1:S1")
    assert (SimilarKey("v1", "i1", 5, None).group, SimilarKey("v1", "i1", 5, None).field) == (
        "v1:i:i1",
        "sim:5:",
    )
    mine = SimilarKey("v1", "i1", 5, "S1", customer_id="c1", in_stock_in_my_size=True)
    assert (mine.group, mine.field) == ("v1:c:c1", "sim:i1:5:1:S1")
    basket = ComplementaryKey("v1", ("i2", "i1"), 3, ("shoes", "bottom"), single=False)
    assert (basket.group, basket.field) == ("v1:b:i1|i2", "cmp:3:shoes,bottom")
    single = ComplementaryKey("v1", ("i1",), 3, None, single=True)
    assert (single.group, single.field) == ("v1:i:i1", "cmp:3:")
    theirs = ComplementaryKey("v1", ("i2", "i1"), 3, None, single=False, customer_id="c1")
    assert (theirs.group, theirs.field) == ("v1:c:c1", "cmp:i1|i2:3::0")
    season = SeasonalKey("v1", date(2026, 6, 15), None, "cold", "top", 5)
    assert (season.group, season.field) == ("v1:seasonal", "sea:2026-06-15::cold:top:5")
    assert SeasonalKey("v1", date(2026, 6, 15), None, None, None, 5, "c1").group == "v1:c:c1"
    # every list about a customer is in the customer's group, whatever its kind
    assert {key.group for key in _keys_of("c1")} == {customer_group("v1", "c1")}
    assert len({key.field for key in _keys_of("c1")}) == len(_keys_of("c1"))
    assert {key.kind for key in _keys_of("c1")} == {
        "personalized",
        "similar",
        "complementary",
        "seasonal",
    }


def test_get_or_compute_reads_through_with_a_fresh_recommendation_id(cache: Cache) -> None:
    metrics = Metrics()
    responses = ResponseCache(cache, metrics, ttl_seconds=60)
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(1)
        return b'{"items":[1]}'

    key = FeedKey("v1", "c1", 5, None, True, "home", False, None)
    first = orjson.loads(responses.get_or_compute(key, compute))
    second = orjson.loads(responses.get_or_compute(key, compute))
    assert len(calls) == 1, "computed once, then read from the cache"
    assert first["items"] == second["items"] == [1]
    assert first["recommendation_id"] != second["recommendation_id"]
    assert cache.get(key.group, key.field) == b'{"items":[1]}', "cached without the id"
    hits = metrics.cache_requests.labels(kind="personalized", result="hit")._value.get()
    misses = metrics.cache_requests.labels(kind="personalized", result="miss")._value.get()
    assert (hits, misses) == (1.0, 1.0)


def test_invalidating_a_customer_drops_exactly_their_lists(cache: Cache) -> None:
    responses = ResponseCache(cache, Metrics(), ttl_seconds=60)
    keys = {who: _keys_of(who) for who in ("c1", "c2", None)}
    for listed in keys.values():
        for key in listed:
            responses.get_or_compute(key, lambda: b'{"v":1}')
    old = FeedKey("v0", "c1", 5, None, True, "home", False, None)  # an older bundle's list
    responses.get_or_compute(old, lambda: b'{"v":0}')
    responses.invalidate_customer("c1", ["v0", "v1"])
    for key in [*keys["c1"], old]:
        assert cache.get(key.group, key.field) is None, key
    for key in [*keys["c2"], *keys[None]]:
        assert cache.get(key.group, key.field) == b'{"v":1}', key


def test_a_list_computed_before_an_event_is_not_cached_after_it(cache: Cache) -> None:
    """The race of issue 14, defect 12, forced: the event's invalidation lands while the list is
    being computed; the stale list is served once but never stored."""
    responses = ResponseCache(cache, Metrics(), ttl_seconds=60)
    key = FeedKey("v1", "c1", 5, None, True, "home", False, None)

    def compute_then_event() -> bytes:
        responses.invalidate_customer("c1", ["v1"])  # an event arrives mid-computation
        return b'{"items":["stale"]}'

    stale = orjson.loads(responses.get_or_compute(key, compute_then_event))
    assert stale["items"] == ["stale"]
    assert cache.get(key.group, key.field) is None, "the pre-event list must not be cached"
    fresh = orjson.loads(responses.get_or_compute(key, lambda: b'{"items":["fresh"]}'))
    assert fresh["items"] == ["fresh"]
    assert cache.get(key.group, key.field) == b'{"items":["fresh"]}', "no event: cached as before"
    # another customer's event does not block this customer's store
    other = FeedKey("v1", "c2", 5, None, True, "home", False, None)

    def compute_with_foreign_event() -> bytes:
        responses.invalidate_customer("c1", ["v1"])
        return b'{"items":["c2"]}'

    responses.get_or_compute(other, compute_with_foreign_event)
    assert cache.get(other.group, other.field) == b'{"items":["c2"]}'


def test_memory_cache_refuses_a_store_once_the_invalidation_is_forgotten() -> None:
    cache = InProcessCache(max_groups=2)
    generation = cache.generation("g")
    for group in ("g", "h", "i"):  # g's invalidation is pushed out of the bounded record
        cache.invalidate(group)
    cache.set("g", "k", b"stale", 60, generation=generation, check=True)
    assert cache.get("g", "k") is None
    cache.set("g", "k", b"fresh", 60, generation=cache.generation("g"), check=True)
    assert cache.get("g", "k") == b"fresh"


@pytest.mark.redis
def test_redis_invalidation_remembered_in_an_outage_still_blocks_a_stale_store(
    redis_server: RedisServer,
) -> None:
    cache = RedisCache(redis_server.url, prefix="t:", retry_interval=0.05)
    try:
        generation = cache.generation("g")  # read before computing, Redis up
        redis_server.kill()
        cache.invalidate("g")  # remembered
        redis_server.start()
        time.sleep(0.1)
        assert cache.available()  # back: the remembered invalidation is applied first
        cache.set("g", "k", b"stale", 60, generation=generation, check=True)
        assert cache.get("g", "k") is None
    finally:
        cache.close()


def test_memory_cache_reclaims_expired_entries_without_reading_them() -> None:
    """Issue 14, defect 9: entries nobody reads again must not stay forever."""
    cache = InProcessCache(max_groups=100_000)
    for n in range(1_500):
        cache.set(f"old{n}", "k", b"x" * 100, 0.1)
    cache.set("kept", "k", b"k", 60)
    time.sleep(0.2)
    for n in range(2_000):
        cache.set(f"new{n}", "k", b"y", 60)
    assert len(cache) <= 2_001, "expired groups were never reclaimed"
    assert cache.entries() <= 2_001
    assert cache.get("kept", "k") == b"k"
