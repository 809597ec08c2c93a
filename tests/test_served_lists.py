"""Served-list records: every list showing (a cache hit too) is recorded under its
recommendation_id, kept in the attribution store and in the durable impression log."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.served_lists import Served, pack, unpack
from app.service import RecommendationService
from app.settings import Settings
from feature_store.errors import DataFormatError
from feature_store.impression_log import ImpressionLog
from feature_store.served_lists import ServedList, ServedPosition, stamp, template

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def customer(retailer: tuple[Path, Path]) -> str:
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    return str(bought.groupby("customer_id", observed=True).size().idxmax())


def service(client: TestClient) -> RecommendationService:
    found: RecommendationService = client.app.state.service  # type: ignore[attr-defined]
    return found


def record_of(client: TestClient, body: dict[str, Any]) -> ServedList:
    found = service(client).attribution_store.get_served(body["recommendation_id"])
    assert found is not None, "the showing is recorded under its recommendation_id"
    return found


def shown(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(item, source) per position, across slots for complete-the-look lists."""
    items = body["items"] if "items" in body else [i for s in body["slots"] for i in s["items"]]
    return [(item["item_id"], item["source"]) for item in items]


def test_a_served_feed_is_recorded_with_every_position(client: TestClient, customer: str) -> None:
    body = client.get(f"/v1/customers/{customer}/recommendations?k=8").json()
    assert len(body["items"]) == 8
    record = record_of(client, body)
    assert [(p.item_id, p.source) for p in record.items] == shown(body)
    assert all(p.propensity == 1.0 for p in record.items), "the fixed fusion is deterministic"
    assert record.surface == "personalized" and record.strategy_surface == "home"
    assert record.segment == body["segment"]
    assert record.customer_id == customer
    assert record.model_version == body["model_version"]
    assert record.variant is None
    assert abs(record.served_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_every_list_surface_is_recorded(client: TestClient, customer: str) -> None:
    feed = client.get(f"/v1/customers/{customer}/recommendations?k=4").json()
    anchor = feed["items"][0]["item_id"]
    other = feed["items"][1]["item_id"]
    responses = {
        "similar": client.get(f"/v1/items/{anchor}/similar?k=5"),
        "complementary": client.get(f"/v1/items/{anchor}/complementary?k=2"),
        "basket": client.post("/v1/complementary", json={"items": [anchor, other], "k": 2}),
        "seasonal": client.get("/v1/seasonal?k=5"),
        "session": client.post("/v1/sessions/recommendations", json={"items": [anchor], "k": 5}),
    }
    for name, response in responses.items():
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        record = record_of(client, body)
        assert record.surface == body["surface"], name
        assert [(p.item_id, p.source) for p in record.items] == shown(body), name
        assert shown(body), f"{name} showed something"
        assert record.customer_id is None, f"{name}: no customer asked for"
        assert record.segment is None


def test_a_cached_list_shown_twice_is_two_showings(client: TestClient, customer: str) -> None:
    url = f"/v1/customers/{customer}/recommendations?k=6"
    first = client.get(url).json()
    second = client.get(url).json()
    metrics = client.get("/metrics").text
    assert 'lookbook_cache_requests_total{kind="personalized",result="hit"} 1.0' in metrics
    assert first["items"] == second["items"]
    assert first["recommendation_id"] != second["recommendation_id"]
    one, two = record_of(client, first), record_of(client, second)
    assert one.recommendation_id != two.recommendation_id
    assert one.items == two.items and len(one.items) == 6
    assert one.served_at <= two.served_at
    impressions = sum(
        row["impressions"]
        for row in client.get("/v1/admin/attribution").json()["rows"]
        if row["surface"] == "personalized"
    )
    assert impressions == 12, "both showings count their six positions"


def test_the_impression_log_holds_the_records_after_shutdown(
    settings: Settings, customer: str
) -> None:
    ids = []
    with TestClient(create_app(settings)) as c:
        for url in (
            f"/v1/customers/{customer}/recommendations?k=5",
            f"/v1/customers/{customer}/recommendations?k=5",
            "/v1/seasonal?k=3",
        ):
            ids.append(c.get(url).json()["recommendation_id"])
    log = ImpressionLog(settings.impressions_dir, read_only=True)
    assert settings.impressions_dir == settings.event_log_dir / "impressions"
    records = list(log.iter_records())
    assert [r.recommendation_id for r in records] == ids
    assert [len(r.items) for r in records] == [5, 5, 3]
    assert records[0].items == records[1].items


def test_a_consent_free_feed_does_not_name_the_customer(client: TestClient, customer: str) -> None:
    assert client.put(
        f"/v1/customers/{customer}/consent", json={"personalization": False}
    ).status_code in (200, 204)
    body = client.get(f"/v1/customers/{customer}/recommendations?k=3").json()
    assert body["personalized"] is False
    assert record_of(client, body).customer_id is None


# -- the record format and the cache framing ------------------------------------------------------


def test_stamp_makes_a_full_record_from_a_template() -> None:
    raw = template(
        surface="similar",
        model_version="v7",
        positions=[("I1", "als", 1.0), ("I2", "attributes", 0.5)],
        variant="b",
    )
    full = stamp(raw, "abc", T0)
    assert orjson.loads(full)["recommendation_id"] == "abc"
    parsed = ServedList.from_json(full)
    assert parsed.items == (
        ServedPosition("I1", "als", 1.0),
        ServedPosition("I2", "attributes", 0.5),
    )
    assert (parsed.surface, parsed.variant, parsed.served_at) == ("similar", "b", T0)
    assert ServedList.from_record(parsed.to_record()) == parsed
    with pytest.raises(DataFormatError):
        ServedList.from_json(b'{"recommendation_id": "x"}')


def test_cache_framing_round_trips_and_leaves_plain_bodies_alone() -> None:
    served = Served(b'{"items":[]}', b'{"surface":"x"}')
    assert unpack(pack(served)) == served
    assert pack(Served(b'{"v":1}')) == b'{"v":1}'
    assert unpack(b'{"v":1}') == Served(b'{"v":1}')


# -- the impression log ---------------------------------------------------------------------------


def line(n: int, customer: str | None = "C1", at: datetime = T0) -> bytes:
    return stamp(
        template(surface="session", model_version="v1", positions=[("I1", "popular", 1.0)],
                 customer_id=customer),
        f"r{n}",
        at,
    )  # fmt: skip


def test_the_log_writes_batches_off_the_caller_with_one_fsync_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    log = ImpressionLog(tmp_path, flush_seconds=30)  # the thread will not flush during the test
    for n in range(50):
        assert log.append(line(n))
    assert fsyncs == [] and log.segment_paths() == [], "append never touches the disk"
    assert log.flush() == 50
    files = log.segment_paths()
    assert len(files) == 1
    assert len([fd for fd in fsyncs if fd != -1]) == 2, "one for the data, one for the new name"
    assert [r.recommendation_id for r in log.iter_records()] == [f"r{n}" for n in range(50)]
    log.close()
    assert not log.append(line(99)), "a closed log takes nothing"


def test_the_writer_thread_flushes_on_its_own(tmp_path: Path) -> None:
    log = ImpressionLog(tmp_path, flush_seconds=0.05)
    log.append(line(1))
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while log.written == 0 and datetime.now(UTC) < deadline:
        time.sleep(0.01)
    assert log.written == 1
    assert [r.recommendation_id for r in ImpressionLog(tmp_path).iter_records()] == ["r1"]
    log.close()


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    log = ImpressionLog(tmp_path, flush_seconds=30, max_pending=3)
    assert [log.append(line(n)) for n in range(5)] == [True, True, True, False, False]
    assert log.dropped == 2
    log.close()
    assert len(list(log.iter_records())) == 3


def test_segments_rotate_and_readers_skip_a_torn_tail(tmp_path: Path) -> None:
    log = ImpressionLog(tmp_path, flush_seconds=30, segment_bytes=400)
    for n in range(6):
        log.append(line(n))
        log.flush()
    log.close()
    files = log.segment_paths()
    assert len(files) > 1
    with open(files[-1], "ab") as file:
        file.write(line(6)[:40])  # a writer killed mid-write
    assert [r.recommendation_id for r in log.iter_records()] == [f"r{n}" for n in range(6)]
    with open(files[0], "ab") as file:
        file.write(b"not json\n")
    with pytest.raises(DataFormatError, match="impressions-"):
        list(log.iter_records())


def test_readers_skip_records_of_erased_customers(tmp_path: Path) -> None:
    log = ImpressionLog(tmp_path, flush_seconds=30)
    log.append(line(1, "C1", T0))
    log.append(line(2, "C1", T0 + timedelta(days=2)))
    log.append(line(3, "C2", T0))
    log.append(line(4, None, T0))
    log.close()
    erased = {"C1": T0 + timedelta(days=1)}
    kept = [r.recommendation_id for r in log.iter_records(erased=erased)]
    assert kept == ["r2", "r3", "r4"]


def test_compaction_removes_erased_customers_records_but_not_from_a_live_writer(
    tmp_path: Path,
) -> None:
    old = ImpressionLog(tmp_path, flush_seconds=30)
    for n, who in enumerate(["C1", "C2", "C1", None]):
        old.append(line(n, who, T0))
    old.close()
    live = ImpressionLog(tmp_path, flush_seconds=30)
    live.append(line(10, "C1", T0))
    live.flush()
    erased = {"C1": T0 + timedelta(days=1)}
    other = ImpressionLog(tmp_path, flush_seconds=30)  # another process compacting
    assert other.compact(erased) == 2, "the live writer's segment is left alone"
    everything = [r.recommendation_id for r in ImpressionLog(tmp_path).iter_records()]
    assert everything == ["r1", "r3", "r10"]
    live.close()
    assert ImpressionLog(tmp_path).compact(erased) == 1
    assert [r.recommendation_id for r in ImpressionLog(tmp_path).iter_records()] == ["r1", "r3"]
    assert not list(tmp_path.glob("*.tmp"))


def test_the_writer_that_compacts_releases_its_own_segment(tmp_path: Path) -> None:
    """Found by the reliability suite (erasure): the service is its impression log's only
    writer and holds its segment for hours, so its own compaction never removed an erased
    customer's records from it. Now it closes that segment first (the next record opens a new
    one); without erased records there it keeps writing the same segment."""
    live = ImpressionLog(tmp_path, flush_seconds=30)
    live.append(line(1, "C1", T0))
    live.append(line(2, "C2", T0))
    live.flush()
    assert live.compact({"C3": T0 + timedelta(days=1)}) == 0
    live.append(line(3, "C1", T0))  # queued, not written yet: written before the check
    assert live.compact({"C1": T0 + timedelta(days=1)}) == 2
    assert not any(b'"C1"' in path.read_bytes() for path in tmp_path.glob("*.jsonl"))
    live.append(line(4, "C2", T0))
    live.close()
    assert [r.recommendation_id for r in ImpressionLog(tmp_path).iter_records()] == ["r2", "r4"]
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
