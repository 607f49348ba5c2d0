"""``PostgresSessionStore``: the same contract on a shared PostgreSQL server, for apps that run
on several nodes writing and following the same sessions.

Needs psycopg 3 (``pip install "sqlitestream[postgres]"``); this module imports without it and
opening a store then raises :class:`MissingDependencyError`. Every write is one transaction;
an append locks its session's counter row, so sequences stay gap-free across any number of
connections, processes and hosts. Long-polls wake on ``LISTEN``/``NOTIFY`` (see
:mod:`sqlitestream._pg_listener`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlitestream._core import forks
from sqlitestream._core.groupcommit import GroupCommitStats
from sqlitestream._core.validate import check_choice, check_id, check_int, describe
from sqlitestream._core.waiting import FEED, WakeHub, long_poll
from sqlitestream.admin import (
    AdminStore,
    CheckReport,
    ProgressCallback,
    SessionImport,
    StoreInfo,
    StreamInfo,
)
from sqlitestream.errors import (
    ConflictError,
    EventIdConflictError,
    RunNotFoundError,
    SessionNotFoundError,
    StorageError,
    StoreClosedError,
    ValidationError,
)
from sqlitestream.feed import ConsumerCursor, FeedFilter, FeedStore, check_cursor_name
from sqlitestream.models import (
    Event,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
)
from sqlitestream.postgres import admin as _admin
from sqlitestream.postgres import feed as _feed
from sqlitestream.postgres import retention as _retention
from sqlitestream.postgres import schema as _pg_schema
from sqlitestream.postgres.bytestreams import PostgresByteStreams
from sqlitestream.postgres.connection import (
    Database,
    MissingDependencyError,
    redact_dsn,
)
from sqlitestream.postgres.groupcommit import Append, GroupCommit
from sqlitestream.postgres.listener import (
    NotificationListener,
    channel_for,
    payload,
)
from sqlitestream.postgres.rows import (
    RUN_COLUMNS,
    SESSION_COLUMNS,
    event_from_row,
    events_from_page,
    run_from_row,
    run_row,
    session_from_row,
    session_row,
    with_sequence,
)
from sqlitestream.postgres.schema import check_schema_name
from sqlitestream.postgres.statements import Statements
from sqlitestream.postgres.url import display_url
from sqlitestream.retention import RetentionStore, TrimRule
from sqlitestream.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventFilter,
    SessionFilter,
    check_encoded_events,
    check_max_event_bytes,
    check_record,
    encoded_payload,
)

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection

__all__ = ["DEFAULT_SCHEMA", "MissingDependencyError", "PostgresSessionStore"]

T = TypeVar("T")

DEFAULT_SCHEMA = "sqlitestream"
"""The PostgreSQL schema a store lives in unless told otherwise: its own namespace, so its
tables never collide with an application's tables in ``public``."""


