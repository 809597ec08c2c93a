"""Contract tests: InMemoryAttributionStore and RedisAttributionStore behave identically
(served-list records with a TTL, touches, counters), plus what only one of them promises."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from feature_store.attribution_store import (
    AttributionStore,
    InMemoryAttributionStore,
    RedisAttributionStore,
    Touch,
)
from feature_store.served_lists import ServedList, ServedPosition, stamp, template

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SERVED_TTL = 0.4  # seconds: short, so expiry is tested on the real Redis clock too
TOUCH_TTL = 0.4


def record(recommendation_id: str, items: list[tuple[str, str, float]], **fields: str) -> bytes:
    return stamp(
        template(surface="personalized", model_version="v1", positions=items, **fields),
        recommendation_id,
        T0,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[AttributionStore]:
    if request.param == "memory":
        yield InMemoryAttributionStore(served_ttl_seconds=SERVED_TTL, touch_ttl_seconds=TOUCH_TTL)
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    redis_store = RedisAttributionStore(
        url=url, prefix=prefix, served_ttl_seconds=SERVED_TTL, touch_ttl_seconds=TOUCH_TTL
    )
    yield redis_store
    redis_store.close()


def test_implements_the_protocol(store: AttributionStore) -> None:
    assert isinstance(store, AttributionStore)
    assert store.ping() is True


def test_a_record_round_trips_and_counts_its_impressions(store: AttributionStore) -> None:
    items = [("I1", "als", 1.0), ("I2", "popular", 0.25), ("I3", "als", 1.0)]
    raw = record("r1", items, segment="loyal", customer_id="C1", strategy_surface="home")
    store.put_served(
        "r1", raw, {("als", "personalized", None): 2, ("popular", "personalized", None): 1}
    )
    got = store.get_served("r1")
    assert got == ServedList(
        recommendation_id="r1",
        served_at=T0,
        surface="personalized",
        segment="loyal",
        variant=None,
        customer_id="C1",
        model_version="v1",
        items=tuple(ServedPosition(*i) for i in items),
        strategy_surface="home",
    )
    assert store.get_served("nope") is None
    counts = store.counts()
    assert counts[("als", "personalized", None)]["impressions"] == 2
    assert counts[("popular", "personalized", None)]["impressions"] == 1
    assert counts[("als", "personalized", None)]["clicks"] == 0


def test_records_expire_after_their_ttl(store: AttributionStore) -> None:
    store.put_served("r1", record("r1", [("I1", "als", 1.0)]), {})
    assert store.get_served("r1") is not None
    time.sleep(SERVED_TTL + 0.2)
    assert store.get_served("r1") is None


def test_counters_add_up_with_variants_and_revenue(store: AttributionStore) -> None:
    a = ("als", "similar", None)
    b = ("als", "similar", "treatment")
    store.add({a: {"clicks": 1, "purchases": 1, "revenue": 19.99}})
    store.add({a: {"clicks": 2, "revenue": 0.01}, b: {"add_to_carts": 1}})
    store.add({a: {"revenue_squares": 0.25}})
    counts = store.counts()
    assert counts[a]["clicks"] == 3 and counts[a]["purchases"] == 1
    assert counts[a]["revenue"] == pytest.approx(20.0)
    assert counts[a]["revenue_squares"] == pytest.approx(0.25), "a float sum, like revenue"
    assert counts[b] == {
        "impressions": 0,
        "clicks": 0,
        "add_to_carts": 1,
        "purchases": 0,
        "revenue": 0,
        "revenue_squares": 0,
    }
    with pytest.raises(ValueError, match="unknown counter"):
        store.add({a: {"likes": 1}})


def test_unattributed_echoes_are_counted_by_reason(store: AttributionStore) -> None:
    store.count_unattributed("unknown_id")
    store.count_unattributed("unknown_id")
    store.count_unattributed("bad_position", 3)
    assert store.unattributed() == {"unknown_id": 2, "bad_position": 3}


def test_erasure_removes_the_records_naming_the_customer(store: AttributionStore) -> None:
    store.put_served("r1", record("r1", [("I1", "als", 1.0)], customer_id="C1"), {}, "C1")
    store.put_served("r2", record("r2", [("I1", "als", 1.0)], customer_id="C2"), {}, "C2")
    store.put_served("r3", record("r3", [("I1", "als", 1.0)]), {})
    store.erase_customer("C1")
    assert store.get_served("r1") is None
    assert store.get_served("r2") is not None and store.get_served("r3") is not None
    store.erase_customer("C1")  # idempotent


def test_touches_are_kept_for_the_window_and_erased_with_the_customer(
    store: AttributionStore,
) -> None:
    touch = Touch("als", "personalized", None, T0.timestamp())
    store.remember_touch("C1", "I1", touch)
    store.remember_touch("C2", "I1", Touch("popular", "session", "b", 5.0))
    assert store.touch("C1", "I1") == touch
    assert store.touch("C1", "I2") is None
    assert store.touch("C2", "I1") == Touch("popular", "session", "b", 5.0)
    store.erase_customer("C1")
    assert store.touch("C1", "I1") is None
    assert store.touch("C2", "I1") is not None
    time.sleep(TOUCH_TTL + 0.2)
    assert store.touch("C2", "I1") is None


def test_in_memory_store_is_bounded_and_expires_on_its_clock() -> None:
    clock = FakeClock()
    store = InMemoryAttributionStore(
        served_ttl_seconds=60, touch_ttl_seconds=60, max_records=3, max_touches=2, clock=clock
    )
    for n in range(5):
        store.put_served(f"r{n}", record(f"r{n}", [("I1", "als", 1.0)]), {})
    assert [store.get_served(f"r{n}") is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    for n in range(3):
        store.remember_touch("C1", f"I{n}", Touch("als", "personalized", None, 0.0))
    assert store.touch("C1", "I0") is None and store.touch("C1", "I2") is not None
    clock.now += 61
    assert store.get_served("r4") is None
    assert store.touch("C1", "I2") is None


@pytest.mark.redis
def test_redis_replicas_add_up(redis_url: str, redis_prefix: str) -> None:
    def replica() -> RedisAttributionStore:
        return RedisAttributionStore(
            url=redis_url, prefix=redis_prefix, served_ttl_seconds=60, touch_ttl_seconds=60
        )

    one, two = replica(), replica()
    credit = ("als", "personalized", None)
    one.put_served("r1", record("r1", [("I1", "als", 1.0)]), {credit: 1})
    two.put_served("r2", record("r2", [("I1", "als", 1.0)]), {credit: 1})
    one.add({credit: {"clicks": 1}})
    two.add({credit: {"clicks": 1, "purchases": 1, "revenue": 10.5}})
    assert two.get_served("r1") is not None, "a record written by one replica is read by another"
    for store in (one, two):
        row = store.counts()[credit]
        assert (row["impressions"], row["clicks"], row["purchases"]) == (2, 2, 1)
        assert row["revenue"] == pytest.approx(10.5)
    one.close()
    two.close()


def test_ttls_must_be_positive() -> None:
    with pytest.raises(ValueError, match="TTLs"):
        InMemoryAttributionStore(served_ttl_seconds=0, touch_ttl_seconds=1)


@pytest.mark.parametrize("arm", [None, ("home", "high_value")])
def test_a_touch_round_trips_through_json_with_its_bandit_arm(arm: tuple[str, str] | None) -> None:
    touch = Touch("als", "personalized", "exp:variant", 1_700_000_000.5, arm)
    assert Touch.from_json(touch.to_json()) == touch
    # a touch written before the arm was kept still reads, without one
    assert Touch.from_json(b'["als", "personalized", null, 1.0]').arm is None
