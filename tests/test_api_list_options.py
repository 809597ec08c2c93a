"""``min_price`` / ``max_price`` and ``diversity`` on every list endpoint, through the real app on
the small synthetic retailer: the range holds, the fallback is honest, the cache tells ranges
apart, bad values are a 422 ``validation_error``, diversity 0 changes nothing and higher diversity
spreads the attributes while keeping the top item."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.list_options import ListOptions
from app.main import create_app
from app.response_cache import ComplementaryKey, FeedKey, SeasonalKey, SimilarKey
from app.runtime import LoadedBundle
from app.schemas import ComplementaryList, PersonalizedList, RecommendationList, SeasonalList
from app.settings import Settings
from feature_store.errors import InvalidRequest
from helpers import assert_matches
from models.bundle import latest_bundle
from models.diversity import intra_list_diversity

SESSION = "/v1/sessions/recommendations"


@pytest.fixture(scope="module")
def client(
    retailer: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path_factory.mktemp("events"),
        bundle_poll_seconds=0,
        redis_url=None,
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def bundle(retailer: tuple[Path, Path]) -> LoadedBundle:
    info = latest_bundle(retailer[1])
    assert info is not None
    return LoadedBundle.load(info.path)


@pytest.fixture(scope="module")
def items(retailer: tuple[Path, Path]) -> pd.DataFrame:
    return pd.read_parquet(retailer[0] / "items.parquet")


@pytest.fixture(scope="module")
def buyers(retailer: tuple[Path, Path]) -> list[str]:
    inter = pd.read_parquet(retailer[0] / "interactions.parquet")
    bought = inter[inter["type"] == "purchase"]
    counts = bought.groupby("customer_id", observed=True).size().sort_values(ascending=False)
    return [str(c) for c in counts.index[:6]]


def price_of(items: pd.DataFrame) -> dict[str, float]:
    return dict(zip(items["item_id"].astype(str), items["price"].astype(float), strict=True))


def listed(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a list body (every slot's for complete the look)."""
    if "slots" in body:
        return [entry for slot in body["slots"] for entry in slot["items"]]
    items: list[dict[str, Any]] = body["items"]
    return items


def without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "recommendation_id"}


def endpoints(
    buyer: str, anchor: str, other: str
) -> dict[str, tuple[Callable[[TestClient, dict[str, Any]], Any], type]]:
    """Every list endpoint as ``call(client, options)`` and its response model."""

    def query(options: dict[str, Any]) -> str:
        return "&".join(f"{k}={v}" for k, v in options.items())

    return {
        "feed": (
            lambda c, o: c.get(f"/v1/customers/{buyer}/recommendations?{query(o)}"),
            PersonalizedList,
        ),
        "similar": (
            lambda c, o: c.get(f"/v1/items/{anchor}/similar?{query(o)}"),
            RecommendationList,
        ),
        "item_complementary": (
            lambda c, o: c.get(f"/v1/items/{anchor}/complementary?k=6&{query(o)}"),
            ComplementaryList,
        ),
        "basket_complementary": (
            lambda c, o: c.post("/v1/complementary", json={"items": [anchor, other], "k": 6, **o}),
            ComplementaryList,
        ),
        "session": (
            lambda c, o: c.post(SESSION, json={"items": [anchor, other], **o}),
            RecommendationList,
        ),
        "seasonal": (lambda c, o: c.get(f"/v1/seasonal?{query(o)}"), SeasonalList),
    }


@pytest.fixture(scope="module")
def calls(
    buyers: list[str], items: pd.DataFrame
) -> dict[str, tuple[Callable[[TestClient, dict[str, Any]], Any], type]]:
    tops = items[items["category"] == "top"]["item_id"].astype(str).tolist()
    bottoms = items[items["category"] == "bottom"]["item_id"].astype(str).tolist()
    return endpoints(buyers[0], tops[0], bottoms[0])


@pytest.mark.parametrize(
    "endpoint",
    ["feed", "similar", "item_complementary", "basket_complementary", "session", "seasonal"],
)
def test_the_price_range_holds_on_every_endpoint(
    client: TestClient,
    calls: dict[str, tuple[Callable[[TestClient, dict[str, Any]], Any], type]],
    items: pd.DataFrame,
    endpoint: str,
) -> None:
    prices = price_of(items)
    low, high = (float(q) for q in items["price"].quantile([0.3, 0.7]))
    call, model = calls[endpoint]
    plain = call(client, {})
    assert plain.status_code == 200, plain.text
    assert any(not low <= prices[e["item_id"]] <= high for e in listed(plain.json()))
    for options in ({"min_price": low, "max_price": high}, {"max_price": high}, {"min_price": low}):
        response = call(client, options)
        assert response.status_code == 200, response.text
        body = response.json()
        assert_matches(model, body)
        found = listed(body)
        assert found, f"{endpoint} {options}: empty list"
        for entry in found:
            price = prices[entry["item_id"]]
            assert options.get("min_price", 0.0) <= price <= options.get("max_price", np.inf)


