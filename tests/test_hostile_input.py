"""Hostile input (issue 14): values that could be accepted but would poison later work or could
never be undone are refused at the door, and what is already stored is read defensively."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from feature_store.event_log import EventLog, segment_name
from feature_store.schema import (
    EARLIEST_EVENT_TIME,
    MAX_EVENT_LEAD,
    Interaction,
    InteractionType,
)
from training.train import load_training_frame


@pytest.fixture(scope="module")
def catalog(retailer: tuple[Path, Path]) -> tuple[str, str]:
    """A known customer and item of the synthetic retailer."""
    data, _ = retailer
    interactions = pd.read_parquet(data / "interactions.parquet")
    return str(interactions["customer_id"].iloc[0]), str(interactions["item_id"].iloc[0])


def event(customer: str, item: str, **extra: Any) -> dict[str, Any]:
    return {"customer_id": customer, "item_id": item, "type": "view", **extra}


# -- defect 1: one event poisons every later training ---------------------------------------------

IMPLAUSIBLE_TIMES = [
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",  # no UTC datetime at all
    "9999-12-31T23:59:59-05:00",
    "1999-12-31T23:59:59Z",
    "beyond the lead",  # MAX_EVENT_LEAD + 1 h from now
]


@pytest.mark.parametrize("stamp", IMPLAUSIBLE_TIMES)
def test_implausible_event_times_are_rejected_per_event(
    client: TestClient, settings: Settings, catalog: tuple[str, str], stamp: str
) -> None:
    customer, item = catalog
    if stamp == "beyond the lead":
        stamp = (datetime.now(UTC) + MAX_EVENT_LEAD + timedelta(hours=1)).isoformat()
    good = event(customer, item, timestamp=datetime.now(UTC).isoformat())
    response = client.post("/v1/events", json=[good, event(customer, item, timestamp=stamp)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "invalid_event")]
    assert "timestamp" in body["rejected"][0]["message"]
    alone = client.post("/v1/events", json=event(customer, item, timestamp=stamp))
    assert alone.status_code == 422 and alone.json()["error"]["code"] == "invalid_event"
    stored = EventLog(settings.event_log_dir, read_only=True).read_frame()
    assert len(stored) == 1 and stored.attrs["skipped_lines"] == 0


def test_event_times_inside_the_window_are_accepted(
    client: TestClient, catalog: tuple[str, str]
) -> None:
    customer, item = catalog
    stamps = [
        EARLIEST_EVENT_TIME.isoformat(),
        "2024-05-01T09:30:00",  # naive: read as UTC
        (datetime.now(UTC) + MAX_EVENT_LEAD - timedelta(minutes=5)).isoformat(),
    ]
    response = client.post("/v1/events", json=[event(customer, item, timestamp=s) for s in stamps])
    assert response.json() == {"accepted": 3, "rejected": []}


def test_a_bad_line_in_the_log_is_skipped_and_reported_when_training(
    retailer: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, _ = retailer
    customer, item = (
        pd.read_parquet(data / "interactions.parquet")[["customer_id", "item_id"]].iloc[0].tolist()
    )
    events = tmp_path / "events"
    with EventLog(events) as log:
        log.append(
            [
                Interaction(
                    customer_id=customer,
                    item_id=item,
                    type=InteractionType.PURCHASE,
                    timestamp=datetime(2026, 10, 1, tzinfo=UTC),
                )
            ]
        )
    poisoned = {**event(customer, item), "timestamp": "9999-12-31T23:59:59+00:00"}
    with (events / segment_name(1)).open("ab") as file:
        file.write(orjson.dumps(poisoned) + b"\n")  # written before the door was closed
        file.write(orjson.dumps({**poisoned, "timestamp": "not a time"}) + b"\n")
        file.write(b"{not json\n")
        file.write(orjson.dumps({"customer_id": customer}) + b"\n")
    with caplog.at_level(logging.WARNING, logger="lookbook.events"):
        frame = EventLog(events, read_only=True).read_frame()
    assert len(frame) == 1 and frame.attrs["skipped_lines"] == 4
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-10-01", tz="UTC")
    assert any("row 2" in r.getMessage() for r in caplog.records)
    assert any("skipped 4 bad lines" in r.getMessage() for r in caplog.records)
    dataset = load_training_frame(data, events)
    base = len(pd.read_parquet(data / "interactions.parquet"))
    assert len(dataset.interactions) == base + 1


# -- defect 2: a seasonal date the model cannot compute with ----------------------------------------


@pytest.mark.parametrize(
    "day", ["9999-12-31", "0001-01-01", "2262-04-12", "1677-09-21", "1899-12-31", "2200-01-01"]
)
def test_seasonal_dates_outside_the_documented_range_are_422(client: TestClient, day: str) -> None:
    response = client.get("/v1/seasonal", params={"date": day})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "1900-01-01" in error["message"] and "2199-12-31" in error["message"]


@pytest.mark.parametrize("day", ["1900-01-01", "2026-07-01", "2199-12-31"])
def test_seasonal_dates_inside_the_range_are_served(client: TestClient, day: str) -> None:
    response = client.get("/v1/seasonal", params={"date": day, "k": 5})
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 5


# -- defect 8: an id that can be recorded but never erased ------------------------------------------

HOSTILE_IDS = [
    "a/b",
    "a\x00b",
    "a\nb",
    "a\u202eb",  # right-to-left override
    "x" * 100_000,
    "a\U0001f600b",  # astral plane
    "a b",
    "caf\u00e9",
]
HOSTILE_ID_NAMES = ["slash", "nul", "newline", "rlo", "100k", "astral", "space", "latin1"]


def assert_refused(response: Any, code: str = "validation_error") -> None:
    assert response.status_code == 422, response.text[:500]
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=HOSTILE_ID_NAMES)
def test_hostile_ids_are_refused_in_events(
    client: TestClient, catalog: tuple[str, str], bad: str
) -> None:
    customer, item = catalog
    for field in ("customer_id", "item_id", "store_id", "recommendation_id"):
        response = client.post(
            "/v1/events", json=[event(customer, item), {**event(customer, item), field: bad}]
        )
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        assert body["accepted"] == 1, field
        assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "invalid_event")]


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=HOSTILE_ID_NAMES)
def test_hostile_ids_are_refused_on_every_kind_of_route(
    client: TestClient, catalog: tuple[str, str], bad: str
) -> None:
    customer, item = catalog
    in_url = bad[:20_000]  # the test client refuses longer URLs; still far over the id limit
    segment = quote(in_url, safe="")
    if "/" not in bad:  # a slash never reaches a path parameter: no route matches (404)
        for path in (
            f"/v1/customers/{segment}/recommendations",
            f"/v1/customers/{segment}/profile",
            f"/v1/items/{segment}/similar",
            f"/v1/items/{segment}/complementary",
        ):
            assert_refused(client.get(path))
        consent = {"personalization": True}
        assert_refused(client.put(f"/v1/customers/{segment}/consent", json=consent))
        assert_refused(client.delete(f"/v1/customers/{segment}"))
    for path, params in (
        (f"/v1/items/{item}/similar", {"customer_id": in_url}),
        (f"/v1/items/{item}/similar", {"store_id": in_url}),
        (f"/v1/customers/{customer}/recommendations", {"store_id": in_url}),
        (f"/v1/items/{item}/complementary", {"customer_id": in_url}),
        ("/v1/seasonal", {"customer_id": in_url}),
    ):
        assert_refused(client.get(path, params=params))
    assert_refused(client.post("/v1/sessions/recommendations", json={"items": [bad]}))
    assert_refused(client.post("/v1/sessions/recommendations", json={"items": [{"item_id": bad}]}))
    assert_refused(
        client.post("/v1/sessions/recommendations", json={"items": [item], "session_id": bad})
    )
    assert_refused(client.post("/v1/complementary", json={"items": [bad]}))
    assert_refused(client.post("/v1/complementary", json={"items": [item], "customer_id": bad}))


@pytest.mark.parametrize("customer", ["C0000001", "shopper-42", "a.b_c:d@e+f", "0" * 64, "x" * 128])
def test_every_accepted_id_can_be_addressed_and_erased(
    client: TestClient, catalog: tuple[str, str], customer: str
) -> None:
    _, item = catalog
    stored = client.post("/v1/events", json=event(customer, item, store_id="store-007"))
    assert stored.json() == {"accepted": 1, "rejected": []}
    assert client.get(f"/v1/customers/{customer}/recommendations?k=3").status_code == 200
    assert client.get(f"/v1/customers/{customer}/profile").status_code == 200
    erased = client.delete(f"/v1/customers/{customer}")
    assert erased.status_code == 200, erased.text
    assert client.delete(f"/v1/customers/{customer}").status_code in (200, 404)
