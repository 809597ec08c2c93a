"""No request, however malformed, gets a 5xx: seeded random garbage against every surface."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

WEIRD = [
    "", " ", "%00", "%FF", "..", "a" * 300, "-1", "0", "1e309", "nan", "inf", "null", "[]", "{}",
    "é", "😀", "%2F", "C0000001", "I000001", "true", "99999999999999999999",
]  # fmt: skip
PATHS = [
    "/v1/customers/{x}/recommendations?k={y}&category={z}&exclude_purchased={y}&surface={z}"
    "&in_stock_in_my_size={y}&store_id={z}",
    "/v1/items/{x}/similar?k={y}&customer_id={z}&in_stock_in_my_size={y}",
    "/v1/items/{x}/complementary?k={y}&categories={z}&customer_id={x}",
    "/v1/seasonal?date={x}&season={y}&weather={z}&category={z}&k={y}&customer_id={x}",
    "/v1/customers/{x}/profile",
    "/v1/segments/{x}/customers?cursor={y}&limit={z}&min_churn_risk={y}",
]
BODIES = [
    b"", b"null", b"[]", b"{}", b'{"items": []}', b'{"items": ["I000001"], "k": -1}',
    b'{"items": "I000001"}', b'{"items": [null]}', b'{"items": ["I000001"], "k": 1e309}',
    b'{"personalization": "yes"}', b'{"personalization": null}', b"\xff\xfe",
    b'{"items": ["I000001"], "customer_id": 5}', b"[" * 1000,
]  # fmt: skip
WRITES = [
    ("POST", "/v1/complementary"),
    ("PUT", "/v1/customers/C0000001/consent"),
    ("POST", "/v1/events"),
    ("DELETE", "/v1/customers/%00"),
]


@pytest.fixture(scope="module")
def client(
    retailer: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("fuzz")
    _, bundles = retailer
    settings = Settings(bundle_dir=bundles, event_log_dir=root / "events", bundle_poll_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_random_garbage_never_gets_a_5xx(client: TestClient) -> None:
    rng = random.Random(0)
    failures: list[str] = []
    for _ in range(600):
        path = rng.choice(PATHS).format(
            x=rng.choice(WEIRD), y=rng.choice(WEIRD), z=rng.choice(WEIRD)
        )
        response = client.get(path)
        if response.status_code >= 500:
            failures.append(f"GET {path} -> {response.status_code}")
        else:
            assert "error" in response.json() or response.status_code == 200
    for body in BODIES:
        for method, path in WRITES:
            response = client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            if response.status_code >= 500:
                failures.append(f"{method} {path} {body[:30]!r} -> {response.status_code}")
    assert not failures, failures
