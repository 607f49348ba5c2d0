"""``SQLiteSessionStore``: the contract on one embedded SQLite file (or ``":memory:"``).

Writes go through one writer connection per store (serialised by a lock, each write one
``BEGIN IMMEDIATE`` transaction); reads use a pool of read-only connections, so readers never
wait for the writer (WAL). Several processes may open the same file.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import apsw

from sqlitestream.sqlite import schema as _schema
from sqlitestream.sqlite.admin import SQLiteAdminMixin
from sqlitestream.sqlite.connection import (
    SYNCHRONOUS_LEVELS,
    apply_settings,
    enable_wal,
    frozen_location,
    open_connection,
    translate,
    translating,
)
from sqlitestream._core.rows import (
    EVENT_COLUMNS,
    PAGE_COLUMNS,
    RUN_COLUMNS,
    SESSION_COLUMNS,
    RowCodec,
)
from sqlitestream.sqlite.sidelock import SideLock
from sqlitestream.sqlite.transaction import Writer, WriteTransaction
from sqlitestream._core.validate import check_choice, check_id, check_int, check_text, describe
from sqlitestream._core.waiting import WakeHub, long_poll
from sqlitestream.sqlite.watcher import DataVersionWatcher
from sqlitestream.errors import (
    EventIdConflictError,
    RunNotFoundError,
    SchemaVersionError,
    SequenceConflictError,
    SessionNotFoundError,
    StorageError,
    StoreClosedError,
    ValidationError,
)
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    from_micros,
    from_micros_many,
    to_micros,
    with_sequence,
)
from sqlitestream.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventFilter,
    SessionStore,
    check_event,
    check_events,
    check_max_event_bytes,
    check_record,
)

__all__ = ["SQLiteSessionStore"]

_MAX_READERS = 16
"""Read connections a store keeps at most; each holds file descriptors and a page cache."""
_SELECT_EVENT_BY_ID = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?"
_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_NEW_EVENT = _INSERT_EVENT + " ON CONFLICT DO NOTHING"
_BUMP_SEQUENCE = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET latest_seq = latest_seq + excluded.latest_seq "
    "RETURNING latest_seq"
)
_UNBUMP_SEQUENCE = "UPDATE streams SET latest_seq = latest_seq - 1 WHERE session_id = ?"
_LATEST_SEQUENCE = "SELECT latest_seq FROM streams WHERE session_id = ?"


_ROWS = RowCodec(to_micros, from_micros, from_micros_many)


class SQLiteSessionStore(SQLiteAdminMixin, SessionStore):
    """The session event store on a SQLite file.

    Args:
        path: the store file (created with its schema if missing or empty), or ``":memory:"``
            for a private in-memory store (one process, not durable).
        synchronous: ``"normal"`` (default): an acknowledged append survives a crash of the
            process; ``"full"``: it also survives power loss or an OS crash (an fsync per commit).
        busy_timeout_ms: how long a write waits for another process's write lock before
            raising ``StoreBusyError`` (a contended write first queues for at most this long
            behind other sqlitestream writers, then waits for SQLite's lock as long again).
        readonly: open an existing store for inspection: nothing is created or changed and
            every write raises ``StorageError``. This also reads a store in a read-only
            directory or on read-only media, where a writable open fails with ``StorageError``.
        max_event_bytes: the largest encoded ``data`` + ``metadata`` an event may carry.
        poll_interval_ms: how often, while a long-poll is waiting, the store checks whether
            another process committed (the in-process wake-up is immediate). On Linux a write
            to the store's WAL file wakes the check at once (inotify) and this timed check only
            runs every ``max(poll_interval_ms, 50)`` ms as the fallback.

    Opening refuses, without modifying it, a file that is not a sqlitestream store
    (``StorageError``) or that has a newer schema version (``SchemaVersionError``); an older
    version is upgraded in one transaction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        busy_timeout_ms: int = 5000,
        readonly: bool = False,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        poll_interval_ms: int = 2,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise ValidationError(f"path must be a str or a path, got {describe(path)}")
        path_text = os.fspath(path)
        if not isinstance(path_text, str) or not path_text:
            raise ValidationError(f"path must be a non-empty file path, got {describe(path)}")
        if "\x00" in path_text:
            raise ValidationError(f"path must not contain NUL characters, got {describe(path)}")
        check_text(path_text, "path")  # SQLite takes the name as UTF-8
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValidationError(
                f"synchronous must be one of {sorted(SYNCHRONOUS_LEVELS)}, got {describe(synchronous)}"
            )
        self._busy_timeout_ms = check_int(busy_timeout_ms, "busy_timeout_ms", minimum=0, allow_none=False) or 0
        if type(readonly) is not bool:
            raise ValidationError(f"readonly must be a bool, got {describe(readonly)}")
        self._max_event_bytes = check_max_event_bytes(max_event_bytes)
        interval = check_int(poll_interval_ms, "poll_interval_ms", minimum=1, allow_none=False) or 1
        self._poll_interval_s = interval / 1000.0
        self._synchronous = synchronous
        self._readonly = readonly
        self._in_memory = path_text == ":memory:"
        if self._in_memory and readonly:
            raise ValidationError("readonly=True needs a store file; ':memory:' starts empty")
        self._path = path_text if self._in_memory else os.path.abspath(path_text)
        self._closed = False
        self._pool_lock = threading.Lock()
        self._idle_readers: list[apsw.Connection] = []
        self._reader_returned = threading.Condition(self._pool_lock)
        self._reader_count = 0  # read connections open, idle or borrowed
        self._hub = WakeHub(on_first_waiter=self._on_first_waiter)
        self._watcher: DataVersionWatcher | None = None
        self._writer: Writer  # set by _open: the write connection, its locks (see transaction.py)
        self._upgraded_from: int | None = None
        self._immutable = False  # a read-only open of a store in a read-only directory
        self._open()

    # Opening ------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._in_memory:
            conn = self._configured(open_connection(":memory:", readonly=False))
            self._writer = Writer(conn, self._path, busy_timeout_ms=self._busy_timeout_ms)
            self._upgraded_from = _schema.create_or_upgrade(self._writer, self._path)
            return
        file = Path(self._path)
        if self._readonly and not file.exists():
            raise StorageError(f"no store at {self._path!r} (read-only open creates nothing)")
        _schema.sniff_file(file)
        self._immutable = self._readonly and frozen_location(self._path)
        try:
            conn = open_connection(self._path, readonly=self._readonly, immutable=self._immutable)
        except StorageError as exc:
            self._explain_unwritable(exc)
            raise
        writer = Writer(None, self._path, busy_timeout_ms=self._busy_timeout_ms)
        try:
            apply_settings(conn, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
            state = _schema.read_state(conn, self._path)
            _schema.check_state(state, self._path, readonly=self._readonly)
            if not self._readonly:
                enable_wal(conn, self._busy_timeout_ms)
                writer = Writer(
                    conn, self._path, busy_timeout_ms=self._busy_timeout_ms, side_lock=self._open_side_lock()
                )
                if state.user_version != _schema.SCHEMA_VERSION:
                    self._upgraded_from = _schema.create_or_upgrade(writer, self._path)
        except BaseException as exc:
            writer.close()
            conn.close()
            if isinstance(exc, StorageError):
                self._explain_unwritable(exc)
            raise
        self._writer = writer
        if self._readonly:
            self._idle_readers.append(conn)
            self._reader_count = 1
        self._watcher = DataVersionWatcher(
            self._open_reader,
            self._hub,
            interval_s=self._poll_interval_s,
            wal_path=self._path + "-wal",
        )

    def _open_side_lock(self) -> SideLock | None:
        try:
            # The store file's mode, as SQLite gives its -wal and -shm files.
            mode = os.stat(self._path).st_mode & 0o666
            return SideLock(self._path + "-lock", mode)
        except OSError:  # only a fairness aid (see sidelock.py): write without it
            return None

    def _explain_unwritable(self, exc: StorageError) -> None:
        """A writable open in a directory we cannot write fails deep inside SQLite with a
        vague message; say what is wrong and what to do instead."""
        if self._readonly or isinstance(exc, SchemaVersionError):
            return
        if not os.access(os.path.dirname(self._path), os.W_OK):
            raise StorageError(
                f"cannot open {self._path!r} for writing: its directory is read-only (a store "
                "creates its -wal and -shm files beside it); open it with readonly=True to read it",
                sqlite_code=exc.sqlite_code,
            ) from exc

    def _configured(self, conn: apsw.Connection) -> apsw.Connection:
        try:
            apply_settings(conn, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_reader(self) -> apsw.Connection:
        return self._configured(open_connection(self._path, readonly=True, immutable=self._immutable))

    def _on_first_waiter(self) -> None:
        if self._watcher is not None:
            self._watcher.ensure_running()

    # Public facts about the store -----------------------------------------------------------

    @property
    def path(self) -> str:
        """The absolute path of the store file, or ``":memory:"``."""
        return self._path

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def synchronous(self) -> str:
        return self._synchronous

    @property
    def upgraded_from(self) -> int | None:
        """The schema version this open created (0) or upgraded from; None if it was current."""
        return self._upgraded_from

    # Connections ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store {self._path!r} is closed")

    def _write(self, action: str) -> WriteTransaction:
        """``with self._write(action) as conn``: the writer connection inside one write
        transaction (the only way anything writes; see transaction.py)."""
        return WriteTransaction(self._writer, action)

    @contextlib.contextmanager
    def _read(self, action: str) -> Iterator[apsw.Connection]:
        """A connection to read with, its apsw errors translated."""
        self._check_open()
        if self._in_memory:
            writer = self._writer
            with writer.lock, translating(action):
                self._check_open()
                assert writer.conn is not None
                yield writer.conn
            return
        conn: apsw.Connection | None = None
        try:
            conn = self._borrow_reader()
            with translating(action):
                yield conn
        finally:
            if conn is not None:
                self._give_back(conn)

    def _fetch(self, action: str, sql: str, bindings: tuple[Any, ...] = ()) -> list[Any]:
        """All rows of one query (the path every page read and latest-sequence read takes,
        written out rather than through the generator of :meth:`_read`)."""
        if self._in_memory:
            with self._read(action) as writer:
                return writer.execute(sql, bindings).fetchall()
        conn: apsw.Connection | None = None
        try:
            conn = self._borrow_reader()
            return conn.execute(sql, bindings).fetchall()
        except apsw.Error as exc:
            raise translate(exc, action) from exc
        finally:
            if conn is not None:
                self._give_back(conn)

    def _borrow_reader(self) -> apsw.Connection:
        """An idle read connection, or a new one while fewer than ``_MAX_READERS`` exist:
        thousands of threads long-polling at once must not open a connection (and its file
        descriptors) each, so extra readers wait for one to come back."""
        with self._pool_lock:
            while True:
                self._check_open()
                if self._idle_readers:
                    return self._idle_readers.pop()
                if self._reader_count < _MAX_READERS:
                    self._reader_count += 1
                    break
                self._reader_returned.wait()
        try:
            return self._open_reader()
        except BaseException:
            self._give_back(None)
            raise

    def _give_back(self, conn: apsw.Connection | None) -> None:
        """Return a borrowed connection to the pool (``None``: one that failed to open)."""
        with self._pool_lock:
            if conn is None or self._closed:
                self._reader_count -= 1
                if conn is not None:
                    conn.close()
            else:
                self._idle_readers.append(conn)
            self._reader_returned.notify()

    # Sessions -------------------------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        check_record(session, Session, "session")
        row = _ROWS.session_row(session)
        with self._write("save a session") as conn:
            conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, "
                "status = excluded.status, parent_session_id = excluded.parent_session_id, "
                "metadata = excluded.metadata, context = excluded.context, tags = excluded.tags, "
                "created_at = excluded.created_at, updated_at = excluded.updated_at",
                row,
            )

    def get_session(self, session_id: str) -> Session:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch(
            "read a session", f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        )
        if not rows:
            raise SessionNotFoundError(session_id)
        return _ROWS.session_from_row(rows[0])

    def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        wanted_status = None if status is None else check_choice(status, "status", SessionStatus)
        wanted_agent = None if agent_id is None else check_id(agent_id, "agent_id")
        limit = check_int(limit, "limit", minimum=1)
        offset = check_int(offset, "offset", minimum=0)
        rows = self._fetch(
            "list sessions",
            f"SELECT {SESSION_COLUMNS} FROM sessions "
            "WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent_id = ?2) "
            "ORDER BY created_at, id LIMIT ?3 OFFSET ?4",
            (
                None if wanted_status is None else wanted_status.value,
                wanted_agent,
                -1 if limit is None else limit,
                offset or 0,
            ),
        )
        return [_ROWS.session_from_row(row) for row in rows]

    def delete_session(self, session_id: str) -> None:
        session_id = check_id(session_id, "session_id")
        with self._write("delete a session") as conn:
            conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM streams WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM runs WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        self._hub.release(session_id)

    # Runs -----------------------------------------------------------------------------------

    def save_run(self, run: Run) -> None:
        check_record(run, Run, "run")
        row = _ROWS.run_row(run)
        with self._write("save a run") as conn:
            if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (run.session_id,)).fetchall():
                raise SessionNotFoundError(run.session_id)
            conn.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, "
                "status = excluded.status, input = excluded.input, output = excluded.output, "
                "error = excluded.error, metadata = excluded.metadata, "
                "turn_count = excluded.turn_count, token_usage = excluded.token_usage, "
                "started_at = excluded.started_at, ended_at = excluded.ended_at",
                row,
            )

    def get_run(self, run_id: str) -> Run:
        run_id = check_id(run_id, "run_id")
        rows = self._fetch("read a run", f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise RunNotFoundError(run_id)
        return _ROWS.run_from_row(rows[0])

    def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        session_id = check_id(session_id, "session_id")
        wanted = None if status is None else check_choice(status, "status", RunStatus)
        limit = check_int(limit, "limit", minimum=1)
        rows = self._fetch(
            "list runs",
            f"SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ?1 AND (?2 IS NULL OR status = ?2) "
            "ORDER BY started_at, id LIMIT ?3",
            (session_id, None if wanted is None else wanted.value, -1 if limit is None else limit),
        )
        return [_ROWS.run_from_row(row) for row in rows]

    def get_active_run(self, session_id: str) -> Run | None:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch(
            "read the active run",
            f"SELECT {RUN_COLUMNS} FROM runs WHERE session_id = ? AND status = 'running' "
            "ORDER BY started_at DESC, id DESC LIMIT 1",
            (session_id,),
        )
        return _ROWS.run_from_row(rows[0]) if rows else None

    # Events ---------------------------------------------------------------------------------

    @staticmethod
    def _find(conn: apsw.Connection, event: Event) -> Event | None:
        """The stored event with ``event.id``; ``EventIdConflictError`` if another session's."""
        rows = conn.execute(_SELECT_EVENT_BY_ID, (event.id,)).fetchall()
        if not rows:
            return None
        stored = _ROWS.event_from_row(rows[0])
        if stored.session_id != event.session_id:
            raise EventIdConflictError(event.id, event.session_id, stored.session_id)
        return stored

    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> Event:
        check_event(event, self._max_event_bytes)
        expected_sequence = check_int(expected_sequence, "expected_sequence", minimum=0)
        with self._write("append an event") as conn:
            # Optimistic: the id is almost always new, so the insert itself is the duplicate
            # check (one statement fewer than probing first); a taken id undoes the bump.
            latest: int = conn.execute(_BUMP_SEQUENCE, (event.session_id, 1)).get
            conn.execute(_INSERT_NEW_EVENT, _ROWS.event_row(event, latest))
            if not conn.changes():
                conn.execute(_UNBUMP_SEQUENCE, (event.session_id,))
                return self._stored_as(conn, event)
            if expected_sequence is not None and latest - 1 != expected_sequence:
                raise SequenceConflictError(event.session_id, expected_sequence, latest - 1)
        self._hub.wake((event.session_id,))
        return with_sequence(event, latest)

    def _stored_as(self, conn: apsw.Connection, event: Event) -> Event:
        """The event stored under ``event.id``, which an insert just found taken."""
        stored = self._find(conn, event)
        if stored is None:  # the insert met another constraint: the counter is behind the log
            raise StorageError(
                f"append an event: the sequence counter of session {event.session_id!r} is "
                f"behind its events; run 'sqlitestream check {self._path}'"
            )
        return stored

    def append_events(self, events: Sequence[Event]) -> list[Event]:
        batch = check_events(events, self._max_event_bytes)
        if not batch:
            self._check_open()
            return []
        results: list[Event | None] = [None] * len(batch)
        with self._write("append a batch of events") as conn:
            new: dict[str, int] = {}  # event id -> index in batch of its first occurrence
            counts: dict[str, int] = {}
            for index, event in enumerate(batch):
                first = new.get(event.id)
                if first is not None:
                    if batch[first].session_id != event.session_id:
                        raise EventIdConflictError(
                            event.id, event.session_id, batch[first].session_id
                        )
                    continue
                existing = self._find(conn, event)
                if existing is not None:
                    results[index] = existing
                    continue
                new[event.id] = index
                counts[event.session_id] = counts.get(event.session_id, 0) + 1
            next_seq: dict[str, int] = {}
            for session_id, count in counts.items():
                latest = _bump(conn, session_id, count)
                next_seq[session_id] = latest - count + 1
            rows = []
            for event_id, index in new.items():
                event = batch[index]
                seq = next_seq[event.session_id]
                next_seq[event.session_id] = seq + 1
                rows.append(_ROWS.event_row(event, seq))
                results[index] = with_sequence(event, seq)
            if rows:
                conn.executemany(_INSERT_EVENT, rows)
        for index, event in enumerate(batch):
            if results[index] is None:  # a repeat inside the batch: its first occurrence
                results[index] = results[new[event.id]]
        if counts:
            self._hub.wake(counts.keys())
        return results  # type: ignore[return-value]

    def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[Event]:
        query = EventFilter.build(
            session_id,
            run_id=run_id,
            type=type,
            since=since,
            after=after,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
        )
        sql, bindings = _select_events(query)
        self._check_open()

        def run_query() -> list[Event]:
            return _ROWS.events_from_page(query.session_id, self._fetch("read events", sql, bindings))

        return long_poll(self._hub, query.session_id, run_query, query.wait_seconds)

    def get_latest_sequence(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch("read the latest sequence", _LATEST_SEQUENCE, (session_id,))
        return int(rows[0][0]) if rows else 0

    # Lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        if self._watcher is not None:
            self._watcher.stop()
        self._writer.close()
        with self._pool_lock:
            idle, self._idle_readers = self._idle_readers, []
            self._reader_count -= len(idle)
            self._reader_returned.notify_all()  # waiting readers see the store closed
        for conn in idle:
            conn.close()

    def __enter__(self) -> SQLiteSessionStore:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self._readonly else "open")
        return f"SQLiteSessionStore({self._path!r}, synchronous={self._synchronous!r}, {state})"


def _bump(conn: apsw.Connection, session_id: str, count: int) -> int:
    """Add ``count`` to the session's counter (creating it at 0) and return the new latest."""
    return int(conn.execute(_BUMP_SEQUENCE, (session_id, count)).fetchall()[0][0])  # type: ignore[arg-type]


_SELECT_CACHE: dict[tuple[bool, ...], str] = {}


def _select_events(query: EventFilter) -> tuple[str, tuple[Any, ...]]:
    """SQL for a filter, built only from fixed fragments; every value is a bound parameter."""
    filters = (
        ("seq > ?", query.after),
        ("seq < ?", query.before),
        ("run_id = ?", query.run_id),
        ("type = ?", None if query.type is None else query.type.value),
        ("ts >= ?", query.since_micros),
    )
    present = tuple(value is not None for _, value in filters)
    sql = _SELECT_CACHE.get(present)
    if sql is None:
        where = "".join(f" AND {fragment}" for (fragment, _), used in zip(filters, present) if used)
        sql = f"SELECT {PAGE_COLUMNS} FROM events WHERE session_id = ?{where} ORDER BY seq LIMIT ?"
        _SELECT_CACHE[present] = sql
    values = tuple(value for _, value in filters if value is not None)
    return sql, (query.session_id, *values, -1 if query.limit is None else query.limit)
