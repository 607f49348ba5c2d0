"""``SQLiteSessionStore``: the contract on one embedded SQLite file (or ``":memory:"``).

Writes go through one writer connection per store (serialised by a lock, each write one
``BEGIN IMMEDIATE`` transaction, which appends made at the same time by several threads share:
``groupcommit.py``); reads use a pool of read-only connections, so readers never wait for the
writer (WAL). Several processes may open the same file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import apsw

from sqlitestream._core import forks
from sqlitestream._core.groupcommit import GroupCommitStats
from sqlitestream._core.rows import PAGE_COLUMNS, RowCodec
from sqlitestream._core.sql import EventQueries
from sqlitestream._core.validate import check_id, check_int, check_text, describe
from sqlitestream._core.waiting import FEED, NO_SEED, WakeHub, long_poll
from sqlitestream.admin import (
    AdminStore,
    CheckReport,
    ProgressCallback,
    SessionImport,
    StoreInfo,
    StreamInfo,
)
from sqlitestream.bytestreams import Producer
from sqlitestream.errors import StorageError, StoreClosedError, ValidationError
from sqlitestream.feed import ConsumerCursor, FeedFilter, FeedStore, check_cursor_name
from sqlitestream.models import (
    Event,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
    from_micros,
    from_micros_many,
    to_micros,
)
from sqlitestream.producers import ProducerAppend, SessionProducers, producer_session, producer_verdict
from sqlitestream.retention import RetentionStore, TrimRule
from sqlitestream.sqlite import admin as _admin
from sqlitestream.sqlite import backup as _backup
from sqlitestream.sqlite import feed as _feed
from sqlitestream.sqlite import records as _records
from sqlitestream.sqlite import retention as _retention
from sqlitestream.sqlite import schema as _schema
from sqlitestream.sqlite.appends import append_one, insert_batch, producer_state, record_producer
from sqlitestream.sqlite.connection import (
    SYNCHRONOUS_LEVELS,
    apply_settings,
    open_connection,
    translating,
)
from sqlitestream.sqlite.groupcommit import GroupCommit
from sqlitestream.sqlite.opening import no_store_at, open_file
from sqlitestream.sqlite.readers import ReaderPool
from sqlitestream.sqlite.transaction import Writer, WriteTransaction
from sqlitestream.sqlite.watcher import DataVersionWatcher
from sqlitestream.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventFilter,
    check_encoded_events,
    check_max_event_bytes,
    check_record,
    encoded_payload,
)

if TYPE_CHECKING:
    from sqlitestream.sqlite.bytestreams import SQLiteByteStreams

__all__ = ["SQLiteSessionStore"]

_LATEST_SEQUENCE = "SELECT latest_seq FROM streams WHERE session_id = ?"
_PAGES = EventQueries("events", PAGE_COLUMNS, "?", to_micros)
_ROWS = RowCodec(to_micros, from_micros, from_micros_many)


class SQLiteSessionStore(AdminStore, FeedStore, RetentionStore, SessionProducers):
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
        create: when there is no store at ``path`` (no file, or an empty one), create it
            (default) or raise ``StorageError`` without creating anything. A ``":memory:"``
            store is always new.
        max_event_bytes: the largest encoded ``data`` + ``metadata`` an event may carry.
        poll_interval_ms: how often, while a long-poll is waiting, the store checks whether
            another process committed (the in-process wake-up is immediate). On Linux a write
            to the store's WAL file wakes the check at once (inotify) and this timed check only
            runs every ``max(poll_interval_ms, 50)`` ms as the fallback.

    Opening refuses, without modifying it, a file that is not a sqlitestream store
    (``StorageError``) or that has a newer schema version (``SchemaVersionError``); an older
    version is upgraded in one transaction.
    """

    SCHEMA_VERSION: ClassVar[int] = _schema.SCHEMA_VERSION
    """The schema version (``PRAGMA user_version``) this code creates and upgrades files to."""

    @staticmethod
    def schema_sql() -> str:
        """The SQL that creates an empty store's tables at :attr:`SCHEMA_VERSION`."""
        return _schema.schema_sql()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        busy_timeout_ms: int = 5000,
        readonly: bool = False,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        poll_interval_ms: int = 2,
        create: bool = True,
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
        self._busy_timeout_ms = (
            check_int(busy_timeout_ms, "busy_timeout_ms", minimum=0, allow_none=False) or 0
        )
        for name, flag in (("readonly", readonly), ("create", create)):
            if type(flag) is not bool:
                raise ValidationError(f"{name} must be a bool, got {describe(flag)}")
        self._max_event_bytes = check_max_event_bytes(max_event_bytes)
        interval = check_int(poll_interval_ms, "poll_interval_ms", minimum=1, allow_none=False) or 1
        self._poll_interval_s = interval / 1000.0
        self._synchronous = synchronous
        self._readonly = readonly
        self._in_memory = path_text == ":memory:"
        if self._in_memory and readonly:
            raise ValidationError("readonly=True needs a store file; ':memory:' starts empty")
        # Symlinks resolved once: SQLite puts -wal and -shm beside the real file, and every
        # side file of ours (-lock, the WAL hint, the sizes in store_info) must be there too.
        self._path = path_text if self._in_memory else os.path.realpath(path_text)
        self._closed = False
        self._pid = os.getpid()  # the process this store belongs to (see _core/forks.py)
        self._readers = ReaderPool(self._open_reader, self._path)
        self._hub = WakeHub(on_register=self._on_register, seed=self._seed)
        self._watcher: DataVersionWatcher | None = None
        self._byte_streams: SQLiteByteStreams | None = None  # made by byte_streams()
        self._streams_watcher: DataVersionWatcher | None = None
        self._streams_lock = threading.Lock()
        self._writer: Writer  # set by _open: the write connection, its locks (see transaction.py)
        self._appends: GroupCommit  # set by _open: the appends' queue (see groupcommit.py)
        self._upgraded_from: int | None = None
        self._positions = _feed.PositionCache()  # the writer's last position (see feed.py)
        self._immutable = False  # a read-only open of a store in a read-only directory
        if not (create or readonly or self._in_memory) and no_store_at(self._path):
            raise StorageError(
                f"no store at {self._path!r} (create=False: nothing was created; "
                f"`sqlitestream --db {self._path} init` creates one)"
            )
        self._open()
        forks.opened(self)

    # Opening ------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._in_memory:
            conn = self._configured(open_connection(":memory:", readonly=False))
            self._writer = Writer(conn, self._path, busy_timeout_ms=self._busy_timeout_ms)
            self._upgraded_from = _schema.create_or_upgrade(self._writer, self._path)
            self._appends = GroupCommit(self._writer)
            self._positions.keep_on_commit(conn)
            return
        opened = open_file(
            self._path,
            readonly=self._readonly,
            synchronous=self._synchronous,
            busy_timeout_ms=self._busy_timeout_ms,
        )
        self._writer = opened.writer
        self._immutable = opened.immutable
        self._upgraded_from = opened.upgraded_from
        self._appends = GroupCommit(self._writer)
        if opened.writer.conn is not None:
            self._positions.keep_on_commit(opened.writer.conn)
        if self._readonly:
            self._readers.adopt(opened.conn)
        self._watcher = DataVersionWatcher(
            self._open_reader,
            self._hub,
            interval_s=self._poll_interval_s,
            wal_path=self._path + "-wal",
        )

    def _configured(self, conn: apsw.Connection) -> apsw.Connection:
        try:
            apply_settings(conn, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_reader(self) -> apsw.Connection:
        return self._configured(open_connection(self._path, readonly=True, immutable=self._immutable))

    def _on_register(self) -> None:
        if self._watcher is not None:  # None for ":memory:": every append is this process's own
            self._watcher.ensure_running()

    def _seed(self, session_id: str) -> object:
        if self._watcher is None or session_id == FEED:
            return NO_SEED
        return self._watcher.tip_of(session_id)

    # Public facts about the store -----------------------------------------------------------

    @property
    def path(self) -> str:
        """The absolute path of the store file with symlinks resolved (the file SQLite opens,
        beside which its ``-wal`` and ``-shm`` are), or ``":memory:"``."""
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

    def group_commit_stats(self) -> GroupCommitStats:
        """How this store object's appends shared write transactions (a
        :class:`~sqlitestream.sqlite.GroupCommitStats`): concurrent appends from threads of
        this process are committed together, each still with its own outcome."""
        return self._appends.stats()

    # Connections ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        """Refuse a closed store, and a store this process inherited through fork()."""
        forks.refuse_if_inherited(self._pid, self._path)
        if self._closed:
            raise StoreClosedError(f"the store {self._path!r} is closed")

    def _write(self, action: str) -> WriteTransaction:
        """``with self._write(action) as conn``: the writer connection inside one write
        transaction (the only way anything writes; see transaction.py)."""
        self._check_open()  # before the transaction takes a lock a forked child never gets
        return WriteTransaction(self._writer, action)

    @contextlib.contextmanager
    def _read(self, action: str) -> Iterator[apsw.Connection]:
        """A connection to read with, its apsw errors translated."""
        self._check_open()
        if not self._in_memory:
            with self._readers.reading(action) as conn:
                yield conn
            return
        writer = self._writer
        with writer.lock, translating(action):
            self._check_open()
            assert writer.conn is not None
            yield writer.conn

    def _fetch(self, action: str, sql: str, bindings: tuple[Any, ...] = ()) -> list[Any]:
        """All rows of one query (every page read and latest-sequence read takes this path)."""
        if not self._in_memory:
            self._check_open()
            return self._readers.fetch(action, sql, bindings)
        with self._read(action) as writer:
            return writer.execute(sql, bindings).fetchall()

    # Sessions and runs (see records.py) --------------------------------------------------

    def create_session(self, session: Session) -> None:
        _records.create_session(self._write, session)

    def save_session(self, session: Session) -> None:
        _records.save_session(self._write, session)

    def get_session(self, session_id: str) -> Session:
        return _records.get_session(self._fetch, session_id)

    def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        return _records.list_sessions(
            self._fetch, status=status, agent_id=agent_id, limit=limit, offset=offset
        )

    def delete_session(self, session_id: str) -> None:
        self._hub.release(_records.delete_session(self._write, session_id))

    def save_run(self, run: Run) -> None:
        _records.save_run(self._write, run)

    def get_run(self, run_id: str) -> Run:
        return _records.get_run(self._fetch, run_id)

    def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        return _records.list_runs(self._fetch, session_id, status=status, limit=limit)

    def get_active_run(self, session_id: str) -> Run | None:
        return _records.get_active_run(self._fetch, session_id)

    # Events ---------------------------------------------------------------------------------

    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        data, metadata, size = encoded_payload(event, self._max_event_bytes)
        if expected_sequence is not None:  # as almost always: no call (~900 instructions)
            expected_sequence = check_int(expected_sequence, "expected_sequence", minimum=0)
        self._check_open()  # before queueing for a lock a forked child never gets
        append = functools.partial(
            append_one, self._writer, self._positions, event, data, metadata, expected_sequence
        )
        stored, new = self._appends.append("append an event", append, size)
        if new:
            self._hub.wake((event.session_id,))
        return stored

    def append_events(self, events: Iterable[Event]) -> list[StoredEvent]:
        batch = check_encoded_events(events, self._max_event_bytes)
        self._check_open()
        if not batch.events:
            return []
        plan, numbered = self._appends.append(
            "append a batch of events",
            functools.partial(insert_batch, batch=batch, positions=self._positions),
            batch.size,
        )
        if plan.counts:
            self._hub.wake(plan.counts.keys())
        return plan.results(numbered)

    def append_events_as(self, producer: Producer, events: Sequence[Event]) -> ProducerAppend:
        check_record(producer, Producer, "producer")
        batch = check_encoded_events(events, self._max_event_bytes)
        session_id = producer_session(batch.events)
        self._check_open()

        def stamped(conn: apsw.Connection) -> tuple[ProducerAppend, Iterable[str]]:
            last = producer_verdict(producer_state(conn, session_id, producer.id), producer)
            if last is not None:
                return ProducerAppend([], True, producer.epoch, last), ()
            plan, numbered = insert_batch(conn, batch=batch, positions=self._positions)
            record_producer(conn, session_id, producer)
            stored = ProducerAppend(plan.results(numbered), False, producer.epoch, producer.seq)
            return stored, list(plan.counts)

        result, woken = self._appends.append("append a producer's batch of events", stamped, batch.size)
        if woken:
            self._hub.wake(woken)
        return result

    def read_events(self, query: EventFilter) -> list[StoredEvent]:
        sql, bindings = _PAGES.page(query, no_limit=-1)
        self._check_open()

        def run_query() -> list[StoredEvent]:
            return _ROWS.events_from_page(query.session_id, self._fetch("read events", sql, bindings))

        return long_poll(self._hub, query.session_id, run_query, query.wait_seconds)

    # The feed and consumer cursors (the FeedStore contract; see feed.py) -------------------

    def query_feed(self, query: FeedFilter) -> list[StoredEvent]:
        self._check_open()
        return long_poll(self._hub, FEED, lambda: _feed.feed_page(self._fetch, query), query.wait_seconds)

    def get_last_position(self) -> int:
        return _feed.last_position(self._fetch)

    def write_cursor(self, name: str, position: int, expected: int | None) -> None:
        _feed.write_cursor(self._write, name, position, expected)

    def get_cursor(self, name: str) -> int:
        return _feed.get_cursor(self._fetch, check_cursor_name(name))

    def list_cursors(self) -> list[ConsumerCursor]:
        return _feed.list_cursors(self._fetch)

    def delete_cursor(self, name: str) -> None:
        _feed.delete_cursor(self._write, check_cursor_name(name))

    def _wait_hub(self) -> WakeHub:
        """See :mod:`sqlitestream._core.waiting` (the watcher starts with the first waiter)."""
        self._check_open()
        return self._hub

    def byte_streams(self) -> SQLiteByteStreams:
        """The store's byte streams (:class:`~sqlitestream.bytestreams.ByteStreams`): the
        Durable Streams protocol's streams, in this file beside the sessions; their changes
        in other processes wake this process's watchers as sessions' do."""
        # Imported here: the byte streams' rules cost short CLI commands ~8 ms of start-up.
        from sqlitestream.sqlite.bytestreams import open_byte_streams

        self._check_open()
        with self._streams_lock:  # made once, by whichever thread asks first
            if self._byte_streams is None:
                self._byte_streams, self._streams_watcher = open_byte_streams(
                    self._write,
                    self._fetch,
                    None if self._in_memory else self._open_reader,
                    interval_s=self._poll_interval_s,
                    wal_path=self._path + "-wal",
                )
        return self._byte_streams

    def get_latest_sequence(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        rows = self._fetch("read the latest sequence", _LATEST_SEQUENCE, (session_id,))
        return int(rows[0][0]) if rows else 0

    # Lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections; the last connection to the file checkpoints it. In a process
        that inherited this store through fork() it only marks it closed and touches nothing:
        the files and connections are the parent's (see ``_core/forks.py``)."""
        if self._closed or self._pid != os.getpid():
            self._closed = True
            return
        self._closed = True
        forks.closed(self)
        self._hub.close()
        if self._byte_streams is not None:
            self._byte_streams.close()
        for watcher in (self._watcher, self._streams_watcher):
            if watcher is not None:
                watcher.stop()
        # Readers first: the last connection to close checkpoints the WAL into the file and
        # removes -wal and -shm, and only the writer can checkpoint, so it must be that last one.
        self._readers.close()
        self._writer.close()

    # Retention (the RetentionStore contract) -------------------------------------------------

    def apply_trim(self, session_id: str, rule: TrimRule, *, dry_run: bool) -> int:
        """See :meth:`RetentionStore.apply_trim`; here in transactions of at most
        ``TRIM_CHUNK`` events (see sqlite/retention.py)."""
        if dry_run:
            return _retention.count_trim(self._fetch, session_id, rule)
        return _retention.trim(self._write, [session_id], rule)

    def apply_trims(
        self, session_ids: list[str], rule: TrimRule, *, dry_run: bool, on_progress: ProgressCallback | None
    ) -> int:
        """See :meth:`RetentionStore.apply_trims`; here sessions share transactions of at most
        ``TRIM_CHUNK`` events (see sqlite/retention.py for why)."""
        if dry_run:
            return super().apply_trims(session_ids, rule, dry_run=True, on_progress=on_progress)
        return _retention.trim(self._write, session_ids, rule, on_progress)

    def reclaim_space(self) -> None:
        """Hand the pages a trim emptied back to the file system (see sqlite/retention.py)."""
        _retention.give_back_pages(self._write)

    def trimmable_sessions(self) -> list[str]:
        return _retention.trimmable_sessions(self._fetch)

    def get_stream_info(self, session_id: str) -> StreamInfo:
        return _retention.stream_info(self._fetch, check_id(session_id, "session_id"))

    def compact(self) -> None:
        """Rewrite the store file without its free pages (``VACUUM``), switching a store created
        before incremental auto-vacuum to it, so that later trims shrink the file. Blocks this
        store object's writers meanwhile; needs free disk as large as the file. Atomic."""
        self._check_open()
        writer = self._writer
        with writer.lock, translating("compact the store"):
            self._check_open()
            if writer.conn is None:
                raise ValidationError(f"the store {self._path!r} is read-only; it cannot be compacted")
            _retention.compact(writer.conn)

    # Administration (the AdminStore contract) -----------------------------------------------

    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        return _admin.list_streams(self._fetch, session_ids)

    def store_info(self) -> StoreInfo:
        """See :class:`~sqlitestream.admin.StoreInfo`; here with the file's sizes, journal mode
        and this store object's synchronous level."""
        return _admin.store_info(
            self._read,
            path=self._path,
            in_memory=self._in_memory,
            synchronous=self._synchronous,
            wal_pinned=self._wal_pinned(),
        )

    def check_integrity(self, *, on_progress: ProgressCallback | None = None) -> CheckReport:
        """See :meth:`AdminStore.check_integrity`; here with SQLite's ``PRAGMA integrity_check``."""
        wal = [] if self._in_memory else _admin.wal_findings(self._path, self._wal_pinned())
        return _admin.check_integrity(self._read, on_progress, wal=wal)

    def _wal_pinned(self) -> bool | None:
        checkpoints = self._writer.checkpoints
        return None if checkpoints is None else checkpoints.blocked

    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
        first_sequence: int | None = None,
    ) -> SessionImport:
        """See :meth:`AdminStore.import_session`; here one ``BEGIN IMMEDIATE`` transaction."""
        result = _admin.import_session(
            self._write,
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

    # Backups (a file store's own; not part of the AdminStore contract) ------------------------

    def backup(
        self,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> str:
        """Write a consistent copy of the store (one snapshot, taken while others write, which
        it does not hold up) to the new file ``dest``; return ``dest``'s absolute path.

        The copy is a complete store, never seen half-written: it goes to a temporary file
        beside ``dest``, removed again on failure, then renamed. An existing ``dest`` raises
        ``ValidationError`` unless ``overwrite=True`` (one rename; it keeps its permissions);
        a new one gets a new store file's mode. ``on_progress(pages_done, pages_total)`` is
        called every 256 pages and at the end. Works on read-only and ``":memory:"`` stores.
        See docs/sqlite-file.md (Backups) for what else is refused and why.
        """
        return _backup.write_backup(
            self._read, self._path, dest, overwrite=overwrite, on_progress=on_progress
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self._readonly else "open")
        return f"SQLiteSessionStore({self._path!r}, synchronous={self._synchronous!r}, {state})"
