"""The SQLite half of the admin contract (:class:`sqlitestream.admin.AdminStore`): listing the
log's sessions, the store's facts, the integrity check and importing one session.

Each function takes the store's connection accessors explicitly (``fetch`` runs one query on a
read connection, ``read`` lends a read connection for several queries in one snapshot,
``write`` lends the writer inside a write transaction), so this module needs nothing else of
the store; :class:`~sqlitestream.SQLiteSessionStore` delegates its admin methods here.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import apsw

from sqlitestream._core.rows import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    SESSION_COLUMNS,
    RowCodec,
)
from sqlitestream._core.sql import upsert
from sqlitestream._core.transfer import plan_event_import
from sqlitestream._core.validate import check_id, describe
from sqlitestream.admin import (
    CheckFinding,
    CheckReport,
    ProgressCallback,
    SessionImport,
    StoreInfo,
    StreamInfo,
    check_session_import,
    sequence_findings,
)
from sqlitestream.errors import SessionNotFoundError, ValidationError
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    Session,
    StoredEvent,
    from_micros,
    from_micros_many,
    to_micros,
    with_sequence,
)
from sqlitestream.sqlite.connection import JOURNAL_SIZE_LIMIT, translate_os_error
from sqlitestream.sqlite.feed import LAST_POSITION

__all__ = [
    "Fetch",
    "Read",
    "check_integrity",
    "import_session",
    "list_streams",
    "store_info",
    "wal_findings",
    "wal_holds_frames",
]

Fetch = Callable[[str, str, tuple[Any, ...]], list[Any]]
"""``fetch(action, sql, bindings)``: every row of one query on a read connection."""
Read = Callable[[str], AbstractContextManager[apsw.Connection]]
"""``read(action)``: a read connection (errors translated) for queries in one snapshot."""

_ROWS = RowCodec(to_micros, from_micros, from_micros_many)

_KNOWN_TYPES = json.dumps([member.value for member in EventType])

_STREAMS_ALL = """
SELECT session_id, sum(n), max(latest), min(low), sum(size), max(last_ts) FROM (
    SELECT session_id, count(*) AS n, 0 AS latest, min(seq) AS low,
           sum(octet_length(data) + octet_length(metadata)) AS size, max(ts) AS last_ts
    FROM events GROUP BY session_id
    UNION ALL
    SELECT session_id, 0, latest_seq, NULL, 0, NULL FROM streams
) GROUP BY session_id ORDER BY session_id
"""
_STREAMS_SOME = """
SELECT wanted.value,
       (SELECT count(*) FROM events WHERE session_id = wanted.value),
       coalesce((SELECT latest_seq FROM streams WHERE session_id = wanted.value), 0),
       (SELECT min(seq) FROM events WHERE session_id = wanted.value),
       (SELECT ifnull(sum(octet_length(data) + octet_length(metadata)), 0) FROM events
        WHERE session_id = wanted.value),
       (SELECT max(ts) FROM events WHERE session_id = wanted.value)
