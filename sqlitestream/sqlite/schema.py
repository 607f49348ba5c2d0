"""Schema versions: create a new store from ``schema.sql``, upgrade an older one step by step,
refuse a newer one or a file that is not a sqlitestream store, all before writing anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apsw

from sqlitestream._core.sql import schema_section
from sqlitestream.errors import SchemaVersionError, StorageError
from sqlitestream.sqlite.connection import translate_os_error, translating
from sqlitestream.sqlite.transaction import Writer

APPLICATION_ID = 0x53715374  # "SqSt": marks the file as a sqlitestream store
SCHEMA_VERSION = 5


def schema_sql() -> str:
    """The canonical schema, ``schema.sql`` beside this module (shipped in the wheel)."""
    try:
        return (Path(__file__).parent / "schema.sql").read_text(encoding="utf-8")
    except OSError as exc:
        raise translate_os_error(exc, "read the schema (schema.sql)") from exc


_FEED_STEP = (
    # The events table again, with position; existing events take positions in the order
    # closest to their commit order that is left: by time, but never ahead of an earlier event
    # of their own session (a caller may have given an event an older timestamp).
    """CREATE TABLE events_v4 (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    id         TEXT NOT NULL,
    type       TEXT NOT NULL,
    run_id     TEXT,
    ts         INTEGER NOT NULL,
    data       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 1),
    PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID""",
    "INSERT INTO events_v4 (session_id, seq, id, type, run_id, ts, data, metadata, position) "
    "SELECT session_id, seq, id, type, run_id, ts, data, metadata, "
    "row_number() OVER (ORDER BY reached, session_id, seq) FROM ("
    "SELECT *, max(ts) OVER (PARTITION BY session_id ORDER BY seq) AS reached FROM events)",
    "DROP TABLE events",
    "ALTER TABLE events_v4 RENAME TO events",
    "CREATE UNIQUE INDEX events_by_id ON events (id)",
    "CREATE UNIQUE INDEX events_by_position ON events (position)",
    """CREATE TABLE feed (
    only_row      INTEGER PRIMARY KEY CHECK (only_row = 1),
    last_position INTEGER NOT NULL CHECK (last_position >= 0)
) STRICT""",
    "INSERT INTO feed (only_row, last_position) SELECT 1, ifnull(max(position), 0) FROM events",
    """CREATE TABLE cursors (
    name       TEXT PRIMARY KEY NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 0),
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID""",
)

UPGRADES: dict[int, tuple[str, ...]] = {
    # version N -> N+1; each step runs in one transaction with the version stamp.
    1: ("CREATE INDEX runs_running ON runs (session_id, started_at) WHERE status = 'running'",),
    2: schema_section(schema_sql(), "-- Added in version 3"),
    3: _FEED_STEP,
    4: schema_section(schema_sql(), "-- Added in version 5"),
}
"""Upgrade steps by the version they start from."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100


@dataclass(frozen=True)
class FileState:
    application_id: int
    user_version: int
    object_count: int

    @property
    def is_blank(self) -> bool:
        """A new or empty SQLite file that we may turn into a store."""
        return self.application_id == 0 and self.user_version == 0 and self.object_count == 0


def sniff_file(path: Path) -> None:
    """Refuse a file that is not SQLite at all, without opening it through SQLite."""
    if not path.exists():
        return
    if path.is_dir():
        raise StorageError(f"{str(path)!r} is a directory, not a store file")
    try:
        with path.open("rb") as handle:
            header = handle.read(_HEADER_SIZE)
    except OSError as exc:
        raise translate_os_error(exc, f"open {str(path)!r}") from exc
    if not header:
        return  # an empty file: a new store
    if not header.startswith(_SQLITE_MAGIC[: len(header)]) or len(header) < _HEADER_SIZE:
        raise StorageError(
            f"{str(path)!r} is not a sqlitestream store: it is not a SQLite database "
            "(the file was left unchanged)"
        )


_STATE = (
    "SELECT (SELECT application_id FROM pragma_application_id), "
    "(SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_schema)"
)
"""One statement, so one snapshot: read one by one, another process creating the store could
commit in between, and a new store would look like another application's file."""


def read_state(conn: apsw.Connection, path: str) -> FileState:
    with translating(f"read the schema of {path!r}"):
        application_id, user_version, object_count = conn.execute(_STATE).fetchall()[0]
        return FileState(
            application_id=int(application_id),  # type: ignore[arg-type]
            user_version=int(user_version),  # type: ignore[arg-type]
            object_count=int(object_count),  # type: ignore[arg-type]
        )


def check_state(state: FileState, path: str, *, readonly: bool) -> None:
    """Raise unless the file is a store we can use as it is, or may create or upgrade."""
    if state.is_blank:
        if readonly:
            raise StorageError(f"{path!r} is empty: not a sqlitestream store yet")
        return
    if state.application_id != APPLICATION_ID:
        raise StorageError(
            f"{path!r} is not a sqlitestream store: a SQLite database of another application "
            f"(application_id={state.application_id:#x}); the file was left unchanged"
        )
    if state.user_version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path!r} has schema version {state.user_version}, newer than this sqlitestream "
            f"supports ({SCHEMA_VERSION}); upgrade the sqlitestream package. The file was left unchanged"
        )
    if state.user_version < 1:
        raise SchemaVersionError(f"{path!r} has an invalid schema version {state.user_version}")
    if readonly and state.user_version < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path!r} has schema version {state.user_version}; this sqlitestream needs "
            f"{SCHEMA_VERSION}. Open it writable once (or run `sqlitestream migrate`) to upgrade"
        )


def pending_upgrades(version: int) -> list[int]:
    """The versions an upgrade from ``version`` steps through, e.g. ``[1]`` for 1 -> 2."""
    return list(range(version, SCHEMA_VERSION)) if version >= 1 else []


def create_or_upgrade(writer: Writer, path: str) -> int:
    """Bring the store to ``SCHEMA_VERSION``; returns the version it started from (0: new).

    The state is re-read inside the write transaction, so two processes opening a new file at
    once create the schema exactly once.
    """
    with writer.transaction(f"create or upgrade the schema of {path!r}") as conn:
        state = read_state(conn, path)
        check_state(state, path, readonly=False)
        if state.is_blank:
            conn.execute(schema_sql())
            conn.pragma("application_id", APPLICATION_ID)
        else:
            for version in pending_upgrades(state.user_version):
                for statement in UPGRADES[version]:
                    conn.execute(statement)
        conn.pragma("user_version", SCHEMA_VERSION)
    return 0 if state.is_blank else state.user_version
