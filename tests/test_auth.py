"""API keys with scopes: every route of the OpenAPI document needs its scope, refusals carry no
data, the body of a refused request is never read, keys are kept hashed, production needs keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from app.auth import (
    ApiKey,
    KeyRing,
    Scope,
    hash_key,
    key_from_headers,
    new_key,
    read_keys_file,
    require_scope,
)
from app.main import create_app
from app.settings import Settings
from training.cli import cli

OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}  # open by design (metrics: unless asked)

# The scope of every route that exists today (a route added later is held to *some* scope by
# test_every_route_needs_its_scope, and the lead adds it here when wiring it).
EXPECTED_SCOPES = {
    ("get", "/v1/customers/{customer_id}/recommendations"): Scope.READ,
    ("get", "/v1/items/{item_id}/similar"): Scope.READ,
    ("get", "/v1/items/{item_id}/complementary"): Scope.READ,
    ("post", "/v1/complementary"): Scope.READ,
    ("get", "/v1/seasonal"): Scope.READ,
    ("post", "/v1/sessions/recommendations"): Scope.READ,
    ("post", "/v1/events"): Scope.EVENTS,
    ("get", "/v1/items/{item_id}/size-advice"): Scope.READ,
    ("post", "/v1/kiosk/outfits"): Scope.KIOSK,
    ("post", "/v1/kiosk/cart"): Scope.KIOSK,
    ("get", "/v1/customers/{customer_id}/profile"): Scope.CUSTOMERS,
    ("put", "/v1/customers/{customer_id}/consent"): Scope.CUSTOMERS,
    ("delete", "/v1/customers/{customer_id}"): Scope.CUSTOMERS,
    ("get", "/v1/segments"): Scope.CUSTOMERS,
    ("get", "/v1/segments/{name}/customers"): Scope.CUSTOMERS,
    ("get", "/v1/admin/models"): Scope.ADMIN,
    ("post", "/v1/admin/reload"): Scope.ADMIN,
    ("post", "/v1/admin/models/{version}/activate"): Scope.ADMIN,
    ("delete", "/v1/admin/models/pin"): Scope.ADMIN,
    ("get", "/v1/admin/attribution"): Scope.ADMIN,
    ("get", "/v1/admin/experiments"): Scope.ADMIN,
    ("get", "/v1/admin/experiments/{name}"): Scope.ADMIN,
    ("get", "/v1/admin/bandit"): Scope.ADMIN,
}
METHODS = ("get", "put", "post", "delete", "patch")


class Keys:
    """Per scope: a key with only that scope and a key with every scope but that one."""

    def __init__(self) -> None:
        self.only: dict[Scope, str] = {}
        self.all_but: dict[Scope, str] = {}
        self.entries: list[ApiKey] = []
        for scope in Scope:
            key, entry = new_key(f"only-{scope.value}", [scope])
            self.only[scope] = key
            self.entries.append(entry)
            others = [s for s in Scope if s is not scope]
            key, entry = new_key(f"all-but-{scope.value}", others)
            self.all_but[scope] = key
            self.entries.append(entry)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def keyed_settings(
    retailer: tuple[Path, Path], tmp_path: Path, keys: Keys, **extra: Any
) -> Settings:
    return Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
        api_keys=keys.entries,
        **extra,
    )


@pytest.fixture
def keyed(retailer: tuple[Path, Path], tmp_path: Path, keys: Keys) -> Iterator[TestClient]:
    with TestClient(create_app(keyed_settings(retailer, tmp_path, keys))) as c:
        yield c


@pytest.fixture(scope="module")
def ids(retailer: tuple[Path, Path]) -> dict[str, str]:
    data, _ = retailer
    interactions = pd.read_parquet(data / "interactions.parquet")
    items = pd.read_parquet(data / "items.parquet")
    return {
        "customer_id": str(interactions["customer_id"].iloc[0]),
        "item_id": str(items["item_id"].iloc[0]),
        "name": "high_value",
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def declared_scopes(operation: dict[str, Any]) -> set[str]:
    """The scopes an operation's OpenAPI security requirements name."""
    return {
        scope
        for requirement in operation.get("security", [])
        for s in requirement.values()
        for scope in s
    }


