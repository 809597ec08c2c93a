"""The busiest list routes validate their query as one model (``app.query_params``): the same
rules, the same 422 bodies and the same documentation as FastAPI's own declarations, which a
reference app here still uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Query, Request
from fastapi.testclient import TestClient

from app.errors import install_error_handlers
from app.main import create_app
from app.query_params import QueryModel
from app.routes.customers import FeedQuery
from app.routes.items import SimilarQuery
from app.settings import Settings
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN, Category


def _reference_app() -> FastAPI:
    """The two routes' query as FastAPI parameters (as they were declared before), echoing what
    they received, beside the same routes reading their model."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/declared/feed")
    async def declared_feed(
        k: Annotated[int | None, Query(ge=1, le=1000)] = None,
        min_price: float | None = None,
        max_price: float | None = None,
        diversity: float | None = None,
        category: Annotated[Category | None, Query()] = None,
        exclude_purchased: bool = True,
        surface: Annotated[str, Query(pattern="^[a-z_]{1,32}$")] = "home",
        in_stock_in_my_size: bool = False,
        store_id: Annotated[
            str | None, Query(min_length=1, max_length=64, pattern=ID_PATTERN)
        ] = None,
    ) -> dict[str, Any]:
        return {
            "k": k,
            "min_price": min_price,
            "max_price": max_price,
            "diversity": diversity,
            "category": category,
            "exclude_purchased": exclude_purchased,
            "surface": surface,
            "in_stock_in_my_size": in_stock_in_my_size,
            "store_id": store_id,
        }

    @app.get("/declared/similar")
    async def declared_similar(
        k: Annotated[int | None, Query(ge=1, le=1000)] = None,
        min_price: float | None = None,
        max_price: float | None = None,
        diversity: float | None = None,
        customer_id: Annotated[
            str | None, Query(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
        ] = None,
        in_stock_in_my_size: bool = False,
        store_id: Annotated[
            str | None, Query(min_length=1, max_length=64, pattern=ID_PATTERN)
        ] = None,
    ) -> dict[str, Any]:
        return {
            "k": k,
            "min_price": min_price,
            "max_price": max_price,
            "diversity": diversity,
            "customer_id": customer_id,
            "in_stock_in_my_size": in_stock_in_my_size,
            "store_id": store_id,
        }

    @app.get("/model/feed")
    async def model_feed(request: Request) -> dict[str, Any]:
        return FeedQuery.of(request).model_dump()

    @app.get("/model/similar")
    async def model_similar(request: Request) -> dict[str, Any]:
        return SimilarQuery.of(request).model_dump()

    return app


QUERIES = [
    "",
    "k=5",
    "k=0",
    "k=1001",
    "k=abc",
    "k=",
    "k=3&k=7",  # repeated: the last value
    "k=2.5",
    "min_price=10&max_price=20.5",
    "min_price=cheap",
    "diversity=0.5",
    "diversity=nan",
    "category=dress",
    "category=DRESS",
    "category=hat",
    "exclude_purchased=false",
    "exclude_purchased=0",
    "exclude_purchased=no",
    "exclude_purchased=maybe",
    "in_stock_in_my_size=1&store_id=S01",
    "store_id=",
    "store_id=bad%20id",
    "store_id=" + "s" * 65,
    "surface=email",
    "surface=Email",
    "surface=" + "a" * 33,
    "customer_id=C1",
    "customer_id=",
    "customer_id=" + "c" * (ID_MAX_LENGTH + 1),
    "unknown=1&k=4",  # unknown parameters are ignored
    "k=0&min_price=x&store_id=",  # several errors at once
]


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(_reference_app())


@pytest.mark.parametrize("route", ["feed", "similar"])
@pytest.mark.parametrize("query", QUERIES)
def test_the_model_accepts_and_refuses_what_the_declared_parameters_do(
    client: TestClient, route: str, query: str
) -> None:
    declared = client.get(f"/declared/{route}?{query}")
    model = client.get(f"/model/{route}?{query}")
    assert model.status_code == declared.status_code, (model.text, declared.text)
    if declared.status_code == 200:
        assert model.json() == declared.json()
    else:
        assert declared.status_code == 422
        body, expected = model.json()["error"], declared.json()["error"]
        assert body["code"] == expected["code"] == "validation_error"
        assert sorted(map(str, body["details"])) == sorted(map(str, expected["details"]))
        if len(expected["details"]) == 1:
            assert body["message"] == expected["message"]


@pytest.mark.parametrize("model", [FeedQuery, SimilarQuery])
def test_openapi_lists_every_field_as_a_query_parameter(model: type[QueryModel]) -> None:
    parameters = {p["name"]: p for p in model.openapi()["parameters"]}
    assert list(parameters) == list(model.model_fields)
    assert all(p["in"] == "query" and p["required"] is False for p in parameters.values())
    k = parameters["k"]["schema"]["anyOf"][0]
    assert (k["type"], k["minimum"], k["maximum"]) == ("integer", 1, 1000)
    assert parameters["k"]["description"] == "list length"
    assert "$ref" not in str(parameters), "definitions are inlined"


def test_the_served_documentation_has_the_model_parameters(tmp_path: Path) -> None:
    settings = Settings(
        bundle_dir=tmp_path / "bundles", event_log_dir=tmp_path / "events", bundle_poll_seconds=0
    )
    spec = create_app(settings).openapi()
    feed = spec["paths"]["/v1/customers/{customer_id}/recommendations"]["get"]["parameters"]
    names = [p["name"] for p in feed]
    assert names == ["customer_id", *FeedQuery.model_fields], "the path, then the query"
    category = next(p for p in feed if p["name"] == "category")["schema"]["anyOf"][0]
    assert set(category["enum"]) == {c.value for c in Category}
    similar = spec["paths"]["/v1/items/{item_id}/similar"]["get"]["parameters"]
    assert [p["name"] for p in similar] == ["item_id", *SimilarQuery.model_fields]
