"""The service on a real Redis: shared store and cache, invalidation, and surviving an outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from helpers import RedisServer


@pytest.fixture(scope="module")
def customer(retailer: tuple[Path, Path]) -> str:
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    return str(bought.groupby("customer_id", observed=True).size().idxmax())


@pytest.fixture
def redis_client(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[TestClient]:
    _, bundles = retailer
    settings = Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.redis
def test_redis_backed_service(
    redis_client: TestClient, redis_url: str, redis_prefix: str, customer: str
) -> None:
    assert redis_client.get("/readyz").json()["cache"] == "redis"
    url = f"/v1/customers/{customer}/recommendations?k=6"
    first = redis_client.get(url).json()
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).scan_iter(f"{redis_prefix}*")]
    assert any(customer in k for k in keys), "the list is cached in Redis"
    second = redis_client.get(url).json()
    assert second["items"] == first["items"]
    top = first["items"][0]["item_id"]
    event = {"customer_id": customer, "item_id": top, "type": "purchase"}
    assert redis_client.post("/v1/events", json=event).json()["accepted"] == 1
    recent = redis.Redis.from_url(redis_url).lrange(f"{redis_prefix}recent:{customer}", 0, -1)
    assert len(recent) == 1, "the event is in the Redis online store"
    third = redis_client.get(url).json()
    assert top not in {it["item_id"] for it in third["items"]}, "event invalidated the cache"


@pytest.mark.redis
def test_two_replicas_share_state(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str, customer: str
) -> None:
    _, bundles = retailer

    def settings(name: str) -> Settings:
        return Settings(
            bundle_dir=bundles,
            event_log_dir=tmp_path / name,
            bundle_poll_seconds=0,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
        )

    with (
        TestClient(create_app(settings("a"))) as a,
        TestClient(create_app(settings("b"))) as b,
    ):
        url = f"/v1/customers/{customer}/recommendations?k=6"
        top = b.get(url).json()["items"][0]["item_id"]
        a.post("/v1/events", json={"customer_id": customer, "item_id": top, "type": "purchase"})
        assert top not in {it["item_id"] for it in b.get(url).json()["items"]}


@pytest.mark.redis
def test_redis_outage_keeps_serving_and_recovers(
    retailer: tuple[Path, Path],
    tmp_path: Path,
    customer: str,
    redis_server: RedisServer,
) -> None:
    server = redis_server
    _, bundles = retailer
    settings = Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=server.url,
    )
    with TestClient(create_app(settings)) as c:
        url = f"/v1/customers/{customer}/recommendations?k=6"
        healthy = c.get(url).json()
        server.stop()
        started = time.perf_counter()
        for _ in range(5):
            response = c.get(url)
            assert response.status_code == 200
            assert response.json()["items"] == healthy["items"]
        assert time.perf_counter() - started < 5.0
        top = healthy["items"][0]["item_id"]
        ack = c.post("/v1/events", json={"customer_id": customer, "item_id": top, "type": "view"})
        assert ack.status_code == 200 and ack.json()["accepted"] == 1
        assert c.get("/readyz").json()["cache_available"] is False
        server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            c.get(url)
            if c.get("/readyz").json()["cache_available"]:
                break
            time.sleep(0.2)
        assert c.get("/readyz").json()["cache_available"] is True
        c.get(url)
        keys = list(redis.Redis.from_url(server.url).scan_iter("lb:*"))
        assert keys, "after recovery the service writes to Redis again"


@pytest.mark.redis
def test_a_hung_redis_costs_little_latency_and_is_recovered_from(
    retailer: tuple[Path, Path], tmp_path: Path, customer: str, redis_server: RedisServer
) -> None:
    """Issue 14, defect 5: with Redis hung (SIGSTOP), requests fail over to the degraded paths
    quickly instead of each waiting out its timeouts, and recover when Redis answers again."""
    server = redis_server
    _, bundles = retailer
    settings = Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=server.url,
    )
    with TestClient(create_app(settings)) as c:
        feed = f"/v1/customers/{customer}/recommendations?k=6"
        healthy = c.get(feed).json()
        item = healthy["items"][0]["item_id"]
        similar = f"/v1/items/{item}/similar?k=6&customer_id={customer}"
        assert c.get(similar).status_code == 200
        server.pause()
        slowest = 0.0
        began = time.perf_counter()
        for n in range(6):
            url = feed if n % 2 == 0 else similar
            started = time.perf_counter()
            response = c.get(url)
            slowest = max(slowest, time.perf_counter() - started)
            assert response.status_code == 200, response.text
        total = time.perf_counter() - began
        assert slowest < 0.8, f"a request took {slowest:.2f}s with Redis hung"
        assert total < 1.5, f"6 requests took {total:.2f}s with Redis hung"
        server.resume()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ack = c.post(
                "/v1/events", json={"customer_id": customer, "item_id": item, "type": "view"}
            )
            assert ack.status_code == 200
            if redis.Redis.from_url(server.url).llen(f"lb:recent:{customer}"):
                break
            time.sleep(0.2)
        assert redis.Redis.from_url(server.url).llen(f"lb:recent:{customer}") >= 1
        assert c.get(feed).status_code == 200


@pytest.mark.redis
def test_events_accepted_in_an_outage_reach_the_online_store_when_it_is_back(
    retailer: tuple[Path, Path],
    tmp_path: Path,
    customer: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14, defect 6: accepted during the outage, applied once Redis answers; few warnings."""
    server = redis_server
    _, bundles = retailer
    settings = Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=server.url,
    )
    with TestClient(create_app(settings)) as c:
        feed = f"/v1/customers/{customer}/recommendations?k=6"
        items = [it["item_id"] for it in c.get(feed).json()["items"]]
        server.kill()
        caplog.clear()
        for item in items[:5]:
            ack = c.post(
                "/v1/events", json={"customer_id": customer, "item_id": item, "type": "view"}
            )
            assert ack.status_code == 200 and ack.json()["accepted"] == 1
            assert c.get(feed).status_code == 200
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) <= 4, [r.getMessage() for r in warnings]
        server.start()
        time.sleep(1.2)  # past the circuit breaker's retry interval
        last = {"customer_id": customer, "item_id": items[5], "type": "view"}
        assert c.post("/v1/events", json=last).json()["accepted"] == 1
        recent = redis.Redis.from_url(server.url).lrange(f"lb:recent:{customer}", 0, -1)
        seen = [orjson.loads(r)["item_id"] for r in recent]
        assert seen == list(reversed(items[:6])), "the outage's events, in order, then the new"
