"""The PostgreSQL half of the admin contract (:class:`sqlitestream.admin.AdminStore`):
listing the log's sessions, the store's facts, the integrity check and importing one session.

Each function takes the store's statement runners explicitly (``fetch`` runs one query outside
a transaction, ``transact`` runs work in one transaction with the store's retries) and its
schema name, so this module needs nothing else of the store;
:class:`~sqlitestream.PostgresSessionStore` delegates its admin methods here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

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
from sqlitestream.models import Event, EventType, Run, Session, StoredEvent, with_sequence
from sqlitestream.postgres.listener import payload
from sqlitestream.postgres.rows import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    SESSION_COLUMNS,
    UNNEST_EVENTS,
    event_columns,
    event_values,
    run_row,
    session_row,
    utc,
)
from sqlitestream.postgres.schema import quoted

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection

__all__ = [
    "Fetch",
    "Transact",
    "check_integrity",
    "import_session",
    "list_streams",
    "schema_version",
    "store_info",
]

T = TypeVar("T")

Fetch = Callable[[str, str, Sequence[Any]], list[Any]]
"""``fetch(action, sql, params)``: every row of one statement (its own snapshot)."""


class Transact(Protocol):
    """``transact(action, work)``: ``work(conn)`` inside one transaction, its result returned."""

    def __call__(self, action: str, work: Callable[[Connection], T], /) -> T: ...


_KNOWN_TYPES = [member.value for member in EventType]


_SIZE = "coalesce(sum(octet_length(data) + octet_length(metadata)), 0)::bigint"
"""The encoded bytes of a group of events' data and metadata (the unit of max_event_bytes)."""


def _table(schema: str, name: str) -> str:
    return f"{quoted(schema)}.{name}"


