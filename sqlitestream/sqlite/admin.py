"""Administration methods of :class:`~sqlitestream.SQLiteSessionStore` beyond the contract:
what is in the log (:meth:`~SQLiteAdminMixin.list_streams`), file facts
(:meth:`~SQLiteAdminMixin.store_info`), an integrity check
(:meth:`~SQLiteAdminMixin.check_integrity`), schema migration
(:meth:`~SQLiteAdminMixin.inspect_schema`, :meth:`~SQLiteAdminMixin.migrate_schema`) and the
SQLite half of export/import (:meth:`~SQLiteAdminMixin.import_session`; the rest is in
:class:`~sqlitestream._transfer.TransferMixin`).

These are the methods the ``sqlitestream`` command line uses, so that it never reads tables
itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqlitestream.sqlite import schema as _schema
from sqlitestream.sqlite.connection import open_connection, translating
from sqlitestream._core.rows import RUN_COLUMNS, SESSION_COLUMNS
from sqlitestream._core.transfer import (
    ImportReport,
    SessionImport,
    StreamInfo,
    TransferMixin,
    check_session_import,
    plan_event_import,
)
from sqlitestream._core.validate import check_id, describe
from sqlitestream.errors import SessionNotFoundError, StorageError, ValidationError
from sqlitestream.models import Event, EventType, Run, Session, from_micros

if TYPE_CHECKING:
    import apsw

    from sqlitestream._core.waiting import WakeHub

__all__ = [
    "SQLiteAdminMixin",
    "StoreInfo",
    "StreamInfo",
    "CheckFinding",
    "CheckReport",
    "SchemaStep",
    "SchemaStatus",
    "MigrationResult",
    "SessionImport",
    "ImportReport",
]


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """Facts about a store file, read in one snapshot.

    ``file_bytes`` and ``wal_bytes`` are the sizes of the database file and its write-ahead
    log (0 when there is none); both are None for a ``":memory:"`` store. ``synchronous`` is the
    level this store object writes with (a per-connection setting, not stored in the file).
    """

    path: str
    file_bytes: int | None
    wal_bytes: int | None
    schema_version: int
    journal_mode: str
    synchronous: str
    sessions: int
    runs: int
    events: int
    streams: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "file_bytes": self.file_bytes,
            "wal_bytes": self.wal_bytes,
            "schema_version": self.schema_version,
            "journal_mode": self.journal_mode,
            "synchronous": self.synchronous,
            "sessions": self.sessions,
            "runs": self.runs,
            "events": self.events,
            "streams": self.streams,
        }


@dataclass(frozen=True, slots=True)
class CheckFinding:
    """One problem found by :meth:`SQLiteAdminMixin.check_integrity`.

    ``kind`` is one of: ``integrity`` (SQLite's own ``PRAGMA integrity_check``), ``foreign_key``
    (a run whose session record is missing), ``sequence_gap`` (a session's sequence numbers are
    not exactly 1..N), ``latest_mismatch`` (the stored latest sequence is not the highest
    event's), ``missing_counter`` (events without a sequence counter), ``duplicate_id`` (an
    event id stored twice), ``bad_type`` (an unknown event type), ``bad_json`` (a payload that
    is not a JSON object). ``session_id`` names the session when the problem is in one.
    """

    kind: str
    message: str
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "session_id": self.session_id, "message": self.message}


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The result of :meth:`SQLiteAdminMixin.check_integrity`; ``ok`` when nothing was found."""

    findings: tuple[CheckFinding, ...]
    sessions_checked: int
    events_checked: int

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sessions_checked": self.sessions_checked,
            "events_checked": self.events_checked,
            "findings": [finding.to_dict() for finding in self.findings],
        }


