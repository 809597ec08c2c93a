"""API tests through the real app, on a bundle trained on a small synthetic retailer."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.cache import InProcessCache
from app.main import create_app
from app.schemas import EventsAccepted, PersonalizedList, RecommendationList
from app.settings import Settings
from feature_store.online_store import InMemoryOnlineStore
from helpers import assert_matches


@pytest.fixture(scope="module")
def frames(retailer: tuple[Path, Path]) -> dict[str, pd.DataFrame]:
    data, _ = retailer
    return {
        "items": pd.read_parquet(data / "items.parquet"),
        "interactions": pd.read_parquet(data / "interactions.parquet"),
    }


def active_customer(frames: dict[str, pd.DataFrame]) -> str:
    purchases = frames["interactions"][frames["interactions"]["type"] == "purchase"]
    counts = purchases.groupby("customer_id", observed=True).size().sort_values(ascending=False)
    return str(counts.index[0])


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


def test_health_ready_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_version"]
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/customers/{customer_id}/recommendations" in spec["paths"]


def test_not_ready_without_bundle(tmp_path: Path) -> None:
    settings = Settings(
        bundle_dir=tmp_path / "none", event_log_dir=tmp_path / "ev", bundle_poll_seconds=0
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        assert_error(c.get("/readyz"), 503, "model_not_loaded")
        assert_error(c.get("/v1/customers/C1/recommendations"), 503, "model_not_loaded")


def test_personalized_for_known_customer(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    customer = active_customer(frames)
    body = client.get(f"/v1/customers/{customer}/recommendations?k=12").json()
    assert_matches(PersonalizedList, body)
    assert len(body["recommendation_id"]) == 32
    assert body["model_version"]
    assert body["customer_id"] == customer
    assert len(body["items"]) == 12
    item_ids = [it["item_id"] for it in body["items"]]
    assert len(set(item_ids)) == 12
    # the most active customer's segment strategy (high value, ...) blends in its own sources
    strategy_sources = {"complementary", "new_in_style", "step_up", "bundles", "win_back"}
    strategy_sources |= {"complete_look", "seasonal"}  # added to every strategy (issue 5)
    strategy_sources |= {"sequence"}  # the LSTM joins every home strategy (issue 4)
    assert {it["source"] for it in body["items"]} <= {"als", "popular"} | strategy_sources
    assert body["items"][0]["source"] == "als"
    assert body["items"][0]["reason"].startswith("Because you liked")
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    known = set(frames["items"]["item_id"])
    for it in body["items"]:
        assert it["item_id"] in known
        assert {"name", "category", "price"} <= set(it)
    mine = frames["interactions"][frames["interactions"]["customer_id"] == customer]
    bought = set(mine[mine["type"] == "purchase"]["item_id"])
    returned = set(mine[mine["type"] == "return"]["item_id"])
    assert bought - returned, "the test customer kept something"
    assert not (bought - returned) & set(item_ids), "exclude_purchased defaults to true"


def test_unknown_customer_gets_popular(client: TestClient) -> None:
    body = client.get("/v1/customers/nobody-at-all/recommendations?k=5").json()
    assert_matches(PersonalizedList, body)
    assert len(body["items"]) == 5
    assert {it["source"] for it in body["items"]} == {"popular"}
    assert body["fallback"] is True


def test_category_filter(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    customer = active_customer(frames)
    body = client.get(f"/v1/customers/{customer}/recommendations?k=8&category=shoes").json()
    assert len(body["items"]) == 8
    assert {it["category"] for it in body["items"]} == {"shoes"}


def test_recommendation_id_fresh_even_when_cached(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    customer = active_customer(frames)
    first = client.get(f"/v1/customers/{customer}/recommendations").json()
    second = client.get(f"/v1/customers/{customer}/recommendations").json()
    assert first["recommendation_id"] != second["recommendation_id"]
    assert first["items"] == second["items"]
    metrics = client.get("/metrics").text
    assert 'lookbook_cache_requests_total{kind="personalized",result="hit"} 1.0' in metrics


def test_similar_items(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    item = str(frames["interactions"]["item_id"].value_counts().index[0])
    body = client.get(f"/v1/items/{item}/similar?k=10").json()
    assert_matches(RecommendationList, body)
    assert body["item_id"] == item
    assert len(body["items"]) == 10
    assert item not in {it["item_id"] for it in body["items"]}
    assert {it["source"] for it in body["items"]} <= {"similar", "attributes"}
    assert body["items"][0]["source"] == "similar", "a well-bought item is led by CF"
    from app.runtime import LoadedBundle
    from models.bundle import latest_bundle

    info = latest_bundle(client.app.state.settings.bundle_dir)  # type: ignore[attr-defined]
    assert info is not None
    bundle = LoadedBundle.load(info.path)
    anchor = bundle.catalog.ids.index(item)
    assert anchor is not None
    expected, _ = bundle.als.similar_items(anchor, N=30)
    expected_ids = set(bundle.catalog.ids.ids(expected))
    for it in body["items"]:
        if it["source"] == "similar":
            assert it["item_id"] in expected_ids, "CF neighbours are the ALS cosine neighbours"


def test_similar_for_item_nobody_bought(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    seen = set(frames["interactions"]["item_id"].astype(str))
    items = frames["items"]
    fresh = items[~items["item_id"].astype(str).isin(seen)]
    if fresh.empty:
        pytest.skip("every item of the small retailer has interactions")
    anchor = fresh.iloc[0]
    body = client.get(f"/v1/items/{anchor['item_id']}/similar?k=5").json()
    assert len(body["items"]) == 5
    assert {it["source"] for it in body["items"]} == {"attributes"}
    assert {it["category"] for it in body["items"]} == {anchor["category"]}


def test_unknown_item_is_404(client: TestClient) -> None:
    assert_error(client.get("/v1/items/no-such-item/similar"), 404, "unknown_item")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/C1/recommendations?k=0",
        "/v1/customers/C1/recommendations?k=-3",
        "/v1/customers/C1/recommendations?k=abc",
        "/v1/customers/C1/recommendations?k=101",
        "/v1/customers/C1/recommendations?k=99999999999999999999999",
        "/v1/customers/C1/recommendations?category=hats",
        "/v1/customers/C1/recommendations?exclude_purchased=maybe",
        "/v1/items/I1/similar?k=0",
        f"/v1/customers/{'x' * 200}/recommendations",
    ],
)
def test_bad_parameters_are_422(client: TestClient, path: str) -> None:
    assert_error(client.get(path), 422, "validation_error")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.delete("/healthz"), 405, "method_not_allowed")


def test_event_single_and_batch(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    item = str(frames["items"]["item_id"].iloc[0])
    one = {"customer_id": "C-new", "item_id": item, "type": "view"}
    assert client.post("/v1/events", json=one).json() == {"accepted": 1, "rejected": []}
    batch = [one, {**one, "type": "click"}, {**one, "type": "teleport"}]
    body = client.post("/v1/events", json=batch).json()
    assert_matches(EventsAccepted, body)
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [2]
    assert body["rejected"][0]["code"] == "invalid_event"
    assert client.post("/v1/events", json={"events": [one]}).json()["accepted"] == 1
    metrics = client.get("/metrics").text
    assert 'lookbook_events_total{outcome="accepted"} 4.0' in metrics
    assert 'lookbook_events_total{outcome="rejected"} 1.0' in metrics


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{",
        b"[]",
        b"{}",
        b"42",
        b'"text"',
        b'{"customer_id": "", "item_id": "I1", "type": "view"}',
        b'{"customer_id": "C1", "item_id": "I1", "type": "view", "position": -1}',
        b'{"customer_id": "C1", "item_id": "I1", "type": "view", "timestamp": "yesterday"}',
        b'{"customer_id": "C1", "item_id": "I1", "type": "view", "surprise": 1}',
        b'[{"customer_id": 1}]',
    ],
)
def test_bad_events_are_4xx(client: TestClient, payload: bytes) -> None:
    response = client.post(
        "/v1/events", content=payload, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert_error(response, response.status_code)


def test_too_many_events(client: TestClient, settings: Settings) -> None:
    one = {"customer_id": "C1", "item_id": "I1", "type": "view"}
    batch = [one] * (settings.max_batch_events + 1)
    assert_error(client.post("/v1/events", json=batch), 413, "batch_too_large")


def test_event_changes_what_is_served_next(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    customer = active_customer(frames)
    url = f"/v1/customers/{customer}/recommendations?k=12"
    before = client.get(url).json()
    top = before["items"][0]["item_id"]
    event = {"customer_id": customer, "item_id": top, "type": "purchase", "size": "M"}
    assert client.post("/v1/events", json=event).json()["accepted"] == 1
    after = client.get(url).json()
    after_ids = [it["item_id"] for it in after["items"]]
    assert top not in after_ids, "a purchase is excluded at once (cache invalidated)"
    assert after_ids != [it["item_id"] for it in before["items"]]
    with_bought = client.get(url + "&exclude_purchased=false").json()
    assert len(with_bought["items"]) == 12


def test_events_personalize_an_unknown_customer(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    shoes = frames["items"][frames["items"]["category"] == "shoes"]["item_id"].astype(str).tolist()
    customer = "brand-new-shopper"
    cold = client.get(f"/v1/customers/{customer}/recommendations").json()
    assert {it["source"] for it in cold["items"]} == {"popular"}
    events = [{"customer_id": customer, "item_id": i, "type": "purchase"} for i in shoes[:3]]
    assert client.post("/v1/events", json=events).json()["accepted"] == 3
    warm = client.get(f"/v1/customers/{customer}/recommendations").json()
    assert "als" in {it["source"] for it in warm["items"]}
    assert not set(shoes[:3]) & {it["item_id"] for it in warm["items"]}


def test_events_are_durable_before_ack(client: TestClient, settings: Settings) -> None:
    from feature_store.event_store import open_event_store

    event = {"customer_id": "C-durable", "item_id": "I-any", "type": "wishlist"}
    assert client.post("/v1/events", json=event).json()["accepted"] == 1
    location = settings.database_url or settings.event_log_dir  # a fresh reader of either store
    with contextlib.closing(open_event_store(location, read_only=True)) as store:
        frame = store.read_frame()
    assert "C-durable" in set(frame["customer_id"].astype(str))


def test_admin_models_and_hot_reload(retailer: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from models.bundle import latest_bundle

    _, bundles = retailer
    own = tmp_path / "bundles"
    shutil.copytree(bundles, own)
    settings = Settings(bundle_dir=own, event_log_dir=tmp_path / "ev", bundle_poll_seconds=0)
    with TestClient(create_app(settings)) as c:
        serving = c.get("/v1/admin/models").json()["serving"]
        info = latest_bundle(own)
        assert info is not None and serving == info.version
        newer = own / ("99999999T000000-" + serving.split("-")[-1])
        shutil.copytree(info.path, newer)
        manifest = (newer / "manifest.json").read_text().replace(serving, newer.name)
        (newer / "manifest.json").write_text(manifest)
        assert c.post("/v1/admin/reload").json() == {"reloaded": True, "serving": newer.name}
        body = c.get("/v1/customers/anyone/recommendations").json()
        assert body["model_version"] == newer.name
        assert f'lookbook_model_info{{version="{newer.name}"}} 1.0' in c.get("/metrics").text


def test_metrics_exposed(client: TestClient) -> None:
    client.get("/v1/customers/someone/recommendations")
    text = client.get("/metrics").text
    assert "lookbook_request_latency_seconds_bucket" in text
    assert 'route="/v1/customers/{customer_id}/recommendations"' in text
    assert "lookbook_model_loaded 1.0" in text


def test_injected_store_and_cache(settings: Settings, frames: dict[str, pd.DataFrame]) -> None:
    store = InMemoryOnlineStore()
    cache = InProcessCache(max_groups=10)
    with TestClient(create_app(settings, store=store, cache=cache)) as c:
        customer = active_customer(frames)
        c.get(f"/v1/customers/{customer}/recommendations")
        c.get(f"/v1/customers/{customer}/recommendations")
        assert cache.stats()["hits"] == 1
        item = str(frames["items"]["item_id"].iloc[0])
        c.post("/v1/events", json={"customer_id": customer, "item_id": item, "type": "click"})
        assert store.recent(customer)[0].item_id == item