def list_streams(fetch: Fetch, schema: str, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
    """:meth:`AdminStore.list_streams` (ids in byte order): one statement, so one snapshot."""
    events, streams = _table(schema, "events"), _table(schema, "streams")
    if session_ids is None:
        rows = fetch(
            "list the log's sessions",
            "SELECT session_id, sum(n)::bigint, max(latest)::bigint, min(low), sum(size)::bigint, "
            "max(last_ts) FROM ("
            f"SELECT session_id, count(*) AS n, 0 AS latest, min(seq) AS low, {_SIZE} AS size, "
            f"max(ts) AS last_ts FROM {events} GROUP BY session_id UNION ALL "
            f"SELECT session_id, 0, latest_seq, NULL, 0, NULL FROM {streams}"
            ") AS u GROUP BY session_id ORDER BY session_id",
            (),
        )
    else:
        if isinstance(session_ids, str) or not isinstance(session_ids, Iterable):
            raise ValidationError(f"session_ids must be a list of ids, got {describe(session_ids)}")
        wanted = [check_id(session_id, "session_ids[]") for session_id in session_ids]
        rows = fetch(
            "list the log's sessions",
            "SELECT w.id, "
            f"(SELECT count(*) FROM {events} WHERE session_id = w.id), "
            f"coalesce((SELECT latest_seq FROM {streams} WHERE session_id = w.id), 0), "
            f"(SELECT min(seq) FROM {events} WHERE session_id = w.id), "
            f"(SELECT {_SIZE} FROM {events} WHERE session_id = w.id), "
            f"(SELECT max(ts) FROM {events} WHERE session_id = w.id) "
            'FROM (SELECT DISTINCT unnest(%s::text[]) COLLATE "C" AS id) AS w ORDER BY w.id',
            (wanted,),
        )
    return [
        StreamInfo.of(
            session_id,
            latest=int(latest),
            count=int(count),
            lowest=None if lowest is None else int(lowest),
            size=int(size or 0),
            last_event_at=None if last_ts is None else utc(last_ts),
        )
        for session_id, count, latest, lowest, size, last_ts in rows
        if count or latest
    ]


def schema_version(fetch: Fetch, schema: str) -> int:
    """The schema version stamped in the store's schema."""
    ((version,),) = fetch(
        "read the schema version", f"SELECT version FROM {_table(schema, 'schema_version')}", ()
    )
    return int(version)


def store_info(fetch: Fetch, schema: str, *, path: str, dsn: str) -> StoreInfo:
    """:meth:`AdminStore.store_info` with the server's version and ``synchronous_commit``
    and the size of the store's tables; ``path`` and ``dsn`` are the store's, password-free."""
    tables = ("sessions", "runs", "events", "streams")
    sizes = " + ".join("pg_total_relation_size(%s)" for _ in tables)
    (row,) = fetch(
        "read the store's facts",
        "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
        f"(SELECT version FROM {_table(schema, 'schema_version')}), ({sizes})::bigint, "
        + ", ".join(f"(SELECT count(*) FROM {_table(schema, name)})" for name in tables),
        [_table(schema, name) for name in tables],
    )
    version, synchronous, stamped, size, sessions, runs, events, streams = row
    return StoreInfo(
        backend="postgres",
        path=path,
        schema_version=int(stamped),
        sessions=int(sessions),
        runs=int(runs),
        events=int(events),
        streams=int(streams),
        dsn=dsn,
        schema=schema,
        server_version=str(version),
        synchronous_commit=str(synchronous),
        table_bytes=int(size),
    )


def check_integrity(
    fetch: Fetch, transact: Transact, schema: str, on_progress: ProgressCallback | None = None
) -> CheckReport:
    """:meth:`AdminStore.check_integrity`: the log's invariants (PostgreSQL checks its own
    pages; ``amcheck`` is the tool for that), each session in one statement (one snapshot)."""
    events, streams = _table(schema, "events"), _table(schema, "streams")
    findings: list[CheckFinding] = []
    for run_id, session_id in fetch(
        "check the store",
        f"SELECT r.id, r.session_id FROM {_table(schema, 'runs')} AS r WHERE NOT EXISTS "
        f"(SELECT 1 FROM {_table(schema, 'sessions')} AS s WHERE s.id = r.session_id) LIMIT 100",
        (),
    ):
        findings.append(
            CheckFinding("foreign_key", f"run {run_id!r} refers to a missing session", session_id)
        )
    for event_id, count in fetch(
        "check the store",
        f"SELECT id, count(*) FROM {events} GROUP BY id HAVING count(*) > 1 LIMIT 100",
        (),
    ):
        findings.append(CheckFinding("duplicate_id", f"event id {event_id!r} is stored {count} times"))
    for session_id, seq, type_ in fetch(
        "check the store",
        f"SELECT session_id, seq, type FROM {events} WHERE NOT (type = ANY(%s)) LIMIT 100",
        (_KNOWN_TYPES,),
    ):
        findings.append(CheckFinding("bad_type", f"event {seq} has unknown type {type_!r}", session_id))
    for session_id, seq in _bad_json(fetch, transact, events):
        findings.append(
            CheckFinding(
                "bad_json", f"event {seq} has data or metadata that is not a JSON object", session_id
            )
        )
    sessions = [
        row[0]
        for row in fetch(
            "check the store",
            f"SELECT session_id FROM {streams} UNION SELECT session_id FROM {events} ORDER BY 1",
            (),
        )
    ]
    checked = 0
    for done, session_id in enumerate(sessions, 1):
        ((latest, count, low, high, gap),) = fetch(
            "check a session",
            f"SELECT (SELECT latest_seq FROM {streams} WHERE session_id = %s), count(*), "
            "min(seq), max(seq), "
            f"(SELECT min(e.seq) + 1 FROM {events} AS e WHERE e.session_id = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {events} AS n WHERE n.session_id = e.session_id AND n.seq = e.seq + 1) "
            f"AND e.seq < (SELECT max(seq) FROM {events} WHERE session_id = %s)) "
            f"FROM {events} WHERE session_id = %s",
            (session_id, session_id, session_id, session_id),
        )
        checked += count
        findings.extend(sequence_findings(session_id, latest, count, low, high, gap))
        if on_progress is not None:
            on_progress(done, len(sessions))
    return CheckReport(tuple(findings), sessions_checked=len(sessions), events_checked=checked)


def _bad_json(fetch: Fetch, transact: Transact, events: str) -> list[tuple[str, int]]:
    """Up to 100 events whose data or metadata is not a JSON object: checked by the server
    from PostgreSQL 16 on (``pg_input_is_valid``), else by reading the payloads here."""
    ((number,),) = fetch("read the server version", "SHOW server_version_num", ())
    if int(number) >= 160000:
        return [
            (row[0], row[1])
            for row in fetch(
                "check the store",
                f"SELECT session_id, seq FROM {events} WHERE CASE "
                "WHEN pg_input_is_valid(data, 'json') AND pg_input_is_valid(metadata, 'json') "
                "THEN json_typeof(data::json) <> 'object' OR json_typeof(metadata::json) <> 'object' "
                "ELSE true END ORDER BY session_id, seq LIMIT 100",
                (),
            )
        ]

    def scan(conn: Connection) -> list[tuple[str, int]]:
        bad: list[tuple[str, int]] = []
        with conn.cursor(name="sqlitestream_check_json") as cursor:
            cursor.execute(f"SELECT session_id, seq, data, metadata FROM {events} ORDER BY session_id, seq")
            for session_id, seq, data, metadata in cursor:
                if not (_is_json_object(data) and _is_json_object(metadata)):
                    bad.append((session_id, seq))
                    if len(bad) == 100:
                        break
        return bad

    return transact("check the events' JSON", scan)


def import_session(
    transact: Transact,
    schema: str,
    channel: str,
    max_event_bytes: int,
    session_id: str,
    *,
    session: Session | None = None,
    runs: Sequence[Run] = (),
    events: Sequence[Event] = (),
    first_sequence: int | None = None,
) -> SessionImport:
    """:meth:`AdminStore.import_session` in one transaction that holds the session's counter
    row, so concurrent appends wait for it and cannot interleave; other processes' waiters are
    notified on ``channel``. Waking this process's waiters is the caller's."""
    session_id, ordered = check_session_import(
        session_id, session, runs, events, max_event_bytes, first_sequence
    )
    sessions_t, runs_t = _table(schema, "sessions"), _table(schema, "runs")
    events_t, streams_t = _table(schema, "events"), _table(schema, "streams")

    def work(conn: Connection) -> tuple[str | None, list[str], list[StoredEvent], int]:
        outcome = None
        if session is not None:
            outcome = _put(conn, sessions_t, SESSION_COLUMNS, session_row(session))
        runs_done: list[str] = []
        if runs:
            found = conn.execute(
                f"SELECT 1 FROM {sessions_t} WHERE id = %s FOR KEY SHARE", (session_id,)
            ).fetchone()
            if found is None:
                raise SessionNotFoundError(session_id)
        for run in runs:
            runs_done.append(_put(conn, runs_t, RUN_COLUMNS, run_row(run)))
        if not ordered and first_sequence is None:
            return outcome, runs_done, [], 0
        (latest,) = conn.execute(
            f"INSERT INTO {streams_t} AS c (session_id, latest_seq) VALUES (%s, 0) "
            "ON CONFLICT (session_id) DO UPDATE SET latest_seq = c.latest_seq RETURNING latest_seq",
            (session_id,),
        ).fetchone() or (0,)
        stored = {
            event_id: (owner, int(seq))
            for event_id, owner, seq in conn.execute(
                f"SELECT id, session_id, seq FROM {events_t} WHERE id = ANY(%s)",
                ([event.id for event in ordered],),
            ).fetchall()
        }
        (first_retained,) = conn.execute(
            f"SELECT min(seq) FROM {events_t} WHERE session_id = %s", (session_id,)
        ).fetchone() or (None,)
        plan = plan_event_import(
            session_id,
            ordered,
            int(latest),
            stored,
            first_retained=None if first_retained is None else int(first_retained),
            first_sequence=first_sequence,
        )
        new = plan.new
        if plan.latest != int(latest):
            conn.execute(
                f"UPDATE {streams_t} SET latest_seq = %s WHERE session_id = %s", (plan.latest, session_id)
            )
        if new:
            # Positions last, just before the commit: the feed row stays locked until then.
            (last,) = conn.execute(
                f"UPDATE {_table(schema, 'feed')} SET last_position = last_position + %s "
                "RETURNING last_position",
                (len(new),),
            ).fetchone() or (0,)
            first = int(last) - len(new) + 1
            new = [with_sequence(event, event.sequence_number or 0, first + n) for n, event in enumerate(new)]
            conn.execute(
                f"INSERT INTO {events_t} ({EVENT_COLUMNS}) {UNNEST_EVENTS}",
                event_columns([event_values(event, event.sequence_number, event.position) for event in new]),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload("a", session_id)))
        return outcome, runs_done, new, plan.skipped

    outcome, runs_done, new, skipped = transact("import a session", work)
    return SessionImport.counted(session_id, outcome, runs_done, len(new), skipped)


def _put(conn: Connection, table: str, columns: str, row: tuple[Any, ...]) -> str:
    """Insert or replace a record by id; 'added', 'updated' or 'unchanged'."""
    stored = conn.execute(f"SELECT {columns} FROM {table} WHERE id = %s", (row[0],)).fetchone()
    if stored is not None and tuple(stored) == row:
        return "unchanged"
    conn.execute(upsert(table, columns, "%s"), row)
    return "updated" if stored is not None else "added"


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
