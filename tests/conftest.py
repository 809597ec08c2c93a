"""Shared fixtures: a real Redis server, the shared real datasets, the small synthetic retailer."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from helpers import RedisServer, build_small_retailer, postgres_missing, redis_missing

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LOOKBOOK_SHARED_DATA", REPO.parent / "shared" / "data"))
REDIS_URL = os.environ.get("LOOKBOOK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "LOOKBOOK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
def postgres_url() -> Iterator[str]:
    """A database of this test run's own on the real PostgreSQL server, at the current schema
    (``lookbook db upgrade``); dropped at the end of the run, failed or not."""
    import psycopg
    from psycopg import sql

    from feature_store.schema_migrations import upgrade

    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        postgres_missing(
            f"no PostgreSQL server at {POSTGRES_URL} ({exc}); `make test` starts the installed one"
        )
    name = f"lookbook_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """The run's database with empty event store tables (for one test)."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("TRUNCATE events, consents, erasures RESTART IDENTITY")
    return postgres_url


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


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The logging configuration as it was: for tests that run `lookbook serve` in-process, whose
    dictConfig binds handlers to the test runner's (soon closed) streams."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {
        name: (
            logging.getLogger(name).handlers[:],
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
