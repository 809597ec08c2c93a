"""Erasure reaching the disk: the scheduled compaction of the event and impression logs, and an
access log that never names a customer.

An erased customer's events stay in the event log's segments (skipped by every reader) until
:func:`compact_logs` rewrites them; the service runs it every ``compaction_seconds``
(``LOOKBOOK_COMPACTION_SECONDS``, one hour by default). Only the process holding the event log's
writer lock compacts, so replicas on one log never compact at the same time. The PostgreSQL event
store deletes an erased customer's rows in the erasure's own transaction; its compaction only
deletes what slipped in since (normally nothing). The tombstone line
itself (the customer id and the time of erasure) is kept: it is what keeps late, back-dated events
of the customer out and what the next training drops the customer by.
"""

from __future__ import annotations

import asyncio
import logging
import re

from starlette.concurrency import run_in_threadpool

from feature_store.errors import StoreUnavailable
from feature_store.event_store import EventStore
from feature_store.impression_log import ImpressionLog

logger = logging.getLogger("lookbook.app")

ACCESS_LOGGER = "uvicorn.access"
# ``/customers/<id>`` and ``/profiles/<id>`` path segments; query strings are dropped entirely.
_CUSTOMER_SEGMENT = re.compile(r"(/(?:customers|profiles)/)[^/?#]+")


def compact_logs(event_log: EventStore, impressions: ImpressionLog | None) -> tuple[int, int]:
    """Remove erased customers' events and served-list records from disk: ``(events,
    records)`` removed. ``(0, 0)`` when another process is the event log's writer (it compacts)."""
    try:
        events = event_log.compact()
    except StoreUnavailable as exc:
        logger.debug("event log not compacted by this process: %s", exc)
        return 0, 0
    records = impressions.compact(event_log.erased_customers()) if impressions else 0
    return events, records


async def compact_periodically(
    event_log: EventStore, impressions: ImpressionLog | None, interval: float
) -> None:
    """Run :func:`compact_logs` every ``interval`` seconds until cancelled; a failed run is
    logged and retried at the next one."""
    while True:
        await asyncio.sleep(interval)
        try:
            events, records = await run_in_threadpool(compact_logs, event_log, impressions)
        except Exception:  # the schedule must outlive a failed run
            logger.exception("compaction of the event and impression logs failed")
            continue
        if events or records:
            logger.info("compaction removed %d erased events and %d records", events, records)


def redact_path(path: str) -> str:
    """A request path as the access log may show it: customer ids and the query string out."""
    path = path.split("?", 1)[0]
    return _CUSTOMER_SEGMENT.sub(r"\1-", path)


class RedactingAccessFilter(logging.Filter):
    """Rewrites uvicorn's access log records (``client - "METHOD path HTTP/v" status``) so the
    path names no customer."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_path(args[2]), args[3], args[4])
        return True


def install_access_log_redaction() -> None:
    """Add :class:`RedactingAccessFilter` to uvicorn's access logger (once)."""
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactingAccessFilter) for f in access.filters):
        access.addFilter(RedactingAccessFilter())
