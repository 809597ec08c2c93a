"""The durable event log: round trip, rotation, fsync, crash repair, erasure."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from feature_store import event_log as event_log_module
from feature_store.errors import DataFormatError, InvalidEvent, StoreUnavailable
from feature_store.event_log import DEFAULT_SEGMENT_BYTES, EventLog, segment_name
from feature_store.schema import Channel, Interaction, InteractionCols, InteractionType

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def ev(customer: str, item: str, seconds: float = 0, **extra: object) -> Interaction:
    return Interaction(
        customer_id=customer,
        item_id=item,
        type=extra.pop("type", InteractionType.VIEW),  # type: ignore[arg-type]
        timestamp=extra.pop("timestamp", T0 + timedelta(seconds=seconds)),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def items_of(log: EventLog, customer: str | None = None) -> list[str]:
    return [e.item_id for e in log.iter_events() if customer is None or e.customer_id == customer]


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.glob("events-*.jsonl")))


# -- round trip ----------------------------------------------------------------------------------


def test_round_trip_keeps_every_field_and_order(tmp_path: Path) -> None:
    events = [
        ev("c1", "shirt", 0, type=InteractionType.PURCHASE, price=39.5, size="M"),
        ev(
            "c2",
            "tie",
            1,
            type=InteractionType.CLICK,
            channel=Channel.KIOSK,
            store_id="berlin-2",
            recommendation_id="rec-9",
            position=4,
        ),
        ev("c1", "shirt", 2, type=InteractionType.RETURN, return_reason="too_small"),
    ]
    with EventLog(tmp_path) as log:
        assert log.append(events[:2]) == 2
        assert log.append(events[2:]) == 1
        assert log.append([]) == 0
        assert list(log.iter_events()) == events
    # A new instance (a restart) reads the same.
    assert list(EventLog(tmp_path, read_only=True).iter_events()) == events
    assert [p.name for p in EventLog(tmp_path, read_only=True).segment_paths()] == [segment_name(1)]


def test_iter_events_since(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        log.append([ev("c1", f"i{k}", seconds=k * 60) for k in range(5)])
        assert [e.item_id for e in log.iter_events(since=T0 + timedelta(minutes=3))] == ["i3", "i4"]
        naive = (T0 + timedelta(minutes=4)).replace(tzinfo=None)  # naive means UTC
        assert [e.item_id for e in log.iter_events(since=naive)] == ["i4"]
        assert list(log.read_frame(since=T0 + timedelta(minutes=3))[InteractionCols.ITEM_ID]) == [
            "i3",
            "i4",
        ]


def test_read_frame_columns_and_dtypes(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        empty = log.read_frame()
        assert list(empty.columns) == list(InteractionCols.ALL)
        assert len(empty) == 0
        assert str(empty[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"

        log.append(
            [
                ev("c1", "a", 0, price=10.0, position=2, recommendation_id="r1"),
                ev("c2", "b", 1.5, type=InteractionType.PURCHASE),
            ]
        )
        frame = log.read_frame()
    assert list(frame.columns) == list(InteractionCols.ALL)
    assert str(frame[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert frame[InteractionCols.TIMESTAMP].tolist() == [
        pd.Timestamp(T0),
        pd.Timestamp(T0 + timedelta(seconds=1.5)),
    ]
    assert frame[InteractionCols.CUSTOMER_ID].tolist() == ["c1", "c2"]
    assert frame[InteractionCols.TYPE].tolist() == ["view", "purchase"]
    assert frame[InteractionCols.CHANNEL].tolist() == ["online", "online"]
    assert frame[InteractionCols.PRICE].iloc[0] == 10.0 and pd.isna(
        frame[InteractionCols.PRICE].iloc[1]
    )
    assert frame[InteractionCols.POSITION].iloc[0] == 2
    assert pd.isna(frame[InteractionCols.POSITION].iloc[1])
    assert str(frame[InteractionCols.POSITION].dtype) == "Int64"
    # The frame can be appended to a training table built with the same conventions.
    combined = pd.concat([frame, frame], ignore_index=True)
    assert str(combined[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"


def test_rejects_non_interactions_and_writes_nothing(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        with pytest.raises(InvalidEvent):
            log.append([ev("c1", "a"), {"customer_id": "c1"}])  # type: ignore[list-item]
        assert list(log.iter_events()) == []


# -- rotation --------------------------------------------------------------------------------------


def test_rotation_by_size_and_reopen(tmp_path: Path) -> None:
    line = len(event_log_module.orjson.dumps(ev("c1", "i00").to_record())) + 1
    segment_bytes = line * 2 + line // 2  # room for two events of this size
    with EventLog(tmp_path, segment_bytes=segment_bytes) as log:
        for k in range(7):
            log.append([ev("c1", f"i{k:02d}", k)])
        log.append([ev("c2", f"b{k:02d}", 10) for k in range(4)])  # larger than a segment
        names = [p.name for p in log.segment_paths()]
        assert names == [segment_name(n) for n in range(1, 6)]
        sizes = [p.stat().st_size for p in log.segment_paths()]
        assert all(size <= segment_bytes for size in sizes[:-1])
        assert sizes[-1] == 4 * line  # an oversized batch stays whole, alone in its segment
        expected = [f"i{k:02d}" for k in range(7)] + [f"b{k:02d}" for k in range(4)]
        assert items_of(log) == expected
    with EventLog(tmp_path, segment_bytes=segment_bytes) as log:
        log.append([ev("c3", "after-restart")])
        assert log.segment_paths()[-1].name == segment_name(6)
        assert items_of(log) == [*expected, "after-restart"]


# -- durability ------------------------------------------------------------------------------------


def test_one_fsync_per_batch_after_the_data_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog(tmp_path)
    segment = log.segment_paths()[0]
    real_fsync = os.fsync
    calls: list[int] = []  # size of the segment when fsync ran

    def spy(fd: int) -> None:
        calls.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    batch = [ev("c1", f"i{k}", k) for k in range(50)]
    log.append(batch)
    size_after_first = segment.stat().st_size
    assert calls == [size_after_first]  # one fsync, issued after the whole batch was written
    # Once append returned, an independent reader sees the batch.
    assert len(list(EventLog(tmp_path, read_only=True).iter_events())) == 50
    log.append(batch[:3])
    assert calls == [size_after_first, segment.stat().st_size]
    log.close()


def test_failed_fsync_rolls_the_batch_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = EventLog(tmp_path)
    log.append([ev("c1", "kept")])
    size = log.segment_paths()[0].stat().st_size
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(StoreUnavailable, match="No space left"):
        log.append([ev("c1", "lost-1"), ev("c1", "lost-2")])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert log.segment_paths()[0].stat().st_size == size
    log.append([ev("c1", "next")])
    assert items_of(log) == ["kept", "next"]
    log.close()


def test_short_write_at_the_file_size_limit_is_rolled_back(tmp_path: Path) -> None:
    """A real partial write (RLIMIT_FSIZE cuts it) is undone, then reported, never half-kept."""
    script = textwrap.dedent(
        """
        import resource, sys
        from datetime import UTC, datetime
        from feature_store.errors import StoreUnavailable
        from feature_store.event_log import EventLog
        from feature_store.schema import Interaction
        log = EventLog(sys.argv[1])
        batch = [Interaction(customer_id="c1", item_id=f"i{k}", type="view",
                             timestamp=datetime(2024, 1, 1, tzinfo=UTC)) for k in range(40)]
        log.append(batch)
        size = log.segment_paths()[0].stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + size // 2, resource.RLIM_INFINITY))
        try:
            log.append(batch)  # crosses the limit halfway: short write, then EFBIG
        except StoreUnavailable as exc:
            print("refused:", exc)
        print(log.segment_paths()[0].stat().st_size == size)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert "refused:" in result.stdout
    assert result.stdout.strip().endswith("True"), result.stdout + result.stderr
    with EventLog(tmp_path) as log:
        assert len(list(log.iter_events())) == 40
        log.append([ev("c1", "after")])
        assert items_of(log)[-1] == "after"


