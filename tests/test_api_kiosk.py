"""The fitting-room kiosk API: ``POST /v1/kiosk/outfits`` (outfits from this store's shelves in the
advised size, or marked as elsewhere; tried sizes moving the advice; occasions; the served-list
record; validation) and ``POST /v1/kiosk/cart`` (``add_to_cart`` events on the kiosk channel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.schemas import ErrorResponse, KioskCartAccepted, KioskOutfits
from app.service import RecommendationService
from feature_store.schema import Channel, InteractionType
from models.occasions import occasion_scores
from tests.helpers import assert_matches

STORE = "store-001"


@pytest.fixture(scope="module")
def frames(retailer: tuple[Path, Path]) -> dict[str, pd.DataFrame]:
    data, _ = retailer
    return {
        "items": pd.read_parquet(data / "items.parquet"),
        "stock": pd.read_parquet(data / "stock.parquet"),
        "interactions": pd.read_parquet(data / "interactions.parquet"),
    }


def _units(frames: dict[str, pd.DataFrame], item: str, size: str | None, store: str) -> int:
    stock = frames["stock"]
    rows = stock[
        (stock["item_id"] == item) & (stock["size"] == size) & (stock["store_id"] == store)
    ]
    return int(rows["quantity"].sum())


def _carried_top(frames: dict[str, pd.DataFrame], store: str = STORE) -> tuple[str, list[str]]:
    """A top offered in letter sizes S to XL or wider, carried in ``store``."""
    items = frames["items"]
    stock = frames["stock"]
    here = set(stock[(stock["store_id"] == store) & (stock["quantity"] > 0)]["item_id"])
    for row in items[items["category"] == "top"].itertuples():
        sizes = list(row.sizes)
        if {"S", "M", "L", "XL"} <= set(sizes) and row.item_id in here:
            return str(row.item_id), sizes
    raise AssertionError("no top in S..XL in the small retailer")


def _outfits(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/kiosk/outfits", json=body)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    assert_matches(KioskOutfits, payload)
    return payload


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    ErrorResponse.model_validate(response.json())
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def _service(client: TestClient) -> RecommendationService:
    service: RecommendationService = client.app.state.service  # type: ignore[attr-defined]
    return service


def test_outfits_are_on_this_stores_shelves_in_the_advised_size(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    top, _ = _carried_top(frames)
    body = _outfits(client, store_id=STORE, items=[{"item_id": top}])
    assert body["surface"] == "kiosk" and body["store_id"] == STORE
    assert body["slots"][:2] == ["bottom", "shoes"] and body["slots"][2] in (
        "outerwear",
        "accessory",
    )
    assert 1 <= len(body["outfits"]) <= 3
    assert len(body["outfits"]) == 3  # the small retailer's store has enough to choose from
    categories = frames["items"].set_index("item_id")["category"]
    shown: list[dict[str, Any]] = []
    for outfit in body["outfits"]:
        cats = [entry["category"] for entry in outfit["items"]]
        assert len(set(cats)) == len(cats) and set(cats) <= set(body["slots"])
        assert outfit["compatibility"] is not None
        for entry in outfit["items"]:
            assert categories[entry["item_id"]] == entry["category"]
            assert entry["availability"] == "in_store" and entry["locations"] == []
            assert entry["size"] is not None
            assert entry["size_stock"] == _units(frames, entry["item_id"], entry["size"], STORE)
            assert entry["size_stock"] > 0, entry
            if entry["bring_along"] is not None:
                assert entry["bring_along"] != entry["size"]
                assert entry["bring_along_stock"] == _units(
                    frames, entry["item_id"], entry["bring_along"], STORE
                )
                assert entry["bring_along_stock"] > 0  # a neighbour to bring is on the shelves
            assert entry["reason"] and entry["pairs_with"] == top
            shown.append(entry)
    for entry in body["elsewhere"]:  # a better match not here in its size: said where it is
        assert entry["availability"] == "elsewhere" and entry["locations"]
        assert _units(frames, entry["item_id"], entry["size"], STORE) == 0
        for place in entry["locations"]:
            assert place["store_id"] != STORE
            assert place["stock"] == _units(
                frames, entry["item_id"], entry["size"], place["store_id"]
            )
            assert place["stock"] > 0
        shown.append(entry)
    # the outfits differ from each other
    sets = [frozenset(e["item_id"] for e in o["items"]) for o in body["outfits"]]
    assert len(set(sets)) == len(sets)
    # positions count across the outfits, then elsewhere; the record holds them in that order
    assert [e["position"] for e in shown] == list(range(len(shown)))
    record = _service(client).attribution_store.get_served(body["recommendation_id"])
    assert record is not None and record.surface == "kiosk"
    assert [p.item_id for p in record.items] == [e["item_id"] for e in shown]
    again = _outfits(client, store_id=STORE, items=[{"item_id": top}])
    assert again["recommendation_id"] != body["recommendation_id"]
    assert again["outfits"] == body["outfits"]  # deterministic


def test_best_match_not_here_is_marked_elsewhere(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    """Across the stores, items shown are either on the shelves in their size or marked as
    elsewhere with where they are — never anything else."""
    stores = sorted(set(frames["stock"]["store_id"]) - {"online"})
    top, _ = _carried_top(frames)
    marked = 0
    for store in stores:
        body = _outfits(client, store_id=store, items=[{"item_id": top}], occasion="party")
        for outfit in body["outfits"]:
            for entry in outfit["items"]:
                assert entry["availability"] == "in_store"
                assert _units(frames, entry["item_id"], entry["size"], store) > 0
        for entry in body["elsewhere"]:
            assert entry["availability"] == "elsewhere" and entry["locations"]
            assert _units(frames, entry["item_id"], entry["size"], store) == 0
            assert "not here in" in entry["reason"]
            marked += 1
    assert marked > 0, "no store lacked a best match: the test retailer should show one"


@pytest.mark.parametrize(
    ("fit", "step"), [("too small", 1), ("too_small", 1), ("fits", 0), ("too large", -1)]
)
def test_tried_size_moves_the_advice(
    client: TestClient, frames: dict[str, pd.DataFrame], fit: str, step: int
) -> None:
    top, sizes = _carried_top(frames)
    body = _outfits(client, store_id=STORE, items=[{"item_id": top, "size": "M", "fit": fit}])
    (carried,) = body["carried"]
    advice = carried["size_advice"]
    assert carried["tried_size"] == "M" and carried["fit"] == fit.replace(" ", "_")
    assert advice["recommended"] == sizes[sizes.index("M") + step]
    stock = {s["size"]: s["stock"] for s in advice["sizes"]}
    assert stock[advice["recommended"]] == _units(frames, top, advice["recommended"], STORE)
    if step:
        # an anonymous shopper's new letter size carries over to the letter-sized suggestions
        letter = [
            e
            for o in body["outfits"]
            for e in o["items"]
            if e["category"] in ("outerwear", "bottom") and advice["recommended"] in e["reason"]
        ]
        for entry in letter:
            assert entry["size"] == advice["recommended"]


def test_occasion_changes_the_outfits(
    client: TestClient, frames: dict[str, pd.DataFrame], retailer: tuple[Path, Path]
) -> None:
    top, _ = _carried_top(frames)
    items = frames["items"].reset_index(drop=True)
    position = {item: i for i, item in enumerate(items["item_id"])}
    results = {}
    for occasion in ("wedding", "sport"):
        body = _outfits(client, store_id=STORE, items=[{"item_id": top}], occasion=occasion)
        assert body["occasion"] == occasion
        results[occasion] = [e["item_id"] for o in body["outfits"] for e in o["items"]]
    assert results["wedding"] != results["sport"]
    for occasion, other in (("wedding", "sport"), ("sport", "wedding")):
        scores = occasion_scores(items, occasion)
        mine = np.mean([scores[position[i]] for i in results[occasion]])
        theirs = np.mean([scores[position[i]] for i in results[other]])
        assert mine > theirs, (occasion, mine, theirs)
    blind = _outfits(client, store_id=STORE, items=[{"item_id": top}])
    assert blind["occasion"] is None
    spelled = _outfits(client, store_id=STORE, items=[{"item_id": top}], occasion=" Wedding ")
    assert spelled["occasion"] == "wedding"


def test_customer_personalizes_only_with_consent(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    events = frames["interactions"]
    customer = str(events[events["type"] == "purchase"]["customer_id"].value_counts().index[0])
    top, _ = _carried_top(frames)
    body = _outfits(client, store_id=STORE, items=[{"item_id": top}], customer_id=customer)
    assert body["personalized"] is True and body["customer_id"] == customer
    assert body["carried"][0]["size_advice"]["personal"] is True
    mine = events[events["customer_id"] == customer]
    bought = set(mine[mine["type"] == "purchase"]["item_id"]) - set(
        mine[mine["type"] == "return"]["item_id"]
    )
    assert not bought & {e["item_id"] for o in body["outfits"] for e in o["items"]}
    record = _service(client).attribution_store.get_served(body["recommendation_id"])
    assert record is not None and record.customer_id == customer
    assert (
        client.put(f"/v1/customers/{customer}/consent", json={"personalization": False}).status_code
        == 200
    )
    body = _outfits(client, store_id=STORE, items=[{"item_id": top}], customer_id=customer)
    assert body["personalized"] is False
    assert body["carried"][0]["size_advice"]["personal"] is False
    record = _service(client).attribution_store.get_served(body["recommendation_id"])
    assert record is not None and record.customer_id is None


def test_validation(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    top, _ = _carried_top(frames)
    ok = {"store_id": STORE, "items": [{"item_id": top}]}
    _error(
        client.post("/v1/kiosk/outfits", json={**ok, "store_id": "store-999"}), 422, "unknown_store"
    )
    _error(
        client.post("/v1/kiosk/outfits", json={**ok, "store_id": "online"}), 422, "unknown_store"
    )
    error = _error(
        client.post(
            "/v1/kiosk/outfits", json={**ok, "items": [{"item_id": top}, {"item_id": "NOPE-1"}]}
        ),
        404,
        "unknown_item",
    )
    assert "NOPE-1" in error["message"]
    _error(client.post("/v1/kiosk/outfits", json={**ok, "items": []}), 422, "validation_error")
    many = [{"item_id": top}] * 6
    _error(client.post("/v1/kiosk/outfits", json={**ok, "items": many}), 422, "validation_error")
    for bad in ("tight", "", 3):
        item = {"item_id": top, "size": "M", "fit": bad}
        _error(
            client.post("/v1/kiosk/outfits", json={**ok, "items": [item]}), 422, "validation_error"
        )
    no_size = {"item_id": top, "fit": "fits"}
    _error(
        client.post("/v1/kiosk/outfits", json={**ok, "items": [no_size]}), 422, "validation_error"
    )
    not_offered = {"item_id": top, "size": "46", "fit": "fits"}
    error = _error(
        client.post("/v1/kiosk/outfits", json={**ok, "items": [not_offered]}),
        422,
        "validation_error",
    )
    assert "'46'" in error["message"]
    _error(
        client.post("/v1/kiosk/outfits", json={**ok, "occasion": "funeral"}),
        422,
        "validation_error",
    )
    _error(
        client.post("/v1/kiosk/outfits", json={**ok, "weather": "snowy"}), 422, "validation_error"
    )
    _error(client.post("/v1/kiosk/outfits", json={**ok, "extra": 1}), 422, "validation_error")
    _error(
        client.post(
            "/v1/kiosk/outfits", content=b"{", headers={"content-type": "application/json"}
        ),
        422,
        "invalid_json",
    )


def test_cart_records_add_to_cart_on_the_kiosk_channel(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    top, _ = _carried_top(frames)
    body = _outfits(client, store_id=STORE, items=[{"item_id": top}])
    first = body["outfits"][0]["items"][0]
    customer = "C-kiosk-cart-1"
    response = client.post(
        "/v1/kiosk/cart",
        json={
            "customer_id": customer,
            "store_id": STORE,
            "recommendation_id": body["recommendation_id"],
            "items": [
                {"item_id": first["item_id"], "size": first["size"], "position": first["position"]},
                {"item_id": top, "size": "L"},
            ],
        },
    )
    assert response.status_code == 200, response.text
    accepted = response.json()
    assert_matches(KioskCartAccepted, accepted)
    assert accepted["accepted"] == 2 and accepted["rejected"] == []
    logged = [e for e in _service(client).event_log.iter_events() if e.customer_id == customer]
    assert [(e.item_id, e.size) for e in logged] == [(first["item_id"], first["size"]), (top, "L")]
    for event in logged:
        assert event.type is InteractionType.ADD_TO_CART and event.channel is Channel.KIOSK
        assert event.store_id == STORE and event.price is not None
    assert logged[0].recommendation_id == body["recommendation_id"]
    assert logged[0].position == first["position"]
    assert logged[1].recommendation_id is None
    # the online side sees it: the customer's recent events hold the kiosk add-to-carts
    state = _service(client).store.customer_state(customer, 10)
    assert {e.item_id for e in state.recent} == {first["item_id"], top}
    # attributed to the kiosk list it came from
    counts = _service(client).attribution_store.counts()
    assert counts[("kiosk", "kiosk", None)]["add_to_carts"] == 1


def test_cart_validation(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    top, _ = _carried_top(frames)
    ok = {
        "customer_id": "C-kiosk-cart-2",
        "store_id": STORE,
        "items": [{"item_id": top, "size": "M"}],
    }
    error = _error(
        client.post("/v1/kiosk/cart", json={**ok, "items": [{"item_id": "NOPE-2", "size": "M"}]}),
        404,
        "unknown_item",
    )
    assert "NOPE-2" in error["message"]
    _error(
        client.post("/v1/kiosk/cart", json={**ok, "items": [{"item_id": top, "size": "46"}]}),
        422,
        "validation_error",
    )
    _error(
        client.post("/v1/kiosk/cart", json={**ok, "items": [{"item_id": top}]}),
        422,
        "validation_error",
    )
    _error(client.post("/v1/kiosk/cart", json={**ok, "items": []}), 422, "validation_error")
    _error(
        client.post("/v1/kiosk/cart", json={**ok, "store_id": "store-999"}), 422, "unknown_store"
    )
    _error(
        client.post("/v1/kiosk/cart", json={**ok, "customer_id": "bad id"}), 422, "validation_error"
    )
    assert not [
        e for e in _service(client).event_log.iter_events() if e.customer_id == "C-kiosk-cart-2"
    ]


def test_page_is_static_and_self_contained(client: TestClient) -> None:
    page = client.get("/kiosk", params={"store": STORE})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'src="/kiosk/kiosk.js"' in html and 'href="/kiosk/kiosk.css"' in html
    for name, kind in (("kiosk.js", "text/javascript"), ("kiosk.css", "text/css")):
        asset = client.get(f"/kiosk/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert "http://" not in asset.text and "https://" not in asset.text
    assert "http://" not in html and "https://" not in html
    _error(client.get("/kiosk/..%2Fkiosk.py"), 404, "not_found")
    _error(client.get("/kiosk/secrets.txt"), 404, "not_found")


HOSTILE = [
    b"", b"null", b"[]", b"{}", b"\xff\xfe", b"[" * 1000, b'{"items": []}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001", "size": "M", "fit": null}]}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001", "fit": "fits"}]}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001", "size": "\\u0000"}]}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001"}], "occasion": "\\ud83d\\ude00"}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001"}], "weather": ""}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001"}], "customer_id": 5}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001", "size": "ONE SIZE"}]}',
    b'{"store_id": "..", "items": [{"item_id": "I000001"}]}',
    b'{"store_id": "store-001", "items": [{"item_id": "I000001"}, {"item_id": "I000001"}]}',
    b'{"customer_id": "C1", "store_id": "store-001", "items": [{"item_id": "I000001", "size": "M", "position": -1}]}',
    b'{"customer_id": "C1", "store_id": "store-001", "items": [{"item_id": "I000001", "size": "M", "position": 1e309}]}',
    b'{"customer_id": "C1", "store_id": "store-001", "recommendation_id": "x", "items": [{"item_id": "I000001", "size": "M"}]}',
]  # fmt: skip


@pytest.mark.parametrize("path", ["/v1/kiosk/outfits", "/v1/kiosk/cart"])
def test_hostile_bodies_never_5xx(client: TestClient, path: str) -> None:
    import random

    rng = random.Random(11)
    bodies = list(HOSTILE)
    for _ in range(40):  # seeded mutations of a valid body
        raw = bytearray(HOSTILE[7])
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        bodies.append(bytes(raw))
    for body in bodies:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            ErrorResponse.model_validate(response.json())