FROM (SELECT DISTINCT value FROM json_each(?)) AS wanted ORDER BY wanted.value
"""
_COUNTS = (
    "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM runs), "
    "(SELECT count(*) FROM events), (SELECT count(*) FROM streams)"
)
_CHECKED_SESSIONS = "SELECT session_id FROM streams UNION SELECT session_id FROM events"
# One statement, so one snapshot: a concurrent append never looks like a mismatch.
_SESSION_FACTS = (
    "SELECT (SELECT latest_seq FROM streams WHERE session_id = ?1), count(*), min(seq), max(seq) "
    "FROM events WHERE session_id = ?1"
)
_FIRST_GAP = (
    "SELECT e.seq + 1 FROM events AS e WHERE e.session_id = ?1 AND e.seq < ?2 AND NOT EXISTS "
    "(SELECT 1 FROM events WHERE session_id = ?1 AND seq = e.seq + 1) ORDER BY e.seq LIMIT 1"
)
_DUPLICATE_IDS = "SELECT id, count(*) FROM events GROUP BY id HAVING count(*) > 1 LIMIT 100"
_BAD_TYPES = (
    "SELECT session_id, seq, type FROM events WHERE type NOT IN (SELECT value FROM json_each(?)) LIMIT 100"
)
_BAD_JSON = (
    "SELECT session_id, seq FROM events WHERE NOT (json_valid(data) AND json_type(data) = 'object' "
    "AND json_valid(metadata) AND json_type(metadata) = 'object') LIMIT 100"
)
_STORED_IDS = "SELECT id, session_id, seq FROM events WHERE id IN (SELECT value FROM json_each(?))"
_LATEST_SEQUENCE = "SELECT latest_seq FROM streams WHERE session_id = ?"
_FIRST_RETAINED = "SELECT min(seq) FROM events WHERE session_id = ?"
_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_LATEST = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET latest_seq = excluded.latest_seq"
)


def _all(conn: apsw.Connection, sql: str, bindings: tuple[Any, ...] = ()) -> list[Any]:
    return conn.execute(sql, bindings).fetchall()


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


_WAL_MAGIC = (0x377F0682, 0x377F0683)


def wal_holds_frames(wal_path: str) -> bool:
    """Whether the WAL file holds frames of its current generation: committed pages that a
    checkpoint may not have copied into the database file yet (a WAL that was emptied or
    restarted holds none). Reads the WAL header and the first frame header (see
    https://www.sqlite.org/fileformat.html#the_write_ahead_log); the WAL file carries no locks,
    so reading it cannot disturb this process's SQLite connections (the -shm file does, and is
    left alone)."""
    try:
        with open(wal_path, "rb") as wal:
            head = wal.read(32 + 24)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise translate_os_error(exc, "read the WAL file's header") from exc
    if len(head) < 32 + 24:
        return False
    magic, _, _, _, salt1, salt2 = struct.unpack(">6I", head[:24])
    frame_salts = struct.unpack(">2I", head[32 + 8 : 32 + 16])
    return magic in _WAL_MAGIC and frame_salts == (salt1, salt2)


def list_streams(fetch: Fetch, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
    """:meth:`AdminStore.list_streams`: one statement, so one snapshot."""
    if session_ids is None:
        rows = fetch("list the log's sessions", _STREAMS_ALL, ())
    else:
        if isinstance(session_ids, str) or not isinstance(session_ids, Iterable):
            raise ValidationError(f"session_ids must be a list of ids, got {describe(session_ids)}")
        wanted = [check_id(session_id, "session_ids[]") for session_id in session_ids]
        rows = fetch("list the log's sessions", _STREAMS_SOME, (json.dumps(wanted),))
    return [
        StreamInfo.of(
            session_id,
            latest=latest,
            count=count,
            lowest=lowest,
            size=int(size or 0),
            last_event_at=None if last_ts is None else from_micros(last_ts),
        )
        for session_id, count, latest, lowest, size, last_ts in rows
        if count or latest
    ]


def store_info(
    read: Read, *, path: str, in_memory: bool, synchronous: str, wal_pinned: bool | None
) -> StoreInfo:
    """:meth:`AdminStore.store_info` for the store file at ``path`` (``synchronous`` is the
    store object's level, a per-connection setting the file does not hold; ``wal_pinned`` what
    its writer last found, None for a store that does not write)."""
    with read("read the store's facts") as conn:
        # The counts come from one statement, so they agree with each other.
        rows = _all(conn, _COUNTS)
        version = int(conn.pragma("user_version"))
        journal_mode = str(conn.pragma("journal_mode"))
    sessions, runs, events, streams = rows[0]
    return StoreInfo(
        backend="sqlite",
        path=path,
        schema_version=version,
        sessions=sessions,
        runs=runs,
        events=events,
        streams=streams,
        file_bytes=None if in_memory else _file_size(path),
        wal_bytes=None if in_memory else _file_size(path + "-wal"),
        checkpoint_pending=None if in_memory else wal_holds_frames(path + "-wal"),
        wal_pinned=None if in_memory else wal_pinned,
        journal_mode=journal_mode.lower(),
        synchronous=synchronous,
    )


def wal_findings(path: str, wal_pinned: bool | None) -> list[CheckFinding]:
    """A ``large_wal`` finding when the WAL is past twice ``journal_size_limit``: the writers
    keep it under that (see checkpoint.py) unless a read transaction held open pins it."""
    wal_bytes = _file_size(path + "-wal")
    if wal_bytes <= 2 * JOURNAL_SIZE_LIMIT:
        return []
    if wal_pinned:
        cause = "this store's writer could not empty it: a read transaction is held open"
    else:
        cause = "a read transaction held open (by any connection or process) may be pinning it"
    return [
        CheckFinding(
            "large_wal",
            f"the WAL is {wal_bytes / 2**20:,.0f} MiB, over twice journal_size_limit "
            f"({JOURNAL_SIZE_LIMIT // 2**20} MiB); {cause}; it is emptied by the next writes once "
            "the reader finishes",
        )
    ]


def check_integrity(
    read: Read, on_progress: ProgressCallback | None = None, *, wal: list[CheckFinding] | None = None
) -> CheckReport:
    """:meth:`AdminStore.check_integrity`, with SQLite's ``PRAGMA integrity_check`` and
    ``PRAGMA foreign_key_check`` as the engine's own checks; ``wal`` the findings about the
    WAL file (:func:`wal_findings`), reported first."""
    findings: list[CheckFinding] = list(wal or ())
    with read("check the store") as conn:
        for (message,) in _all(conn, "PRAGMA integrity_check"):
            if message != "ok":
                findings.append(CheckFinding("integrity", str(message)))
        for table, rowid, parent, _ in _all(conn, "PRAGMA foreign_key_check"):
            findings.append(
                CheckFinding("foreign_key", f"{table} row {rowid} refers to a missing {parent} row")
            )
        for event_id, count in _all(conn, _DUPLICATE_IDS):
            findings.append(CheckFinding("duplicate_id", f"event id {event_id!r} is stored {count} times"))
        for session_id, seq, type_ in _all(conn, _BAD_TYPES, (_KNOWN_TYPES,)):
            findings.append(CheckFinding("bad_type", f"event {seq} has unknown type {type_!r}", session_id))
        for session_id, seq in _all(conn, _BAD_JSON):
            findings.append(
                CheckFinding(
                    "bad_json", f"event {seq} has data or metadata that is not a JSON object", session_id
                )
            )
        sessions = [row[0] for row in _all(conn, _CHECKED_SESSIONS)]
    events = 0
    for done, session_id in enumerate(sessions, 1):
        with read("check a session") as conn:
            latest, count, low, high = _all(conn, _SESSION_FACTS, (session_id,))[0]
            gap = None
            if count and high - low + 1 != count:
                gap_rows = _all(conn, _FIRST_GAP, (session_id, high))
                gap = gap_rows[0][0] if gap_rows else None
        events += count
        findings.extend(sequence_findings(session_id, latest, count, low, high, gap))
        if on_progress is not None:
            on_progress(done, len(sessions))
    return CheckReport(tuple(findings), sessions_checked=len(sessions), events_checked=events)


def import_session(
    write: Read,
    max_event_bytes: int,
    session_id: str,
    *,
    session: Session | None = None,
    runs: Sequence[Run] = (),
    events: Sequence[Event] = (),
    first_sequence: int | None = None,
) -> SessionImport:
    """:meth:`AdminStore.import_session` in one write transaction (``write(action)`` lends the
    writer inside it). Waking the session's waiters is the caller's: it holds the wake hub."""
    session_id, ordered = check_session_import(
        session_id, session, runs, events, max_event_bytes, first_sequence
    )
    session_outcome = None
    runs_outcome: list[str] = []
    new: list[StoredEvent] = []
    skipped = 0
    with write("import a session") as conn:
        if session is not None:
            session_outcome = _put(conn, "sessions", SESSION_COLUMNS, _ROWS.session_row(session))
        if runs and not _all(conn, "SELECT 1 FROM sessions WHERE id = ?", (session_id,)):
            raise SessionNotFoundError(session_id)
        for run in runs:
            runs_outcome.append(_put(conn, "runs", RUN_COLUMNS, _ROWS.run_row(run)))
        if ordered or first_sequence is not None:
            latest_rows = _all(conn, _LATEST_SEQUENCE, (session_id,))
            latest = int(latest_rows[0][0]) if latest_rows else 0
            stored = {
                event_id: (owner, seq)
                for event_id, owner, seq in _all(
                    conn, _STORED_IDS, (json.dumps([event.id for event in ordered]),)
                )
            }
            first_retained = _all(conn, _FIRST_RETAINED, (session_id,))[0][0]
            plan = plan_event_import(
                session_id,
                ordered,
                latest,
                stored,
                first_retained=first_retained,
                first_sequence=first_sequence,
            )
            skipped = plan.skipped
            if plan.new:
                last = int(_all(conn, LAST_POSITION, ())[0][0])
                new = [
                    with_sequence(event, event.sequence_number or 0, last + n)
                    for n, event in enumerate(plan.new, 1)
                ]
                conn.executemany(
                    _INSERT_EVENT,
                    [_ROWS.event_row(event, event.sequence_number, event.position) for event in new],
                )
            if plan.latest != latest:
                conn.execute(_SET_LATEST, (session_id, plan.latest))
    return SessionImport.counted(session_id, session_outcome, runs_outcome, len(new), skipped)


def _put(conn: apsw.Connection, table: str, columns: str, row: tuple[Any, ...]) -> str:
    """Insert or replace a record by id; 'added', 'updated' or 'unchanged'."""
    stored = _all(conn, f"SELECT {columns} FROM {table} WHERE id = ?", (row[0],))
    if stored and tuple(stored[0]) == row:
        return "unchanged"
    conn.execute(upsert(table, columns, "?"), row)
    return "updated" if stored else "added"
