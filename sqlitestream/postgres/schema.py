"""PostgreSQL schema versions: create a store's schema from ``schema.sql``, upgrade an
older one step by step, refuse a newer one or a schema whose tables are not ours, all in one
transaction that changes nothing when it refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlitestream._core.sql import schema_section
from sqlitestream._core.validate import describe
from sqlitestream.errors import SchemaVersionError, StorageError, ValidationError

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection

SCHEMA_VERSION = 3


def schema_sql() -> str:
    """The canonical schema, ``schema.sql`` beside this module (shipped in the wheel)."""
    return (Path(__file__).parent / "schema.sql").read_text(encoding="utf-8")


_FEED_STEP = (
    # Existing events take positions in the order closest to their commit order that is left:
    # by time, but never ahead of an earlier event of their own session.
    "ALTER TABLE events ADD COLUMN position bigint",
    "UPDATE events SET position = ranked.position FROM ("
    "SELECT session_id, seq, row_number() OVER (ORDER BY reached, session_id, seq) AS position FROM ("
    "SELECT session_id, seq, max(ts) OVER (PARTITION BY session_id ORDER BY seq) AS reached "
    "FROM events) AS reaching) AS ranked "
    "WHERE events.session_id = ranked.session_id AND events.seq = ranked.seq",
    "ALTER TABLE events ALTER COLUMN position SET NOT NULL",
    "ALTER TABLE events ADD CHECK (position >= 1)",
    "CREATE UNIQUE INDEX events_by_position ON events (position)",
    "CREATE TABLE feed (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
    "last_position bigint NOT NULL CHECK (last_position >= 0))",
    "INSERT INTO feed (last_position) SELECT coalesce(max(position), 0) FROM events",
    'CREATE TABLE cursors (name text COLLATE "C" PRIMARY KEY, '
    "position bigint NOT NULL CHECK (position >= 0), updated_at timestamptz NOT NULL)",
)

UPGRADES: dict[int, tuple[str, ...]] = {
    1: _FEED_STEP,
    2: schema_section(schema_sql(), "-- Added in version 3"),
}
"""Upgrade steps by the version they start from (N -> N+1), run with search_path set to the
store's schema, in the same transaction as the new version stamp."""

TABLES = (
    "sessions",
    "runs",
    "streams",
    "events",
    "feed",
    "cursors",
    "schema_version",
    "ds_streams",
    "ds_chunks",
    "ds_producers",
)

MAX_SCHEMA_NAME = 48
"""Schema names are short enough that the notification channel ``sqlitestream:<schema>`` fits
PostgreSQL's 63-byte identifier limit."""
_SCHEMA_NAME = re.compile(rf"[a-z_][a-z0-9_]{{0,{MAX_SCHEMA_NAME - 1}}}")


def check_schema_name(value: object) -> str:
    """A schema name safe to quote into SQL: lowercase letters, digits and ``_``, 1 to
    ``MAX_SCHEMA_NAME`` chars, not starting with a digit or ``pg_`` (reserved by PostgreSQL)."""
    if not isinstance(value, str) or not _SCHEMA_NAME.fullmatch(value) or value.startswith("pg_"):
        raise ValidationError(
            f"schema must be 1-{MAX_SCHEMA_NAME} lowercase letters, digits or '_', not starting "
            f"with a digit or 'pg_', got {describe(value)}"
        )
    return value


def quoted(schema: str) -> str:
    """The schema as an SQL identifier (``check_schema_name`` already ruled out quotes)."""
    return f'"{schema}"'


def read_version(conn: Connection, schema: str) -> int | None:
    """The stamped version, or None when the schema has no version table yet."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{quoted(schema)}.schema_version",)).fetchone()
    if row is None or row[0] is None:
        return None
    row = conn.execute(f"SELECT version FROM {quoted(schema)}.schema_version").fetchone()
    if row is None:
        raise SchemaVersionError(f"schema {schema!r} has an empty schema_version table")
    return int(row[0])


def check_version(version: int, schema: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"schema {schema!r} has sqlitestream schema version {version}, newer than this "
            f"sqlitestream supports ({SCHEMA_VERSION}); upgrade the sqlitestream package. "
            "Nothing was changed"
        )
    if version < 1:
        raise SchemaVersionError(f"schema {schema!r} has an invalid schema version {version}")


def _foreign_tables(conn: Connection, schema: str) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name = ANY(%s) ORDER BY table_name",
        (schema, list(TABLES)),
    ).fetchall()
    return [str(row[0]) for row in rows]


def lock_name(schema: str) -> str:
    """The advisory lock that serialises creating and upgrading ``schema``."""
    return f"sqlitestream:{schema}"


def check_usable(conn: Connection, schema: str, *, readonly: bool, create: bool) -> bool:
    """Whether the schema must be created or upgraded (a quick read, no lock).

    Raises ``SchemaVersionError`` for a version this code cannot use (newer; or older when
    ``readonly``), and ``StorageError`` when there is no store and ``readonly`` or not
    ``create``.
    """
    version = read_version(conn, schema)
    if version is None:
        if readonly or not create:
            raise StorageError(
                f"no sqlitestream store in schema {schema!r} (nothing was created; "
                "`sqlitestream --db URL init` creates one)"
            )
        return True
    check_version(version, schema)
    if readonly and version < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"schema {schema!r} has sqlitestream schema version {version}; this sqlitestream "
            f"needs {SCHEMA_VERSION}. Open it writable once (or run `sqlitestream migrate`)"
        )
    return version < SCHEMA_VERSION


def pending_upgrades(version: int) -> list[int]:
    """The versions an upgrade from ``version`` steps through (empty when current)."""
    return list(range(version, SCHEMA_VERSION)) if version >= 1 else []


def create_or_upgrade(conn: Connection, schema: str) -> int | None:
    """Bring ``schema`` to ``SCHEMA_VERSION`` inside the caller's transaction; the version it
    started from (0: created), or None if another opener got there first.

    Run it under the advisory lock :func:`lock_name` names, so that concurrent openers
    (several app nodes starting at once) create or upgrade the schema exactly once.
    """
    version = read_version(conn, schema)
    if version is not None:
        check_version(version, schema)
        if version == SCHEMA_VERSION:
            return None
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
    conn.execute(f"SET LOCAL search_path TO {quoted(schema)}")
    if version is None:
        clashing = _foreign_tables(conn, schema)
        if clashing:
            raise StorageError(
                f"schema {schema!r} already has tables named {', '.join(clashing)} that are not "
                "a sqlitestream store (no schema_version stamp); choose another schema. "
                "Nothing was changed"
            )
        conn.execute(schema_sql())
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        return 0
    for step in pending_upgrades(version):
        for statement in UPGRADES[step]:
            conn.execute(statement)
    conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    return version