@dataclass(frozen=True, slots=True)
class SchemaStep:
    """One schema upgrade: from ``from_version`` to ``from_version + 1``, its SQL statements."""

    from_version: int
    to_version: int
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """A store file's schema version, the version this code uses, and the steps between."""

    path: str
    version: int
    code_version: int
    pending: tuple[SchemaStep, ...]

    @property
    def up_to_date(self) -> bool:
        return not self.pending


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What :meth:`SQLiteAdminMixin.migrate_schema` did; ``backup_path`` is None if no backup
    was written (none asked for, or nothing to upgrade)."""

    path: str
    from_version: int
    to_version: int
    backup_path: str | None

    @property
    def upgraded(self) -> bool:
        return self.from_version != self.to_version


_KNOWN_TYPES = json.dumps([member.value for member in EventType])

_STREAMS_ALL = """
SELECT session_id, sum(n), max(latest), max(last_ts) FROM (
    SELECT session_id, count(*) AS n, 0 AS latest, max(ts) AS last_ts FROM events GROUP BY session_id
    UNION ALL
    SELECT session_id, 0, latest_seq, NULL FROM streams
) GROUP BY session_id ORDER BY session_id
"""
_STREAMS_SOME = """
SELECT wanted.value,
       (SELECT count(*) FROM events WHERE session_id = wanted.value),
       coalesce((SELECT latest_seq FROM streams WHERE session_id = wanted.value), 0),
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
    "SELECT session_id, seq, type FROM events "
    "WHERE type NOT IN (SELECT value FROM json_each(?)) LIMIT 100"
)
_BAD_JSON = (
    "SELECT session_id, seq FROM events WHERE NOT (json_valid(data) AND json_type(data) = 'object' "
    "AND json_valid(metadata) AND json_type(metadata) = 'object') LIMIT 100"
)
_STORED_IDS = "SELECT id, session_id, seq FROM events WHERE id IN (SELECT value FROM json_each(?))"
_SET_LATEST = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET latest_seq = excluded.latest_seq"
)


def _sqlite() -> ModuleType:
    # sqlite.py imports this module to build its class, so its helpers are looked up at call time.
    from sqlitestream.sqlite import store as sqlite

    return sqlite


def _upsert(table: str, columns: str) -> str:
    names = [name.strip() for name in columns.split(",")]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
    marks = ", ".join("?" for _ in names)
    return f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}"


def _all(conn: apsw.Connection, sql: str, bindings: tuple[Any, ...] = ()) -> list[Any]:
    return conn.execute(sql, bindings).fetchall()


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