# -- a writer killed mid-append --------------------------------------------------------------------

KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from feature_store.event_log import EventLog
    from feature_store.schema import Interaction

    directory, batch_size, ack_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    log = EventLog(directory)
    template = [
        Interaction(customer_id=f"c{k % 7}", item_id=f"b0-e{k}", type="view", timestamp=t0,
                    price=float(k), position=k % 50, recommendation_id="r" * 60)
        for k in range(batch_size)
    ]
    with open(ack_path, "a", buffering=1) as ack:
        batch = 0
        while True:
            events = [
                e.model_copy(update={"item_id": f"b{batch}-e{k}",
                                     "timestamp": t0 + timedelta(seconds=batch)})
                for k, e in enumerate(template)
            ]
            log.append(events)
            ack.write(f"{batch}\\n")  # acknowledged: append() returned
            batch += 1
    """
)
BATCH = 2000


def check_killed_log(events: list[Interaction], acked: int) -> None:
    """Every event is complete and the one the writer made; batches in order, no gap; every
    acknowledged batch is entirely there."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for position, event in enumerate(events):
        batch, k = divmod(position, BATCH)
        assert event.item_id == f"b{batch}-e{k}"
        assert event.customer_id == f"c{k % 7}"
        assert event.timestamp == t0 + timedelta(seconds=batch)
        assert event.price == float(k) and event.position == k % 50
        assert event.recommendation_id == "r" * 60
    assert len(events) >= acked * BATCH


