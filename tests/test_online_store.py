"""Contract tests: InMemoryOnlineStore and RedisOnlineStore behave identically."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from feature_store.errors import DataFormatError, InvalidEvent, StoreUnavailable
from feature_store.online_store import (
    CustomerState,
    InMemoryOnlineStore,
    OnlineStore,
    RedisOnlineStore,
    erasure_digest,
)
from feature_store.schema import Channel, Interaction, InteractionType, ReturnReason

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
MAX_RECENT = 5


def event(
    customer: str,
    item: str,
    kind: InteractionType = InteractionType.VIEW,
    minutes: int = 0,
    **extra: object,
) -> Interaction:
    return Interaction(
        customer_id=customer,
        item_id=item,
        type=kind,
        timestamp=T0 + timedelta(minutes=minutes),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    if request.param == "memory":
        yield InMemoryOnlineStore(max_recent=MAX_RECENT)
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    redis_store = RedisOnlineStore(url=url, prefix=prefix, max_recent=MAX_RECENT)
    yield redis_store
    redis_store.close()


def test_implements_the_protocol(store: OnlineStore) -> None:
    assert isinstance(store, OnlineStore)
    assert store.ping() is True


def test_unknown_customer_is_empty(store: OnlineStore) -> None:
    assert store.recent("nobody") == []
    assert store.purchased("nobody") == set()


def test_recent_is_newest_first_across_and_within_batches(store: OnlineStore) -> None:
    store.record([event("c1", "a", minutes=0), event("c1", "b", minutes=1)])
    store.record([event("c1", "c", minutes=2)])
    assert [e.item_id for e in store.recent("c1")] == ["c", "b", "a"]
    assert [e.item_id for e in store.recent("c1", n=2)] == ["c", "b"]
    assert store.recent("c1", n=0) == []


def test_recent_round_trips_every_field(store: OnlineStore) -> None:
    full = event(
        "c1",
        "dress-9",
        InteractionType.RETURN,
        minutes=7,
        channel=Channel.KIOSK,
        size="M",
        price=79.95,
        store_id="paris-01",
        return_reason=ReturnReason.TOO_SMALL,
        recommendation_id="rec-123",
        position=3,
    )
    store.record([full])
    assert store.recent("c1") == [full]


def test_recent_is_capped(store: OnlineStore) -> None:
    store.record([event("c1", f"i{k}", minutes=k) for k in range(MAX_RECENT + 3)])
    store.record([event("c1", "last", minutes=99)])
    recent = store.recent("c1", n=100)
    assert len(recent) == MAX_RECENT
    assert [e.item_id for e in recent] == ["last", "i7", "i6", "i5", "i4"]


def test_purchases_and_returns(store: OnlineStore) -> None:
    store.record(
        [
            event("c1", "shirt", InteractionType.PURCHASE),
            event("c1", "tie", InteractionType.PURCHASE),
            event("c1", "belt", InteractionType.ADD_TO_CART),
            event("c2", "shirt", InteractionType.PURCHASE),
        ]
    )
    assert store.purchased("c1") == {"shirt", "tie"}
    store.record(
        [event("c1", "tie", InteractionType.RETURN), event("c1", "hat", InteractionType.RETURN)]
    )
    assert store.purchased("c1") == {"shirt"}
    assert store.purchased("c2") == {"shirt"}
    # Order inside one batch counts: bought, returned, bought again.
    store.record(
        [
            event("c3", "coat", InteractionType.PURCHASE),
            event("c3", "coat", InteractionType.RETURN),
            event("c3", "coat", InteractionType.PURCHASE),
            event("c3", "scarf", InteractionType.PURCHASE),
            event("c3", "scarf", InteractionType.RETURN),
        ]
    )
    assert store.purchased("c3") == {"coat"}


def test_batch_record_touches_each_customer(store: OnlineStore) -> None:
    batch = [event(f"c{k % 3}", f"item-{k}", minutes=k) for k in range(9)]
    store.record(batch)
    for customer in ("c0", "c1", "c2"):
        mine = [e for e in batch if e.customer_id == customer]
        assert store.recent(customer) == list(reversed(mine))
    store.record([])  # an empty batch is a no-op
    assert len(store.recent("c0")) == 3


def test_items_round_trip(store: OnlineStore) -> None:
    items = [
        {
            "item_id": "top-1",
            "name": "Linen shirt — écru",
            "category": "top",
            "price": 49.9,
            "sizes": ["S", "M", "L"],
            "stock": {"online": {"M": 3}},
            "on_sale": False,
            "launch_date": None,
        },
        {"item_id": "shoe-2", "name": "Loafer", "category": "shoes", "price": 120},
    ]
    store.put_items(items)
    assert store.get_item("top-1") == items[0]
    assert store.get_item("shoe-2") == items[1]
    store.put_items([{"item_id": "shoe-2", "name": "Loafer II", "category": "shoes", "price": 99}])
    replaced = store.get_item("shoe-2")
    assert replaced is not None and replaced["name"] == "Loafer II"
    # Stored copies do not alias the caller's dicts.
    fetched = store.get_item("top-1")
    assert fetched is not None
    fetched["sizes"].append("XL")
    assert store.get_item("top-1") == items[0]


def test_items_accept_generator_and_numpy_values(store: OnlineStore) -> None:
    import numpy as np

    store.put_items(
        {"item_id": f"i{k}", "price": np.float64(k), "stock": np.int64(k)} for k in range(3)
    )
    assert store.get_item("i2") == {"item_id": "i2", "price": 2.0, "stock": 2}


def test_unknown_items(store: OnlineStore) -> None:
    store.put_items([{"item_id": "a", "price": 1.0}, {"item_id": "c", "price": 3.0}])
    assert store.get_item("nope") is None
    assert store.get_items(["a", "nope", "c", "a"]) == [
        {"item_id": "a", "price": 1.0},
        None,
        {"item_id": "c", "price": 3.0},
        {"item_id": "a", "price": 1.0},
    ]
    assert store.get_items([]) == []


def test_item_without_id_is_rejected(store: OnlineStore) -> None:
    with pytest.raises(DataFormatError, match="item_id"):
        store.put_items([{"name": "anonymous"}])


def test_non_interaction_is_rejected(store: OnlineStore) -> None:
    with pytest.raises(InvalidEvent):
        store.record([{"customer_id": "c1"}])  # type: ignore[list-item]
    assert store.recent("c1") == []


def test_erase_customer_removes_everything(
    store: OnlineStore, request: pytest.FixtureRequest
) -> None:
    victim = "erase-me-7f3a"
    store.put_items([{"item_id": "shirt", "price": 1.0}])
    store.record(
        [
            event(victim, "shirt", InteractionType.PURCHASE),
            event(victim, "tie", InteractionType.VIEW, minutes=1),
            event("bystander", "shirt", InteractionType.PURCHASE),
        ]
    )
    store.erase_customer(victim)
    assert store.recent(victim) == []
    assert store.purchased(victim) == set()
    assert store.purchased("bystander") == {"shirt"}
    assert store.get_item("shirt") == {"item_id": "shirt", "price": 1.0}
    store.erase_customer("never-seen")  # erasing an unknown customer is fine
    if isinstance(store, RedisOnlineStore):
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        keys = [k.decode() for k in client.scan_iter(match=f"{store.prefix}*", count=1000)]
        assert keys, "the prefix should still hold the bystander and the item"
        assert not [k for k in keys if victim in k]


def test_customer_state_reads_everything_about_a_customer_at_once(store: OnlineStore) -> None:
    empty = store.customer_state("nobody")
    assert empty == CustomerState("nobody", None, None, (), frozenset())
    store.record(
        [
            event("c1", "shirt", InteractionType.PURCHASE),
            event("c1", "tie", minutes=1),
            event("c1", "belt", InteractionType.PURCHASE, minutes=2),
            event("c1", "belt", InteractionType.RETURN, minutes=3),
            event("c2", "hat", InteractionType.PURCHASE),
        ]
    )
    store.set_consent("c1", False)
    store.profile_states.put("c1", {"customer_id": "c1", "frequency": 2})
    state = store.customer_state("c1", n_recent=3)
    assert state.customer_id == "c1" and state.consent is False
    assert state.profile_state == {"customer_id": "c1", "frequency": 2}
    assert [(e.item_id, e.type) for e in state.recent] == [
        ("belt", InteractionType.RETURN),
        ("belt", InteractionType.PURCHASE),
        ("tie", InteractionType.VIEW),
    ]
    assert state.recent == tuple(store.recent("c1", n=3))
    assert state.purchased == frozenset({"shirt"}) == store.purchased("c1")
    assert len(store.customer_state("c1", n_recent=100).recent) == MAX_RECENT - 1
    assert store.customer_state("c1", n_recent=0).recent == ()
    store.set_consent("c1", True)
    assert store.customer_state("c1").consent is True
    store.erase_customer("c1")
    store.profile_states.delete("c1")
    assert store.customer_state("c1") == CustomerState("c1", None, None, (), frozenset())
    assert store.customer_state("c2").purchased == frozenset({"hat"})


def test_an_erasure_time_is_seen_by_every_reader(store: OnlineStore) -> None:
    """What another replica's erasure leaves: when, read with the customer's state, and under a
    digest (no key or field names the customer)."""
    erased_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert store.erased_at("c1") is None and store.customer_state("c1").erased_at is None
    store.record([event("c1", "shirt")])
    store.erase_customer("c1", erased_at)
    assert store.erased_at("c1") == erased_at == store.customer_state("c1").erased_at
    assert store.customer_state("c1").recent == ()
    store.erase_customer("c1")  # without a time: the one known stays
    assert store.erased_at("c1") == erased_at
    assert store.erased_at("c2") is None
    if isinstance(store, RedisOnlineStore):
        client = store.client
        fields = [f.decode() for f in client.hkeys(f"{store.prefix}erased")]
        assert fields == [erasure_digest("c1")] and "c1" not in fields[0]


@pytest.mark.redis
def test_redis_customer_state_is_one_round_trip(redis_url: str, redis_prefix: str) -> None:
    store = RedisOnlineStore(url=redis_url, prefix=redis_prefix)
    store.record([event("c1", "shirt", InteractionType.PURCHASE)])
    store.set_consent("c1", True)
    store.profile_states.put("c1", {"customer_id": "c1"})
    client = store._client
    sent: list[int] = []
    real_pipeline = client.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        pipe = real_pipeline(*args, **kwargs)  # type: ignore[arg-type]
        real_execute = pipe.execute

        def execute(*a: object, **k: object) -> object:
            sent.append(len(pipe.command_stack))
            return real_execute(*a, **k)  # type: ignore[arg-type]

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe

    def no_single_commands(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"a command outside the pipeline: {args[:1]}")

    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    client.execute_command = no_single_commands  # type: ignore[method-assign]
    state = store.customer_state("c1")
    assert sent == [5], "consent, profile state, recent events, purchases, erasure: one pipeline"
    assert state.consent is True and state.profile_state == {"customer_id": "c1"}
    assert [e.item_id for e in state.recent] == ["shirt"] and state.purchased == {"shirt"}
    store.close()


def test_memory_store_is_thread_safe() -> None:
    store = InMemoryOnlineStore(max_recent=1000)

    def worker(k: int) -> None:
        for j in range(200):
            store.record([event("c1", f"t{k}-{j}", InteractionType.PURCHASE)])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.recent("c1", n=1000)) == 800
    assert len(store.purchased("c1")) == 800


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_redis_store_unreachable_raises_store_unavailable() -> None:
    store = RedisOnlineStore(url=f"redis://127.0.0.1:{_closed_port()}/0", prefix="lbtest:")
    started = time.monotonic()
    assert store.ping() is False
    with pytest.raises(StoreUnavailable, match="record"):
        store.record([event("c1", "a")])
    with pytest.raises(StoreUnavailable, match="recent"):
        store.recent("c1")
    with pytest.raises(StoreUnavailable, match="customer_state"):
        store.customer_state("c1")
    with pytest.raises(StoreUnavailable):
        store.get_items(["a"])
    with pytest.raises(StoreUnavailable):
        store.erase_customer("c1")
    assert time.monotonic() - started < 2.0
    store.close()


def test_redis_store_needs_a_client_or_url() -> None:
    with pytest.raises(ValueError):
        RedisOnlineStore()


@pytest.mark.redis
def test_redis_store_accepts_a_decoding_client(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = RedisOnlineStore(client, prefix=redis_prefix)
    store.record([event("c1", "shirt", InteractionType.PURCHASE), event("c1", "tie", minutes=1)])
    store.put_items([{"item_id": "shirt", "price": 10.0}])
    assert [e.item_id for e in store.recent("c1")] == ["tie", "shirt"]
    assert store.purchased("c1") == {"shirt"}
    assert store.get_items(["shirt", "x"]) == [{"item_id": "shirt", "price": 10.0}, None]
    store.close()  # a caller's client stays open
    assert client.ping() is True
    client.close()


def test_in_memory_store_is_bounded_by_customer() -> None:
    """Issue 14, defect 9: new customers beyond the bound push out the least recently used."""
    store = InMemoryOnlineStore(max_recent=5, max_customers=10)
    store.record([event("c0", "a", InteractionType.PURCHASE)])
    store.profile_states.put("c0", {"n": 0})
    for n in range(1, 50):
        if n % 5 == 0:
            store.customer_state("c0")  # c0 is read often: it stays
        store.record([event(f"c{n}", "a", InteractionType.PURCHASE)])
        store.profile_states.put(f"c{n}", {"n": n})
    assert len(store) == 10
    assert len(store.profile_states) == 10
    assert store.recent("c0") and store.purchased("c0") == {"a"}
    assert store.customer_state("c0").profile_state == {"n": 0}
    assert store.recent("c1") == [] and store.purchased("c1") == set()
    assert store.profile_states.get("c1") is None
    assert store.recent("c49")
    assert store.customer_keys() == {"c0", *(f"c{n}" for n in range(41, 50))}