class SQLiteAdminMixin(TransferMixin):
    """Inspection, integrity checks, schema migration and export/import for a SQLite store.

    Mixed into :class:`~sqlitestream.SQLiteSessionStore`; every method works on a read-only
    store except :meth:`import_session` / :meth:`import_records`, which write.
    """

    if TYPE_CHECKING:  # provided by SQLiteSessionStore
        _path: str
        _in_memory: bool
        _synchronous: str
        _max_event_bytes: int
        _hub: WakeHub

        def _read(self, action: str) -> AbstractContextManager[apsw.Connection]: ...
        def _write(self, action: str) -> AbstractContextManager[apsw.Connection]: ...
        def _fetch(self, action: str, sql: str, bindings: tuple[Any, ...] = ()) -> list[Any]: ...

    # What is in the log ---------------------------------------------------------------------

    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        """Every session id with events (or a sequence counter) in the log, ordered by id,
        with its event count, latest sequence and newest event time.

        ``session_ids`` restricts the answer to those ids; ids without events are left out.
        The whole list is read in one snapshot. Counting reads every event's key, so this takes
        time proportional to the size of the log.
        """
        if session_ids is None:
            rows = self._fetch("list the log's sessions", _STREAMS_ALL)
        else:
            if isinstance(session_ids, str) or not isinstance(session_ids, Iterable):
                raise ValidationError(f"session_ids must be a list of ids, got {describe(session_ids)}")
            wanted = [check_id(session_id, "session_ids[]") for session_id in session_ids]
            rows = self._fetch("list the log's sessions", _STREAMS_SOME, (json.dumps(wanted),))
        return [
            StreamInfo(
                session_id=session_id,
                event_count=count,
                latest_sequence=latest,
                last_event_at=None if last_ts is None else from_micros(last_ts),
            )
            for session_id, count, latest, last_ts in rows
            if count or latest
        ]

    def store_info(self) -> StoreInfo:
        """Path, file and WAL sizes, schema version, journal mode, synchronous level, and the
        numbers of saved sessions, runs, events and sequence counters (streams)."""
        with self._read("read the store's facts") as conn:
            # The counts come from one statement, so they agree with each other.
            rows = _all(conn, _COUNTS)
            version = int(conn.pragma("user_version"))
            journal_mode = str(conn.pragma("journal_mode"))
        sessions, runs, events, streams = rows[0]
        return StoreInfo(
            path=self._path,
            file_bytes=None if self._in_memory else _file_size(self._path),
            wal_bytes=None if self._in_memory else _file_size(self._path + "-wal"),
            schema_version=version,
            journal_mode=journal_mode.lower(),
            synchronous=self._synchronous,
            sessions=sessions,
            runs=runs,
            events=events,
            streams=streams,
        )

    # Integrity -------------------------------------------------------------------------------

    def check_integrity(
        self, *, on_progress: Callable[[int, int], None] | None = None
    ) -> CheckReport:
        """SQLite's ``PRAGMA integrity_check`` plus the log's own invariants.

        For every session id in the log: its sequence numbers are exactly 1..N with no gaps,
        and its stored latest sequence equals N; store-wide: event ids are unique, every event
        has a known type and JSON-object payloads, every run's session is saved. Each session
        is checked in one snapshot, so the check is correct while other processes append.
        Read-only. ``on_progress(done, total)`` is called after each session. Each kind of
        store-wide finding is reported for at most 100 rows.
        """
        findings: list[CheckFinding] = []
        with self._read("check the store") as conn:
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
                findings.append(
                    CheckFinding("bad_type", f"event {seq} has unknown type {type_!r}", session_id)
                )
            for session_id, seq in _all(conn, _BAD_JSON):
                findings.append(
                    CheckFinding("bad_json", f"event {seq} has data or metadata that is not a JSON object", session_id)
                )
            sessions = [row[0] for row in _all(conn, _CHECKED_SESSIONS)]
        events = 0
        for done, session_id in enumerate(sessions, 1):
            with self._read("check a session") as conn:
                latest, count, low, high = _all(conn, _SESSION_FACTS, (session_id,))[0]
                gap = None
                if count and (low != 1 or high != count):
                    gap_rows = _all(conn, _FIRST_GAP, (session_id, high))
                    gap = 1 if low != 1 else (gap_rows[0][0] if gap_rows else None)
            events += count
            findings.extend(_session_findings(session_id, latest, count, low, high, gap))
            if on_progress is not None:
                on_progress(done, len(sessions))
        return CheckReport(tuple(findings), sessions_checked=len(sessions), events_checked=events)

    # Schema ----------------------------------------------------------------------------------

    @classmethod
    def inspect_schema(cls, path: str | os.PathLike[str]) -> SchemaStatus:
        """The schema version of the store file at ``path`` and the upgrades it is missing.

        Reads without modifying or creating anything, whatever the version (opening a store
        object would upgrade it). Raises ``StorageError`` if there is no store at ``path`` (no
        file, an empty file, not a sqlitestream store) and ``SchemaVersionError`` if the file is
        newer than this code.
        """
        path_text = _store_file(path)
        conn = open_connection(path_text, readonly=True)
        try:
            state = _schema.read_state(conn, path_text)
        finally:
            conn.close()
        if state.is_blank:
            raise StorageError(f"{path_text!r} is empty: not a sqlitestream store yet")
        _schema.check_state(state, path_text, readonly=False)
        steps = tuple(
            SchemaStep(version, version + 1, _schema.UPGRADES[version])
            for version in _schema.pending_upgrades(state.user_version)
        )
        return SchemaStatus(path_text, state.user_version, _schema.SCHEMA_VERSION, steps)

    @classmethod
    def migrate_schema(
        cls, path: str | os.PathLike[str], *, backup_path: str | os.PathLike[str] | None = None
    ) -> MigrationResult:
        """Upgrade the store file at ``path`` to this code's schema version, never creating one.

        With ``backup_path``, first writes a consistent copy of the file as it is (``VACUUM
        INTO``) there; an existing file at ``backup_path`` is refused (``ValidationError``), and
        no backup is written when there is nothing to upgrade. The upgrade itself runs as every
        writable open does: all steps in one transaction, so a failure leaves the file at its
        old version. Raises like :meth:`inspect_schema` for a missing, foreign or newer file.
        """
        status = cls.inspect_schema(path)
        if status.up_to_date:
            return MigrationResult(status.path, status.version, status.version, None)
        backup_text = None
        if backup_path is not None:
            backup_text = os.path.abspath(os.fspath(backup_path))
            if os.path.lexists(backup_text):
                raise ValidationError(f"backup_path {backup_text!r} already exists; choose another")
            conn = open_connection(status.path, readonly=True)
            try:
                with translating(f"write a backup of {status.path!r} to {backup_text!r}"):
                    conn.execute("VACUUM INTO ?", (backup_text,))
            finally:
                conn.close()
        with _sqlite().SQLiteSessionStore(status.path) as store:
            from_version = store.upgraded_from
        return MigrationResult(
            status.path,
            status.version if from_version is None else from_version,
            _schema.SCHEMA_VERSION,
            backup_text,
        )

    # Import ----------------------------------------------------------------------------------

    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
    ) -> SessionImport:
        """See :meth:`TransferMixin.import_session`; here one ``BEGIN IMMEDIATE`` transaction."""
        session_id, ordered = check_session_import(
            session_id, session, runs, events, self._max_event_bytes
        )
        sqlite = _sqlite()
        session_outcome = None
        runs_outcome: list[str] = []
        with self._write("import a session") as conn:
            if session is not None:
                session_outcome = _put(
                    conn,
                    "sessions",
                    SESSION_COLUMNS,
                    sqlite._ROWS.session_row(session),
                )
            if runs and not _all(conn, "SELECT 1 FROM sessions WHERE id = ?", (session_id,)):
                raise SessionNotFoundError(session_id)
            for run in runs:
                outcome = _put(conn, "runs", RUN_COLUMNS, sqlite._ROWS.run_row(run))
                runs_outcome.append(outcome)
            new: list[Event] = []
            skipped = 0
            if ordered:
                latest_rows = _all(conn, sqlite._LATEST_SEQUENCE, (session_id,))
                stored = {
                    event_id: (owner, seq)
                    for event_id, owner, seq in _all(
                        conn, _STORED_IDS, (json.dumps([event.id for event in ordered]),)
                    )
                }
                new, skipped = plan_event_import(
                    session_id, ordered, latest_rows[0][0] if latest_rows else 0, stored
                )
                if new:
                    conn.executemany(
                        sqlite._INSERT_EVENT,
                        [sqlite._ROWS.event_row(event, event.sequence_number) for event in new],
                    )
                    conn.execute(_SET_LATEST, (session_id, new[-1].sequence_number))
        if new:
            self._hub.wake((session_id,))
        return SessionImport.counted(session_id, session_outcome, runs_outcome, len(new), skipped)


