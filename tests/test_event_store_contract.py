"""The event store contract (feature_store/event_store.py), run on both stores: the file log and
PostgreSQL (a database of the run's own on the real server, clean tables per test)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from feature_store.errors import InvalidEvent, StoreUnavailable
from feature_store.event_store import EventStore, open_event_store
from feature_store.schema import Interaction, InteractionCols

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ev(customer: str, item: str, minutes: float = 0, **fields: object) -> Interaction:
    return Interaction.model_validate(
        {
            "customer_id": customer,
            "item_id": item,
            "type": "view",
            "timestamp": T0 + timedelta(minutes=minutes),
            **fields,
        }
    )


#: Every field filled somewhere, odd but valid values (CSV specials, an empty size, None).
VARIED = [
    ev("c1", "i1", 0),
    ev(
        "c1",
        "i2",
        1,
        type="purchase",
        channel="store",
        size='M, "tall"\nfit',
        price=49.99,
        store_id="S-01",
        recommendation_id="rec.1",
        position=3,
    ),
    ev("c2", "i3", 2, type="return", return_reason="too_small", price=0.0, size=""),
    ev("c2", "i1", 3, type="add_to_cart", position=0),
    ev("c3", "i4", 4.5, type="click", channel="app"),
]


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "file":
        return tmp_path / "events"
    url: str = request.getfixturevalue("postgres_db")
    return url


@pytest.fixture
def store(location: str | Path) -> Iterator[EventStore]:
    opened = open_event_store(location)
    yield opened
    opened.close()


@pytest.fixture
def reader(location: str | Path) -> Iterator[Callable[[], EventStore]]:
    """Opens fresh read-only instances (another process, as far as the store can tell), closed
    after the test."""
    opened: list[EventStore] = []

    def open_reader() -> EventStore:
        opened.append(open_event_store(location, read_only=True))
        return opened[-1]

    yield open_reader
    for instance in opened:
        instance.close()


def test_append_and_read_back(store: EventStore, reader: Callable[[], EventStore]) -> None:
    assert isinstance(store, EventStore)
    assert store.is_writer
    assert store.append(VARIED[:2]) == 2
    assert store.append(VARIED[2:]) == 3
    assert list(store.iter_events()) == VARIED
    fresh = reader()
    assert list(fresh.iter_events()) == VARIED
    assert not fresh.is_writer
    frame = fresh.read_frame()
    assert list(frame.columns) == list(InteractionCols.ALL)
    assert frame[InteractionCols.SIZE].tolist() == [
        pd.NA if e.size is None else e.size for e in VARIED
    ]
    assert frame[InteractionCols.TIMESTAMP].tolist() == [e.timestamp for e in VARIED]
    assert frame.attrs["skipped_lines"] == 0


def test_a_batch_is_all_or_nothing_and_kept_in_order(store: EventStore) -> None:
    batch = [ev(f"c{i % 7}", f"i{i}", i / 10) for i in range(1000)]
    assert store.append([]) == 0
    assert store.append(batch) == 1000
    with pytest.raises(InvalidEvent):
        store.append([ev("c1", "x"), {"customer_id": "c1"}])  # type: ignore[list-item]
    assert [e.item_id for e in store.iter_events()] == [e.item_id for e in batch]


def test_read_only_instances_never_write(
    store: EventStore, reader: Callable[[], EventStore]
) -> None:
    store.append(VARIED[:1])
    fresh = reader()
    with pytest.raises(StoreUnavailable):
        fresh.append(VARIED[1:2])
    with pytest.raises(StoreUnavailable):
        fresh.erase_customer("c1")
    with pytest.raises(StoreUnavailable):
        fresh.record_consent("c1", False)
    assert list(fresh.iter_events()) == VARIED[:1]


def test_two_writers_of_one_location(
    location: str | Path, reader: Callable[[], EventStore]
) -> None:
    first, second = open_event_store(location), open_event_store(location)
    batches = {name: [ev(name, f"i{i}", i) for i in range(50)] for name in ("a", "b")}

    def write(store: EventStore, name: str) -> None:
        for event in batches[name]:
            store.append([event])

    threads = [
        threading.Thread(target=write, args=(store, name))
        for store, name in ((first, "a"), (second, "b"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read = list(reader().iter_events())
    for name, events in batches.items():
        assert [e for e in read if e.customer_id == name] == events
    first.close()
    second.close()


def test_consent_latest_wins_and_erasure_forgets_it(
    store: EventStore, reader: Callable[[], EventStore]
) -> None:
    assert store.consents() == {}
    store.record_consent("c1", False)
    store.record_consent("c2", False)
    store.record_consent("c2", True)
    assert store.consents() == {"c1": False, "c2": True}
    assert reader().consents() == {"c1": False, "c2": True}
    store.erase_customer("c1")
    assert store.consents() == {"c2": True}
    with pytest.raises(ValueError):
        store.record_consent(" ", True)


def test_erasure_and_the_late_back_dated_event(
    store: EventStore, reader: Callable[[], EventStore]
) -> None:
    store.append(VARIED)
    before = datetime.now(UTC)
    store.erase_customer("c1")
    erased = store.erased_customers()
    assert set(erased) == {"c1"}
    assert before <= erased["c1"] <= datetime.now(UTC)
    assert [e.customer_id for e in store.iter_events()] == ["c2", "c2", "c3"]
    # a late event dated before the erasure is dropped: acknowledged, never read back
    assert store.append([ev("c1", "late", 10), ev("c2", "on-time", 11)]) == 2
    # the customer coming back after the erasure is a new history
    back = Interaction(
        customer_id="c1", item_id="back", type="view", timestamp=erased["c1"] + timedelta(seconds=1)
    )
    store.append([back])
    expected = ["i3", "i1", "i4", "on-time", "back"]
    assert [e.item_id for e in store.iter_events()] == expected
    assert store.read_frame()[InteractionCols.ITEM_ID].tolist() == expected
    assert reader().erased_customers() == erased
    store.compact()
    assert [e.item_id for e in reader().iter_events()] == expected
    assert store.compact() == 0, "nothing erased is left to remove"
    store.erase_customer("c1")  # again: idempotent, the latest time counts
    assert store.erased_customers()["c1"] >= erased["c1"]
    assert [e.item_id for e in store.iter_events()] == ["i3", "i1", "i4", "on-time"]
    with pytest.raises(ValueError):
        store.erase_customer("")


def test_since(store: EventStore) -> None:
    store.append(VARIED)
    since = T0 + timedelta(minutes=2)
    assert list(store.iter_events(since=since)) == VARIED[2:]
    frame = store.read_frame(since=since)
    assert frame[InteractionCols.ITEM_ID].tolist() == ["i3", "i1", "i4"]
    naive = since.replace(tzinfo=None)  # naive times are UTC
    assert store.read_frame(since=naive)[InteractionCols.ITEM_ID].tolist() == ["i3", "i1", "i4"]
    assert len(store.read_frame(since=T0 + timedelta(days=1))) == 0


def test_an_empty_store_reads_as_an_empty_typed_frame(store: EventStore) -> None:
    frame = store.read_frame()
    assert len(frame) == 0 and list(frame.columns) == list(InteractionCols.ALL)
    assert str(frame[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert str(frame[InteractionCols.POSITION].dtype) == "Int64"
    assert list(store.iter_events()) == []
    assert store.erased_customers() == {} and store.consents() == {}


def _fill(store: EventStore) -> None:
    """The same history in any store: events, consent, an erasure, a late event."""
    store.append(VARIED)
    store.append([ev(f"c{i % 5}", f"i{i % 40}", 10 + i) for i in range(300)])
    store.record_consent("c2", False)
    store.erase_customer("c3")
    store.append([ev("c3", "late", 1), ev("c4", "i9", 400, price=12.5, size="L")])


@pytest.mark.postgres
def test_both_stores_read_the_same_frame(tmp_path: Path, postgres_db: str) -> None:
    frames = []
    for location in (tmp_path / "events", postgres_db):
        with_store = open_event_store(location)
        _fill(with_store)
        frames.append(with_store.read_frame())
        with_store.close()
    pd.testing.assert_frame_equal(frames[0], frames[1])


@pytest.mark.postgres
def test_the_trainer_reads_the_same_data_from_both(
    retailer: tuple[Path, Path], tmp_path: Path, postgres_db: str
) -> None:
    from training.train import load_training_frame

    data, _ = retailer
    items = pd.read_parquet(data / "items.parquet")["item_id"].astype(str).tolist()
    customers = pd.read_parquet(data / "customers.parquet")["customer_id"].astype(str).tolist()
    history = [ev(customers[i % 30], items[i % 50], i, type="purchase") for i in range(200)]
    for location in (tmp_path / "events", postgres_db):
        with_store = open_event_store(location)
        with_store.append(history)
        with_store.record_consent(customers[1], False)
        with_store.erase_customer(customers[2])
        with_store.close()
    from_file = load_training_frame(data, tmp_path / "events")
    from_database = load_training_frame(data, None, postgres_db)
    pd.testing.assert_frame_equal(from_file.interactions, from_database.interactions)
    pd.testing.assert_frame_equal(from_file.customers, from_database.customers)
    assert customers[2] not in set(from_database.customers["customer_id"].astype(str))
    assert len(from_database.interactions) > len(load_training_frame(data, None).interactions)
