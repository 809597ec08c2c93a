"""The durable impression log: every served-list record, as JSON lines, for the trainer and the
evaluations (off-policy evaluation needs what was shown and with which propensity).

Layout of a log directory::

    impressions-20261205T123000123456-4711-3f9a2c-000001.jsonl   one record per line
    impressions-20261205T123000123456-4711-3f9a2c-000002.jsonl   (:mod:`~.served_lists`)

Each writer (one per process) writes its own files — start time, pid and a random tag in the
name, then a sequence number — so replicas can share a directory without locking, and a new
segment starts when the current one would exceed ``segment_bytes``. Names sort by writer start.

Writing is off the request thread: :meth:`ImpressionLog.append` only queues the line (a deque
append); a background thread writes what is queued every ``flush_seconds`` with one ``write`` and
one ``fsync``. **What a crash can lose**: the records of at most the last ``flush_seconds`` (and
one incomplete last line, which readers skip). When the disk cannot keep up, at most
``max_pending`` records wait; beyond that the newest are dropped and counted (:attr:`dropped`) —
the response is never delayed. :meth:`close` (the app's shutdown) writes everything queued.
Unlike interaction events, a served list is not acknowledged to anyone, so this trade is safe:
the online store already holds the record for attribution; the log is for training and analysis.

Erasure: readers pass the event log's erased customers (``EventLog.erased_customers()``) to
:meth:`ImpressionLog.iter_records`, which then skips those customers' records served before
their erasure; :meth:`ImpressionLog.compact` removes them from disk (temp file + ``os.replace``),
skipping the segments live writers still hold (each writer holds a ``flock`` on its open segment)
— except the compacting instance's own: when its open segment holds such records it is closed
first (the next record opens a new one), so a single long-lived writer's records are removed too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .errors import DataFormatError
from .served_lists import ServedList

logger = logging.getLogger("lookbook.impressions")

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
SEGMENT_PATTERN: Final = re.compile(r"^impressions-[0-9T]+-\d+-[0-9a-f]+-(\d{6,})\.jsonl$")


class ImpressionLog:
    """Append served-list records (batched, off the caller's thread); read them back."""

    def __init__(
        self,
        directory: Path | str,
        *,
        flush_seconds: float = 1.0,
        max_pending: int = 100_000,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        read_only: bool = False,
    ) -> None:
        if flush_seconds <= 0:
            raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
        if max_pending < 1 or segment_bytes < 1:
            raise ValueError("max_pending and segment_bytes must be >= 1")
        self.directory = Path(directory)
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.segment_bytes = segment_bytes
        self.read_only = read_only
        self.dropped = 0  # records not logged because the queue was full
        self.written = 0
        self._pending: deque[bytes] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._write_lock = threading.Lock()  # one flush at a time
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._file: Any = None
        self._size = 0
        self._sequence = 0
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._writer_tag = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # -- writing -------------------------------------------------------------------------------

    def append(self, record: bytes) -> bool:
        """Queue one record (JSON without a newline); False when it was dropped (queue full or
        the log closed). Never blocks on the disk."""
        if self.read_only or self._closed:
            return False
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return False
        self._pending.append(record)
        if self._thread is None:
            self._start()
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
            thread.start()
            self._thread = thread

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except OSError as exc:  # the records stay queued (up to max_pending) for the next try
                logger.error("impression log %s: write failed: %s", self.directory, exc)

    def flush(self) -> int:
        """Write everything queued now (one write, one fsync); return how many records."""
        with self._write_lock:
            batch: list[bytes] = []
            while self._pending:
                batch.append(self._pending.popleft())
            if not batch:
                return 0
            payload = b"\n".join(batch) + b"\n"
            try:
                self._write(payload)
            except OSError:
                self._pending.extendleft(reversed(batch))  # keep them for the next flush
                raise
            self.written += len(batch)
            return len(batch)

    def _write(self, payload: bytes) -> None:
        if self._file is None or (
            self._size > 0 and self._size + len(payload) > self.segment_bytes
        ):
            self._open_next()
        file = self._file
        view = memoryview(payload)
        while view:
            view = view[file.write(view) :]
        os.fsync(file.fileno())
        self._size += len(payload)

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        path = self.directory / f"impressions-{self._writer_tag}-{self._sequence:06d}.jsonl"
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # "being written"
        self._size = os.fstat(self._file.fileno()).st_size
        _fsync_directory(self.directory)  # the new file's name is durable too

    def _release_segment(self, erased: Mapping[str, datetime]) -> None:
        """Close this writer's open segment (after writing what is queued) when it holds records
        of ``erased`` customers, so that :meth:`compact` can rewrite it; the next record opens a
        new segment."""
        if self._file is None or self.read_only:
            return
        try:
            self.flush()
        except OSError as exc:
            logger.error("impression log %s: write failed: %s", self.directory, exc)
        with self._write_lock:
            if self._file is None:
                return
            data = Path(self._file.name).read_bytes()
            lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
            if any(raw.strip() and _erased(ServedList.from_json(raw), erased) for raw in lines):
                self._file.close()
                self._file = None

    def close(self) -> None:
        """Write everything queued and stop the writer thread (reading still works)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except OSError as exc:
            logger.error(
                "impression log %s: %d records lost at shutdown: %s",
                self.directory,
                len(self._pending),
                exc,
            )
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- reading -------------------------------------------------------------------------------

    def segment_paths(self) -> list[Path]:
        """Every writer's segment files, by name (writer start, then sequence)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            Path(entry.path)
            for entry in os.scandir(self.directory)
            if entry.is_file() and SEGMENT_PATTERN.match(entry.name)
        )

    def compact(self, erased: Mapping[str, datetime]) -> int:
        """Rewrite the segments holding records of ``erased`` customers served before their
        erasure without those records; return how many were removed. This instance's own open
        segment is closed first when it holds such records; segments other live writers hold are
        left for a later compaction (readers skip the records meanwhile)."""
        if erased:
            self._release_segment(erased)
        removed = 0
        for path in self.segment_paths():
            try:
                file = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                continue
            with file:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    logger.info(
                        "impression log %s: %s is being written; not compacted",
                        self.directory,
                        path.name,
                    )
                    continue
                data = file.read()
                kept: list[bytes] = []
                dropped = 0
                lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
                for raw in lines:
                    if raw.strip() and _erased(ServedList.from_json(raw), erased):
                        dropped += 1
                    else:
                        kept.append(raw + b"\n")
                if dropped == 0:
                    continue
                tmp = path.with_name(path.name + ".compact.tmp")
                with open(tmp, "wb") as out:
                    out.writelines(kept)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
                _fsync_directory(self.directory)
                removed += dropped
        return removed

    def iter_records(self, erased: Mapping[str, datetime] | None = None) -> Iterator[ServedList]:
        """Every complete record, file by file. An incomplete last line (a write in progress, a
        writer killed mid-write) is skipped; a malformed complete line raises
        :class:`DataFormatError` naming the file and line. Records of a customer in ``erased``
        served before their erasure time are skipped."""
        for path in self.segment_paths():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1  # complete lines only
            for row, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
                if not raw.strip():
                    continue
                try:
                    record = ServedList.from_json(raw)
                except DataFormatError as exc:
                    raise DataFormatError(str(exc), file=str(path), row=row) from exc
                if erased and _erased(record, erased):
                    continue
                yield record


def _erased(record: ServedList, erased: Mapping[str, datetime]) -> bool:
    """True for a record of an erased customer served before their erasure."""
    when = erased.get(record.customer_id) if record.customer_id is not None else None
    if when is None:
        return False
    return record.served_at < (when if when.tzinfo else when.replace(tzinfo=UTC))


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
