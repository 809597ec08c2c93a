"""Versioned migrations of the PostgreSQL event store's schema (``lookbook db upgrade``).

A migration is a plain SQL file ``feature_store/migrations/NNNN_name.sql``, numbered from 0001
without gaps. The ``schema_version`` table lists the versions applied. :func:`upgrade` applies the
pending ones in order, each in one transaction with its ``schema_version`` row, while holding a
PostgreSQL advisory lock, so replicas (or migration jobs) starting together apply each migration
exactly once: the second waits for the first and then finds nothing to do.

:func:`check_schema` is what a store runs before it uses the database: a schema older than
:func:`expected_version` raises :class:`~feature_store.errors.SchemaOutdated` naming the command
to run; a newer one (a rollback of the code) is accepted with a warning — migrations only add.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg

from .errors import DataFormatError, SchemaOutdated, StoreUnavailable

logger = logging.getLogger("lookbook.db")

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: Key of the advisory lock held while migrating (any constant shared by every release).
ADVISORY_LOCK_KEY: Final = 7_212_651_203
CONNECT_TIMEOUT_SECONDS: Final = 10


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, in order; numbered 1, 2, … without gaps or repeats."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise DataFormatError(
                "a migration file must be named NNNN_lowercase_name.sql", file=str(path)
            )
        found.append(Migration(int(match.group(1)), match.group(2), path))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise DataFormatError(
                f"migration {migration.version} found where {expected} was expected "
                "(numbers start at 1, without gaps or repeats)",
                file=str(migration.path),
            )
    return found


def expected_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The schema version this release needs: its last migration."""
    found = migrations(directory)
    return found[-1].version if found else 0


def current_version(conn: psycopg.Connection | str) -> int:
    """The highest version applied to the database (a connection or a URL; 0: none yet)."""
    if isinstance(conn, str):
        with _connect(conn) as own:
            return current_version(own)
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row is not None else 0


def check_schema(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> int:
    """The database's schema version; :class:`SchemaOutdated` when older than this release's."""
    expected = expected_version(directory)
    current = current_version(conn)
    if current < expected:
        raise SchemaOutdated(
            f"the event database's schema is at version {current}, this release needs "
            f"{expected}: run `lookbook db upgrade` (with --database-url or LOOKBOOK_DATABASE_URL)"
        )
    if current > expected:
        logger.warning(
            "the event database's schema is at version %d, newer than this release's %d "
            "(migrations only add, so it is used as is)",
            current,
            expected,
        )
    return current


def upgrade(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the pending migrations (each in one transaction, under the advisory lock) and return
    those applied. Raises :class:`StoreUnavailable` when the database cannot be reached."""
    conn = _connect(database_url)
    applied: list[Migration] = []
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = current_version(conn)
            for migration in migrations(directory):
                if migration.version <= current:
                    continue
                logger.info("applying migration %04d_%s", migration.version, migration.name)
                with conn.transaction():
                    conn.execute(migration.sql().encode("utf-8"))
                    conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied


def _connect(database_url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot connect to the event database: {exc}") from exc
