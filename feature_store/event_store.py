"""The event store interface: what the service and the trainer do with durable events, consent and
erasure, whichever store holds them — and the one factory that picks the store.

Two stores satisfy :class:`EventStore`:

* :class:`~feature_store.event_log.EventLog` — the file log (the embedded default: a directory of
  JSON-lines segments, tombstones and a consent file);
* :class:`~feature_store.postgres_events.PostgresEventStore` — PostgreSQL (the fleet: any number of
  processes write it; tables created by the migrations of :mod:`feature_store.schema_migrations`).

:func:`open_event_store` chooses by location: a ``postgresql://`` (or ``postgres://``) URL opens
PostgreSQL, anything else is a directory of the file log. ``tests/test_event_store_contract.py``
runs the same tests on both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from .event_log import EventLog
from .postgres_events import (
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    PostgresEventStore,
    describe_database_url,
)
from .schema import Interaction

if TYPE_CHECKING:
    import pandas as pd

    def _both_stores_conform(log: EventLog, database: PostgresEventStore) -> list[EventStore]:
        return [log, database]  # mypy checks here that both satisfy the protocol


DATABASE_URL_SCHEMES: Final = ("postgresql://", "postgres://")


@runtime_checkable
class EventStore(Protocol):
    """Durable interaction events, personalization consent and erasures.

    Writes are durable when they return; a store that cannot make them durable raises
    :class:`~feature_store.errors.StoreUnavailable` (the API answers 503 with ``Retry-After``)."""

    @property
    def is_writer(self) -> bool:
        """True while this instance may write (append, erase, record consent, compact)."""
        ...

    def append(self, events: Sequence[Interaction]) -> int:
        """Store a batch durably, all or nothing, and return its length. An event of an erased
        customer dated before the erasure is dropped (never read back), as erasure promises."""
        ...

    def erase_customer(self, customer_id: str) -> None:
        """Durably erase a customer: none of their events logged before this call or dated before
        it is read any more, and their consent record is forgotten."""
        ...

    def record_consent(self, customer_id: str, personalization: bool) -> None:
        """Durably record a customer's personalization consent (the latest record wins)."""
        ...

    def consents(self) -> dict[str, bool]:
        """The latest consent recorded per customer."""
        ...

    def erased_customers(self) -> dict[str, datetime]:
        """Every erased customer with the latest time of erasure (UTC)."""
        ...

    def compact(self) -> int:
        """Physically remove erased events still stored; return how many were removed."""
        ...

    def iter_events(self, since: datetime | None = None) -> Iterator[Interaction]:
        """Every readable event in the order stored (only those dated at or after ``since``)."""
        ...

    def read_frame(self, since: datetime | None = None) -> pd.DataFrame:
        """The events as an ``interactions`` table (:data:`InteractionCols.ALL`; ids and enums
        ``string``, ``timestamp`` ``datetime64[ns, UTC]``, ``price`` float, ``position`` Int64),
        in the order stored; ``frame.attrs["skipped_lines"]`` counts unreadable records."""
        ...

    def close(self) -> None:
        """Stop writing and release what the instance holds (lock, connections)."""
        ...


def is_database_url(location: str | Path) -> bool:
    """True when ``location`` names a PostgreSQL database rather than a directory."""
    return isinstance(location, str) and location.startswith(DATABASE_URL_SCHEMES)


def describe_location(location: str | Path) -> str:
    """``location`` fit for logs and manifests: a database URL without its password."""
    return describe_database_url(str(location)) if is_database_url(location) else str(location)


def open_event_store(
    location: str | Path,
    *,
    read_only: bool = False,
    shared: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> EventStore:
    """The event store at ``location``: PostgreSQL for a ``postgresql://`` URL (``pool_size``
    connections at most; an operation waits ``timeout_seconds`` for one before it raises
    :class:`~feature_store.errors.StoreUnavailable`), else the file log in that directory.
    ``read_only`` stores never write; ``shared`` file logs let several processes write at once
    (a ``writer-NN`` slot each, see :mod:`~feature_store.event_log`)."""
    if is_database_url(location):
        return PostgresEventStore(
            str(location),
            read_only=read_only,
            pool_size=pool_size,
            timeout_seconds=timeout_seconds,
        )
    return EventLog(Path(location), read_only=read_only, shared=shared)