def test_a_short_list_is_topped_up_with_popular_items_in_range_and_says_so(
    client: TestClient, items: pd.DataFrame
) -> None:
    """Similar items of an anchor with price windows that leave its similar and same-look items
    few: the list is filled to k from best sellers *in the window*, and says ``fallback``."""
    prices = price_of(items)
    anchor = str(items[items["category"] == "swimwear"]["item_id"].iloc[0])
    ordered = np.sort(items["price"].to_numpy(dtype=float))
    fell_back = 0
    for start in range(0, len(ordered) - 20, 20):
        low, high = float(ordered[start]), float(ordered[start + 19])
        body = client.get(
            f"/v1/items/{anchor}/similar?k=12&min_price={low}&max_price={high}"
        ).json()
        found = listed(body)
        in_range = sum(1 for i, p in prices.items() if low <= p <= high and i != anchor)
        assert len(found) == min(12, in_range)
        assert len({e["item_id"] for e in found}) == len(found)
        assert all(low <= prices[e["item_id"]] <= high for e in found)
        popular = any(e["source"] == "popular" for e in found)
        assert body["fallback"] is popular
        fell_back += popular
    assert fell_back > 0
    plain = client.get(f"/v1/items/{anchor}/similar?k=12").json()
    assert plain["fallback"] is False


def test_a_range_without_items_is_an_empty_list(client: TestClient, buyers: list[str]) -> None:
    body = client.get(
        f"/v1/customers/{buyers[0]}/recommendations?min_price=1000000&max_price=2000000"
    ).json()
    assert body["items"] == []
    seasonal = client.get("/v1/seasonal?min_price=1000000").json()
    assert seasonal["items"] == []


def test_the_cache_tells_price_ranges_apart(
    client: TestClient, buyers: list[str], items: pd.DataFrame
) -> None:
    prices = price_of(items)
    url = f"/v1/customers/{buyers[1]}/recommendations"
    cheap = client.get(f"{url}?max_price=30").json()
    dear = client.get(f"{url}?min_price=60").json()
    assert all(prices[e["item_id"]] <= 30 for e in cheap["items"])
    assert all(prices[e["item_id"]] >= 60 for e in dear["items"])
    again = client.get(f"{url}?max_price=30").json()
    assert without_id(again) == without_id(cheap)
    assert again["recommendation_id"] != cheap["recommendation_id"]


def test_cache_keys_name_the_options_and_keep_their_old_form_without_them() -> None:
    options = ListOptions(min_price=10.0, max_price=20.0, diversity=0.5)
    feed = FeedKey("v1", "C1", 12, None, True, "home", False, None)
    assert feed.field == "rec:12::1:home:0:"  # as before the options existed
    fields = {
        FeedKey("v1", "C1", 12, None, True, "home", False, None, options).field,
        FeedKey("v1", "C1", 12, None, True, "home", False, None, ListOptions(10.0, 21.0)).field,
        FeedKey("v1", "C1", 12, None, True, "home", False, None, ListOptions(diversity=0.5)).field,
        feed.field,
    }
    assert len(fields) == 4
    assert SimilarKey("v1", "I1", 12, None).field == "sim:12:"
    assert SimilarKey("v1", "I1", 12, None, options=options).field != "sim:12:"
    basket = ComplementaryKey("v1", ("I1",), 4, None, True)
    assert basket.field != ComplementaryKey("v1", ("I1",), 4, None, True, options=options).field
    day = pd.Timestamp("2024-01-01").date()
    assert (
        SeasonalKey("v1", day, None, None, None, 12).field
        != SeasonalKey("v1", day, None, None, None, 12, options=options).field
    )


