"""Replicas agree: two services (real uvicorn processes, different ports) sharing Redis, the event
store (the file log's directory, or PostgreSQL) and the bundles folder behave as one service —
events, consent, erasure, a new bundle, the bandit's evidence and the attribution counters seen
through either are seen through the other. Replica A is ``lookbook serve --workers 2``: every
one of its workers accepts events."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
import redis
from service_process import STORES, ServiceProcess, store_env

from feature_store.event_store import open_event_store
from feature_store.schema import Interaction
from models.bundle import latest_bundle

pytestmark = pytest.mark.redis

POLL_SECONDS = 0.5
EVENTS = 200
CONNECTIONS = 20
T = TypeVar("T")


class Fleet:
    """Two replicas, A (two workers) and B, over one Redis prefix, event store and bundles."""

    def __init__(
        self,
        root: Path,
        store: str,
        location: str | Path,
        a: ServiceProcess,
        b: ServiceProcess,
        prefix: str,
    ) -> None:
        self.root = root
        self.store = store
        self.location = location
        self.bundles = root / "bundles"
        self.prefix = prefix
        self.a = httpx.Client(base_url=a.url, timeout=30.0)
        self.b = httpx.Client(base_url=b.url, timeout=30.0)

    def stored(self) -> list[Interaction]:
        """Every readable event of the shared event store, read afresh."""
        reader = open_event_store(self.location, read_only=True)
        try:
            return list(reader.iter_events())
        finally:
            reader.close()


@pytest.fixture(scope="module", params=STORES)
def fleet(
    retailer: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    request: pytest.FixtureRequest,
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    shutil.copytree(retailer[1], root / "bundles")  # a new version is published into it
    prefix = f"lbtest:{uuid.uuid4().hex[:8]}:"
    store_vars, location = store_env(request, root, request.param)
    env = {
        "REDIS_URL": redis_url,
        "LOOKBOOK_REDIS_PREFIX": prefix,
        "LOOKBOOK_BUNDLE_DIR": str(root / "bundles"),
        "LOOKBOOK_BUNDLE_POLL_SECONDS": str(POLL_SECONDS),
        "LOOKBOOK_BANDIT__ENABLED": "true",
        "LOOKBOOK_BANDIT_SEED": "7",
        **store_vars,
    }
    a = ServiceProcess(root / "a.log", env, workers=2)
    b = ServiceProcess(root / "b.log", env)
    try:
        a.launch()
        b.launch()  # all start at once
        a.wait_ready()
        b.wait_ready()
        fleet = Fleet(root, request.param, location, a, b, prefix)
        yield fleet
        fleet.a.close()
        fleet.b.close()
    finally:
        a.stop()
        b.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def customers(retailer: tuple[Path, Path]) -> list[str]:
    """Known customers with the most purchases first (so their lists are personal)."""
    frame = pd.read_parquet(retailer[0] / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    return [str(c) for c in bought.groupby("customer_id", observed=True).size().nlargest(20).index]


def eventually(check: Callable[[], T], timeout: float = 10.0) -> T:
    """``check()`` once it stops failing an assertion, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def feed(client: httpx.Client, customer: str, k: int = 8) -> dict[str, Any]:
    answer = client.get(f"/v1/customers/{customer}/recommendations", params={"k": k})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def post(client: httpx.Client, *events: dict[str, Any]) -> None:
    answer = client.post("/v1/events", json={"events": list(events)})
    assert answer.status_code == 200 and answer.json()["accepted"] == len(events), answer.text


