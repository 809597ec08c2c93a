"""Erasure reaches the disk: the scheduled compaction removes an erased customer's events from the
raw event log, and the access log never names a customer."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import uvicorn
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from feature_store.event_log import EventLog

CUSTOMER = "C-erase-me-7"


def _settings(retailer: tuple[Path, Path], tmp_path: Path, compaction: float) -> Settings:
    return Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
        compaction_seconds=compaction,
    )


def _lines_naming(directory: Path, customer: str) -> list[dict[str, object]]:
    return [
        orjson.loads(line)
        for path in EventLog(directory, read_only=True).segment_paths()
        for line in path.read_bytes().splitlines()
        if customer.encode() in line
    ]


def test_the_scheduled_compaction_removes_an_erased_customers_events_from_disk(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    settings = _settings(retailer, tmp_path, compaction=0.05)
    events = [{"customer_id": CUSTOMER, "item_id": f"I-{i}", "type": "click"} for i in range(3)]
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/events", json=events).json()["accepted"] == 3
        assert c.post("/v1/events", json={**events[0], "customer_id": "C-kept"}).status_code == 200
        assert len(_lines_naming(settings.event_log_dir, CUSTOMER)) == 3
        assert c.delete(f"/v1/customers/{CUSTOMER}").status_code == 200
        deadline = time.monotonic() + 30
        while any("tombstone" not in r for r in _lines_naming(settings.event_log_dir, CUSTOMER)):
            assert time.monotonic() < deadline, "the erased customer's events are still on disk"
            time.sleep(0.05)
    # only the tombstone names the customer (it keeps late, back-dated events out); others stay
    assert [list(r) for r in _lines_naming(settings.event_log_dir, CUSTOMER)] == [["tombstone"]]
    assert len(_lines_naming(settings.event_log_dir, "C-kept")) == 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_access_log_does_not_contain_customer_ids(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(_settings(retailer, tmp_path, compaction=0))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    records = _Records()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(records)
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base) as http:
            http.get(f"/v1/customers/{CUSTOMER}/recommendations", params={"k": 3})
            http.get("/v1/seasonal", params={"customer_id": CUSTOMER})
            http.delete(f"/v1/customers/{CUSTOMER}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        access.removeHandler(records)
    assert len(records.messages) == 3, records.messages
    assert not [m for m in records.messages if CUSTOMER in m]
    assert any("/v1/customers/-/recommendations" in m for m in records.messages)
