"""The LSTM sequence model in the service: anonymous sessions, the customer feed's sequence and
repurchase sources, events reaching the LSTM at once, and the trainer's fitted blend weights."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.pipeline import Context, PurchaseHistory, RepeatSource, SiblingsSource
from app.runtime import LoadedBundle
from app.schemas import RecommendationList
from app.settings import Settings
from app.strategies import (
    DEFAULT_STRATEGIES,
    FITTED_BLEND,
    StrategyConfig,
    resolve_weights,
)
from app.strategy_sources import build_sources
from feature_store.errors import DataFormatError
from feature_store.schema import InteractionType
from helpers import assert_matches
from models.bundle import DEFAULT_RRF_K, SOURCES, BlendWeights, latest_bundle
from models.candidates import build_product_siblings

SESSION = "/v1/sessions/recommendations"
TYPES = [t.value for t in InteractionType]
# seasonal picks join every strategy that does not name them; these tests look at one source
NO_SEASONAL = [{"source": "seasonal", "weight": 0.0}]


@pytest.fixture(scope="module")
def bundle(retailer: tuple[Path, Path]) -> LoadedBundle:
    info = latest_bundle(retailer[1])
    assert info is not None
    return LoadedBundle.load(info.path)


def _client(retailer: tuple[Path, Path], tmp_path: Path, **extra: Any) -> TestClient:
    settings = Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
        **extra,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(retailer: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    with _client(retailer, tmp_path) as c:
        yield c


@pytest.fixture
def lstm_only(retailer: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    """A service whose feed is the LSTM alone (every segment, every surface)."""
    strategies = tmp_path / "strategies.json"
    strategies.write_text(
        json.dumps({"home": {"default": [{"source": "sequence", "weight": 1.0}, *NO_SEASONAL]}})
    )
    with _client(retailer, tmp_path, strategies_file=strategies) as c:
        yield c


def _items(body: dict[str, Any]) -> list[str]:
    return [it["item_id"] for it in body["items"]]


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# --------------------------------------------------------------------------- the bundle


def test_bundle_serves_the_sequence_model_through_its_index(bundle: LoadedBundle) -> None:
    model = bundle.sequence
    assert model is not None, "the trainer writes the LSTM into every bundle by default"
    assert model.n_items == len(bundle.catalog.ids)
    assert model.config.num_threads == 1, "one torch thread per request thread"
    assert model._index is not None, "retrieval goes through indexes/sequence_items.faiss"
    assert set(bundle.blend.weights) == set(SOURCES), "the trainer fits every served source"
    assert bundle.repeat_rates is not None and len(bundle.repeat_rates) == model.n_items
    assert bundle.siblings is not None and bundle.siblings.n_items == model.n_items
    assert bundle.blend.rrf_k > 0


# --------------------------------------------------------------------------- anonymous sessions


def test_session_recommendations(client: TestClient, bundle: LoadedBundle) -> None:
    ids = bundle.catalog.ids.ids()
    session = ids[:3]
    body = client.post(SESSION, json={"items": session, "k": 8}).json()
    assert_matches(RecommendationList, body)
    assert body["surface"] == "session" and body["recommendation_id"]
    assert len(body["items"]) == 8
    assert not set(_items(body)) & set(session), "the session's own items are left out"
    assert body["items"][0]["source"] == "sequence"
    assert body["fallback"] is False
    last_name = bundle.catalog.names[2]
    assert all(last_name in it["reason"] for it in body["items"] if it["source"] == "sequence")
    again = client.post(SESSION, json={"items": session, "k": 8}).json()
    assert _items(again) == _items(body), "deterministic"
    assert again["recommendation_id"] != body["recommendation_id"]
    other = client.post(SESSION, json={"items": ids[-3:], "k": 8}).json()
    assert _items(other) != _items(body), "what the shopper looked at matters"
    kept = client.post(SESSION, json={"items": session, "k": 8, "exclude_seen": False}).json()
    assert len(kept["items"]) == 8


def test_session_steps_with_sizes_types_and_category(
    client: TestClient, bundle: LoadedBundle
) -> None:
    ids = bundle.catalog.ids.ids()
    steps = [
        ids[0],
        {"item_id": ids[1], "type": "add_to_cart", "size": "M"},
        {"item_id": ids[2], "type": "purchase"},
    ]
    body = client.post(SESSION, json={"items": steps, "k": 5, "category": "shoes"}).json()
    assert len(body["items"]) == 5
    assert {it["category"] for it in body["items"]} == {"shoes"}
    assert body["items"][0]["source"] == "sequence"
    model = bundle.sequence
    assert model is not None
    view, cart, purchase = (TYPES.index(t) for t in ("view", "add_to_cart", "purchase"))
    plain = model.session_vector([0, 1, 2], [None, None, None], [view, view, view])
    typed = model.session_vector([0, 1, 2], [None, "M", None], [view, cart, purchase])
    assert not np.allclose(plain, typed), "event types and sizes are inputs of the LSTM"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"items": []}, 422, "validation_error"),
        ({"items": ["no-such-item"]}, 404, "unknown_item"),
        ({"items": [{"item_id": "I000001", "type": "return"}]}, 422, "validation_error"),
        ({"items": [{"item_id": "I000001", "type": "teleport"}]}, 422, "validation_error"),
        ({"items": ["I000001"], "k": 0}, 422, "validation_error"),
        ({"items": ["I000001"], "k": 100000}, 422, "validation_error"),
        ({"items": ["I000001"], "category": "spaceship"}, 422, "validation_error"),
        ({"items": ["I000001"], "customer": "x"}, 422, "validation_error"),
        ({"items": ["I000001"] * 201}, 422, "validation_error"),
        ({"items": "I000001"}, 422, "validation_error"),
    ],
)
def test_session_bad_input(client: TestClient, payload: Any, status: int, code: str) -> None:
    _error(client.post(SESSION, json=payload), status, code)


# --------------------------------------------------------------------------- known customers


def _default_segment_customer(client: TestClient, bundle: LoadedBundle) -> str:
    """A customer of the default segment who consented and bought something."""
    for row, customer in enumerate(bundle.customers.ids()[:300]):
        if len(bundle.purchased(row)) == 0:
            continue
        body = client.get(f"/v1/customers/{customer}/recommendations?k=12").json()
        if body["segment"] == "default" and body["personalized"]:
            return customer
    raise AssertionError("the small retailer has customers of the default segment")


@pytest.mark.parametrize("only", ["sequence", "als", "repurchase", "repeat"])
def test_default_feed_follows_the_bundle_blend(
    retailer: tuple[Path, Path], tmp_path: Path, bundle: LoadedBundle, only: str
) -> None:
    """The default segment's feed is fused with the weights in the bundle's manifest: a bundle
    whose blend keeps one source serves that source's list."""
    copy = tmp_path / "bundles" / bundle.path.name
    shutil.copytree(bundle.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    weights = dict.fromkeys(manifest["blend"]["weights"], 0.0)
    weights[only] = 1.0
    manifest["blend"] = {**manifest["blend"], "weights": weights, "rrf_k": 7.0}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    strategies = tmp_path / "strategies.json"
    strategies.write_text(
        json.dumps({"home": {"default": [*FITTED_BLEND, *NO_SEASONAL]}})  # the default, unseasoned
    )
    served = (retailer[0], tmp_path / "bundles")
    with _client(served, tmp_path, strategies_file=strategies) as c:
        assert c.app.state.bundles.current.blend.rrf_k == 7.0  # type: ignore[attr-defined]
        customer = _default_segment_customer(c, bundle)
        body = c.get(f"/v1/customers/{customer}/recommendations?k=8&exclude_purchased=false").json()
    sources = [it["source"] for it in body["items"]]
    assert sources[0] == only, sources
    assert set(sources) <= {only, "popular"}, "sources with weight 0 are left out"


def test_default_strategy_uses_fitted_weights() -> None:
    config = StrategyConfig(DEFAULT_STRATEGIES, build_sources())
    for surface in ("home", "email"):
        names = [(s.name, w) for s, w in config.for_segment(surface, "default")]
        assert names == [
            ("repurchase", None),
            ("repeat", None),
            ("siblings", None),
            ("als", None),
            ("sequence", None),
            ("popular", None),
        ]


def test_an_event_changes_the_lstm_list(
    lstm_only: TestClient, bundle: LoadedBundle, retailer: tuple[Path, Path]
) -> None:
    customer = bundle.customers.ids()[3]
    url = f"/v1/customers/{customer}/recommendations?k=10"
    before = lstm_only.get(url).json()
    assert before["personalized"] is True
    assert [it["source"] for it in before["items"]][:5] == ["sequence"] * 5
    items = pd.read_parquet(retailer[0] / "items.parquet")
    shown = set(_items(before))
    # an item in a category unlike the last one the customer touched
    target = str(next(i for i in items["item_id"] if i not in shown))
    when = max(datetime.now(UTC), bundle.trained_until + timedelta(seconds=1))
    event = {
        "customer_id": customer,
        "item_id": target,
        "type": "add_to_cart",
        "size": "M",
        "timestamp": when.isoformat(),
    }
    assert lstm_only.post("/v1/events", json=event).status_code == 200
    after = lstm_only.get(url).json()
    assert _items(after) != _items(before), "the event reached the LSTM at once"
    name = bundle.catalog.names[bundle.catalog.ids.index(target) or 0]
    assert any(name in it["reason"] for it in after["items"] if it["source"] == "sequence")


def test_a_new_customer_gets_lstm_picks_from_online_events_alone(
    lstm_only: TestClient, bundle: LoadedBundle
) -> None:
    customer = "walked-in-today"
    ids = bundle.catalog.ids.ids()
    url = f"/v1/customers/{customer}/recommendations?k=6"
    cold = lstm_only.get(url).json()
    assert {it["source"] for it in cold["items"]} == {"popular"}, "no history: best sellers"
    when = datetime.now(UTC).isoformat()
    for item in ids[10:13]:
        event = {"customer_id": customer, "item_id": item, "type": "view", "timestamp": when}
        assert lstm_only.post("/v1/events", json=event).status_code == 200
    warm = lstm_only.get(url).json()
    assert warm["items"][0]["source"] == "sequence"
    session = lstm_only.post(
        SESSION, json={"items": ids[10:13], "k": 6, "exclude_seen": False}
    ).json()
    assert _items(warm)[:3] == _items(session)[:3], "the same LSTM reads the same steps"


def test_buy_again_with_repurchases(
    retailer: tuple[Path, Path], tmp_path: Path, bundle: LoadedBundle
) -> None:
    strategies = tmp_path / "strategies.json"
    strategies.write_text(
        json.dumps(
            {
                "home": {
                    "default": [
                        {"source": "repurchase", "weight": 1.0},
                        {"source": "popular", "weight": 0.1},
                        *NO_SEASONAL,
                    ]
                }
            }
        )
    )
    customer = "loyal-basics-buyer"
    ids = bundle.catalog.ids.ids()
    # after the bundle's data (older events wait for the next bundle), before the clock (an event
    # time more than MAX_EVENT_LEAD ahead of it is refused)
    now = datetime.now(UTC)
    earlier = bundle.trained_until + timedelta(days=1)
    assert earlier < now - timedelta(days=3)
    with _client(retailer, tmp_path, strategies_file=strategies) as c:
        for item, moment in (
            (ids[20], now - timedelta(days=3)),
            (ids[20], now - timedelta(days=1)),
            (ids[21], earlier),
        ):
            when = moment.isoformat()
            event = {
                "customer_id": customer,
                "item_id": item,
                "type": "purchase",
                "timestamp": when,
            }
            assert c.post("/v1/events", json=event).status_code == 200
        url = f"/v1/customers/{customer}/recommendations?k=5"
        again = c.get(url + "&exclude_purchased=false").json()
        assert _items(again)[:2] == [ids[20], ids[21]], "twice and recent beats once, earlier"
        assert again["items"][0]["source"] == "repurchase"
        assert again["items"][0]["reason"].startswith("Buy again")
        fresh = c.get(url).json()
        assert not {ids[20], ids[21]} & set(_items(fresh)), "exclude_purchased drops them"


def test_bundle_purchases_feed_buy_again(client: TestClient, bundle: LoadedBundle) -> None:
    """A customer's purchases from the bundle (with their times) reach the repurchase source."""
    log = bundle.purchase_log
    assert log is not None, "the trainer writes purchase_history.npz"
    counts = np.diff(log["indptr"])
    customer = int(np.argmax(counts))
    items, times, _ = bundle.purchase_events(customer)
    assert len(items) == counts[customer] and np.all(np.diff(times) >= 0)
    # everything bought and not returned is in the log (returned items too: they were bought)
    assert set(bundle.purchased(customer).tolist()) <= set(items.tolist())


# --------------------------------------------------------------------------- fitted weights


def test_fitted_weights_resolve_from_the_bundle_blend() -> None:
    sources = build_sources()
    config = StrategyConfig(
        {
            "home": {
                "default": [
                    {"source": "sequence", "weight": "fitted"},
                    {"source": "popular", "weight": "fitted"},
                    {"source": "starter", "weight": 0.3},
                ],
                "new": [{"source": "als", "weight": 1.0}],
            }
        },
        sources,
    )
    blend = BlendWeights(weights={"sequence": 2.0, "popularity": 0.25}, rrf_k=5.0)
    resolved, rrf_k = resolve_weights(config.for_segment("home", "default"), blend)
    assert [(s.name, w) for s, w in resolved] == [
        ("sequence", 2.0),
        ("popular", 0.25),
        ("starter", 0.3),
    ]
    assert rrf_k == 5.0
    plain, plain_k = resolve_weights(config.for_segment("home", "new"), blend)
    assert [(s.name, w) for s, w in plain] == [("als", 1.0)] and plain_k == DEFAULT_RRF_K
    missing, _ = resolve_weights(config.for_segment("home", "default"), BlendWeights(weights={}))
    assert [w for _, w in missing][:2] == [0.0, 0.0]
    with pytest.raises(DataFormatError, match="must be a number or 'fitted'"):
        StrategyConfig({"home": {"default": [{"source": "als", "weight": "lots"}]}}, sources)


def test_siblings_and_repeat_sources(bundle: LoadedBundle) -> None:
    """Other colours of what the customer bought (a product-code table), and buy-again ordered
    by the product type's rebuy rate."""
    n = len(bundle.catalog.ids)
    codes = [f"P{i // 3}" for i in range(n)]  # items 0-2 share a product, 3-5 another, ...
    table = build_product_siblings(codes)
    rates = np.full(n, 0.1)
    rates[7] = 0.9  # item 7's product type is rebought often
    served = replace(bundle, siblings=table, repeat_rates=rates)
    now = int(bundle.trained_until.timestamp())
    day = 86_400
    ctx = Context(bundle=served, k=5, now=now)
    ctx.purchases = PurchaseHistory(
        items=np.array([0, 4, 7]),
        timestamps=np.array([now - 40 * day, now - day, now - 2 * day]),
        weights=np.ones(3),
    )
    ctx.exclude = {0, 4, 7}
    siblings = SiblingsSource().candidates(ctx, 10)
    order = [c.item for c in siblings]
    # the newest purchase's variants, then the next's, then the oldest's (ties: more popular)
    assert [set(order[:2]), set(order[2:4]), set(order[4:])] == [{3, 5}, {6, 8}, {1, 2}]
    assert all(c.reason.startswith("Another colour") for c in siblings)
    ctx.exclude = set()
    repeat = RepeatSource().candidates(ctx, 10)
    assert [c.item for c in repeat] == [7, 4, 0], "often-rebought type beats a day fresher"
    ctx.exclude = {7}
    assert [c.item for c in RepeatSource().candidates(ctx, 10)] == [4, 0]


@pytest.mark.parametrize(
    ("document", "key", "allowed"),
    [
        (
            {"surfaces": {"home": {"default": [{"source": "als", "wieght": 1.0}]}}},
            "wieght",
            "source, weight",
        ),
        (
            {"surfaces": {"home": {"hig_value": [{"source": "als"}]}}},
            "hig_value",
            "new, high_value, active_low_spend, sleeping, default",
        ),
        ({"surfaces": {"home": {}}, "surface": {}}, "surface", "surfaces"),
        ({"email": {"sleping": []}}, "sleping", "new, high_value"),  # the bare form
    ],
)
def test_a_misspelt_key_in_the_strategies_file_is_named(
    tmp_path: Path, document: dict[str, Any], key: str, allowed: str
) -> None:
    path = tmp_path / "strategies.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataFormatError) as caught:
        StrategyConfig.from_file(path, build_sources())
    message = str(caught.value)
    assert f"unknown key {key!r}" in message and f"allowed: {allowed}" in message
    assert str(path) in message


def test_the_strategies_file_as_documented_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "strategies.json"
    path.write_text(
        json.dumps(
            {
                "surfaces": {
                    "home": {
                        "new": [{"source": "starter", "weight": 1.0}],
                        "default": [{"source": "als", "weight": "fitted"}, {"source": "popular"}],
                    }
                }
            }
        )
    )
    config = StrategyConfig.from_file(path, build_sources())
    assert [(s.name, w) for s, w in config.for_segment("home", "new")] == [("starter", 1.0)]
    assert [(s.name, w) for s, w in config.for_segment("home", "sleeping")] == [
        ("als", None),
        ("popular", 1.0),
    ], "a segment left out gets the default strategy; the weight defaults to 1"
    with pytest.raises(DataFormatError, match="unknown source 'alss'"):
        StrategyConfig({"home": {"default": [{"source": "alss"}]}}, build_sources())
    with pytest.raises(DataFormatError, match="must not be negative"):
        StrategyConfig({"home": {"new": [{"source": "als", "weight": -1}]}}, build_sources())
    with pytest.raises(DataFormatError, match="surfaces"):
        StrategyConfig({"surfaces": {}}, build_sources())