def test_every_worker_accepts_events(fleet: Fleet, retailer: tuple[Path, Path]) -> None:
    """200 events from 20 connections to the two workers of A: all accepted, all stored."""
    items = pd.read_parquet(retailer[0] / "items.parquet")["item_id"].astype(str).tolist()
    start = datetime.now(UTC) - timedelta(minutes=5)
    events = [
        {
            "customer_id": f"W-{k % 50:03d}",
            "item_id": items[(7 * k) % len(items)],
            "type": "view",
            "timestamp": (start + timedelta(milliseconds=k)).isoformat(),
        }
        for k in range(EVENTS)
    ]

    def send(chunk: list[dict[str, Any]]) -> list[int]:
        with httpx.Client(base_url=str(fleet.a.base_url), timeout=30.0) as http:  # its own
            return [http.post("/v1/events", json=event).status_code for event in chunk]

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        codes = [
            c
            for answer in pool.map(send, [events[k::CONNECTIONS] for k in range(CONNECTIONS)])
            for c in answer
        ]
    assert len(codes) == EVENTS and [c for c in codes if not 200 <= c < 300] == [], codes
    stored = sorted(
        (e.customer_id, e.item_id, e.timestamp)
        for e in fleet.stored()
        if e.customer_id.startswith("W-")
    )
    sent = sorted(
        (str(e["customer_id"]), str(e["item_id"]), datetime.fromisoformat(str(e["timestamp"])))
        for e in events
    )
    assert stored == sent, "every accepted event is readable from the store, once"
    if fleet.store == "file":  # A's two workers and B: a slot each
        slots = sorted(p.name for p in (fleet.root / "events").glob("writer-*"))
        assert slots == ["writer-01", "writer-02", "writer-03"], slots


def test_an_event_through_a_changes_the_next_list_of_b(fleet: Fleet, customers: list[str]) -> None:
    customer = customers[0]
    before = feed(fleet.b, customer)
    assert feed(fleet.b, customer)["items"] == before["items"]  # cached (in Redis)
    bought = ids(before)[:2]
    post(fleet.a, *({"customer_id": customer, "item_id": i, "type": "purchase"} for i in bought))
    after = feed(fleet.b, customer)  # at once: no waiting
    assert not set(bought) & set(ids(after)), "B excludes what was bought through A"
    assert ids(after) == ids(feed(fleet.a, customer)), "both replicas serve the same list"


def test_consent_given_through_a_is_honoured_by_b(fleet: Fleet, customers: list[str]) -> None:
    customer = customers[1]
    personal = feed(fleet.b, customer)
    assert {item["source"] for item in personal["items"]} != {"popular"}
    before = fleet.b.get(f"/v1/customers/{customer}/profile").json()
    assert before["personalization_consent"] and (before["sizes"] or before["affinities"])
    answer = fleet.a.put(f"/v1/customers/{customer}/consent", json={"personalization": False})
    assert answer.status_code == 200
    for client in (fleet.b, fleet.a):
        body = feed(client, customer)
        assert {item["source"] for item in body["items"]} == {"popular"}, "not personalized"
        profile = client.get(f"/v1/customers/{customer}/profile").json()
        assert profile["personalization_consent"] is False
        assert profile["segment"] == "default"
        assert not profile.get("sizes") and not profile.get("affinities"), profile
    fleet.a.put(f"/v1/customers/{customer}/consent", json={"personalization": True})
    assert {item["source"] for item in feed(fleet.b, customer)["items"]} != {"popular"}
    assert fleet.b.get(f"/v1/customers/{customer}/profile").json()["personalization_consent"]


def listed(client: httpx.Client, segment: str) -> set[str]:
    page = client.get(f"/v1/segments/{segment}/customers", params={"limit": 1000}).json()
    assert page["next_cursor"] is None, "the small retailer's segments fit one page"
    return {c["customer_id"] for c in page["customers"]}