class PostgresSessionStore(AdminStore, FeedStore, RetentionStore):
    """The session event store on a PostgreSQL server (psycopg 3).

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL. Several store objects, in any
            number of processes on any number of hosts, may use the same server and schema.
        schema: the PostgreSQL schema holding the store's tables (created, with the tables, on
            first open): 1-48 lowercase letters, digits or ``_``.
        pool_size: the most connections this store object opens for its calls (the long-poll
            listener uses one more). Size it for the threads that call the store at once.
        pool_timeout_ms: how long a call waits for a free connection before ``StoreBusyError``.
        connect_timeout_ms: how long opening one connection may take (libpq counts whole
            seconds: rounded up, at least 1000).
        application_name: shown in ``pg_stat_activity`` for every connection of the store.
        max_event_bytes: the largest encoded ``data`` + ``metadata`` an event may carry.
        poll_interval_ms: while a long-poll waits, how often the store also checks the waited
            sessions in case a notification was lost (the notification itself wakes at once);
            at least 10.
        readonly: inspect an existing store: nothing is created or upgraded, and the server
            refuses every write (``StorageError``).
        create: when the schema holds no store yet, create it (default) or raise
            ``StorageError``.

    Opening refuses, without changing anything, a schema stamped with a newer version
    (``SchemaVersionError``) or holding same-named tables that are not a store
    (``StorageError``); an older version is upgraded in one transaction.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = 10,
        pool_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        application_name: str = "sqlitestream",
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        poll_interval_ms: int = 1000,
        readonly: bool = False,
        create: bool = True,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValidationError(f"dsn must be a non-empty connection string, got {describe(dsn)}")
        self._schema = check_schema_name(schema)
        size = check_int(pool_size, "pool_size", minimum=1, allow_none=False) or 1
        pool_timeout = check_int(pool_timeout_ms, "pool_timeout_ms", minimum=0, allow_none=False) or 0
        connect_timeout = (
            check_int(connect_timeout_ms, "connect_timeout_ms", minimum=1000, allow_none=False) or 1000
        )
        if not isinstance(application_name, str) or "\x00" in application_name:
            raise ValidationError(f"application_name must be a string, got {describe(application_name)}")
        self._max_event_bytes = check_max_event_bytes(max_event_bytes)
        fallback = check_int(poll_interval_ms, "poll_interval_ms", minimum=10, allow_none=False) or 10
        for name, flag in (("readonly", readonly), ("create", create)):
            if type(flag) is not bool:
                raise ValidationError(f"{name} must be a bool, got {describe(flag)}")
        self._readonly = readonly
        self._create = create
        self._connect_timeout_s = connect_timeout / 1000.0
        self._db = Database(
            dsn,
            application_name=application_name,
            pool_size=size,
            pool_timeout_s=pool_timeout / 1000.0,
            connect_timeout_s=math.ceil(connect_timeout / 1000),
            readonly=readonly,
        )
        self._dsn = redact_dsn(dsn)
        self._location = display_url(dsn, self._schema)
        self._channel = channel_for(self._schema)
        self._sql = Statements(self._schema)
        self._closed = False
        self._pid = os.getpid()  # the process this store belongs to (see _core/forks.py)
        self._hub = WakeHub()
        streams_hub = WakeHub()
        self._listener = NotificationListener(
            self._db.connect,
            self._schema,
            self._hub,
            is_own_backend=self._db.pool.owns_backend,
            fallback_interval_s=fallback / 1000.0,
            streams_hub=streams_hub,
        )
        self._appends = GroupCommit(
            self._sql, self._channel, self._db.run, self._db.run_pipelined, self._hub.wake
        )
        self._byte_streams = PostgresByteStreams(
            self._run, self._wait_hub, self._schema, self._channel, streams_hub
        )
        try:
            self._upgraded_from = self._open()
        except BaseException:
            self._db.close()
            raise
        forks.opened(self)

    def _open(self) -> int | None:
        def check(conn: Connection) -> bool:
            (encoding,) = conn.execute("SHOW server_encoding").fetchone() or ("?",)
            if encoding != "UTF8":
                raise StorageError(f"the database encoding is {encoding}; sqlitestream needs a UTF8 database")
            return _pg_schema.check_usable(conn, self._schema, readonly=self._readonly, create=self._create)

        if not self._db.run("open the store", check, transaction=False):
            return None
        return self._db.run(
            f"create or upgrade the schema {self._schema!r}",
            lambda conn: _pg_schema.create_or_upgrade(conn, self._schema),
            transaction=True,
            exclusive=_pg_schema.lock_name(self._schema),
        )

    # Public facts about the store -----------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The connection string without its password."""
        return self._dsn

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def path(self) -> str:
        """Where the store is, as a ``postgresql://`` URL without the password and with a
        ``schema`` parameter: what ``--db`` takes on the command line."""
        return self._location

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def upgraded_from(self) -> int | None:
        """The schema version this open created (0) or upgraded from; None if it was current."""
        return self._upgraded_from

    # Running statements ---------------------------------------------------------------------

    def _check_open(self) -> None:
        forks.refuse_if_inherited(self._pid, self._location)
        if self._closed:
            raise StoreClosedError(f"the store {self._dsn!r} (schema {self._schema!r}) is closed")

    def _run(self, action: str, work: Callable[[Connection], T], transaction: bool) -> T:
        self._check_open()
        return self._db.run(action, work, transaction=transaction)

    def byte_streams(self) -> PostgresByteStreams:
        """The store's byte streams (:class:`~sqlitestream.bytestreams.ByteStreams`), in its
        schema: what ``sqlitestream serve`` serves at ``/v1/stream/``, shared by every node
        on the same database."""
        self._check_open()
        return self._byte_streams

    def _fetch(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self._check_open()
        return self._db.run(action, lambda conn: conn.execute(sql, params).fetchall(), transaction=False)

    # Sessions -------------------------------------------------------------------------------

    def create_session(self, session: Session) -> None:
        check_record(session, Session, "session")
        row = session_row(session)
        sql = self._sql.create_session
        self._check_open()
        created = self._db.run(
            "create a session", lambda conn: conn.execute(sql, row).rowcount, transaction=False
        )
        if not created:
            raise ConflictError(f"session {session.id!r} already exists")

    def save_session(self, session: Session) -> None:
        check_record(session, Session, "session")
        row = session_row(session)
        sql = self._sql.save_session
        self._check_open()
        self._db.run("save a session", lambda conn: conn.execute(sql, row), transaction=False)

    def get_session(self, session_id: str) -> Session:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch(
            "read a session",
            f"SELECT {SESSION_COLUMNS} FROM {self._sql.sessions} WHERE id = %s",
            (session_id,),
        )
        if not rows:
            raise SessionNotFoundError(session_id)
        return session_from_row(rows[0])

    def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        wanted = SessionFilter.build(status=status, agent_id=agent_id, limit=limit, offset=offset)
        rows = self._fetch(
            "list sessions",
            f"SELECT {SESSION_COLUMNS} FROM {self._sql.sessions} "
            "WHERE (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR agent_id = %s) "
            "ORDER BY created_at, id LIMIT %s OFFSET %s",
            (
                wanted.status_text,
                wanted.status_text,
                wanted.agent_id,
                wanted.agent_id,
                wanted.limit,
                wanted.offset,
            ),
        )
        return [session_from_row(row) for row in rows]

    def delete_session(self, session_id: str) -> None:
        session_id = check_id(session_id, "session_id")
        sql = self._sql
        note = payload("d", session_id)

        def delete(conn: Connection) -> None:
            conn.execute(sql.lock_counter, (session_id,))
            conn.execute(f"DELETE FROM {sql.events} WHERE session_id = %s", (session_id,))
            conn.execute(f"DELETE FROM {sql.runs} WHERE session_id = %s", (session_id,))
            conn.execute(f"DELETE FROM {sql.sessions} WHERE id = %s", (session_id,))
            conn.execute(f"DELETE FROM {sql.streams} WHERE session_id = %s", (session_id,))
            conn.execute("SELECT pg_notify(%s, %s)", (self._channel, note))

        self._check_open()
        self._db.run("delete a session", delete, transaction=True)
        self._hub.release(session_id)

    # Runs -----------------------------------------------------------------------------------

    def save_run(self, run: Run) -> None:
        check_record(run, Run, "run")
        row = run_row(run)
        sql = self._sql

        def save(conn: Connection) -> None:
            # FOR KEY SHARE: the session cannot be deleted until this transaction ends.
            found = conn.execute(
                f"SELECT 1 FROM {sql.sessions} WHERE id = %s FOR KEY SHARE", (run.session_id,)
            ).fetchone()
            if found is None:
                raise SessionNotFoundError(run.session_id)
            conn.execute(sql.save_run, row)

        self._check_open()
        self._db.run("save a run", save, transaction=True)

    def get_run(self, run_id: str) -> Run:
        run_id = check_id(run_id, "run_id")
        rows = self._fetch(
            "read a run", f"SELECT {RUN_COLUMNS} FROM {self._sql.runs} WHERE id = %s", (run_id,)
        )
        if not rows:
            raise RunNotFoundError(run_id)
        return run_from_row(rows[0])

    def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        session_id = check_id(session_id, "session_id")
        wanted = None if status is None else check_choice(status, "status", RunStatus)
        limit = check_int(limit, "limit", minimum=1)
        value = None if wanted is None else wanted.value
        rows = self._fetch(
            "list runs",
            f"SELECT {RUN_COLUMNS} FROM {self._sql.runs} "
            "WHERE session_id = %s AND (%s::text IS NULL OR status = %s) "
            "ORDER BY started_at, id LIMIT %s",
            (session_id, value, value, limit),
        )
        return [run_from_row(row) for row in rows]

    def get_active_run(self, session_id: str) -> Run | None:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch(
            "read the active run",
            f"SELECT {RUN_COLUMNS} FROM {self._sql.runs} WHERE session_id = %s "
            "AND status = 'running' ORDER BY started_at DESC, id DESC LIMIT 1",
            (session_id,),
        )
        return run_from_row(rows[0]) if rows else None

    # Events ---------------------------------------------------------------------------------

    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        data, metadata, size = encoded_payload(event, self._max_event_bytes)
        expected_sequence = check_int(expected_sequence, "expected_sequence", minimum=0)
        self._check_open()
        mine = Append((event,), ((data, metadata),), size, expected_sequence)
        alone = None if expected_sequence is not None else lambda: [self._append_alone(event, data, metadata)]
        return self._appends.append(mine, alone)[0]

    def _append_alone(self, event: Event, data: str, metadata: str) -> StoredEvent:
        """An append with nothing queued or being written beside it: one statement, one round
        trip (see ``Statements.append``), the lightest form of the plain groups'."""
        sql = self._sql
        values = (event.id, event.type.value, event.run_id, event.timestamp, data, metadata)

        def append(conn: Connection) -> StoredEvent:
            row = conn.execute(
                sql.append, (event.id, event.session_id, event.session_id, *values, self._channel)
            ).fetchone()
            assert row is not None
            if row[0] is not None:
                return with_sequence(event, int(row[0]), int(row[1]))
            stored = event_from_row(row[2:])
            if stored.session_id != event.session_id:
                raise EventIdConflictError(event.id, event.session_id, stored.session_id)
            return stored

        stored = self._db.run("append an event", append, transaction=False)
        self._hub.wake((event.session_id,))
        return stored

    def append_events(self, events: Iterable[Event]) -> list[StoredEvent]:
        batch = check_encoded_events(events, self._max_event_bytes)
        self._check_open()
        if not batch.events:
            return []
        return self._appends.append(Append(batch.events, batch.payloads, batch.size, None))

    def group_commit_stats(self) -> GroupCommitStats:
        """How this store object's appends have shared transactions (see
        :class:`~sqlitestream.postgres.GroupCommitStats`): appends from threads of one
        process that arrive while another is being written go together in the next
        transaction, so one commit acknowledges them all."""
        return self._appends.stats()

    def read_events(self, query: EventFilter) -> list[StoredEvent]:
        sql, params = self._sql.pages.page(query, no_limit=None)
        self._check_open()

        def run_query() -> list[StoredEvent]:
            return events_from_page(query.session_id, self._fetch("read events", sql, params))

        if query.wait_seconds > 0:
            # Listen before the waiter's first re-query, so no notification can slip between.
            self._listener.ensure_started(self._connect_timeout_s)
        return long_poll(self._hub, query.session_id, run_query, query.wait_seconds)

    # The feed and consumer cursors (the FeedStore contract; see feed.py) -------------------

    def query_feed(self, query: FeedFilter) -> list[StoredEvent]:
        self._check_open()
        sql = self._sql.feed
        if query.wait_seconds > 0:
            self._listener.ensure_started(self._connect_timeout_s)
        return long_poll(
            self._hub, FEED, lambda: _feed.feed_page(self._fetch, sql, query), query.wait_seconds
        )

    def get_last_position(self) -> int:
        return _feed.last_position(self._fetch, self._sql.feed)

    def write_cursor(self, name: str, position: int, expected: int | None) -> None:
        _feed.write_cursor(self._transact, self._sql.feed, name, position, expected)

    def get_cursor(self, name: str) -> int:
        return _feed.get_cursor(self._fetch, self._sql.feed, check_cursor_name(name))

    def list_cursors(self) -> list[ConsumerCursor]:
        return _feed.list_cursors(self._fetch, self._sql.feed)

    def delete_cursor(self, name: str) -> None:
        _feed.delete_cursor(self._transact, self._sql.feed, check_cursor_name(name))

    def _wait_hub(self) -> WakeHub:
        """See :mod:`sqlitestream._core.waiting`: LISTENing when this returns."""
        self._check_open()
        self._listener.ensure_started(self._connect_timeout_s)
        return self._hub

    def get_latest_sequence(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch("read the latest sequence", self._sql.latest, (session_id,))
        return int(rows[0][0]) if rows else 0

    # Lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool and the listener. In a process that inherited this store through
        fork() it only marks it closed: the connections' sockets are the parent's."""
        if self._closed or self._pid != os.getpid():
            self._closed = True
            return
        self._closed = True
        forks.closed(self)
        self._hub.close()
        self._byte_streams.close()
        self._listener.stop()
        self._db.close()

    # Retention (the RetentionStore contract) -------------------------------------------------

    def apply_trim(self, session_id: str, rule: TrimRule, *, dry_run: bool) -> int:
        """See :meth:`RetentionStore.apply_trim`; here holding the session's counter row, in
        transactions of at most ``TRIM_CHUNK`` events (see postgres/retention.py)."""
        return _retention.trim(self._transact, self._schema, session_id, rule, dry_run=dry_run)

    def trimmable_sessions(self) -> list[str]:
        return _retention.trimmable_sessions(self._fetch, self._schema)

    def get_stream_info(self, session_id: str) -> StreamInfo:
        return _retention.stream_info(self._fetch, self._schema, check_id(session_id, "session_id"))

    # Administration (the AdminStore contract) -----------------------------------------------

    def _transact(self, action: str, work: Callable[[Connection], T]) -> T:
        self._check_open()
        return self._db.run(action, work, transaction=True)

    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        return _admin.list_streams(self._fetch, self._schema, session_ids)

    def schema_version(self) -> int:
        """The schema version stamped in the store's schema."""
        return _admin.schema_version(self._fetch, self._schema)

    def store_info(self) -> StoreInfo:
        """See :class:`~sqlitestream.admin.StoreInfo`; here with the server's version, its
        ``synchronous_commit`` setting and the tables' size."""
        return _admin.store_info(self._fetch, self._schema, path=self._location, dsn=self._dsn)

    def check_integrity(self, *, on_progress: ProgressCallback | None = None) -> CheckReport:
        """See :meth:`AdminStore.check_integrity`; PostgreSQL checks its own pages (``amcheck``
        is the tool for that), so here only the log's invariants."""
        return _admin.check_integrity(self._fetch, self._transact, self._schema, on_progress)

    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
        first_sequence: int | None = None,
    ) -> SessionImport:
        """See :meth:`AdminStore.import_session`; here one transaction that holds the
        session's counter row, so concurrent appends wait for it and cannot interleave."""
        result = _admin.import_session(
            self._transact,
            self._schema,
            self._channel,
            self._max_event_bytes,
            session_id,
            session=session,
            runs=runs,
            events=events,
            first_sequence=first_sequence,
        )
        if result.events_added:
            self._hub.wake((result.session_id,))
        return result

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self._readonly else "open")
        return f"PostgresSessionStore({self._location!r}, {state})"