BAD_QUERIES = [
    "min_price=-1",
    "max_price=-0.01",
    "min_price=nan",
    "max_price=inf",
    "min_price=-inf",
    "min_price=50&max_price=10",
    "diversity=1.5",
    "diversity=-0.1",
    "diversity=nan",
    "min_price=cheap",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_values_are_a_422_validation_error(
    client: TestClient, buyers: list[str], items: pd.DataFrame, query: str
) -> None:
    anchor = str(items["item_id"].iloc[0])
    for url in (
        f"/v1/customers/{buyers[0]}/recommendations",
        f"/v1/items/{anchor}/similar",
        f"/v1/items/{anchor}/complementary",
        "/v1/seasonal",
    ):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 422, (url, query, response.text)
        assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "options",
    [
        {"min_price": -1},
        {"min_price": 50, "max_price": 10},
        {"diversity": 2},
        {"diversity": -0.5},
        {"max_price": "lots"},
    ],
)
def test_bad_values_in_bodies_are_a_422_validation_error(
    client: TestClient, items: pd.DataFrame, options: dict[str, Any]
) -> None:
    anchor = str(items["item_id"].iloc[0])
    for url, body in ((SESSION, {"items": [anchor]}), ("/v1/complementary", {"items": [anchor]})):
        response = client.post(url, json={**body, **options})
        assert response.status_code == 422, (url, options, response.text)
        assert response.json()["error"]["code"] == "validation_error"


def test_non_finite_prices_in_a_body_are_a_422(client: TestClient, items: pd.DataFrame) -> None:
    anchor = str(items["item_id"].iloc[0])
    for raw in ("NaN", "Infinity"):
        response = client.post(
            SESSION,
            content=f'{{"items": ["{anchor}"], "max_price": {raw}}}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "endpoint",
    ["feed", "similar", "item_complementary", "basket_complementary", "session", "seasonal"],
)
def test_diversity_zero_changes_nothing(
    client: TestClient,
    calls: dict[str, tuple[Callable[[TestClient, dict[str, Any]], Any], type]],
    endpoint: str,
) -> None:
    call, _ = calls[endpoint]
    assert without_id(call(client, {"diversity": 0}).json()) == without_id(call(client, {}).json())


def test_ranges_that_hold_everything_change_nothing(
    client: TestClient,
    calls: dict[str, tuple[Callable[[TestClient, dict[str, Any]], Any], type]],
) -> None:
    for call, _ in calls.values():
        wide = call(client, {"min_price": 0, "max_price": 1e9}).json()
        assert without_id(wide) == without_id(call(client, {}).json())


def test_diversity_spreads_the_feed_and_keeps_the_top_item(
    client: TestClient, buyers: list[str], bundle: LoadedBundle
) -> None:
    similarity = bundle.item_similarity
    ild: dict[float, list[float]] = {0.0: [], 0.5: [], 1.0: []}
    types: dict[float, int] = {0.0: 0, 1.0: 0}
    product_type = bundle.catalog.frame["product_type"].astype(str).to_numpy()
    for buyer in buyers:
        lists = {}
        for level in ild:
            body = client.get(f"/v1/customers/{buyer}/recommendations?diversity={level}").json()
            lists[level] = [bundle.catalog.ids.index(e["item_id"]) for e in body["items"]]
            assert len(lists[level]) == 12
            ild[level].append(intra_list_diversity(np.asarray(lists[level]), similarity))
        assert lists[0.5][0] == lists[0.0][0] == lists[1.0][0]
        for level in types:
            types[level] += len(set(product_type[lists[level]].tolist()))
    assert np.mean(ild[0.5]) > np.mean(ild[0.0])
    assert np.mean(ild[1.0]) > np.mean(ild[0.0])
    assert types[1.0] > types[0.0]


@pytest.mark.parametrize("endpoint", ["similar", "session", "seasonal", "item_complementary"])
def test_diversity_on_the_other_lists_keeps_the_top_item_and_the_length(
    client: TestClient,
    calls: dict[str, tuple[Callable[[TestClient, dict[str, Any]], Any], type]],
    endpoint: str,
) -> None:
    call, model = calls[endpoint]
    plain = call(client, {}).json()
    diverse = call(client, {"diversity": 1}).json()
    assert_matches(model, diverse)
    if "slots" in plain:
        pairs = list(zip(plain["slots"], diverse["slots"], strict=True))
        lists = [(a["items"], b["items"]) for a, b in pairs]
    else:
        lists = [(plain["items"], diverse["items"])]
    for before, after in lists:
        assert len(after) == len(before)
        if before:
            assert after[0]["item_id"] == before[0]["item_id"]
    again = call(client, {"diversity": 1}).json()
    assert without_id(again) == without_id(diverse)  # deterministic


def test_list_options_validate_where_they_are_made() -> None:
    with pytest.raises(InvalidRequest):
        ListOptions(min_price=float("nan"))
    with pytest.raises(InvalidRequest):
        ListOptions(diversity=float("inf"))
    assert ListOptions.of(None, None, None, 0.25).diversity == 0.25
    assert ListOptions.of(None, None, 0.0, 0.25).diversity == 0.0
    assert ListOptions().key == ""
