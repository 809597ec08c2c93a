"""What only the PostgreSQL event store does: versioned migrations (``lookbook db upgrade``, two
at once), the schema check, erasure deleting rows in its transaction, and outages — unreachable
server, connection cut, reconnection — through a relay in front of the real server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from feature_store.errors import DataFormatError, SchemaOutdated, StoreUnavailable
from feature_store.event_store import describe_location, open_event_store
from feature_store.postgres_events import PostgresEventStore
from feature_store.schema import Interaction
from feature_store.schema_migrations import (
    MIGRATIONS_DIR,
    current_version,
    expected_version,
    migrations,
    upgrade,
)
from helpers import TcpProxy, free_port
from training.cli import cli

pytestmark = pytest.mark.postgres


def ev(customer: str, item: str, when: datetime | None = None) -> Interaction:
    return Interaction(
        customer_id=customer,
        item_id=item,
        type="view",
        timestamp=when or datetime(2026, 3, 1, tzinfo=UTC),
    )


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """A database without any table, dropped afterwards."""
    base, run = postgres_url.rsplit("/", 1)
    name = f"{run}_fresh"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{base}/{name}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_migrations_are_numbered_without_gaps(tmp_path: Path) -> None:
    assert [m.version for m in migrations()] == list(range(1, expected_version() + 1))
    assert expected_version() >= 1
    for name in ("0001_a.sql", "0003_c.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(DataFormatError, match="3 found where 2"):
        migrations(tmp_path)
    (tmp_path / "0003_c.sql").rename(tmp_path / "2_bad name.sql")
    with pytest.raises(DataFormatError, match="NNNN_"):
        migrations(tmp_path)


def test_upgrade_applies_each_migration_once_even_from_two_replicas_at_once(
    empty_database: str,
) -> None:
    with pytest.raises(SchemaOutdated, match="lookbook db upgrade"):
        PostgresEventStore(empty_database)
    assert current_version(empty_database) == 0
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append([m.version for m in upgrade(empty_database)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results, key=len) == [[], list(range(1, expected_version() + 1))]
    with psycopg.connect(empty_database) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, expected_version() + 1))
    assert upgrade(empty_database) == []
    with PostgresEventStore(empty_database) as store:
        assert store.append([ev("c1", "i1")]) == 1


def test_a_failing_migration_leaves_nothing_behind(empty_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int);\nSELECT * FROM missing;")
    with pytest.raises(psycopg.errors.UndefinedTable):
        upgrade(empty_database, tmp_path)
    with psycopg.connect(empty_database) as conn:
        assert current_version(conn) == 1
        assert conn.execute("SELECT to_regclass('half') IS NULL").fetchone() == (True,)


def test_the_db_upgrade_command(empty_database: str) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["db", "upgrade", "--database-url", empty_database])
    assert first.exit_code == 0, first.output
    assert "applied 0001_event_store" in first.output
    again = runner.invoke(cli, ["db", "upgrade"], env={"LOOKBOOK_DATABASE_URL": empty_database})
    assert again.exit_code == 0 and "up to date" in again.output
    assert describe_location(empty_database) in again.output
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    down = runner.invoke(cli, ["db", "upgrade", "--database-url", nowhere])
    assert down.exit_code == 2 and "store_unavailable" in down.output


def test_erasure_deletes_the_rows_and_a_late_event_is_never_stored(postgres_db: str) -> None:
    with contextlib.closing(open_event_store(postgres_db)) as store:
        store.append([ev("c1", "i1"), ev("c2", "i2"), ev("c1", "i3")])
        store.record_consent("c1", True)
        store.erase_customer("c1")
        store.append([ev("c1", "late")])
    with psycopg.connect(postgres_db) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE customer_id = 'c1'),"
            " (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM consents),"
            " (SELECT count(*) FROM erasures WHERE customer_id = 'c1')"
        ).fetchone()
    assert counts == (0, 1, 0, 1)


def test_the_password_never_appears_in_messages() -> None:
    url = f"postgresql://lb:s3cret@127.0.0.1:{free_port()}/events"
    assert describe_location(url) == f"postgresql://lb@127.0.0.1:{url.split(':')[3]}"
    store = PostgresEventStore(url, timeout_seconds=0.2)
    with contextlib.closing(store), pytest.raises(StoreUnavailable) as caught:
        store.append([ev("c1", "i1")])
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(store)


def test_an_unreachable_server_is_a_quick_store_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    started = time.monotonic()
    store = open_event_store(url, timeout_seconds=0.3)  # starts anyway (the service must)
    for operation in (
        lambda: store.append([ev("c1", "i1")]),
        lambda: store.erase_customer("c1"),
        lambda: store.record_consent("c1", True),
        store.consents,
        store.erased_customers,
        store.read_frame,
        lambda: list(store.iter_events()),
    ):
        with pytest.raises(StoreUnavailable):
            operation()
    assert time.monotonic() - started < 8
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.append([ev("c1", "i1")])


def test_the_store_reconnects_on_its_own_when_the_server_is_back(postgres_db: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(postgres_db)
    proxy = TcpProxy((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    proxy.start()
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{info['dbname']}"
    store = open_event_store(url, timeout_seconds=0.5)
    try:
        assert store.append([ev("c1", "before")]) == 1
        proxy.stop()  # every connection cut, new ones refused
        with pytest.raises(StoreUnavailable):
            store.append([ev("c1", "during")])
        with pytest.raises(StoreUnavailable):
            store.read_frame()
        proxy.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                store.append([ev("c1", "after")])
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not reconnect within 20 s"
                time.sleep(0.2)
        assert [e.item_id for e in store.iter_events()] == ["before", "after"]
    finally:
        store.close()
        proxy.stop()


def test_an_outage_costs_one_wait_then_operations_fail_at_once(postgres_db: str) -> None:
    """Found by the reliability suite (PostgreSQL stopped under load): every event waited the
    whole connection timeout while the server was down, holding a handler thread each, and the
    reads queued behind them for seconds. Behind the circuit breaker only one operation per retry
    interval waits; the others raise at once — and the store is back with the server."""
    info = psycopg.conninfo.conninfo_to_dict(postgres_db)
    proxy = TcpProxy((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    proxy.start()
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{info['dbname']}"
    store = open_event_store(url, timeout_seconds=2.0)
    try:
        assert store.append([ev("c1", "before")]) == 1
        proxy.stop()
        with pytest.raises(StoreUnavailable):
            store.append([ev("c1", "first")])  # this one finds out (it may wait)
        started = time.monotonic()
        for _ in range(5):
            with pytest.raises(StoreUnavailable, match="unreachable"):
                store.append([ev("c1", "during")])
        assert time.monotonic() - started < 0.5, "operations waited although the server was down"
        proxy.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                store.append([ev("c1", "after")])
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not reconnect within 20 s"
                time.sleep(0.2)
        assert [e.item_id for e in store.iter_events()] == ["before", "after"]
    finally:
        store.close()
        proxy.stop()


@pytest.mark.slow
def test_events_are_accepted_again_soon_after_a_long_outage(postgres_db: str) -> None:
    """Found by the reliability suite (PostgreSQL stopped for 20 s under load): the connection
    pool's reconnection attempts back off exponentially, so events were refused for 7-15 s after
    the server was back. The circuit's probe now renews the pool once the server answers."""
    info = psycopg.conninfo.conninfo_to_dict(postgres_db)
    proxy = TcpProxy((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
    proxy.start()
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{info['dbname']}"
    store = open_event_store(url, timeout_seconds=0.5)
    try:
        assert store.append([ev("c1", "before")]) == 1
        proxy.stop()
        down_until = time.monotonic() + 20  # as long as the reliability suite's outage
        while time.monotonic() < down_until:
            with pytest.raises(StoreUnavailable):
                store.append([ev("c1", "during")])
            time.sleep(0.2)
        proxy.start()
        back = time.monotonic()
        while True:
            try:
                store.append([ev("c1", "after")])
                break
            except StoreUnavailable:
                assert time.monotonic() - back < 4, "events still refused 4 s after the outage"
                time.sleep(0.1)
        assert [e.item_id for e in store.iter_events()] == ["before", "after"]
    finally:
        store.close()
        proxy.stop()


def test_a_read_streams_large_tables(postgres_db: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    batch = [ev(f"c{i % 97}", f"i{i}", start + timedelta(seconds=i)) for i in range(20_000)]
    with contextlib.closing(open_event_store(postgres_db)) as store:
        for offset in range(0, len(batch), 1000):
            store.append(batch[offset : offset + 1000])
        frame = store.read_frame()
        assert len(frame) == 20_000
        assert frame["item_id"].iloc[-1] == "i19999"
        assert frame["timestamp"].is_monotonic_increasing
        since = start + timedelta(seconds=15_000)
        assert len(store.read_frame(since=since)) == 5_000
    assert MIGRATIONS_DIR.is_dir()


def test_erasure_waits_for_inserts_in_flight_and_takes_them_too(postgres_db: str) -> None:
    store = PostgresEventStore(postgres_db, timeout_seconds=0.3)
    with contextlib.closing(store), psycopg.connect(postgres_db) as other:
        # an insert of the customer's, not committed yet (a replica mid-append)
        other.execute(
            "INSERT INTO events (customer_id, item_id, type, event_time, channel)"
            " VALUES ('c1', 'in-flight', 'view', now(), 'online')"
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):  # no waiting on: a 503, retried
            store.erase_customer("c1")
        assert time.monotonic() - started < 3
        assert store.erased_customers() == {}, "a failed erasure leaves nothing behind"
        other.commit()
        store.erase_customer("c1")
        assert list(store.iter_events()) == []
        assert other.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_train_reads_the_database(
    retailer: tuple[Path, Path], tmp_path: Path, postgres_db: str
) -> None:
    import json

    import pandas as pd

    from helpers import SMALL_CONFIG
    from training.train import train

    data, _ = retailer
    customers = pd.read_parquet(data / "customers.parquet")["customer_id"].astype(str)
    victim = customers.iloc[0]
    with contextlib.closing(open_event_store(postgres_db)) as store:
        store.erase_customer(victim)
    result = train(
        data, tmp_path / "bundles", config=SMALL_CONFIG, database_url=postgres_db, progress=False
    )
    manifest = json.loads((result.bundle_path / "manifest.json").read_text())
    assert manifest["data"]["event_log"] == describe_location(postgres_db)
    ids = pd.read_parquet(result.bundle_path / "customer_ids.parquet")
    assert victim not in set(ids.iloc[:, 0].astype(str))


def test_the_database_setting_takes_only_a_postgresql_url() -> None:
    from pydantic import ValidationError

    from app.settings import Settings

    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url="/var/events")  # a folder here would silently be a file log
    assert Settings(database_url="postgres://u@h/db").database_url == "postgres://u@h/db"