def kill_writer_mid_append(directory: Path, ack: Path) -> None:
    """Run the writer, wait for an acknowledged batch, then SIGKILL it while a write is in
    progress (seen as a segment whose last byte is not a newline) or after 3 s at the latest."""
    ack.write_text("")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(directory), str(BATCH), str(ack)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 20
        while len(ack.read_text().split()) < 1:
            assert writer.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer did not get going"
            time.sleep(0.005)
        # While it runs, a reader can read the log: a line being written is simply skipped.
        check_killed_log(list(EventLog(directory, read_only=True).iter_events()), 0)
        fd = os.open(directory / segment_name(1), os.O_RDONLY)
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    break
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            os.close(fd)
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL


def test_sigkilled_writer_leaves_a_readable_repairable_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torn = False
    for attempt in range(5):  # the kill almost always lands mid-write; retry if it did not
        directory = tmp_path / f"log{attempt}"
        ack = tmp_path / f"ack{attempt}"
        kill_writer_mid_append(directory, ack)
        acked = len(ack.read_text().split())
        segment = directory / segment_name(1)
        torn = not segment.read_bytes().endswith(b"\n")

        # Before any repair: reading works, every event is complete and valid, nothing acked lost.
        reader = EventLog(directory, read_only=True)
        events = list(reader.iter_events())
        check_killed_log(events, acked)
        assert len(reader.read_frame()) == len(events)

        # A new writer repairs the tail (the dead writer's lock is gone) and appends fine.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lookbook.events"):
            log = EventLog(directory)
        assert log.is_writer
        repaired = [r for r in caplog.records if "torn tail" in r.getMessage()]
        assert bool(repaired) == torn
        assert all(r.name == "lookbook.events" for r in repaired)
        assert segment.read_bytes().endswith(b"\n")
        log.append([ev("survivor", "after-crash")])
        after = log.read_frame()[InteractionCols.ITEM_ID].tolist()
        log.close()
        assert after == [e.item_id for e in events] + ["after-crash"]
        if torn:
            break
    assert torn, "five kills in a row landed between two writes; the torn case was not exercised"


# -- hand-made damage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        b'{"customer_id":"c9","item_id":"ha',  # a record cut mid-way
        b"\x00" * 300,  # zero-filled blocks left by a power loss
        b'{"tombstone":{"customer_id":"c1","erased_',  # an unfinished erasure does not count
    ],
    ids=["cut-record", "zero-fill", "cut-tombstone"],
)
def test_torn_tail_is_skipped_then_repaired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tail: bytes
) -> None:
    with EventLog(tmp_path) as log:
        log.append([ev("c1", "a"), ev("c2", "b")])
        log.append([ev("c1", "c")])
    segment = tmp_path / segment_name(1)
    intact = segment.read_bytes()
    with segment.open("ab") as file:
        file.write(tail)

    reader = EventLog(tmp_path, read_only=True)
    assert items_of(reader) == ["a", "b", "c"]
    assert reader.read_frame()[InteractionCols.ITEM_ID].tolist() == ["a", "b", "c"]
    assert segment.read_bytes().endswith(tail)  # read-only never repairs

    with caplog.at_level(logging.WARNING, logger="lookbook.events"):
        log = EventLog(tmp_path)
    assert any(
        r.name == "lookbook.events" and "torn tail" in r.getMessage() for r in caplog.records
    )
    assert segment.read_bytes() == intact
    log.append([ev("c3", "d")])
    assert items_of(log) == ["a", "b", "c", "d"]
    log.close()


