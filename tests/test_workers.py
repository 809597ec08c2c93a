"""``lookbook serve --workers N``: every worker accepts events (each writes its own slot of the
shared event log), and N > 1 without ``REDIS_URL`` is refused with a clear message."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from service_process import ServiceProcess

from benchmarks._common import child_env
from feature_store.event_log import EventLog

EVENTS = 200
CONNECTIONS = 20


def _events(data: Path) -> list[dict[str, object]]:
    customers = pd.read_parquet(data / "customers.parquet")["customer_id"].astype(str).tolist()
    items = pd.read_parquet(data / "items.parquet")["item_id"].astype(str).tolist()
    start = datetime.now(UTC) - timedelta(minutes=5)
    return [
        {
            "customer_id": customers[k % len(customers)],
            "item_id": items[(7 * k) % len(items)],
            "type": "view",
            "timestamp": (start + timedelta(milliseconds=k)).isoformat(),
        }
        for k in range(EVENTS)
    ]


@pytest.mark.redis
def test_two_workers_accept_every_event(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    data, bundles = retailer
    events_dir = tmp_path / "events"
    service = ServiceProcess(
        tmp_path / "serve.log",
        {
            "REDIS_URL": redis_url,
            "LOOKBOOK_REDIS_PREFIX": redis_prefix,
            "LOOKBOOK_BUNDLE_DIR": str(bundles),
            "LOOKBOOK_EVENT_LOG_DIR": str(events_dir),
            "LOOKBOOK_BUNDLE_POLL_SECONDS": "0",
        },
        workers=2,
    ).start()
    events = _events(data)
    try:

        def post(chunk: list[dict[str, object]]) -> list[int]:
            with httpx.Client(base_url=service.url, timeout=30.0) as http:  # its own connection
                return [http.post("/v1/events", json=event).status_code for event in chunk]

        chunks = [events[k::CONNECTIONS] for k in range(CONNECTIONS)]
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            codes = [code for answer in pool.map(post, chunks) for code in answer]
    finally:
        service.stop()
    assert len(codes) == EVENTS
    assert [c for c in codes if not 200 <= c < 300] == [], f"not all accepted: {codes}"
    log = EventLog(events_dir, read_only=True)
    stored = sorted((e.customer_id, e.item_id, e.timestamp.isoformat()) for e in log.iter_events())
    sent = sorted(
        (
            str(e["customer_id"]),
            str(e["item_id"]),
            datetime.fromisoformat(str(e["timestamp"])).isoformat(),
        )
        for e in events
    )
    assert stored == sent, "every accepted event is readable from the log, once"
    assert len(log.read_frame()) == EVENTS
    slots = sorted(p.name for p in events_dir.glob("writer-*"))
    assert slots == ["writer-01", "writer-02"], "each worker writes a slot of its own"


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    env = child_env({"LOOKBOOK_BUNDLE_DIR": str(tmp_path / "none")})
    env.pop("REDIS_URL", None)
    env.pop("LOOKBOOK_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "training.cli", "serve", "--workers", "2", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--workers 2 needs REDIS_URL" in done.stderr, done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "training.cli", "serve", "--help"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0
    assert "needs REDIS_URL" in " ".join(helped.stdout.split())
