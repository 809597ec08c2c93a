"""Attribution from event to counter: echoed clicks, purchases within the window, unattributed
echoes, the admin endpoint and Prometheus, and replicas adding up on Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.schemas import AttributionReport
from app.settings import Settings
from helpers import assert_matches

# in the past, with room for the later events below: an event time ahead of the clock is refused
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)


def make_settings(retailer: tuple[Path, Path], tmp_path: Path, **extra: Any) -> Settings:
    _, bundles = retailer
    return Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        **{"redis_url": None, **extra},
    )


@pytest.fixture
def client(retailer: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(retailer, tmp_path))) as c:
        yield c


@pytest.fixture(scope="module")
def customer(retailer: tuple[Path, Path]) -> str:
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    return str(bought.groupby("customer_id", observed=True).size().idxmax())


def post(client: TestClient, *events: dict[str, Any]) -> None:
    response = client.post("/v1/events", json=list(events))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": len(events), "rejected": []}


def event(customer: str, item: str, kind: str, at: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {"customer_id": customer, "item_id": item, "type": kind,
            "timestamp": at.isoformat(), **extra}  # fmt: skip


def rows(client: TestClient) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    report = client.get("/v1/admin/attribution").json()
    assert_matches(AttributionReport, report)
    return {(r["source"], r["surface"], r["variant"]): r for r in report["rows"]}


def activity(client: TestClient) -> dict[tuple[str, str, str | None], tuple[int, int, int]]:
    """(clicks, add-to-carts, purchases) per credit, leaving out rows with none."""
    return {
        credit: (r["clicks"], r["add_to_carts"], r["purchases"])
        for credit, r in rows(client).items()
        if r["clicks"] or r["add_to_carts"] or r["purchases"]
    }


def feed(client: TestClient, customer: str, k: int = 8) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/customers/{customer}/recommendations?k={k}").json()
    return body


def test_a_click_echoing_id_and_position_credits_exactly_that_source(
    client: TestClient, customer: str
) -> None:
    body = feed(client, customer)
    position = len(body["items"]) - 1
    item = body["items"][position]
    post(client, event(customer, item["item_id"], "click",
                       recommendation_id=body["recommendation_id"], position=position))  # fmt: skip
    credit = (item["source"], "personalized", None)
    assert activity(client) == {credit: (1, 0, 0)}
    row = rows(client)[credit]
    shown_from_source = sum(1 for i in body["items"] if i["source"] == item["source"])
    assert row["impressions"] == shown_from_source
    assert row["click_through_rate"] == pytest.approx(1 / shown_from_source)
    metrics = client.get("/metrics").text
    label = f'source="{item["source"]}",surface="personalized",type="click",variant="none"'
    assert f"lookbook_attributed_events_total{{{label}}} 1.0" in metrics


def test_a_purchase_within_the_window_is_credited_to_the_click_and_outside_it_not(
    client: TestClient, customer: str
) -> None:
    body = feed(client, customer)
    first, second = body["items"][0], body["items"][1]
    rec = body["recommendation_id"]
    post(
        client,
        event(customer, first["item_id"], "click", T0, recommendation_id=rec, position=0),
        event(customer, second["item_id"], "add_to_cart", T0, recommendation_id=rec, position=1),
    )
    # no echo on the purchases: credited through the click / add-to-cart of the same item
    post(
        client,
        event(customer, first["item_id"], "purchase", T0 + timedelta(days=6), price=40.0),
        event(customer, second["item_id"], "purchase", T0 + timedelta(days=8), price=50.0),
        event("someone-else", first["item_id"], "purchase", T0 + timedelta(days=1), price=9.0),
    )
    table = rows(client)
    one = table[(first["source"], "personalized", None)]
    two = table[(second["source"], "personalized", None)]
    if first["source"] == second["source"]:
        assert (one["clicks"], one["add_to_carts"], one["purchases"]) == (1, 1, 1)
    else:
        assert (one["clicks"], one["purchases"]) == (1, 1)
        assert (two["add_to_carts"], two["purchases"]) == (1, 0), "8 days: outside the window"
    assert one["revenue"] == 40.0, "only the purchase within 7 days, at the event's price"
    assert sum(r["purchases"] for r in table.values()) == 1


def test_revenue_falls_back_to_the_catalog_price(client: TestClient, customer: str) -> None:
    body = feed(client, customer)
    item = body["items"][2]
    post(client, event(customer, item["item_id"], "purchase",
                       recommendation_id=body["recommendation_id"], position=2))  # fmt: skip
    row = rows(client)[(item["source"], "personalized", None)]
    assert row["purchases"] == 1
    assert row["revenue"] == pytest.approx(item["price"], abs=0.01)
    assert row["conversion_rate"] == pytest.approx(1 / row["impressions"])


def test_unusable_echoes_are_accepted_unattributed_and_counted(
    client: TestClient, customer: str
) -> None:
    body = feed(client, customer, k=4)
    rec = body["recommendation_id"]
    items = body["items"]
    post(
        client,
        event(customer, items[0]["item_id"], "click", recommendation_id="f" * 32, position=0),
        event(customer, items[0]["item_id"], "click", recommendation_id=rec, position=99),
        event(customer, items[0]["item_id"], "click", recommendation_id=rec, position=1),
        event(customer, items[0]["item_id"], "click", recommendation_id=rec),
        event(customer, items[0]["item_id"], "click"),  # no echo: not an echo to count
        event(customer, items[0]["item_id"], "view", recommendation_id=rec, position=0),
    )
    assert activity(client) == {}
    report = client.get("/v1/admin/attribution").json()
    assert report["unattributed"] == {
        "unknown_id": 1,
        "bad_position": 1,
        "other_item": 1,
        "no_position": 1,
    }
    assert report["attribution_window_days"] == 7.0
    metrics = client.get("/metrics").text
    assert 'lookbook_unattributed_echoes_total{reason="unknown_id"} 1.0' in metrics


def test_the_admin_rows_match_what_was_shown_and_done(client: TestClient, customer: str) -> None:
    body = feed(client, customer, k=6)
    anchor = body["items"][0]["item_id"]
    similar = client.get(f"/v1/items/{anchor}/similar?k=4").json()
    target = similar["items"][0]
    post(client, event(customer, target["item_id"], "click",
                       recommendation_id=similar["recommendation_id"], position=0))  # fmt: skip
    expected: dict[tuple[str, str, str | None], int] = {}
    for shown in (body, similar):
        for item in shown["items"]:
            credit = (item["source"], shown["surface"], None)
            expected[credit] = expected.get(credit, 0) + 1
    table = rows(client)
    assert {credit: r["impressions"] for credit, r in table.items()} == expected
    assert activity(client) == {(target["source"], "similar", None): (1, 0, 0)}
    for credit, r in table.items():
        assert r["revenue"] == 0.0 and r["add_to_cart_rate"] == 0.0, credit


def test_an_erased_customer_loses_their_touches_and_records(
    client: TestClient, customer: str
) -> None:
    body = feed(client, customer, k=3)
    item = body["items"][0]
    post(client, event(customer, item["item_id"], "click",
                       recommendation_id=body["recommendation_id"], position=0))  # fmt: skip
    store = client.app.state.service.attribution_store  # type: ignore[attr-defined]
    assert store.get_served(body["recommendation_id"]).customer_id == customer
    assert client.delete(f"/v1/customers/{customer}").status_code == 200
    assert store.get_served(body["recommendation_id"]) is None, "the record named them"
    after = feed(client, customer, k=3)  # nothing of theirs is left to personalize with
    assert store.get_served(after["recommendation_id"]).customer_id is None
    post(client, event(customer, item["item_id"], "purchase", T0 + timedelta(days=1)))
    assert activity(client) == {(item["source"], "personalized", None): (1, 0, 0)}


@pytest.mark.redis
def test_replicas_on_redis_add_up(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str, customer: str
) -> None:
    def replica(name: str) -> TestClient:
        settings = make_settings(
            retailer, tmp_path / name, redis_url=redis_url, redis_prefix=redis_prefix
        )
        return TestClient(create_app(settings))

    with replica("a") as a, replica("b") as b:
        body = feed(a, customer, k=5)
        item = body["items"][0]
        # the click reaches the other replica, which reads the record from Redis
        post(b, event(customer, item["item_id"], "click",
                      recommendation_id=body["recommendation_id"], position=0))  # fmt: skip
        post(a, event(customer, item["item_id"], "purchase", T0 + timedelta(hours=1), price=12.5))
        again = feed(b, customer, k=5)  # a second showing, on the other replica
        shown = sum(1 for i in [*body["items"], *again["items"]] if i["source"] == item["source"])
        for client in (a, b):
            row = rows(client)[(item["source"], "personalized", None)]
            assert (row["impressions"], row["clicks"], row["purchases"]) == (shown, 1, 1)
            assert row["revenue"] == 12.5