def _store_file(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"path must be a str or a path, got {describe(path)}")
    path_text = os.path.abspath(os.fspath(path))
    file = Path(path_text)
    if not file.exists():
        raise StorageError(f"no store at {path_text!r}")
    _schema.sniff_file(file)
    return path_text


def _session_findings(
    session_id: str, latest: int | None, count: int, low: int | None, high: int | None, gap: int | None
) -> Iterator[CheckFinding]:
    if count == 0:
        if latest:
            yield CheckFinding(
                "latest_mismatch",
                f"the stored latest sequence is {latest} but the session has no events",
                session_id,
            )
        return
    if low != 1 or high != count:
        where = f"; sequence {gap} is missing" if gap is not None else ""
        yield CheckFinding(
            "sequence_gap",
            f"{count} events hold sequences {low}..{high}, not exactly 1..{count}{where}",
            session_id,
        )
    if latest is None:
        yield CheckFinding(
            "missing_counter",
            f"{count} events but no stored latest sequence (the next append would reuse 1)",
            session_id,
        )
    elif latest != high:
        yield CheckFinding(
            "latest_mismatch",
            f"the stored latest sequence is {latest} but the highest event sequence is {high}",
            session_id,
        )


def _put(conn: apsw.Connection, table: str, columns: str, row: tuple[Any, ...]) -> str:
    """Insert or replace a record by id; 'added', 'updated' or 'unchanged'."""
    stored = _all(conn, f"SELECT {columns} FROM {table} WHERE id = ?", (row[0],))
    if stored and tuple(stored[0]) == row:
        return "unchanged"
    conn.execute(_upsert(table, columns), row)
    return "updated" if stored else "added"
