"""``GET /v1/items/{id}/size-advice``: errors, consent, personal vs not, a tried size moving the
advice, stock per store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.schemas import ErrorResponse, SizeAdvice
from tests.helpers import assert_matches


@pytest.fixture(scope="module")
def frames(retailer: tuple[Path, Path]) -> dict[str, pd.DataFrame]:
    data, _ = retailer
    return {
        "items": pd.read_parquet(data / "items.parquet"),
        "interactions": pd.read_parquet(data / "interactions.parquet"),
        "stock": pd.read_parquet(data / "stock.parquet"),
    }


def _advice(client: TestClient, item: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/items/{item}/size-advice", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert_matches(SizeAdvice, body)
    return body


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    ErrorResponse.model_validate(response.json())
    assert response.json()["error"]["code"] == code


def _sized_purchase(frames: dict[str, pd.DataFrame]) -> tuple[str, str, str]:
    """(customer, item, size) of a kept purchase in a multi-size item, by the customer with the
    most purchases in that item's category."""
    items = frames["items"].set_index("item_id")
    events = frames["interactions"]
    bought = events[(events["type"] == "purchase") & events["size"].notna()].copy()
    bought["n_sizes"] = bought["item_id"].map(items["sizes"].map(len))
    bought = bought[bought["n_sizes"] >= 4]
    bought["category"] = bought["item_id"].map(items["category"])
    counts = bought.groupby(["customer_id", "category"], observed=True).size()
    customer, category = counts.sort_values(ascending=False).index[0]
    mine = bought[(bought["customer_id"] == customer) & (bought["category"] == category)]
    usual = mine["size"].mode().iloc[0]
    row = mine[mine["size"] == usual].iloc[0]
    return str(customer), str(row["item_id"]), str(usual)


def test_unknown_item_store_and_bad_tried(
    client: TestClient, frames: dict[str, pd.DataFrame]
) -> None:
    _error(client.get("/v1/items/nope-404/size-advice"), 404, "unknown_item")
    item = str(frames["items"]["item_id"].iloc[0])
    _error(
        client.get(f"/v1/items/{item}/size-advice", params={"store_id": "atlantis"}),
        422,
        "unknown_store",
    )
    _error(
        client.get(f"/v1/items/{item}/size-advice", params={"tried_size": "M"}),
        422,
        "validation_error",
    )
    _error(
        client.get(f"/v1/items/{item}/size-advice", params={"tried_size": "M", "tried_fit": "meh"}),
        422,
        "validation_error",
    )
    _error(
        client.get(
            f"/v1/items/{item}/size-advice",
            params={"tried_size": "XXXXXL", "tried_fit": "fits"},
        ),
        422,
        "validation_error",
    )


def test_anonymous_advice(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    items = frames["items"]
    sized = items[items["sizes"].map(len) >= 3].iloc[0]
    body = _advice(client, str(sized["item_id"]))
    assert body["personal"] is False
    assert [s["size"] for s in body["sizes"]] == list(sized["sizes"])
    for option in body["sizes"]:
        total = option["p_small"] + option["p_fit"] + option["p_large"]
        assert total == pytest.approx(1.0, abs=1e-3)
    assert body["recommended"] in list(sized["sizes"])
    chosen = next(s for s in body["sizes"] if s["size"] == body["recommended"])
    assert body["fit_probability"] == chosen["p_fit"]
    assert body["runs"] in ("small", "true_to_size", "large")
    assert body["evidence"] and body["reason"]
    # p_small falls and p_large rises along the sizes
    smalls = [s["p_small"] for s in body["sizes"]]
    larges = [s["p_large"] for s in body["sizes"]]
    assert smalls == sorted(smalls, reverse=True) and larges == sorted(larges)
    one = items[items["sizes"].map(len) <= 1]
    if not one.empty:
        body = _advice(client, str(one["item_id"].iloc[0]))
        assert body["sizes"] == [] and body["recommended"] is None


def test_stock_per_store(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    stock = frames["stock"]
    stores = stock[stock["store_id"] != "online"]
    row = stores[stores["quantity"] > 0].iloc[0]
    item, store = str(row["item_id"]), str(row["store_id"])
    body = _advice(client, item, store_id=store)
    here = stock[(stock["item_id"] == item) & (stock["store_id"] == store)]
    expected = dict(zip(here["size"].astype(str), here["quantity"].astype(int), strict=True))
    for option in body["sizes"]:
        assert option["stock"] == expected.get(option["size"], 0)
    online = stock[(stock["item_id"] == item) & (stock["store_id"] == "online")]
    expected = dict(zip(online["size"].astype(str), online["quantity"].astype(int), strict=True))
    for option in _advice(client, item)["sizes"]:
        assert option["stock"] == expected.get(option["size"], 0)


def test_personal_advice_and_consent(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    customer, item, usual = _sized_purchase(frames)
    anonymous = _advice(client, item)
    personal = _advice(client, item, customer_id=customer)
    assert personal["personal"] is True
    assert anonymous["personal"] is False
    offered = [s["size"] for s in personal["sizes"]]
    shift = {"small": 1, "large": -1, "true_to_size": 0}[personal["runs"]]
    assert abs(offered.index(personal["recommended"]) - offered.index(usual) - shift) <= 1
    assert personal["fit_probability"] >= anonymous["fit_probability"] - 1e-9
    # a stranger gets the non-personal answer
    assert _advice(client, item, customer_id="nobody-at-all") == anonymous
    # without consent: the non-personal answer
    assert client.put(
        f"/v1/customers/{customer}/consent", json={"personalization": False}
    ).is_success
    assert _advice(client, item, customer_id=customer) == anonymous
    client.put(f"/v1/customers/{customer}/consent", json={"personalization": True})
    assert _advice(client, item, customer_id=customer)["personal"] is True


def test_tried_size_moves_advice(client: TestClient, frames: dict[str, pd.DataFrame]) -> None:
    customer, item, _ = _sized_purchase(frames)
    offered = [s["size"] for s in _advice(client, item)["sizes"]]
    lower, upper = offered[1], offered[-2]
    for who in ({"customer_id": customer}, {}):
        before = _advice(client, item, **who)
        up = _advice(client, item, **who, tried_size=lower, tried_fit="too_small")
        assert offered.index(up["recommended"]) > offered.index(lower), "never the size too small"
        small_before = {s["size"]: s["p_small"] for s in before["sizes"]}
        small_after = {s["size"]: s["p_small"] for s in up["sizes"]}
        assert small_after[lower] > small_before[lower]
        down = _advice(client, item, **who, tried_size=upper, tried_fit="too_large")
        assert offered.index(down["recommended"]) < offered.index(upper)
        assert "You tried" in up["reason"] and lower in up["reason"]
    # a shopper who tried a size and found it fitted is told to take it
    for size in (lower, upper):
        same = _advice(client, item, tried_size=size, tried_fit="fits")
        assert same["recommended"] == size
        same = _advice(client, item, customer_id=customer, tried_size=size, tried_fit="fits")
        assert same["recommended"] == size
    # the anonymous shopper who found the smaller size too small is sent one size up
    up = _advice(client, item, tried_size=offered[0], tried_fit="too_small")
    assert up["recommended"] == offered[1]
