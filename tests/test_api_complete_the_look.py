"""Complete the look and seasonal picks through the real app, on the small synthetic retailer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.response_cache import customer_group
from app.runtime import LoadedBundle
from app.schemas import ComplementaryList, SeasonalList
from app.settings import Settings
from helpers import assert_matches
from models.bundle import latest_bundle


@pytest.fixture(scope="module")
def bundle(retailer: tuple[Path, Path]) -> LoadedBundle:
    info = latest_bundle(retailer[1])
    assert info is not None
    return LoadedBundle.load(info.path)


@pytest.fixture
def client(retailer: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def items(retailer: tuple[Path, Path]) -> pd.DataFrame:
    return pd.read_parquet(retailer[0] / "items.parquet")


@pytest.fixture(scope="module")
def buyer(retailer: tuple[Path, Path]) -> str:
    inter = pd.read_parquet(retailer[0] / "interactions.parquet")
    bought = inter[inter["type"] == "purchase"]
    counts = bought.groupby("customer_id", observed=True).size().sort_values(ascending=False)
    return str(counts.index[0])


def first_of(items: pd.DataFrame, category: str) -> str:
    return str(items[items["category"] == category]["item_id"].iloc[0])


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return str(body["error"]["code"])


def test_trained_bundle_holds_both_models_and_loads(
    retailer: tuple[Path, Path], bundle: LoadedBundle
) -> None:
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert manifest["models"]["complementary"] == "models/complementary"
    assert manifest["models"]["seasonal"] == "models/seasonal"
    assert manifest["look"]["complementary"]["baskets"] > 0
    assert manifest["config"]["complementary"]["max_baskets"] >= 1
    assert bundle.complementary is not None and bundle.seasonal is not None
    assert bundle.complementary.n_items == bundle.seasonal.n_items == len(bundle.catalog.names)


def test_served_models_blend_co_occurrence_and_count_sales(bundle: LoadedBundle) -> None:
    """The bundle's complementary model carries the retailer's co-purchase / co-cart / co-view
    statistics and blends them; the seasonal model's level is its deseasonalised sales."""
    model = bundle.complementary
    assert model is not None and model.blends and model.cooccurrence_ is not None
    assert model.cooccurrence_.matrix_.nnz > 0 and model.cooccurrence_.popularity_.sum() > 0
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert manifest["look"]["complementary"]["cooccurrence_sets"]["purchase"] > 0
    assert bundle.seasonal is not None and bundle.seasonal.level_mode == "sales"


def test_item_complementary_fills_other_slots_and_names_the_anchor(
    client: TestClient, items: pd.DataFrame
) -> None:
    anchor = first_of(items, "top")
    name = str(items.set_index("item_id").loc[anchor, "name"])
    response = client.get(f"/v1/items/{anchor}/complementary?k=3")
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches(ComplementaryList, body)
    assert body["recommendation_id"] and body["model_version"]
    assert body["item_id"] == anchor and body["basket"] == [anchor]
    categories = [slot["category"] for slot in body["slots"]]
    assert categories and "top" not in categories
    assert len(categories) == len(set(categories))
    for slot in body["slots"]:
        assert len(slot["items"]) in (1, 2, 3)
        for entry in slot["items"]:
            assert entry["category"] == slot["category"]
            assert entry["item_id"] != anchor
            assert entry["source"] == "complementary"
            assert entry["pairs_with"] == anchor
            assert entry["reason"] == f"Pairs with the {name}"
    # cached: the same list, a fresh recommendation id
    again = client.get(f"/v1/items/{anchor}/complementary?k=3").json()
    assert again["slots"] == body["slots"]
    assert again["recommendation_id"] != body["recommendation_id"]


def test_categories_pick_the_slots(client: TestClient, items: pd.DataFrame) -> None:
    anchor = first_of(items, "top")
    body = client.get(f"/v1/items/{anchor}/complementary?k=2&categories=shoes,bottom").json()
    assert [slot["category"] for slot in body["slots"]] == ["shoes", "bottom"]
    assert all(len(slot["items"]) == 2 for slot in body["slots"])
    swim = client.get(f"/v1/items/{anchor}/complementary?categories=swimwear").json()
    if "swimwear" not in set(items["category"]):
        assert swim["slots"] == [{"category": "swimwear", "items": []}]


