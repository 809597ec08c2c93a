"""The API's events, consent and erasure over the PostgreSQL event store (``database_url`` set):
the same API tests as over the file log, re-run here against the run's database, plus what only a
server can do — be unreachable (503 ``store_unavailable`` with ``Retry-After``, lists still served)
and have an outdated schema."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import test_api
import test_customer_intelligence_api as intelligence
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from feature_store.errors import SchemaOutdated
from feature_store.event_store import open_event_store
from feature_store.profiles import CustomerProfiles
from helpers import free_port

# The file log's API tests (and their module fixtures), collected again in this module: here
# `settings` and `client` (below) build the app over PostgreSQL.
frames = test_api.frames
batch = intelligence.batch
test_event_single_and_batch = test_api.test_event_single_and_batch
test_bad_events_are_4xx = test_api.test_bad_events_are_4xx
test_too_many_events = test_api.test_too_many_events
test_events_are_durable_before_ack = test_api.test_events_are_durable_before_ack
test_event_changes_what_is_served_next = test_api.test_event_changes_what_is_served_next
test_events_personalize_an_unknown_customer = test_api.test_events_personalize_an_unknown_customer
test_consent = intelligence.test_consent
test_erasure_in_process = intelligence.test_erasure_in_process

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(retailer: tuple[Path, Path], tmp_path: Path, postgres_db: str) -> Settings:
    """The service over the shared bundle with its events, consent and erasures in the run's
    database (clean tables)."""
    return Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        database_url=postgres_db,
        bundle_poll_seconds=0,
        redis_url=None,
    )


@pytest.fixture
def client(
    settings: Settings, request: pytest.FixtureRequest, batch: CustomerProfiles
) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        if request.function.__module__ == "test_customer_intelligence_api":
            c.app.state.service.clock.set(lambda: batch.as_of)  # type: ignore[attr-defined]
        yield c
    assert not list(settings.event_log_dir.glob("events-*")), "no event went to the file log"


def test_a_late_back_dated_event_of_an_erased_customer_is_dropped(
    client: TestClient, settings: Settings
) -> None:
    customer = "C-erased"
    event = {"customer_id": customer, "item_id": "I-1", "type": "view"}
    assert client.post("/v1/events", json=event).json()["accepted"] == 1
    erased = client.delete(f"/v1/customers/{customer}").json()
    assert erased["event_log"] == "deleted with the erasure record, in one transaction"
    late = {**event, "item_id": "I-late", "timestamp": "2026-01-01T00:00:00Z"}
    later = {**event, "item_id": "I-back", "timestamp": datetime.now(UTC).isoformat()}
    assert client.post("/v1/events", json=[late, later]).json()["accepted"] == 2
    assert settings.database_url is not None
    with contextlib.closing(open_event_store(settings.database_url, read_only=True)) as store:
        assert [e.item_id for e in store.iter_events()] == ["I-back"]


def test_the_service_refuses_an_outdated_schema(settings: Settings, postgres_url: str) -> None:
    import psycopg
    from psycopg import sql

    name = f"{postgres_url.rsplit('/', 1)[1]}_empty"
    admin_url = f"{postgres_url.rsplit('/', 1)[0]}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        empty = settings.model_copy(update={"database_url": f"{admin_url[:-9]}/{name}"})
        with pytest.raises(SchemaOutdated, match="lookbook db upgrade"):
            create_app(empty)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_unreachable_database_refuses_events_and_still_serves_lists(
    settings: Settings, frames: pd.DataFrame
) -> None:
    down = settings.model_copy(
        update={
            "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
            "database_timeout_seconds": 0.3,
        }
    )
    item = str(frames["items"]["item_id"].iloc[0])  # type: ignore[index]
    with TestClient(create_app(down)) as c:
        assert c.get("/readyz").status_code == 200
        assert c.get("/v1/customers/C-any/recommendations?k=5").status_code == 200
        assert c.get(f"/v1/items/{item}/similar?k=5").status_code == 200
        answer = c.post("/v1/events", json={"customer_id": "C1", "item_id": item, "type": "view"})
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        assert int(answer.headers["retry-after"]) > 0
        consent = c.put("/v1/customers/C1/consent", json={"personalization": False})
        assert consent.status_code == 503 and "retry-after" in consent.headers
        assert c.delete("/v1/customers/C1").status_code == 503
        metrics = c.get("/metrics").text
        assert 'lookbook_event_store_errors_total{operation="append"} 1.0' in metrics
        assert 'lookbook_event_store_errors_total{operation="consent"} 1.0' in metrics
        assert 'lookbook_event_store_errors_total{operation="erase"} 1.0' in metrics
        assert 'lookbook_events_total{outcome="accepted"}' not in metrics, "none acknowledged"


def test_erasures_are_loaded_once_the_database_answers(
    settings: Settings, postgres_db: str
) -> None:
    with contextlib.closing(open_event_store(postgres_db)) as store:
        store.erase_customer("C-gone")
    with TestClient(create_app(settings)) as c:
        erased = c.app.state.service.ledger.erased  # type: ignore[attr-defined]
        assert set(erased) == {"C-gone"}
        assert erased["C-gone"] > datetime.now(UTC) - timedelta(minutes=1)
