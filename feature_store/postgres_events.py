"""The PostgreSQL event store: durable events, consent and erasures that any number of processes
write at once (the fleet's :class:`~feature_store.event_store.EventStore`).

Tables (created by ``feature_store/migrations/``, see :mod:`feature_store.schema_migrations` and
``docs/event-store.md``): ``events`` (one row per event; ``id`` is the order stored), ``consents``
(the latest consent per customer) and ``erasures`` (erased customers, latest time of erasure).

Guarantees:

* :meth:`PostgresEventStore.append` stores a whole batch with one statement (one round trip: an
  ``INSERT … SELECT FROM unnest(…)`` of one array per column) in its own transaction, committed
  before it returns.
* Erasure: :meth:`~PostgresEventStore.erase_customer` records the erasure and deletes the
  customer's events and consent in one transaction. It takes a ``SHARE`` lock on ``events`` so no
  insert is in flight meanwhile; the insert statement refuses every event of an erased customer
  dated before the erasure. A late, back-dated event is therefore *dropped*: acknowledged like
  every valid event (as by the file log, which keeps but never reads it) and never stored.
  Readers also skip any such row, and :meth:`~PostgresEventStore.compact` deletes it.
* When the server cannot be reached, every operation raises
  :class:`~feature_store.errors.StoreUnavailable` within ``timeout_seconds``; the connection pool
  (``psycopg_pool``) checks connections before use and reconnects by itself when the server is
  back. Behind a circuit breaker (:mod:`feature_store.circuit`): once a connection failed, every
  operation raises at once, without waiting for a connection, until one caller's probe (each
  ``RETRY_INTERVAL_SECONDS``) reaches the server again — so an outage costs the service's handler
  threads nothing (they would otherwise each wait ``timeout_seconds``, and the reads queue
  behind them).
* The trainer's read (:meth:`~PostgresEventStore.read_frame`) streams the rows out with
  ``COPY (SELECT …) TO STDOUT`` into Arrow's incremental CSV reader: memory holds the compact
  Arrow columns and the frame built from them, never the whole text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from .circuit import Admission, CircuitBreaker
from .errors import InvalidEvent, SchemaOutdated, StoreUnavailable
from .schema import Interaction, InteractionCols
from .schema_migrations import check_schema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

logger = logging.getLogger("lookbook.events")

DEFAULT_POOL_SIZE: Final = 4
DEFAULT_TIMEOUT_SECONDS: Final = 5.0
#: While the server is unreachable, one operation probes it this often; the others fail at once.
RETRY_INTERVAL_SECONDS: Final = 1.0
_CSV_BLOCK_BYTES: Final = 4 << 20  # Arrow parses the COPY stream this much at a time
#: The table's column of each Interaction field (``timestamp`` is ``event_time`` in SQL).
COLUMNS: Final = {
    c: ("event_time" if c == InteractionCols.TIMESTAMP else c) for c in InteractionCols.ALL
}
_ARRAY_TYPES: Final = {
    InteractionCols.TIMESTAMP: "timestamptz[]",
    InteractionCols.PRICE: "float8[]",
    InteractionCols.POSITION: "int4[]",
}
_NOT_ERASED: Final = (
    "NOT EXISTS (SELECT 1 FROM erasures r"
    " WHERE r.customer_id = e.customer_id AND r.erased_at > e.event_time)"
)

_INSERT: Final = sql.SQL(
    "INSERT INTO events ({targets}) "
    "SELECT {columns} FROM unnest({arrays}) WITH ORDINALITY AS e({columns}, ord) "
    "WHERE " + _NOT_ERASED + " ORDER BY ord"
).format(
    targets=sql.SQL(", ").join(sql.Identifier(COLUMNS[c]) for c in InteractionCols.ALL),
    columns=sql.SQL(", ").join(sql.Identifier(COLUMNS[c]) for c in InteractionCols.ALL),
    arrays=sql.SQL(", ").join(
        sql.SQL("%s::{}").format(sql.SQL(_ARRAY_TYPES.get(c, "text[]")))
        for c in InteractionCols.ALL
    ),
)


def _select(
    columns: sql.Composable, since: datetime | None
) -> tuple[sql.Composed, tuple[Any, ...]]:
    where: sql.Composable = sql.SQL(_NOT_ERASED)
    params: tuple[Any, ...] = ()
    if since is not None:
        where = sql.SQL("{} AND e.event_time >= %s").format(where)
        params = (since if since.tzinfo is not None else since.replace(tzinfo=UTC),)
    query = sql.SQL("SELECT {} FROM events e WHERE {} ORDER BY e.id").format(columns, where)
    return query, params


class PostgresEventStore:
    """Events, consent and erasures in PostgreSQL, through a pool of at most ``pool_size``
    connections. Every process may write (``is_writer``) unless ``read_only``.

    Construction checks the schema version when the server answers (:class:`SchemaOutdated`:
    run ``lookbook db upgrade``); when it does not, the service still starts, and the check runs
    before the first operation that reaches the server."""

    def __init__(
        self,
        database_url: str,
        *,
        read_only: bool = False,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        self.read_only = read_only
        self.timeout_seconds = timeout_seconds
        self._closed = False
        self._schema_checked = False
        self._schema_lock = threading.Lock()
        self._breaker = CircuitBreaker(RETRY_INTERVAL_SECONDS)
        self._url, self._pool_size = database_url, pool_size
        self._pool_lock = threading.Lock()
        self._pool = self._new_pool()
        self._database = describe_database_url(database_url)
        try:
            with self._connection():
                pass  # checks the schema
        except SchemaOutdated:
            self._pool.close()
            raise
        except StoreUnavailable as exc:
            logger.warning(
                "event database %s not reachable at start-up (%s); events are refused (503) "
                "until it is",
                self._database,
                exc,
            )

    def _new_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            timeout=self.timeout_seconds,
            kwargs=self._connect_options(),
            check=ConnectionPool.check_connection,
            reconnect_timeout=max(self.timeout_seconds, 60.0),
            name="lookbook-events",
            open=False,
        )
        pool.open(wait=False)
        return pool

    def _connect_options(self) -> dict[str, Any]:
        return {
            "autocommit": True,  # one statement, one transaction; several: conn.transaction()
            "connect_timeout": max(1, round(self.timeout_seconds)),
            "options": "-c TimeZone=UTC",
        }

    def _recover(self) -> None:
        """The probe of an open circuit: when the server accepts a connection again but the pool
        has none ready — its reconnection attempts back off exponentially (1, 2, 4, 8, 16 s …),
        so after a long outage it would refuse events for many seconds after the server is back
        — the pool is replaced by a fresh one, which connects at once."""
        try:
            psycopg.connect(self._url, **self._connect_options()).close()
        except psycopg.Error:
            return  # still down: the pool's own attempt fails the same way
        with self._pool_lock:
            if self._closed or self._pool.get_stats().get("pool_available", 0) > 0:
                return
            old, self._pool = self._pool, self._new_pool()
        logger.warning("event database %s answers again: connection pool renewed", self._database)
        old.close(timeout=0)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def is_writer(self) -> bool:
        """True unless read-only or closed: every process may write the database."""
        return not self.read_only and not self._closed

    def close(self) -> None:
        """Close the pool (its connections)."""
        with self._pool_lock:
            if self._closed:
                return
            self._closed = True
            pool = self._pool
        pool.close()

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        role = "read-only" if self.read_only else "writer"
        return f"PostgresEventStore({self._database!r}, {role})"

    # -- writing -------------------------------------------------------------------------------

    def append(self, events: Sequence[Interaction]) -> int:
        """Store a batch in one statement and transaction (committed when this returns) and
        return its length. Events of an erased customer dated before the erasure are dropped."""
        for position, event in enumerate(events):
            if not isinstance(event, Interaction):
                raise InvalidEvent(
                    f"event {position} of the batch is a {type(event).__name__}, not an Interaction"
                )
        if not events:
            return 0
        columns: dict[str, list[Any]] = {c: [] for c in InteractionCols.ALL}
        for event in events:
            columns[InteractionCols.CUSTOMER_ID].append(event.customer_id)
            columns[InteractionCols.ITEM_ID].append(event.item_id)
            columns[InteractionCols.TYPE].append(event.type.value)
            columns[InteractionCols.TIMESTAMP].append(event.timestamp)
            columns[InteractionCols.CHANNEL].append(event.channel.value)
            columns[InteractionCols.SIZE].append(event.size)
            columns[InteractionCols.PRICE].append(event.price)
            columns[InteractionCols.STORE_ID].append(event.store_id)
            columns[InteractionCols.RETURN_REASON].append(
                event.return_reason.value if event.return_reason is not None else None
            )
            columns[InteractionCols.RECOMMENDATION_ID].append(event.recommendation_id)
            columns[InteractionCols.POSITION].append(event.position)
        self._require_writer()
        with self._connection("append") as conn:
            conn.execute(_INSERT, [columns[c] for c in InteractionCols.ALL])
        return len(events)

    def erase_customer(self, customer_id: str) -> None:
        """Record the erasure and delete the customer's events and consent, in one transaction."""
        customer_id = _customer(customer_id)
        self._require_writer()
        with self._connection("erase") as conn, conn.transaction():
            # No insert in flight while erasing: the ones before are deleted, later ones see it.
            # Waiting longer for the lock is a 503 (retry), not a request hanging on.
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{round(self.timeout_seconds * 1000)}ms")
                )
            )
            conn.execute("LOCK TABLE events IN SHARE MODE")
            conn.execute(
                "INSERT INTO erasures (customer_id, erased_at) VALUES (%s, %s) "
                "ON CONFLICT (customer_id) DO UPDATE "
                "SET erased_at = greatest(erasures.erased_at, excluded.erased_at)",
                (customer_id, datetime.now(UTC)),
            )
            conn.execute("DELETE FROM events WHERE customer_id = %s", (customer_id,))
            conn.execute("DELETE FROM consents WHERE customer_id = %s", (customer_id,))

    def record_consent(self, customer_id: str, personalization: bool) -> None:
        """Durably record a customer's personalization consent (the latest record wins)."""
        customer_id = _customer(customer_id)
        self._require_writer()
        with self._connection("consent") as conn:
            conn.execute(
                "INSERT INTO consents (customer_id, personalization, recorded_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (customer_id) DO UPDATE "
                "SET personalization = excluded.personalization, "
                "recorded_at = excluded.recorded_at",
                (customer_id, bool(personalization), datetime.now(UTC)),
            )

    def compact(self) -> int:
        """Delete the rows readers skip (an erased customer's events dated before the erasure
        that slipped in); return how many. Deleted space is reclaimed by autovacuum."""
        self._require_writer()
        with self._connection("compact") as conn:
            cursor = conn.execute(
                "DELETE FROM events e USING erasures r "
                "WHERE r.customer_id = e.customer_id AND r.erased_at > e.event_time"
            )
            removed = max(cursor.rowcount, 0)
        if removed:
            logger.info("event database: compaction removed %d erased events", removed)
        return removed

    # -- reading -------------------------------------------------------------------------------

    def consents(self) -> dict[str, bool]:
        """The latest consent recorded per customer."""
        with self._connection("read") as conn:
            rows = conn.execute("SELECT customer_id, personalization FROM consents").fetchall()
        return {str(customer): bool(flag) for customer, flag in rows}

    def erased_customers(self) -> dict[str, datetime]:
        """Every erased customer with the latest time of erasure (UTC)."""
        with self._connection("read") as conn:
            rows = conn.execute("SELECT customer_id, erased_at FROM erasures").fetchall()
        return {str(customer): at.astimezone(UTC) for customer, at in rows}

    def iter_events(self, since: datetime | None = None) -> Iterator[Interaction]:
        """Every readable event in the order stored, streamed out with ``COPY … TO STDOUT``."""
        names = [COLUMNS[c] for c in InteractionCols.ALL]
        columns = sql.SQL(", ").join(sql.Identifier("e", n) for n in names)
        query, params = _select(columns, since)
        types = [
            {"event_time": "timestamptz", "price": "float8", "position": "int4"}.get(n, "text")
            for n in names
        ]
        with self._connection("read") as conn:
            statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(query)
            with conn.cursor() as cursor, cursor.copy(statement, params) as copy:
                copy.set_types(types)
                for row in copy.rows():
                    yield Interaction.model_validate(
                        {
                            c: v
                            for c, v in zip(InteractionCols.ALL, row, strict=True)
                            if v is not None
                        }
                    )

    def read_frame(self, since: datetime | None = None) -> pd.DataFrame:
        """The events as an ``interactions`` table (same columns and dtypes as the file log's),
        streamed out with ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` and parsed by Arrow block by
        block; the event time travels as microseconds since the epoch."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.csv as pacsv

        selected = [
            sql.SQL("(extract(epoch FROM e.event_time) * 1000000)::bigint")
            if c == InteractionCols.TIMESTAMP
            else sql.Identifier("e", COLUMNS[c])
            for c in InteractionCols.ALL
        ]
        query, params = _select(sql.SQL(", ").join(selected), since)
        arrow_types = {c: pa.string() for c in InteractionCols.ALL}
        arrow_types[InteractionCols.TIMESTAMP] = pa.int64()
        arrow_types[InteractionCols.PRICE] = pa.float64()
        arrow_types[InteractionCols.POSITION] = pa.int32()
        batches: list[pa.RecordBatch] = []
        schema = pa.schema([(c, arrow_types[c]) for c in InteractionCols.ALL])
        with self._connection("read") as conn:
            statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
            with conn.cursor() as cursor, cursor.copy(statement, params) as copy:
                stream = _CopyStream(iter(copy))
                if stream.peek():
                    reader = pacsv.open_csv(
                        stream,
                        read_options=pacsv.ReadOptions(
                            column_names=list(InteractionCols.ALL), block_size=_CSV_BLOCK_BYTES
                        ),
                        parse_options=pacsv.ParseOptions(newlines_in_values=True),
                        convert_options=pacsv.ConvertOptions(
                            column_types=arrow_types,
                            null_values=[""],
                            strings_can_be_null=True,
                            quoted_strings_can_be_null=False,
                        ),
                    )
                    batches.extend(reader)
        table = pa.Table.from_batches(batches, schema=schema)
        data: dict[str, Any] = {}
        for name in InteractionCols.ALL:
            column = table.column(name)
            if name == InteractionCols.TIMESTAMP:
                micros = column.to_numpy(zero_copy_only=False).astype("int64")
                data[name] = pd.to_datetime(micros, unit="us", utc=True).astype(
                    "datetime64[ns, UTC]"
                )
            elif name == InteractionCols.PRICE:
                data[name] = pd.Series(column.to_numpy(zero_copy_only=False), dtype="float64")
            elif name == InteractionCols.POSITION:
                data[name] = pd.Series(column.to_pandas(), dtype="float64").astype("Int64")
            else:
                data[name] = pd.array(column.to_pandas(), dtype="string")
        frame = pd.DataFrame(data)[list(InteractionCols.ALL)]
        frame.attrs["skipped_lines"] = 0  # the table's types and constraints admit no bad row
        return frame

    # -- plumbing ------------------------------------------------------------------------------

    def _require_writer(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"event database {self._database}: the store is closed")
        if self.read_only:
            raise StoreUnavailable(f"event database {self._database} was opened read-only")

    def _connection(self, operation: str = "connect") -> _PooledConnection:
        if self._closed:
            raise StoreUnavailable(f"event database {self._database}: the store is closed")
        return _PooledConnection(self, operation)

    def _ensure_schema(self, conn: psycopg.Connection) -> None:
        if self._schema_checked:
            return
        with self._schema_lock:
            if not self._schema_checked:
                check_schema(conn)
                self._schema_checked = True


class _PooledConnection:
    """A pool connection for one operation: the schema checked once, and every connection
    failure (server down, pool timeout, connection lost, lock timeout, any database error) raised
    as :class:`StoreUnavailable` — a missing table as :class:`SchemaOutdated`."""

    def __init__(self, store: PostgresEventStore, operation: str) -> None:
        self.store = store
        self.operation = operation
        self._context: Any = None

    def __enter__(self) -> psycopg.Connection:
        breaker = self.store._breaker
        admission = breaker.admit()
        if admission is Admission.OPEN:
            raise StoreUnavailable(
                f"event database {self.store._database}: {self.operation}: unreachable (the last "
                f"attempt failed; retried within {breaker.retry_interval:g} s)"
            )
        if admission is Admission.PROBE:
            self.store._recover()
        self._context = self.store._pool.connection()
        try:
            conn: psycopg.Connection = self._context.__enter__()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if breaker.failed():
                logger.warning("event database %s unreachable: %s", self.store._database, exc)
            raise StoreUnavailable(
                f"event database {self.store._database}: {self.operation}: no connection within "
                f"{self.store.timeout_seconds:g} s: {exc}"
            ) from exc
        try:
            self.store._ensure_schema(conn)
        except BaseException as exc:
            self._exit_context(type(exc), exc, exc.__traceback__)
            raise
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit_context(exc_type, exc, tb)

    def _exit_context(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        breaker = self.store._breaker
        try:
            self._context.__exit__(exc_type, exc, tb)
        except (psycopg.OperationalError, psycopg.InterfaceError) as failure:
            breaker.failed()
            raise StoreUnavailable(
                f"event database {self.store._database}: {self.operation} failed: {failure}"
            ) from failure
        if isinstance(exc, psycopg.errors.UndefinedTable):
            raise SchemaOutdated(
                f"event database {self.store._database}: {exc}: run `lookbook db upgrade`"
            ) from exc
        if isinstance(exc, psycopg.Error) and _server_gone(exc):
            breaker.failed()  # the connection was lost during the operation
        elif breaker.succeeded() is not None:
            logger.warning("event database %s reachable again", self.store._database)
        if isinstance(exc, psycopg.Error):
            if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                logger.error("event database %s: %s: %r", self.store._database, self.operation, exc)
            raise StoreUnavailable(
                f"event database {self.store._database}: {self.operation} failed: {exc}"
            ) from exc


def _server_gone(exc: psycopg.Error) -> bool:
    """True when ``exc`` says the server cannot be reached (a connection failure or shutdown),
    not that a statement failed on a live server (a lock timeout, a constraint)."""
    if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in {"57P01", "57P02", "57P03"}


class _CopyStream:
    """A read-only file over the blocks of a ``COPY … TO STDOUT`` (for Arrow's CSV reader)."""

    def __init__(self, blocks: Iterator[Any]) -> None:
        self._blocks = blocks
        self._buffer = bytearray()
        self._done = False
        self.closed = False

    def _fill(self, size: int) -> None:
        while not self._done and (size < 0 or len(self._buffer) < size):
            try:
                self._buffer += next(self._blocks)
            except StopIteration:
                self._done = True

    def peek(self) -> bool:
        """True when the stream holds at least one byte."""
        self._fill(1)
        return bool(self._buffer)

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        if size < 0 or size >= len(self._buffer):
            out = bytes(self._buffer)
            self._buffer.clear()
        else:
            out = bytes(self._buffer[:size])
            del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _customer(customer_id: str) -> str:
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise ValueError(f"customer_id must be a non-empty string, got {customer_id!r}")
    return customer_id.strip()


def describe_database_url(database_url: str) -> str:
    """The URL fit for logs and manifests: ``postgresql://user@host:port/name``, no password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "postgresql://<invalid URL>"
    host, port = info.get("host", "localhost"), info.get("port", 5432)
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{info.get('dbname', '')}"
