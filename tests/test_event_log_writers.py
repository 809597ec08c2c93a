"""The event log with several writing processes (``EventLog(..., shared=True)``): a slot each,
read together with the single-writer layout; a tombstone of one writer erases the customer in
every writer's segments; compaction only rewrites what its process holds; consent merged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from feature_store.event_log import CONSENT_FILE, EventLog, segment_name
from feature_store.schema import Interaction, InteractionType

REPO = Path(__file__).resolve().parents[1]

# A writer in another process, driven line by line over stdin: "append c item iso", "erase c",
# "consent c 0|1", "compact"; it answers each command with "ok <result>".
REMOTE = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from feature_store.event_log import EventLog
    from feature_store.schema import Interaction, InteractionType
    log = EventLog(sys.argv[1], shared=True)
    print("slot", log.writer_directory.name, flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "append":
            customer, item, stamp = args
            event = Interaction(customer_id=customer, item_id=item, type=InteractionType.VIEW,
                                timestamp=datetime.fromisoformat(stamp))
            result = log.append([event])
        elif command == "erase":
            result = log.erase_customer(args[0])
        elif command == "consent":
            result = log.record_consent(args[0], args[1] == "1")
        elif command == "compact":
            result = log.compact()
        print("ok", result, flush=True)
    """
)


class Remote:
    """A shared-mode writer of ``directory`` in a child process."""

    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", REMOTE, str(directory)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.slot = self._answer().removeprefix("slot ")

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line, "the remote writer died"
        return line

    def __call__(self, *command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(command) + "\n")
        self.proc.stdin.flush()
        return self._answer().removeprefix("ok ")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def ev(customer: str, item: str, when: datetime) -> Interaction:
    return Interaction(
        customer_id=customer, item_id=item, type=InteractionType.VIEW, timestamp=when
    )


def items(log: EventLog, customer: str | None = None) -> list[str]:
    return sorted(
        e.item_id for e in log.iter_events() if customer is None or e.customer_id == customer
    )


def naming(directory: Path, customer: str) -> list[Path]:
    return [p for p in directory.rglob("events-*.jsonl") if customer.encode() in p.read_bytes()]


def test_processes_write_slots_of_their_own_and_a_restart_reuses_it(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    remote = Remote(tmp_path)
    try:
        local = EventLog(tmp_path, shared=True)  # the remote holds writer-01: the next slot
        assert remote.slot == "writer-01"
        assert local.writer_directory == tmp_path / "writer-02"
        assert EventLog(tmp_path, shared=True).writer_directory == local.writer_directory
        remote("append", "c1", "a", now.isoformat())
        local.append([ev("c2", "b", now)])
        remote("append", "c1", "c", now.isoformat())
        assert items(EventLog(tmp_path, read_only=True)) == ["a", "b", "c"]
        assert len(EventLog(tmp_path, read_only=True).read_frame()) == 3
    finally:
        remote.close()
    again = Remote(tmp_path)  # the first free slot again: the one the stopped process had
    try:
        assert again.slot == "writer-01"
        again("append", "c3", "d", now.isoformat())
    finally:
        again.close()
    assert items(local) == ["a", "b", "c", "d"]
    local.close()


def test_single_writer_layout_is_read_with_the_slots(tmp_path: Path) -> None:
    now = datetime.now(UTC) - timedelta(hours=1)
    with EventLog(tmp_path) as legacy:  # the old layout: segments at the top level
        legacy.append([ev("c1", "old", now), ev("c2", "kept", now)])
        legacy.record_consent("c2", False)
    assert (tmp_path / segment_name(1)).exists()
    shared = EventLog(tmp_path, shared=True)
    shared.append([ev("c1", "new", now)])
    assert items(shared) == ["kept", "new", "old"]
    assert shared.consents() == {"c2": False}
    shared.erase_customer("c1")  # a slot's tombstone erases the top level's events too
    assert items(EventLog(tmp_path, read_only=True)) == ["kept"]
    assert shared.compact() == 2  # the top level is free: this process may rewrite it
    lines = [
        line
        for path in tmp_path.rglob("events-*.jsonl")
        for line in path.read_bytes().splitlines()
        if b'"c1"' in line
    ]
    assert len(lines) == 1 and lines[0].startswith(b'{"tombstone":'), "only the tombstone is left"
    shared.close()


def test_a_tombstone_erases_every_writers_events(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    remote = Remote(tmp_path)
    try:
        local = EventLog(tmp_path, shared=True)
        remote("append", "victim", "remote-past", (now - timedelta(days=1)).isoformat())
        # logged before the erasure but dated after it: erased all the same (log time counts)
        remote("append", "victim", "remote-future", (now + timedelta(hours=2)).isoformat())
        local.append([ev("victim", "local-past", now - timedelta(days=1))])
        remote("append", "other", "kept", now.isoformat())
        remote("consent", "victim", "0")
        local.erase_customer("victim")
        reader = EventLog(tmp_path, read_only=True)
        assert items(reader) == ["kept"]
        assert "victim" in reader.erased_customers()
        assert reader.consents() == {}, "consent recorded before the erasure is gone"
        # after the erasure: a new event dated later is the customer's again, wherever logged
        later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        remote("append", "victim", "remote-after", later)
        remote("consent", "victim", "1")
        assert items(reader, "victim") == ["remote-after"]
        assert reader.consents() == {"victim": True}

        # compaction rewrites only what its process holds: the live remote's slot is left alone
        assert local.compact() == 1
        remote_slot = tmp_path / remote.slot
        assert [p.parent for p in naming(tmp_path, "local-past")] == []
        assert naming(remote_slot, "remote-past"), "another live writer's segment is untouched"
        assert int(remote("compact")) == 2  # its own writer compacts it
        assert naming(tmp_path, "remote-past") == naming(tmp_path, "remote-future") == []
        assert items(reader) == ["kept", "remote-after"]
        consent_lines = (remote_slot / CONSENT_FILE).read_bytes().splitlines()
        assert [orjson.loads(line)["personalization"] for line in consent_lines] == [True]
    finally:
        remote.close()
    # a slot nobody holds any more is compacted by whoever runs compaction next
    local.append([ev("late", "x", now)])
    local.erase_customer("late")
    local.erase_customer("other")
    assert local.compact() == 2
    assert naming(tmp_path, "kept") == []
    local.close()