def operations(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in app.openapi()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def unscoped_operations(app: FastAPI) -> list[str]:
    """Operations outside the open paths whose OpenAPI entry declares no known scope."""
    known = {s.value for s in Scope}
    return [
        f"{method.upper()} {path}"
        for method, path, operation in operations(app)
        if path not in OPEN_PATHS and not (declared_scopes(operation) & known)
    ]


def call(
    client: TestClient, method: str, path: str, ids: dict[str, str], headers: dict[str, str]
) -> Any:
    url = path.format_map({**{name: "x1" for name in _params(path)}, **ids})
    body = {} if method in ("post", "put", "patch") else None
    return client.request(method.upper(), url, json=body, headers=headers)


def _params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def assert_refused(response: Any, status: int, code: str, ids: dict[str, str]) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code
    assert ids["customer_id"] not in response.text and ids["item_id"] not in response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_route_needs_its_scope(keyed: TestClient, keys: Keys, ids: dict[str, str]) -> None:
    app: FastAPI = keyed.app  # type: ignore[assignment]
    assert unscoped_operations(app) == []
    walked = 0
    for method, path, operation in operations(app):
        if path in OPEN_PATHS:
            continue
        (scope,) = (Scope(s) for s in declared_scopes(operation))
        where = f"{method.upper()} {path}"
        if (method, path) in EXPECTED_SCOPES:
            assert scope is EXPECTED_SCOPES[(method, path)], where
        assert_refused(call(keyed, method, path, ids, {}), 401, "unauthenticated", ids)
        wrong = {"X-API-Key": "not-a-configured-key"}
        assert_refused(call(keyed, method, path, ids, wrong), 401, "unauthenticated", ids)
        assert_refused(
            call(keyed, method, path, ids, bearer(keys.all_but[scope])), 403, "forbidden", ids
        )
        allowed = call(keyed, method, path, ids, bearer(keys.only[scope]))
        assert allowed.status_code not in (401, 403), (where, allowed.text)
        assert allowed.status_code < 500, (where, allowed.text)
        walked += 1
    assert set(EXPECTED_SCOPES) <= {(method, path) for method, path, _ in operations(app)}
    assert walked >= len(EXPECTED_SCOPES)


def test_a_route_without_a_scope_is_caught(settings: Settings) -> None:
    app = create_app(settings)
    assert unscoped_operations(app) == []
    forgotten = APIRouter()

    @forgotten.get("/v1/forgotten")
    def _forgotten() -> dict[str, str]:
        return {}

    app.include_router(forgotten)
    app.openapi_schema = None
    assert unscoped_operations(app) == ["GET /v1/forgotten"]


def test_health_and_docs_stay_open(keyed: TestClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    ready = keyed.get("/readyz")
    assert ready.status_code == 200 and ready.json()["auth"] == f"api keys: {2 * len(Scope)}"
    assert keyed.get("/metrics").status_code == 200
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200
    assert keyed.get("/v1/no-such-route").status_code == 404


def test_metrics_can_require_the_admin_scope(
    retailer: tuple[Path, Path], tmp_path: Path, keys: Keys, ids: dict[str, str]
) -> None:
    settings = keyed_settings(retailer, tmp_path, keys, metrics_require_key=True)
    with TestClient(create_app(settings)) as c:
        assert_refused(c.get("/metrics"), 401, "unauthenticated", ids)
        assert_refused(
            c.get("/metrics", headers=bearer(keys.only[Scope.READ])), 403, "forbidden", ids
        )
        assert c.get("/metrics", headers=bearer(keys.only[Scope.ADMIN])).status_code == 200
        assert c.get("/healthz").status_code == 200
        spec = c.get("/openapi.json").json()
        assert declared_scopes(spec["paths"]["/metrics"]["get"]) == {"admin"}


def test_bearer_or_x_api_key(keyed: TestClient, keys: Keys, ids: dict[str, str]) -> None:
    url = f"/v1/items/{ids['item_id']}/similar"
    key = keys.only[Scope.READ]
    assert keyed.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert keyed.get(url, headers={"authorization": f"bearer {key}"}).status_code == 200
    assert keyed.get(url, headers={"X-API-Key": key}).status_code == 200
    assert_refused(
        keyed.get(url, headers={"Authorization": f"Basic {key}"}), 401, "unauthenticated", ids
    )
    assert_refused(keyed.get(url, headers=bearer(key + "x")), 401, "unauthenticated", ids)
    assert_refused(keyed.get(url, headers=bearer("k" * 10_000)), 401, "unauthenticated", ids)
    assert key_from_headers([(b"authorization", b"Basic abc"), (b"x-api-key", b"k")]) == "k"
    assert key_from_headers([]) is None


def test_requests_are_counted_per_key_name_never_the_key(
    keyed: TestClient, keys: Keys, ids: dict[str, str]
) -> None:
    key = keys.only[Scope.READ]
    keyed.get(f"/v1/items/{ids['item_id']}/similar", headers=bearer(key))
    keyed.get(f"/v1/items/{ids['item_id']}/similar")
    keyed.get("/v1/admin/models", headers=bearer(key))
    text = keyed.get("/metrics").text
    assert 'lookbook_requests_by_key_total{key="only-read",scope="read",status="2xx"} 1.0' in text
    assert 'lookbook_requests_by_key_total{key="-",scope="read",status="4xx"} 1.0' in text
    assert 'lookbook_requests_by_key_total{key="only-read",scope="admin",status="4xx"} 1.0' in text
    assert key not in text and hash_key(key) not in text


def test_the_openapi_document_shows_both_schemes(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    assert (
        schemes["APIKeyHeader"]["in"] == "header" and schemes["APIKeyHeader"]["name"] == "X-API-Key"
    )
    operation = spec["paths"]["/v1/events"]["post"]
    assert operation["security"] == [{"HTTPBearer": ["events"]}, {"APIKeyHeader": ["events"]}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_every_scoped_operation_documents_401_and_403(keyed: TestClient) -> None:
    """Found by the reliability suite (auth): the refusals every scoped route gives were not in
    its OpenAPI document, so a client generated from it (or schemathesis) did not expect them."""
    spec = keyed.get("/openapi.json").json()
    scoped = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if not operation.get("security"):
                continue
            scoped += 1
            for status in ("401", "403"):
                response = operation["responses"].get(status)
                assert response is not None, f"{method.upper()} {path}: {status} not documented"
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, schema)
    assert scoped >= len(EXPECTED_SCOPES)


def _asgi(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """POST a 2 MiB body (declared) straight through the ASGI interface: (status, receive calls)."""
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    started: dict[str, Any] = {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", str(2 * 1024 * 1024).encode()), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return int(started["status"]), reads


def test_a_refused_request_is_answered_before_its_body_is_read(
    retailer: tuple[Path, Path], tmp_path: Path, keys: Keys
) -> None:
    app = create_app(keyed_settings(retailer, tmp_path, keys))
    assert _asgi(app, "/v1/events", []) == (401, 0)
    assert _asgi(app, "/v1/events", [(b"x-api-key", keys.all_but[Scope.EVENTS].encode())]) == (
        403,
        0,
    )
    # with the right key the body limit still refuses a declared 2 MiB body unread (413)
    app = create_app(keyed_settings(retailer, tmp_path, keys, max_events_body_bytes=1024 * 1024))
    assert _asgi(app, "/v1/events", [(b"x-api-key", keys.only[Scope.EVENTS].encode())]) == (413, 0)


def test_large_bodies_through_the_client(
    keyed: TestClient, keys: Keys, ids: dict[str, str]
) -> None:
    big = b"[" + b" " * (5 * 1024 * 1024) + b"]"
    refused = keyed.post("/v1/events", content=big)
    assert_refused(refused, 401, "unauthenticated", ids)
    assert refused.headers["connection"] == "close"
    too_large = keyed.post("/v1/events", content=big, headers=bearer(keys.only[Scope.EVENTS]))
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "payload_too_large"
    consent = keyed.put(
        f"/v1/customers/{ids['customer_id']}/consent", content=b" " * (2 * 1024 * 1024)
    )
    assert_refused(consent, 401, "unauthenticated", ids)


def test_without_keys_the_service_is_open_and_says_so(
    settings: Settings, ids: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="lookbook.app"):
        app = create_app(settings)
    assert any(
        "no API keys configured" in r.getMessage() and r.levelname == "WARNING"
        for r in caplog.records
    )
    with TestClient(app) as c:
        assert c.get("/readyz").json()["auth"] == "open: no API keys configured"
        assert c.get(f"/v1/items/{ids['item_id']}/similar").status_code == 200
        assert c.get("/v1/admin/models").status_code == 200


def test_the_scope_dependency_alone_guards_a_router() -> None:
    """Without the middleware (e.g. a route it could not match), the dependency still refuses."""
    read_key, read_entry = new_key("reader", [Scope.READ])
    admin_key, admin_entry = new_key("admin", [Scope.ADMIN])
    router = APIRouter()

    @router.post("/thing")
    def thing(body: dict[str, int]) -> dict[str, int]:
        return body

    app = FastAPI()
    app.state.api_keys = KeyRing([read_entry, admin_entry])
    app.include_router(router, dependencies=[require_scope(Scope.READ)])
    from app.errors import install_error_handlers

    install_error_handlers(app)
    with TestClient(app) as c:
        no_key = c.post("/thing", json={"a": 1})
        assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "unauthenticated"
        assert no_key.headers["www-authenticate"].startswith("Bearer")
        assert c.post("/thing", json={"a": 1}, headers=bearer(admin_key)).status_code == 403
        assert c.post("/thing", json={"a": 1}, headers=bearer(read_key)).json() == {"a": 1}


def test_keys_are_kept_hashed_and_compared_by_hash() -> None:
    key, entry = new_key("storefront", ["read", "events"])
    assert len(key) >= 40 and key not in entry.model_dump_json()
    assert entry.sha256 == hash_key(key) and entry.scopes == [Scope.READ, Scope.EVENTS]
    ring = KeyRing([entry])
    assert ring.identify(key) == entry
    assert ring.identify(hash_key(key)) is None  # the hash is not a key
    assert ring.identify(None) is None and ring.identify("") is None
    upper = ApiKey(name="x", sha256=entry.sha256.upper(), scopes=[Scope.READ])
    assert KeyRing([upper]).identify(key) is not None


def test_keys_file_yaml_or_json_and_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_a, a = new_key("storefront", ["read"])
    key_b, b = new_key("crm", ["customers"])
    yaml_file = tmp_path / "keys.yaml"
    yaml_file.write_text(f"- name: storefront\n  sha256: {a.sha256}\n  scopes: [read]\n")
    assert read_keys_file(yaml_file) == [a]
    json_file = tmp_path / "keys.json"
    json_file.write_text(json.dumps([a.model_dump(mode="json")]))
    monkeypatch.setenv("LOOKBOOK_API_KEYS_FILE", str(json_file))
    monkeypatch.setenv("LOOKBOOK_API_KEYS", json.dumps([b.model_dump(mode="json")]))
    ring = Settings().keyring
    assert ring.identify(key_a) == a and ring.identify(key_b) == b


ZEROS = "0" * 64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- name: a\n  sha256: abc\n  scopes: [read]\n", "sha256"),
        (f"- name: a\n  sha256: {ZEROS}\n  scopes: [read]\n", "quote it in YAML"),
        (f"- name: a\n  sha256: '{ZEROS}'\n  scopes: [write]\n", "scopes"),
        (f"- name: a\n  sha256: '{ZEROS}'\n  scopes: []\n", "scopes"),
        (f"- name: a\n  sha256: '{ZEROS}'\n  scopes: [read]\n  key: plain\n", "key"),
        (f"- name: a b\n  sha256: '{ZEROS}'\n  scopes: [read]\n", "name"),
        ("name: a\n", "list"),
        ("- [unclosed\n", "cannot be read"),
        (
            f"- {{name: a, sha256: '{ZEROS}', scopes: [read]}}\n"
            f"- {{name: a, sha256: '{'1' * 64}', scopes: [read]}}\n",
            "duplicate name a",
        ),
        (
            f"- {{name: a, sha256: '{ZEROS}', scopes: [read]}}\n"
            f"- {{name: b, sha256: '{ZEROS}', scopes: [admin]}}\n",
            "duplicate sha256",
        ),
    ],
)
def test_a_bad_keys_file_is_refused_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(content)
    with pytest.raises(ValidationError, match=message):
        Settings(api_keys_file=path)


def test_a_missing_keys_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(api_keys_file=tmp_path / "nope.yaml")


def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="production needs API keys"):
        Settings(env="production", redis_url="redis://127.0.0.1:6379/0")
    empty = tmp_path / "keys.yaml"
    empty.write_text("[]\n")
    with pytest.raises(ValidationError, match="production needs API keys"):
        Settings(env="production", redis_url="redis://127.0.0.1:6379/0", api_keys_file=empty)
    _, entry = new_key("storefront", ["read"])
    settings = Settings(env="production", redis_url="redis://127.0.0.1:6379/0", api_keys=[entry])
    assert not settings.keyring.open


def test_cli_prints_a_fresh_key_and_its_entry() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["keys", "new", "--name", "storefront", "--scopes", "read,events"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    key = lines[1]
    entry = ApiKey.model_validate_json(lines[3])
    assert entry.name == "storefront" and entry.scopes == [Scope.READ, Scope.EVENTS]
    assert KeyRing([entry]).identify(key) == entry
    again = runner.invoke(cli, ["keys", "new", "--name", "storefront", "--scopes", "read"])
    assert again.output.splitlines()[1].strip() != key
    bad = runner.invoke(cli, ["keys", "new", "--name", "storefront", "--scopes", "read,write"])
    assert bad.exit_code == 2


def test_the_kiosk_page_is_open_and_its_api_is_not(keyed: TestClient) -> None:
    """The page holds no data (its calls carry the key from the URL fragment); the API does."""
    for path in ("/kiosk", "/kiosk/kiosk.js", "/kiosk/kiosk.css"):
        assert keyed.get(path).status_code == 200, path
    outfits = keyed.post("/v1/kiosk/outfits", json={"store_id": "store-001", "items": []})
    assert outfits.status_code == 401
