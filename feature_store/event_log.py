"""Durable, append-only event log: every accepted interaction is on disk before it is acknowledged.

Layout of a log directory::

    events-000001.jsonl    one JSON object per line (``Interaction.to_record()``), oldest first
    events-000002.jsonl    a new segment starts when the current one would exceed ``segment_bytes``
    .writer.lock           flock held by the one process that appends

Guarantees:

* :meth:`EventLog.append` writes a whole batch with one ``write`` and one ``os.fsync`` and returns
  only after both succeeded; a failed write is rolled back, never half-acknowledged.
* A process killed mid-append leaves at most one incomplete last line. Readers skip it; the next
  writer truncates it away on open (logged as a warning on ``lookbook.events``).
* Erasure: :meth:`EventLog.erase_customer` appends a durable *tombstone* line. Readers never yield
  an event of that customer that was logged before the tombstone or is dated before it (so late,
  back-dated events are erased too). :meth:`EventLog.compact` then rewrites the affected segments
  without those events (temp file + ``os.replace``). Tombstones themselves are kept.

One process writes a directory at a time (enforced with ``flock``); any number of processes read it,
also while it is being written (``read_only=True`` for readers that must never write or repair).

Several writing processes (``EventLog(directory, shared=True)``: the service's workers and
replicas sharing one log directory) each write their own *slot*, a sub-directory of the same
layout::

    writer-01/events-000001.jsonl   the first process to claim slot 01 (flock on writer-01/.writer.lock)
    writer-02/events-000001.jsonl   the next one; a restarted process takes the first free slot again

Readers read the top-level segments (the single-writer layout, still written by
``shared=False`` and kept readable) and every slot together. A slot writer adds ``logged_at``
(epoch seconds) to each line, so a tombstone erases what other writers logged before it: an event
in another directory is erased when it was logged before the tombstone's ``erased_at`` (a line
without ``logged_at`` — the single-writer layout — counts as logged before) or is dated before it.
Within one directory the log order decides, as above. Compaction rewrites only directories whose
lock it holds (its own, and any slot or top level no live process holds at that moment), so
writers never rewrite each other's segments; consent records (``consent.jsonl`` per directory,
each with its time) are merged the same way, the latest winning, none older than an erasure.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import orjson
from pydantic import ValidationError

from .errors import DataFormatError, InvalidEvent, StoreUnavailable
from .schema import Interaction, InteractionCols, check_event_time

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("lookbook.events")

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
SEGMENT_PATTERN: Final = re.compile(r"^events-(\d{6,})\.jsonl$")
SLOT_PATTERN: Final = re.compile(r"^writer-(\d{2,})$")
LOCK_NAME: Final = ".writer.lock"
LOGGED_AT: Final = "logged_at"  # epoch seconds a slot writer adds to each event line
MAX_SLOTS: Final = 1000
_TMP_SUFFIX: Final = ".compact.tmp"
CONSENT_FILE: Final = "consent.jsonl"
_TOMBSTONE_MARK: Final = b'{"tombstone":'
_READ_CHUNK: Final = 1 << 20
_STRING_COLUMNS: Final = tuple(
    c
    for c in InteractionCols.ALL
    if c not in (InteractionCols.TIMESTAMP, InteractionCols.PRICE, InteractionCols.POSITION)
)


def segment_name(number: int) -> str:
    """File name of segment ``number`` (1-based): ``events-000001.jsonl``."""
    return f"events-{number:06d}.jsonl"


def slot_name(number: int) -> str:
    """Directory name of writer slot ``number`` (1-based): ``writer-01``."""
    return f"writer-{number:02d}"


@dataclass(frozen=True)
class _Segment:
    number: int
    path: Path
    size: int  # bytes to read (a snapshot taken before reading)
    source: str = ""  # the directory it is in: "" top level, else the slot's name


@dataclass
class _Erasure:
    """What the tombstones of one customer say: erase everything logged before the last tombstone
    and everything dated before the latest erasure time."""

    erased_at: datetime
    last_segment: int
    tombstones_in_last_segment: int


class _Erasures:
    """The tombstones of a snapshot: per directory (``source``) and customer what its own
    tombstones say (log order counts there), and the latest erasure of each customer anywhere."""

    def __init__(self) -> None:
        self.by_source: dict[str, dict[str, _Erasure]] = {}
        self.latest: dict[str, datetime] = {}
        self._foreign: dict[tuple[str, str], datetime | None] = {}

    def __bool__(self) -> bool:
        return bool(self.latest)

    def register(self, source: str, customer_id: str, erased_at: datetime, segment: int) -> None:
        _register(self.by_source.setdefault(source, {}), customer_id, erased_at, segment)
        known = self.latest.get(customer_id)
        self.latest[customer_id] = erased_at if known is None else max(known, erased_at)
        self._foreign.clear()

    def local(self, source: str, customer_id: str) -> _Erasure | None:
        return self.by_source.get(source, {}).get(customer_id)

    def foreign(self, source: str, customer_id: str) -> datetime | None:
        """The latest erasure of the customer by a tombstone in another directory."""
        key = (source, customer_id)
        if key not in self._foreign:
            times = [
                tombstones[customer_id].erased_at
                for other, tombstones in self.by_source.items()
                if other != source and customer_id in tombstones
            ]
            self._foreign[key] = max(times) if times else None
        return self._foreign[key]


@dataclass(frozen=True)
class _Line:
    segment: _Segment
    row: int  # 1-based line number within the segment
    raw: bytes  # without the trailing newline
    record: dict[str, Any]
    tombstone: bool
    erased: bool  # an event suppressed by a tombstone


class _Writer:
    """The appending side of one directory, shared by every :class:`EventLog` of this process
    that opens the directory (so two instances never repair or rotate under each other's feet).

    Holds the directory's ``flock`` (one writing process at a time) and the open last segment.
    ``source`` names the directory within the log: "" for the top level, else its slot.
    """

    def __init__(self, directory: Path, lock_file: Any, key: str, source: str = "") -> None:
        self.directory = directory
        self.source = source
        self.key = key
        self.lock = threading.Lock()  # serialises appends, rotation and compaction
        self.refs = 0
        self._lock_file = lock_file  # FileIO holding the flock
        self._file: Any = None  # FileIO of the current segment, opened for appending
        self.segment = 0
        self._size = 0
        self._open_last_segment()

    @classmethod
    def acquire(cls, directory: Path) -> _Writer | None:
        """This process's writer of ``directory``, or None when another process writes it."""
        key = os.path.realpath(directory)
        with _WRITERS_LOCK:
            writer = _WRITERS.get(key)
            if writer is None:
                lock_file = _try_lock(directory)
                if lock_file is None:
                    return None
                try:
                    writer = cls(directory, lock_file, key)
                except BaseException:
                    lock_file.close()
                    raise
                _WRITERS[key] = writer
            writer.refs += 1
            return writer

    @classmethod
    def acquire_slot(cls, root: Path) -> _Writer:
        """This process's slot writer under ``root``: the first ``writer-NN`` slot no other
        process holds (so a restarted process takes its old slot back)."""
        key = os.path.realpath(root) + os.sep + "*slot*"
        with _WRITERS_LOCK:
            writer = _WRITERS.get(key)
            if writer is None:
                for number in range(1, MAX_SLOTS + 1):
                    slot = root / slot_name(number)
                    slot.mkdir(exist_ok=True)
                    lock_file = _try_lock(slot)
                    if lock_file is None:
                        continue
                    try:
                        writer = cls(slot, lock_file, key, slot.name)
                    except BaseException:
                        lock_file.close()
                        raise
                    break
                else:
                    raise StoreUnavailable(f"event log {root}: all {MAX_SLOTS} writer slots taken")
                _WRITERS[key] = writer
                logger.info("event log %s: this process writes slot %s", root, writer.source)
            writer.refs += 1
            return writer

    def release(self) -> None:
        """Drop one reference; the last one closes the segment and releases the flock."""
        with _WRITERS_LOCK:
            self.refs -= 1
            if self.refs > 0:
                return
            _WRITERS.pop(self.key, None)
            with self.lock:
                self._close_segment()
                self._lock_file.close()

    def write(self, payload: bytes, segment_bytes: int) -> None:
        """Append ``payload`` to the current segment (a new one when it would outgrow
        ``segment_bytes``) and fsync it; undo it on failure. Caller holds ``self.lock``."""
        try:
            if self._file is None:  # closed after a failed append: reopen, repairing the tail
                self._open_last_segment()
            if self._size > 0 and self._size + len(payload) > segment_bytes:
                self._close_segment()
                self._open_segment(self.segment + 1)
        except OSError as exc:
            self._close_segment()
            raise StoreUnavailable(
                f"event log {self.directory}: cannot open a segment: {exc}"
            ) from exc
        file = self._file
        start = self._size
        try:
            view = memoryview(payload)
            while view:
                written = file.write(view)
                view = view[written:]
            os.fsync(file.fileno())
        except OSError as exc:
            self._roll_back(start)
            raise StoreUnavailable(
                f"event log {self._path(self.segment)}: append failed: {exc}"
            ) from exc
        self._size = start + len(payload)

    def replace_segment(self, segment: _Segment, tmp: Path, empty: bool) -> None:
        """Swap a compacted temp file in for ``segment`` (or drop the segment when nothing is
        left and it is not the one being appended to). Caller holds ``self.lock``."""
        active = segment.number == self.segment
        if active:
            self._close_segment()
        _swap_in(segment, tmp, empty and not active)
        if active:
            self._open_segment(segment.number)

    def _roll_back(self, size: int) -> None:
        """Cut the segment back to ``size`` and close it; the next append reopens it (and the
        reopen repairs the tail should this truncation itself have failed)."""
        try:
            os.ftruncate(self._file.fileno(), size)
            os.fsync(self._file.fileno())
        except OSError as exc:
            logger.error(
                "event log %s: could not roll back a failed append: %s", self.directory, exc
            )
        self._close_segment()

    def _open_last_segment(self) -> None:
        for stale in self.directory.glob(f"events-*.jsonl{_TMP_SUFFIX}"):
            logger.warning(
                "event log %s: removing unfinished compaction file %s", self.directory, stale
            )
            stale.unlink()
        numbers = _segment_numbers(self.directory)
        if numbers:
            _repair_tail(self._path(numbers[-1]))
        self._open_segment(numbers[-1] if numbers else 1)

    def _open_segment(self, number: int) -> None:
        path = self._path(number)
        created = not path.exists()
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115
        if created:
            _fsync_directory(self.directory)  # make the new file's name durable too
        self.segment = number
        self._size = os.fstat(self._file.fileno()).st_size

    def _close_segment(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _path(self, number: int) -> Path:
        return self.directory / segment_name(number)


def _try_lock(directory: Path) -> Any:
    """The directory's lock file, flocked, or None when another holder has it."""
    lock_file = open(directory / LOCK_NAME, "ab", buffering=0)  # noqa: SIM115
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    return lock_file


def _swap_in(segment: _Segment, tmp: Path, drop: bool) -> None:
    """Replace ``segment`` by its compacted ``tmp`` (or delete both when ``drop``), durably."""
    if drop:
        tmp.unlink()
        segment.path.unlink()
    else:
        os.replace(tmp, segment.path)
    _fsync_directory(segment.path.parent)


# Writers of this process by directory; weak, so EventLogs dropped without close() free theirs.
_WRITERS: weakref.WeakValueDictionary[str, _Writer] = weakref.WeakValueDictionary()
_WRITERS_LOCK: Final = threading.Lock()


class EventLog:
    """Append-only JSON-lines log of :class:`~feature_store.schema.Interaction` events.

    ``EventLog(directory)`` becomes the writer of ``directory`` (creating it, repairing a torn tail)
    unless another process already writes it; then it reads only, and :meth:`append` retries to
    become the writer and raises :class:`StoreUnavailable` while it cannot. Instances of one
    process on the same directory share the writer. ``read_only=True`` never writes, locks or
    repairs anything.

    ``shared=True`` lets several processes write the directory at once: this process writes its
    own ``writer-NN`` slot (the first free one), and every instance reads all of them.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        read_only: bool = False,
        shared: bool = False,
    ) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.read_only = read_only
        self.shared = shared
        self._writer: _Writer | None = None
        self._closed = False
        if not read_only:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._writer = self._acquire()
            if self._writer is None:
                logger.warning(
                    "event log %s is being written by another process; "
                    "this instance reads only until that process releases it",
                    self.directory,
                )

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def is_writer(self) -> bool:
        """True while this instance may append (this process holds the directory's lock)."""
        return self._writer is not None

    @property
    def writer_directory(self) -> Path | None:
        """Where this instance appends: the directory itself, or its slot (None: not a writer)."""
        return None if self._writer is None else self._writer.directory

    def _acquire(self) -> _Writer | None:
        if self.shared:
            return _Writer.acquire_slot(self.directory)
        return _Writer.acquire(self.directory)

    def close(self) -> None:
        """Stop writing: release this instance's share of the writer. Reading still works."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        role = "read-only" if self.read_only else ("writer" if self.is_writer else "reader")
        return f"EventLog({str(self.directory)!r}, {role})"

    # -- writing -------------------------------------------------------------------------------

    def append(self, events: Sequence[Interaction]) -> int:
        """Append a batch durably (one write, one fsync) and return how many events were written.

        Thread-safe. Raises :class:`InvalidEvent` for anything that is not an ``Interaction`` (and
        then writes nothing) and :class:`StoreUnavailable` when the batch cannot be made durable
        (disk error, read-only instance, another process writing the directory).
        """
        for position, event in enumerate(events):
            if not isinstance(event, Interaction):
                raise InvalidEvent(
                    f"event {position} of the batch is a {type(event).__name__}, not an Interaction"
                )
        if not events:
            return 0
        if self.shared:  # the time it is logged orders it against other writers' tombstones
            logged = {LOGGED_AT: time.time()}
            records = [orjson.dumps({**event.to_record(), **logged}) for event in events]
        else:
            records = [orjson.dumps(event.to_record()) for event in events]
        payload = b"".join([record + b"\n" for record in records])
        writer = self._require_writer()
        with writer.lock:
            writer.write(payload, self.segment_bytes)
        return len(events)

    def erase_customer(self, customer_id: str) -> None:
        """Durably record that ``customer_id``'s events must not be read any more.

        From now on readers skip every event of the customer logged before this call or dated
        before it; :meth:`compact` removes them from disk.
        """
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise ValueError(f"customer_id must be a non-empty string, got {customer_id!r}")
        tombstone = {
            "tombstone": {
                InteractionCols.CUSTOMER_ID: customer_id.strip(),
                "erased_at": datetime.now(UTC).isoformat(),
            }
        }
        writer = self._require_writer()
        with writer.lock:
            writer.write(orjson.dumps(tombstone) + b"\n", self.segment_bytes)
            _forget_consent(writer.directory / CONSENT_FILE, {customer_id.strip(): None})

    # -- personalization consent ------------------------------------------------------------
    # Consent changes made through the service are kept beside the segments in ``consent.jsonl``
    # (one fsynced line per change), so the trainer honours them too; erasure rewrites the file
    # without the customer.

    def record_consent(self, customer_id: str, personalization: bool) -> None:
        """Durably record a customer's personalization consent (the latest record wins)."""
        if not isinstance(customer_id, str) or not customer_id.strip():
            raise ValueError(f"customer_id must be a non-empty string, got {customer_id!r}")
        line = orjson.dumps(
            {
                InteractionCols.CUSTOMER_ID: customer_id.strip(),
                "personalization": bool(personalization),
                "at": datetime.now(UTC).isoformat(),
            }
        )
        writer = self._require_writer()
        with writer.lock, open(writer.directory / CONSENT_FILE, "ab") as file:
            file.write(line + b"\n")
            file.flush()
            os.fsync(file.fileno())

    def consents(self) -> dict[str, bool]:
        """The latest consent recorded per customer, over every directory of the log (a torn
        last line is ignored, and so is a record older than the customer's latest erasure)."""
        latest: dict[str, tuple[datetime, bool]] = {}
        sources = _sources(self.directory)
        erased: dict[str, datetime] | None = None
        for _, directory in sources:
            for customer_id, (at, flag) in _read_consents(directory / CONSENT_FILE).items():
                known = latest.get(customer_id)
                if known is None or at >= known[0]:
                    latest[customer_id] = (at, flag)
        if latest and len(sources) > 1:  # erasure drops a writer's own records at once
            erased = self.erased_customers()
        return {
            customer_id: flag
            for customer_id, (at, flag) in latest.items()
            if erased is None or customer_id not in erased or at >= erased[customer_id]
        }

    def compact(self) -> int:
        """Rewrite the segments that hold erased events without them; return how many were removed.

        Each affected segment is written to a temporary file, fsynced and swapped in with
        ``os.replace``, so a crash leaves either the old or the new segment, never a mix. A segment
        left empty is deleted (unless it is the one being appended to). Appends wait meanwhile.

        Only directories whose lock this process holds are rewritten: its own, and each other
        slot (or the top level) that no live process holds at that moment, locked meanwhile.
        Consent records older than an erasure are dropped from those directories too.
        """
        writer = self._require_writer()
        with writer.lock:
            snapshot, erasures = self._snapshot()
            if not erasures:
                return 0
            removed = 0
            own = os.path.realpath(writer.directory)
            for source, directory in _sources(self.directory):
                mine = os.path.realpath(directory) == own
                lock_file = None if mine else _try_lock_existing(directory)
                if not mine and lock_file is None:
                    continue  # a live writer's directory: it compacts its own
                try:
                    for segment in snapshot:
                        if segment.source == source:
                            removed += self._compact_segment(
                                writer if mine else None, segment, erasures
                            )
                    _forget_consent(directory / CONSENT_FILE, erasures.latest)
                finally:
                    if lock_file is not None:
                        lock_file.close()
            return removed

    def _compact_segment(
        self, writer: _Writer | None, segment: _Segment, erasures: _Erasures
    ) -> int:
        tmp = segment.path.with_name(segment.path.name + _TMP_SUFFIX)
        removed = 0
        try:
            with open(tmp, "wb") as out:
                for line in _scan_segment(segment, erasures, {}):
                    if line.erased:
                        removed += 1
                    else:
                        out.write(line.raw + b"\n")
                if removed:
                    out.flush()
                    os.fsync(out.fileno())
                empty = out.tell() == 0
            if removed == 0:
                tmp.unlink()
                return 0
            if writer is not None:
                writer.replace_segment(segment, tmp, empty)
            else:  # a directory nobody writes: no segment is open for appending
                _swap_in(segment, tmp, empty)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreUnavailable(f"event log {segment.path}: compaction failed: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.info(
            "event log %s: compacted %s, removed %d erased events",
            self.directory,
            segment.path.name,
            removed,
        )
        return removed

    def _require_writer(self) -> _Writer:
        if self._closed:
            raise StoreUnavailable(f"event log {self.directory} is closed")
        if self.read_only:
            raise StoreUnavailable(f"event log {self.directory} was opened read-only")
        if self._writer is None:
            self._writer = self._acquire()
            if self._writer is None:
                raise StoreUnavailable(
                    f"event log {self.directory} is being written by another process"
                )
        return self._writer

    # -- reading -------------------------------------------------------------------------------

    def segment_paths(self) -> list[Path]:
        """The segment files, oldest first (numbers may skip: compaction drops emptied segments):
        the top level's, then each slot's."""
        return [
            directory / segment_name(n)
            for _, directory in _sources(self.directory)
            for n in _segment_numbers(directory)
        ]

    def iter_events(self, since: datetime | None = None) -> Iterator[Interaction]:
        """Every event in log order (optionally only those dated at or after ``since``).

        Erased events are never yielded. An incomplete last line (a write in progress, or a writer
        killed mid-append) is skipped; a malformed *complete* line raises :class:`DataFormatError`
        naming the file and line.
        """
        cutoff = _as_utc(since) if since is not None else None
        for line in self._lines():
            record = line.record
            if LOGGED_AT in record:
                record = {k: v for k, v in record.items() if k != LOGGED_AT}
            try:
                event = Interaction.model_validate(record)
            except ValidationError as exc:
                raise DataFormatError(
                    f"invalid event: {exc.errors(include_url=False)}",
                    file=str(line.segment.path),
                    row=line.row,
                ) from exc
            if cutoff is None or event.timestamp >= cutoff:
                yield event

    def read_frame(self, since: datetime | None = None) -> pd.DataFrame:
        """The log as an ``interactions`` table: columns :data:`InteractionCols.ALL`, ids and enums
        as ``string``, ``timestamp`` as ``datetime64[ns, UTC]``, ``price`` float, ``position``
        ``Int64``. Same filtering as :meth:`iter_events`; the trainer appends this to its data.

        A bad complete line (not JSON, not an object, a required field missing, a timestamp that is
        not ISO 8601 or lies outside the window of :func:`~feature_store.schema.check_event_time`)
        does not stop the read: it is skipped, logged as a warning naming file and row, and counted
        in ``frame.attrs["skipped_lines"]``, so one bad line cannot stop every later training."""
        import pandas as pd  # only readers that build frames pay for pandas

        skipped = 0

        def skip(segment: _Segment, row: int, reason: str) -> None:
            nonlocal skipped
            skipped += 1
            logger.warning("event log %s row %d: skipped a bad line: %s", segment.path, row, reason)

        columns: dict[str, list[Any]] = {c: [] for c in InteractionCols.ALL}
        stamps: list[datetime] = []
        for line in self._lines(on_bad=skip):
            record = line.record
            missing = [c for c in InteractionCols.REQUIRED if c not in record]
            if missing:
                skip(line.segment, line.row, f"the required field {missing[0]!r} is missing")
                continue
            try:
                stamp = check_event_time(datetime.fromisoformat(record[InteractionCols.TIMESTAMP]))
            except (TypeError, ValueError) as exc:
                skip(line.segment, line.row, f"timestamp: {exc}")
                continue
            stamps.append(stamp)
            for name, values in columns.items():
                values.append(record.get(name))
        data: dict[str, Any] = {c: pd.array(columns[c], dtype="string") for c in _STRING_COLUMNS}
        data[InteractionCols.TIMESTAMP] = pd.to_datetime(
            pd.Series(stamps, dtype=object), utc=True
        ).astype("datetime64[ns, UTC]")
        data[InteractionCols.PRICE] = pd.Series(columns[InteractionCols.PRICE], dtype="float64")
        data[InteractionCols.POSITION] = pd.array(columns[InteractionCols.POSITION], dtype="Int64")
        frame = pd.DataFrame(data)[list(InteractionCols.ALL)]
        if since is not None:
            frame = frame.loc[frame[InteractionCols.TIMESTAMP] >= _as_utc(since)].reset_index(
                drop=True
            )
        if skipped:
            logger.warning("event log %s: skipped %d bad lines", self.directory, skipped)
        frame.attrs["skipped_lines"] = skipped
        return frame

    def erased_customers(self) -> dict[str, datetime]:
        """Every customer with a tombstone in the log, with the latest erasure time (UTC).

        The trainer drops these customers from its data before fitting anything; the service
        treats bundle data about them that predates the erasure as gone.
        """
        _, erasures = self._snapshot()
        return dict(erasures.latest)

    def _lines(self, on_bad: _OnBad | None = None) -> Iterator[_Line]:
        """Complete, non-erased event lines of a snapshot of the log, in log order (a corrupt line
        raises :class:`DataFormatError`, or is passed to ``on_bad`` and skipped when given)."""
        snapshot, erasures = self._snapshot()
        seen: dict[tuple[str, str], int] = {}
        for segment in snapshot:
            for line in _scan_segment(segment, erasures, seen, on_bad):
                if not line.tombstone and not line.erased:
                    yield line

    def _snapshot(self) -> tuple[list[_Segment], _Erasures]:
        """Sizes of the segments now (reading stops there) and the tombstones within them."""
        snapshot: list[_Segment] = []
        erasures = _Erasures()
        for source, directory in _sources(self.directory):
            snapshot.extend(_snapshot_directory(directory, source, erasures))
        return snapshot, erasures


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _sources(root: Path) -> list[tuple[str, Path]]:
    """The directories of a log: the top level ("") and each writer slot, in slot order."""
    if not root.is_dir():
        return []
    slots = sorted(
        (int(match.group(1)), entry.name)
        for entry in os.scandir(root)
        if (match := SLOT_PATTERN.match(entry.name)) is not None and entry.is_dir()
    )
    return [("", root)] + [(name, root / name) for _, name in slots]


def _try_lock_existing(directory: Path) -> Any:
    """Like :func:`_try_lock`, for a directory that may have been removed meanwhile."""
    try:
        return _try_lock(directory)
    except FileNotFoundError:
        return None


def _snapshot_directory(directory: Path, source: str, erasures: _Erasures) -> list[_Segment]:
    snapshot: list[_Segment] = []
    for number in _segment_numbers(directory):
        path = directory / segment_name(number)
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                segment = _Segment(number, path, size, source)
                if size > 0:
                    _collect_tombstones(file, segment, erasures)
        except FileNotFoundError:  # compacted away meanwhile
            continue
        snapshot.append(segment)
    return snapshot


def _read_consents(path: Path) -> dict[str, tuple[datetime, bool]]:
    """The last consent record per customer in one ``consent.jsonl``, with its time."""
    out: dict[str, tuple[datetime, bool]] = {}
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return out
    for raw in content.splitlines():
        try:
            record = orjson.loads(raw)
            customer_id = str(record[InteractionCols.CUSTOMER_ID])
            flag = bool(record["personalization"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        try:
            at = _as_utc(datetime.fromisoformat(record.get("at")))
        except (TypeError, ValueError):
            at = datetime.min.replace(tzinfo=UTC)
        out[customer_id] = (at, flag)
    return out


def _forget_consent(path: Path, erased: Mapping[str, datetime | None]) -> None:
    """Rewrite ``path`` without the records of erased customers (all of a customer mapped to
    None; those older than the erasure otherwise). Caller holds the directory's lock."""
    if not path.exists():
        return
    kept = []
    dropped = 0
    for raw in path.read_bytes().splitlines():
        try:
            record = orjson.loads(raw)
            customer_id = record.get(InteractionCols.CUSTOMER_ID)
        except (orjson.JSONDecodeError, AttributeError):
            dropped += 1
            continue
        if customer_id in erased:
            erased_at = erased[customer_id]
            try:
                at = _as_utc(datetime.fromisoformat(record.get("at")))
            except (TypeError, ValueError):
                at = None
            if erased_at is None or at is None or at < erased_at:
                dropped += 1
                continue
        kept.append(raw + b"\n")
    if not dropped:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as file:
        file.writelines(kept)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _segment_numbers(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    numbers = []
    for entry in os.scandir(directory):
        match = SEGMENT_PATTERN.match(entry.name)
        if match is not None and entry.is_file():
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _repair_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline; return the number of bytes dropped."""
    with open(path, "r+b") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return 0
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return 0
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - _READ_CHUNK)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        file.truncate(keep)
        file.flush()
        os.fsync(file.fileno())
    logger.warning(
        "event log %s: repaired a torn tail, dropped %d bytes of an incomplete record "
        "(a writer was stopped mid-append; that batch was never acknowledged)",
        path,
        size - keep,
    )
    return size - keep


def _parse_tombstone(
    raw: bytes | bytearray, segment: _Segment, row: int | None
) -> tuple[str, datetime]:
    try:
        body = orjson.loads(raw)["tombstone"]
        customer_id = body[InteractionCols.CUSTOMER_ID]
        erased_at = datetime.fromisoformat(body["erased_at"])
        if not isinstance(customer_id, str):
            raise TypeError("customer_id is not a string")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(
            f"malformed tombstone: {exc}", file=str(segment.path), row=row
        ) from exc
    return customer_id, _as_utc(erased_at)


def _collect_tombstones(file: Any, segment: _Segment, erasures: _Erasures) -> None:
    """Find the tombstone lines of one segment (a fast byte search, no JSON parsing of events)."""
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        end_of_data = min(segment.size, len(view))
        position = 0
        while True:
            found = view.find(_TOMBSTONE_MARK, position, end_of_data)
            if found < 0:
                return
            line_end = view.find(b"\n", found, end_of_data)
            if line_end < 0:
                return  # an incomplete tombstone was never acknowledged: it does not count
            if found == 0 or view[found - 1] == 0x0A:
                customer_id, erased_at = _parse_tombstone(view[found:line_end], segment, None)
                erasures.register(segment.source, customer_id, erased_at, segment.number)
            position = line_end + 1


def _register(
    erasures: dict[str, _Erasure], customer_id: str, erased_at: datetime, segment: int
) -> None:
    known = erasures.get(customer_id)
    if known is None:
        erasures[customer_id] = _Erasure(erased_at, segment, 1)
        return
    known.erased_at = max(known.erased_at, erased_at)
    if segment > known.last_segment:
        known.last_segment = segment
        known.tombstones_in_last_segment = 1
    elif segment == known.last_segment:
        known.tombstones_in_last_segment += 1


#: Called with the segment, row and reason of a corrupt event line that a lenient reader skips.
_OnBad = Callable[[_Segment, int, str], None]


def _scan_segment(
    segment: _Segment,
    erasures: _Erasures,
    seen: dict[tuple[str, str], int],
    on_bad: _OnBad | None = None,
) -> Iterator[_Line]:
    """Complete lines of one segment up to its snapshot size, marked tombstone / erased.

    A corrupt event line raises :class:`DataFormatError`, unless ``on_bad`` is given: then it is
    reported to ``on_bad`` and skipped.

    ``seen`` counts, per directory and erased customer, the tombstones passed in that customer's
    last tombstone segment there: events before the last one are erased whatever their date.
    Tombstones of other directories erase the events logged before them (``logged_at``).
    """
    source = segment.source
    for row, raw in _complete_lines(segment):
        if raw.startswith(_TOMBSTONE_MARK):
            erased_id, _ = _parse_tombstone(raw, segment, row)
            erasure = erasures.local(source, erased_id)
            if erasure is not None and erasure.last_segment == segment.number:
                seen[source, erased_id] = seen.get((source, erased_id), 0) + 1
            yield _Line(segment, row, raw, {}, tombstone=True, erased=False)
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if on_bad is not None:
                on_bad(segment, row, f"corrupt event line ({exc})")
                continue
            raise DataFormatError(
                f"corrupt event line ({exc})", file=str(segment.path), row=row
            ) from exc
        if not isinstance(record, dict):
            if on_bad is not None:
                on_bad(segment, row, "event line is not a JSON object")
                continue
            raise DataFormatError(
                "event line is not a JSON object", file=str(segment.path), row=row
            )
        erased = False
        customer_id = record.get(InteractionCols.CUSTOMER_ID)
        latest = erasures.latest.get(customer_id) if isinstance(customer_id, str) else None
        if latest is not None:
            known = erasures.local(source, str(customer_id))
            foreign = erasures.foreign(source, str(customer_id))
            logged = record.get(LOGGED_AT)
            if known is not None and (
                segment.number < known.last_segment
                or (
                    segment.number == known.last_segment
                    and seen.get((source, str(customer_id)), 0) < known.tombstones_in_last_segment
                )
            ):
                erased = True  # logged before a tombstone of this directory
            elif foreign is not None and (
                not isinstance(logged, int | float) or logged < foreign.timestamp()
            ):
                erased = True  # logged before another writer's tombstone
            else:
                try:
                    stamp = _as_utc(datetime.fromisoformat(record[InteractionCols.TIMESTAMP]))
                except (KeyError, TypeError, ValueError) as exc:
                    if on_bad is not None:
                        on_bad(segment, row, f"event has no valid timestamp ({exc})")
                        continue
                    raise DataFormatError(
                        f"event has no valid timestamp ({exc})",
                        file=str(segment.path),
                        row=row,
                        column=InteractionCols.TIMESTAMP,
                    ) from exc
                erased = stamp < latest
        yield _Line(segment, row, raw, record, tombstone=False, erased=erased)


def _complete_lines(segment: _Segment) -> Iterator[tuple[int, bytes]]:
    """``(row, line)`` for each newline-terminated, non-blank line within the snapshot size."""
    try:
        file = open(segment.path, "rb")  # noqa: SIM115
    except FileNotFoundError:  # compacted away meanwhile
        return
    with file:
        remaining = segment.size
        pending = b""
        row = 0
        while remaining > 0:
            chunk = file.read(min(_READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                row += 1
                if line.strip():
                    yield row, line
        if pending:
            logger.debug(
                "event log %s: skipping an incomplete last line (%d bytes)",
                segment.path,
                len(pending),
            )