def test_basket_considers_every_item(
    client: TestClient, items: pd.DataFrame, bundle: LoadedBundle
) -> None:
    basket = [first_of(items, "top"), first_of(items, "bottom"), first_of(items, "shoes")]
    response = client.post("/v1/complementary", json={"items": basket, "k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches(ComplementaryList, body)
    assert body["basket"] == basket and body["item_id"] is None
    assert isinstance(body["compatibility"], float)
    categories = {slot["category"] for slot in body["slots"]}
    assert categories and not categories & {"top", "bottom", "shoes"}
    model = bundle.complementary
    assert model is not None
    indices = [bundle.catalog.ids.index(i) for i in basket]
    for slot in body["slots"]:
        for entry in slot["items"]:
            assert entry["pairs_with"] in basket
            item = bundle.catalog.ids.index(entry["item_id"])
            # the score is the mean compatibility with the whole basket, not with one item
            whole = float(model.score_candidates(indices, [item])[0])
            assert entry["score"] == pytest.approx(whole, abs=1e-3)
        scores = [entry["score"] for entry in slot["items"]]
        assert scores == sorted(scores, reverse=True)
    single = client.post("/v1/complementary", json={"items": basket[:1], "k": 4}).json()
    assert single["slots"] != body["slots"]


def test_complementary_errors_are_4xx_with_stable_codes(
    client: TestClient, items: pd.DataFrame
) -> None:
    anchor = first_of(items, "top")
    assert error_code(client.get("/v1/items/NOPE/complementary"), 404) == "unknown_item"
    post = client.post("/v1/complementary", json={"items": [anchor, "NOPE"]})
    assert error_code(post, 404) == "unknown_item"
    assert error_code(client.post("/v1/complementary", json={"items": []}), 422) == (
        "validation_error"
    )
    assert error_code(client.post("/v1/complementary", json={}), 422) == "validation_error"
    bad = client.get(f"/v1/items/{anchor}/complementary?categories=hats")
    assert error_code(bad, 422) == "validation_error"
    bad = client.post("/v1/complementary", json={"items": [anchor], "categories": []})
    assert error_code(bad, 422) == "validation_error"
    assert error_code(client.get(f"/v1/items/{anchor}/complementary?k=100000"), 422) == (
        "validation_error"
    )


def test_customer_basket_leaves_out_what_they_bought(
    client: TestClient, items: pd.DataFrame, buyer: str, bundle: LoadedBundle
) -> None:
    anchor = first_of(items, "top")
    body = client.post(
        "/v1/complementary", json={"items": [anchor], "k": 6, "customer_id": buyer}
    ).json()
    assert_matches(ComplementaryList, body)
    assert body["personalized"] is True and body["customer_id"] == buyer
    customer = bundle.customers.index(buyer)
    assert customer is not None
    bought = {bundle.catalog.ids.id(int(i)) for i in bundle.purchased(customer)}
    shown = {e["item_id"] for slot in body["slots"] for e in slot["items"]}
    assert shown and not shown & bought


def outerwear_share(body: dict[str, Any]) -> float:
    return float(np.mean([e["category"] == "outerwear" for e in body["items"]]))


def test_seasonal_cold_snap_ranks_outerwear_up(client: TestClient) -> None:
    plain = client.get("/v1/seasonal?date=2026-06-15&k=20")
    assert plain.status_code == 200, plain.text
    cold = client.get("/v1/seasonal?date=2026-06-15&k=20&weather=cold_snap").json()
    body = plain.json()
    assert_matches(SeasonalList, body)
    assert body["recommendation_id"] and body["model_version"] and body["date"] == "2026-06-15"
    assert cold["weather"] == "cold_snap" and len(cold["items"]) == 20
    assert outerwear_share(cold) > outerwear_share(body)
    assert all(e["source"] == "seasonal" and e["reason"] for e in cold["items"])
    autumn = client.get("/v1/seasonal?season=autumn&category=outerwear&k=5").json()
    assert autumn["season"] == "autumn"
    assert {e["category"] for e in autumn["items"]} == {"outerwear"}


def test_seasonal_personalises_for_a_known_customer(
    client: TestClient, buyer: str, bundle: LoadedBundle
) -> None:
    anonymous = client.get("/v1/seasonal?season=winter&k=12").json()
    mine = client.get(f"/v1/seasonal?season=winter&k=12&customer_id={buyer}").json()
    assert_matches(SeasonalList, mine)
    assert anonymous["personalized"] is False and mine["personalized"] is True
    assert [e["item_id"] for e in mine["items"]] != [e["item_id"] for e in anonymous["items"]]
    customer = bundle.customers.index(buyer)
    assert customer is not None
    bought = {bundle.catalog.ids.id(int(i)) for i in bundle.purchased(customer)}
    assert not {e["item_id"] for e in mine["items"]} & bought
    stranger = client.get("/v1/seasonal?season=winter&k=12&customer_id=nobody-here").json()
    assert stranger["personalized"] is False
    assert [e["item_id"] for e in stranger["items"]] == [e["item_id"] for e in anonymous["items"]]


def test_seasonal_errors(client: TestClient) -> None:
    for query in ("season=monsoon", "weather=hail", "date=not-a-date", "category=hats", "k=0"):
        assert error_code(client.get(f"/v1/seasonal?{query}"), 422) == "validation_error", query


def test_feed_uses_complete_the_look_and_seasonal_sources(client: TestClient, buyer: str) -> None:
    body = client.get(f"/v1/customers/{buyer}/recommendations?k=40").json()
    sources = {e["source"] for e in body["items"]}
    assert sources & {"complete_look", "seasonal"}, sources
    for entry in body["items"]:
        if entry["source"] == "complete_look":
            assert entry["reason"].startswith("Completes the ")
            assert entry["reason"].endswith(" you bought")


def test_an_event_drops_exactly_that_customers_lists_of_every_kind(
    client: TestClient, items: pd.DataFrame, buyer: str, bundle: LoadedBundle
) -> None:
    anchor = first_of(items, "top")
    other = "someone-else"

    def lists_of(customer: str) -> None:
        for response in (
            client.get(f"/v1/customers/{customer}/recommendations?k=5"),
            client.get(f"/v1/items/{anchor}/similar?k=5&customer_id={customer}"),
            client.get(f"/v1/items/{anchor}/complementary?k=2&customer_id={customer}"),
            client.post(
                "/v1/complementary", json={"items": [anchor], "k": 3, "customer_id": customer}
            ),
            client.get(f"/v1/seasonal?season=winter&k=5&customer_id={customer}"),
        ):
            assert response.status_code == 200, response.text

    lists_of(buyer)
    lists_of(other)
    client.get(f"/v1/items/{anchor}/similar?k=5")  # lists of nobody in particular
    client.get("/v1/seasonal?season=winter&k=5")
    cache = client.app.state.service.cache  # type: ignore[attr-defined]
    mine, theirs = (customer_group(bundle.version, c) for c in (buyer, other))
    kinds = {field.split(":")[0] for field in cache._groups[mine]}
    assert kinds == {"rec", "sim", "cmp", "sea"}, "every kind of list sits in the group"
    assert len(cache._groups[mine]) == len(cache._groups[theirs]) == 5
    shared = {g: dict(e) for g, e in cache._groups.items() if g not in (mine, theirs)}
    assert len(shared) == 2

    event = {"customer_id": buyer, "item_id": anchor, "type": "view"}
    assert client.post("/v1/events", json=event).json()["accepted"] == 1
    assert mine not in cache._groups, "the customer's lists are dropped"
    assert len(cache._groups[theirs]) == 5, "another customer's lists stay"
    assert {g: dict(e) for g, e in cache._groups.items() if g != theirs} == shared