def test_a_customer_erased_through_a_is_gone_from_b(
    fleet: Fleet, customers: list[str], redis_url: str
) -> None:
    customer, quiet = customers[2], customers[4]
    segments = {c: fleet.b.get(f"/v1/customers/{c}/profile").json()["segment"] for c in customers}
    assert customer in listed(fleet.b, segments[customer])
    assert quiet in listed(fleet.b, segments[quiet])
    post(
        fleet.b,
        {"customer_id": customer, "item_id": ids(feed(fleet.b, customer))[0], "type": "click"},
    )
    assert any(e.customer_id == customer for e in fleet.stored())
    feed(fleet.b, customer)  # cached (Redis), profile state written (Redis)
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter(match=f"{fleet.prefix}*", count=1000)]
    assert len([k for k in keys if customer in k]) >= 3, keys
    assert fleet.a.delete(f"/v1/customers/{customer}").status_code == 200
    assert fleet.a.delete(f"/v1/customers/{quiet}").status_code == 200

    keys = [k.decode() for k in client.scan_iter(match=f"{fleet.prefix}*", count=1000)]
    assert not [k for k in keys if customer in k], "no online state, profile state or cache"
    assert not any(e.customer_id == customer for e in fleet.stored()), "events erased"
    profile = fleet.b.get(f"/v1/customers/{customer}/profile")
    assert profile.status_code == 404 and profile.json()["error"]["code"] == "unknown_customer"
    body = feed(fleet.b, customer)
    assert {item["source"] for item in body["items"]} == {"popular"}, "no trace of their history"
    assert customer not in listed(fleet.b, segments[customer])
    # B learns of an erasure it was never asked about from the shared log, within a poll

    def quiet_gone() -> None:
        assert quiet not in listed(fleet.b, segments[quiet])

    eventually(quiet_gone, timeout=10 * POLL_SECONDS + 5)
    # new activity after the erasure starts a fresh history
    post(fleet.b, {"customer_id": customer, "item_id": ids(body)[0], "type": "view"})
    assert [e.customer_id for e in fleet.stored()].count(customer) == 1


def test_a_click_through_b_credits_a_list_shown_by_a(fleet: Fleet, customers: list[str]) -> None:
    customer = customers[3]
    shown = feed(fleet.a, customer)
    assert shown["recommendation_id"]
    position = 1
    item = shown["items"][position]
    post(
        fleet.b,
        {
            "customer_id": customer,
            "item_id": item["item_id"],
            "type": "click",
            "recommendation_id": shown["recommendation_id"],
            "position": position,
        },
    )
    report_a = fleet.a.get("/v1/admin/attribution").json()
    report_b = fleet.b.get("/v1/admin/attribution").json()
    assert report_a == report_b
    rows = [r for r in report_a["rows"] if r["source"] == item["source"]]
    assert sum(r["clicks"] for r in rows) >= 1, report_a
    bandit_a = fleet.a.get("/v1/admin/bandit").json()
    bandit_b = fleet.b.get("/v1/admin/bandit").json()
    # the same evidence, decayed to two instants a few milliseconds apart
    _same_arms(bandit_a, bandit_b)
    clicked = [a for a in bandit_b["arms"] if a["source"] == item["source"] and a["rewards"] > 0]
    assert clicked, "B's report holds the reward of the click on A's list"


def _same_arms(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Both reports list the same arms with the same evidence (up to the decay between calls)."""
    assert {k: v for k, v in a.items() if k != "arms"} == {
        k: v for k, v in b.items() if k != "arms"
    }
    assert len(a["arms"]) == len(b["arms"])
    for x, y in zip(a["arms"], b["arms"], strict=True):
        assert (x["surface"], x["segment"], x["source"]) == (
            y["surface"],
            y["segment"],
            y["source"],
        )
        for key in ("mean", "low", "high", "impressions", "rewards", "traffic_share"):
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-9), (key, x, y)


def test_a_new_bundle_is_picked_up_by_both(fleet: Fleet) -> None:
    info = latest_bundle(fleet.bundles)
    assert info is not None
    newer = f"{info.version}-r2"
    staging = fleet.bundles / f".{newer}"
    shutil.copytree(info.path, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    (staging / "manifest.json").write_text(json.dumps({**manifest, "version": newer}))
    staging.rename(fleet.bundles / newer)  # published atomically

    def both_serve_it() -> None:
        for client in (fleet.a, fleet.b):
            assert client.get("/readyz").json()["model_version"] == newer

    eventually(both_serve_it, timeout=10 * POLL_SECONDS + 10)