def test_corrupt_complete_line_is_reported_with_file_and_row(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        log.append([ev("c1", "a")])
    segment = tmp_path / segment_name(1)
    with segment.open("ab") as file:
        file.write(b"not json at all\n")
    with pytest.raises(DataFormatError, match=r"events-000001\.jsonl.*row 2"):
        list(EventLog(tmp_path, read_only=True).iter_events())


# -- concurrency and ownership ---------------------------------------------------------------------


def test_concurrent_appends_from_threads(tmp_path: Path) -> None:
    log = EventLog(tmp_path, segment_bytes=64 * 1024)

    def worker(t: int) -> None:
        for b in range(40):
            log.append([ev(f"t{t}", f"t{t}-{b}-{k}") for k in range(5)])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = list(log.iter_events())
    assert len(events) == 4 * 40 * 5
    assert len(log.segment_paths()) > 1
    for t in range(4):  # each thread's events are whole and in its order
        mine = [e.item_id for e in events if e.customer_id == f"t{t}"]
        assert mine == [f"t{t}-{b}-{k}" for b in range(40) for k in range(5)]
    log.close()


HOLDER = textwrap.dedent(
    """
    import sys
    from feature_store.event_log import EventLog
    log = EventLog(sys.argv[1])
    assert log.is_writer
    print("holding", flush=True)
    sys.stdin.read()  # hold the directory until the parent closes our stdin
    """
)


def test_one_writing_process_per_directory(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        log = EventLog(tmp_path)  # the directory is taken by the other process: read only
        assert not log.is_writer
        assert list(log.iter_events()) == []
        with pytest.raises(StoreUnavailable, match="another process"):
            log.append([ev("c1", "a")])
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert log.append([ev("c1", "a")]) == 1  # takes over once the directory is free
    assert log.is_writer
    assert items_of(log) == ["a"]
    log.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        log.append([ev("c1", "x")])


def test_instances_in_one_process_share_the_writer(tmp_path: Path) -> None:
    first = EventLog(tmp_path, segment_bytes=4096)
    second = EventLog(tmp_path, segment_bytes=4096)
    assert first.is_writer and second.is_writer
    for k in range(30):
        (first if k % 2 else second).append([ev("c1", f"i{k:02d}")])
    first.close()
    second.append([ev("c1", "after-first-closed")])  # unaffected by the other's close
    assert items_of(second) == [f"i{k:02d}" for k in range(30)] + ["after-first-closed"]
    assert all(p.read_bytes().endswith(b"\n") for p in second.segment_paths())
    second.close()
    third = EventLog(tmp_path)  # the last close released the directory: a fresh writer
    assert third.is_writer
    third.close()


def test_read_only_never_writes(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        log.append([ev("c1", "a")])
    read_only = EventLog(tmp_path, read_only=True)
    with pytest.raises(StoreUnavailable, match="read-only"):
        read_only.append([ev("c1", "c")])
    with pytest.raises(StoreUnavailable, match="read-only"):
        read_only.erase_customer("c1")
    with pytest.raises(StoreUnavailable, match="read-only"):
        read_only.compact()
    assert items_of(read_only) == ["a"]


def test_read_only_on_a_missing_directory_is_empty(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "nothing-yet", read_only=True)
    assert list(log.iter_events()) == []
    assert len(log.read_frame()) == 0
    assert not (tmp_path / "nothing-yet").exists()


# -- erasure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("segment_bytes", [700, DEFAULT_SEGMENT_BYTES], ids=["rotating", "one"])
def test_tombstone_hides_then_compact_removes(tmp_path: Path, segment_bytes: int) -> None:
    now = datetime.now(UTC)
    log = EventLog(tmp_path, segment_bytes=segment_bytes)
    log.append([ev("c1", "old-1", 0), ev("c2", "keep-1", 1), ev("c1", "old-2", 2)])
    log.append([ev("c1", "old-future", timestamp=now + timedelta(hours=12))])  # logged before
    log.append([ev("c2", "keep-2", 3)])
    log.erase_customer("c1")
    log.append([ev("c1", "new-1", timestamp=datetime.now(UTC) + timedelta(seconds=1))])
    log.append([ev("c1", "late-backdated", 4), ev("c2", "keep-3", 5)])  # dated before erasure

    expected = ["keep-1", "keep-2", "new-1", "keep-3"]
    assert items_of(log) == expected
    assert log.read_frame()[InteractionCols.ITEM_ID].tolist() == expected
    assert b"old-1" in all_bytes(tmp_path)  # hidden, not yet gone

    assert log.compact() == 4
    data = all_bytes(tmp_path)
    for gone in (b"old-1", b"old-2", b"old-future", b"late-backdated"):
        assert gone not in data
    assert b'"tombstone"' in data
    assert not list(tmp_path.glob("*.tmp"))
    assert items_of(log) == expected
    assert log.compact() == 0

    # The writer still appends after compacting its active segment; the tombstone still holds.
    log.append([ev("c1", "late-again", 6), ev("c1", "new-2", timestamp=now + timedelta(hours=23))])
    log.close()
    reopened = EventLog(tmp_path, segment_bytes=segment_bytes)
    assert items_of(reopened) == [*expected, "new-2"]
    assert reopened.compact() == 1
    assert items_of(reopened) == [*expected, "new-2"]
    reopened.close()


def test_repeated_erasure(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        log.append([ev("c1", "a")])
        log.erase_customer("c1")
        log.append([ev("c1", "between", timestamp=datetime.now(UTC) + timedelta(seconds=1))])
        log.erase_customer("c1")  # erases "between" too: it was logged before this tombstone
        log.append([ev("c1", "after", timestamp=datetime.now(UTC) + timedelta(hours=12))])
        assert items_of(log) == ["after"]
        assert log.compact() == 2
        assert items_of(log) == ["after"]
        with pytest.raises(ValueError):
            log.erase_customer("  ")


def test_tombstone_is_durable_across_reopen(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        log.append([ev("c1", "a"), ev("c2", "b")])
        log.erase_customer("c1")
    assert items_of(EventLog(tmp_path, read_only=True)) == ["b"]
