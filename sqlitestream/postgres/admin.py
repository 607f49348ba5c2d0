"""Administration methods of :class:`~sqlitestream.postgres.PostgresSessionStore` beyond the
contract, matching the SQLite store's so the command line and ``copy`` treat both alike: what
is in the log (:meth:`~PostgresAdminMixin.list_streams`), facts about the store
(:meth:`~PostgresAdminMixin.store_info`), an integrity check
(:meth:`~PostgresAdminMixin.check_integrity`) and the PostgreSQL half of export/import
(:meth:`~PostgresAdminMixin.import_session`; the rest is in
:class:`~sqlitestream._transfer.TransferMixin`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlitestream.sqlite.admin import CheckFinding, CheckReport, _session_findings
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
from sqlitestream._core.transfer import (
    SessionImport,
    StreamInfo,
    TransferMixin,
    check_session_import,
    plan_event_import,
)
from sqlitestream._core.validate import check_id, describe
from sqlitestream.errors import SessionNotFoundError, ValidationError
from sqlitestream.models import Event, EventType, Run, Session

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection, Database
    from sqlitestream._core.waiting import WakeHub

__all__ = ["PostgresAdminMixin", "PostgresStoreInfo"]

_KNOWN_TYPES = [member.value for member in EventType]


@dataclass(frozen=True, slots=True)
class PostgresStoreInfo:
    """Facts about a PostgreSQL store, the counts read in one snapshot.

    ``dsn`` has no password. ``table_bytes`` is the on-disk size of the store's tables and
    indexes (``pg_total_relation_size``); ``synchronous_commit`` is the server setting that
    decides whether an acknowledged commit survives a server crash (``on``: it does).
    """

    dsn: str
    schema: str
    server_version: str
    schema_version: int
    synchronous_commit: str
    table_bytes: int
    sessions: int
    runs: int
    events: int
    streams: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "dsn": self.dsn,
            "schema": self.schema,
            "server_version": self.server_version,
            "schema_version": self.schema_version,
            "synchronous_commit": self.synchronous_commit,
            "table_bytes": self.table_bytes,
            "sessions": self.sessions,
            "runs": self.runs,
            "events": self.events,
            "streams": self.streams,
        }


class PostgresAdminMixin(TransferMixin):
    """Inspection, integrity checks and export/import for a PostgreSQL store."""

    if TYPE_CHECKING:  # provided by PostgresSessionStore
        _db: Database
        _hub: WakeHub
        _schema: str
        _dsn: str
        _channel: str
        _max_event_bytes: int

        def _check_open(self) -> None: ...
        def _fetch(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    def _table(self, name: str) -> str:
        return f'"{self._schema}".{name}'

    # What is in the log ---------------------------------------------------------------------

    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        """Every session id with events (or a sequence counter) in the log, ordered by id
        (byte order), with its event count, latest sequence and newest event time.

        ``session_ids`` restricts the answer to those ids; ids without events are left out.
        One statement, so one snapshot.
        """
        events, streams = self._table("events"), self._table("streams")
        if session_ids is None:
            rows = self._fetch(
                "list the log's sessions",
                "SELECT session_id, sum(n)::bigint, max(latest)::bigint, max(last_ts) FROM ("
                f"SELECT session_id, count(*) AS n, 0 AS latest, max(ts) AS last_ts FROM {events} "
                "GROUP BY session_id UNION ALL "
                f"SELECT session_id, 0, latest_seq, NULL FROM {streams}"
                ") AS u GROUP BY session_id ORDER BY session_id",
            )
        else:
            if isinstance(session_ids, str) or not isinstance(session_ids, Iterable):
                raise ValidationError(f"session_ids must be a list of ids, got {describe(session_ids)}")
            wanted = [check_id(session_id, "session_ids[]") for session_id in session_ids]
            rows = self._fetch(
                "list the log's sessions",
                "SELECT w.id, "
                f"(SELECT count(*) FROM {events} WHERE session_id = w.id), "
                f"coalesce((SELECT latest_seq FROM {streams} WHERE session_id = w.id), 0), "
                f"(SELECT max(ts) FROM {events} WHERE session_id = w.id) "
                'FROM (SELECT DISTINCT unnest(%s::text[]) COLLATE "C" AS id) AS w ORDER BY w.id',
                (wanted,),
            )
        return [
            StreamInfo(
                session_id=session_id,
                event_count=int(count),
                latest_sequence=int(latest),
                last_event_at=None if last_ts is None else utc(last_ts),
            )
            for session_id, count, latest, last_ts in rows
            if count or latest
        ]

    def schema_version(self) -> int:
        """The schema version stamped in the store's schema."""
        ((version,),) = self._fetch(
            "read the schema version", f"SELECT version FROM {self._table('schema_version')}"
        )
        return int(version)

    def store_info(self) -> PostgresStoreInfo:
        """Server and schema versions, the durability setting, the tables' size, and the
        numbers of saved sessions, runs, events and sequence counters (streams)."""
        tables = ("sessions", "runs", "events", "streams")
        sizes = " + ".join("pg_total_relation_size(%s)" for _ in tables)
        (row,) = self._fetch(
            "read the store's facts",
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
            f"(SELECT version FROM {self._table('schema_version')}), ({sizes})::bigint, "
            + ", ".join(f"(SELECT count(*) FROM {self._table(name)})" for name in tables),
            [self._table(name) for name in tables],
        )
        version, synchronous, schema_version, size, sessions, runs, events, streams = row
        return PostgresStoreInfo(
            dsn=self._dsn,
            schema=self._schema,
            server_version=str(version),
            schema_version=int(schema_version),
            synchronous_commit=str(synchronous),
            table_bytes=int(size),
            sessions=int(sessions),
            runs=int(runs),
            events=int(events),
            streams=int(streams),
        )

    # Integrity -------------------------------------------------------------------------------

    def check_integrity(
        self, *, on_progress: Callable[[int, int], None] | None = None
    ) -> CheckReport:
        """The log's invariants, as the SQLite store checks them (PostgreSQL checks its own
        pages; ``amcheck`` is the tool for that).

        For every session id in the log: its sequence numbers are exactly 1..N with no gaps,
        and its stored latest sequence equals N; store-wide: event ids are unique, every event
        has a known type and JSON-object payloads, every run's session is saved. Each session
        is checked in one statement (one snapshot), so the check is correct while others
        append. Read-only. ``on_progress(done, total)`` is called after each session. Each kind
        of store-wide finding is reported for at most 100 rows.
        """
        events, streams = self._table("events"), self._table("streams")
        findings: list[CheckFinding] = []
        for run_id, session_id in self._fetch(
            "check the store",
            f"SELECT r.id, r.session_id FROM {self._table('runs')} AS r WHERE NOT EXISTS "
            f"(SELECT 1 FROM {self._table('sessions')} AS s WHERE s.id = r.session_id) LIMIT 100",
        ):
            findings.append(
                CheckFinding("foreign_key", f"run {run_id!r} refers to a missing session", session_id)
            )
        for event_id, count in self._fetch(
            "check the store",
            f"SELECT id, count(*) FROM {events} GROUP BY id HAVING count(*) > 1 LIMIT 100",
        ):
            findings.append(CheckFinding("duplicate_id", f"event id {event_id!r} is stored {count} times"))
        for session_id, seq, type_ in self._fetch(
            "check the store",
            f"SELECT session_id, seq, type FROM {events} WHERE NOT (type = ANY(%s)) LIMIT 100",
            (_KNOWN_TYPES,),
        ):
            findings.append(CheckFinding("bad_type", f"event {seq} has unknown type {type_!r}", session_id))
        for session_id, seq in self._bad_json(events):
            findings.append(
                CheckFinding("bad_json", f"event {seq} has data or metadata that is not a JSON object", session_id)
            )
        sessions = [
            row[0]
            for row in self._fetch(
                "check the store",
                f"SELECT session_id FROM {streams} UNION SELECT session_id FROM {events} ORDER BY 1",
            )
        ]
        checked = 0
        for done, session_id in enumerate(sessions, 1):
            ((latest, count, low, high, gap),) = self._fetch(
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
            if count and low != 1:
                gap = 1
            findings.extend(_session_findings(session_id, latest, count, low, high, gap))
            if on_progress is not None:
                on_progress(done, len(sessions))
        return CheckReport(tuple(findings), sessions_checked=len(sessions), events_checked=checked)

    def _bad_json(self, events: str) -> list[tuple[str, int]]:
        """Up to 100 events whose data or metadata is not a JSON object: checked by the server
        from PostgreSQL 16 on (``pg_input_is_valid``), else by reading the payloads here."""
        ((number,),) = self._fetch("read the server version", "SHOW server_version_num")
        if int(number) >= 160000:
            return [
                (row[0], row[1])
                for row in self._fetch(
                    "check the store",
                    f"SELECT session_id, seq FROM {events} WHERE CASE "
                    "WHEN pg_input_is_valid(data, 'json') AND pg_input_is_valid(metadata, 'json') "
                    "THEN json_typeof(data::json) <> 'object' OR json_typeof(metadata::json) <> 'object' "
                    "ELSE true END ORDER BY session_id, seq LIMIT 100",
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

        self._check_open()
        return self._db.run("check the events' JSON", scan, transaction=True)

    # Import ----------------------------------------------------------------------------------

    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
    ) -> SessionImport:
        """See :meth:`TransferMixin.import_session`; here one transaction that holds the
        session's counter row, so concurrent appends wait for it and cannot interleave."""
        session_id, ordered = check_session_import(
            session_id, session, runs, events, self._max_event_bytes
        )
        sessions_t, runs_t = self._table("sessions"), self._table("runs")
        events_t, streams_t = self._table("events"), self._table("streams")

        def put(conn: Connection, table: str, columns: str, row: tuple[Any, ...]) -> str:
            stored = conn.execute(f"SELECT {columns} FROM {table} WHERE id = %s", (row[0],)).fetchone()
            if stored is not None and tuple(stored) == row:
                return "unchanged"
            names = [name.strip() for name in columns.split(",")]
            conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({', '.join('%s' for _ in names)}) "
                "ON CONFLICT (id) DO UPDATE SET "
                + ", ".join(f"{name} = excluded.{name}" for name in names[1:]),
                row,
            )
            return "updated" if stored is not None else "added"

        def work(conn: Connection) -> tuple[str | None, list[str], list[Event], int]:
            outcome = None
            if session is not None:
                outcome = put(conn, sessions_t, SESSION_COLUMNS, session_row(session))
            runs_done: list[str] = []
            if runs:
                found = conn.execute(
                    f"SELECT 1 FROM {sessions_t} WHERE id = %s FOR KEY SHARE", (session_id,)
                ).fetchone()
                if found is None:
                    raise SessionNotFoundError(session_id)
            for run in runs:
                runs_done.append(put(conn, runs_t, RUN_COLUMNS, run_row(run)))
            if not ordered:
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
            new, skipped = plan_event_import(session_id, ordered, int(latest), stored)
            if new:
                conn.execute(
                    f"INSERT INTO {events_t} ({EVENT_COLUMNS}) {UNNEST_EVENTS}",
                    event_columns([event_values(event, event.sequence_number or 0) for event in new]),
                )
                conn.execute(
                    f"UPDATE {streams_t} SET latest_seq = %s WHERE session_id = %s",
                    (new[-1].sequence_number, session_id),
                )
                conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload("a", session_id)))
            return outcome, runs_done, new, skipped

        self._check_open()
        outcome, runs_done, new, skipped = self._db.run("import a session", work, transaction=True)
        if new:
            self._hub.wake((session_id,))
        return SessionImport.counted(session_id, outcome, runs_done, len(new), skipped)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
