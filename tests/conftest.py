"""Shared fixtures: a real Redis server, the shared real datasets, the small synthetic retailer."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from helpers import RedisServer, build_small_retailer, redis_missing

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LOOKBOOK_SHARED_DATA", REPO.parent / "shared" / "data"))
REDIS_URL = os.environ.get("LOOKBOOK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_available() -> str | None:
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a hard dependency
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        return f"no Redis server at {REDIS_URL} ({exc}); `make test` starts one when redis-server is installed"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    reason = _redis_available()
    if reason is not None:
        redis_missing(reason)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test; its keys are deleted afterwards."""
    import redis

    prefix = f"lbtest:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def retailer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, bundles folder) of the small synthetic retailer with one trained bundle,
    built once per test run and shared by every module. Treat it as read-only: a test that
    publishes bundles or writes data works on a copy (``shutil.copytree``) in its ``tmp_path``."""
    return build_small_retailer(tmp_path_factory.mktemp("retailer"))


@pytest.fixture
def settings(retailer: tuple[Path, Path], tmp_path: Path) -> Settings:
    """The service over the shared retailer's bundle, in-process, with its own event log."""
    _, bundles = retailer
    return Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A test client of the service built from ``settings`` (a module may override either)."""
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server of the test's own, started; the outage tests kill, pause and
    restart it (stopped afterwards)."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = (
            "the redis-server binary is not installed; the outage tests start and kill their own"
        )
        redis_missing(reason)
    server = RedisServer(tmp_path, binary)
    server.start()
    yield server
    server.stop()


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip with a clear message when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(
            f"real dataset {name} not found at {path} (the ../shared/data folder is absent)"
        )
    return path
