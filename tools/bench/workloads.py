"""The same work done by sqlitestream, by hand on apsw and stdlib sqlite3 (the raw limit), and
by a naive in-memory list: single appends, batches, cursor pages.

Every writer exposes ``append(n)`` (n single-event transactions), ``append_batch(n, size)``
(n/size transactions of ``size`` events) and every reader ``read_all(session)`` (walk one
session in pages of 100, decoding JSON), so the cases can time any of them the same way.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import apsw

from sqlitestream import Event, EventType, InMemorySessionStore, SQLiteSessionStore

PAGE = 100
TEXT = "The quick brown fox jumps over the lazy dog; an agent's message of ordinary size."


def payload(index: int) -> dict[str, Any]:
    """A small, realistic event body (about 150 bytes of JSON)."""
    return {"text": TEXT, "index": index, "tokens": {"input": 12, "output": 34}, "ok": True}


def new_event_id() -> str:
    # The same shape and cost as sqlitestream's own id generator (models.new_id).
    return f"evt_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def dumps(value: Any) -> str:
    # The same JSON encoding as sqlitestream stores (compact, UTF-8 kept).
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def now_micros() -> int:
    return time.time_ns() // 1000


def session_name(index: int) -> str:
    return f"s{index:05d}"


# sqlitestream ------------------------------------------------------------------------------


class OurStore:
    """sqlitestream's SQLite store (or in-memory store), driven through its public API."""

    label = "sqlitestream"

    def __init__(self, store: SQLiteSessionStore | InMemorySessionStore, session: str = "bench") -> None:
        self.store = store
        self.session = session
        self.counter = 0

    @classmethod
    def file(cls, path: Path, synchronous: str, session: str = "bench") -> OurStore:
        return cls(SQLiteSessionStore(path, synchronous=synchronous), session)

    def append(self, n: int) -> None:
        store, session = self.store, self.session
        start = self.counter
        for i in range(start, start + n):
            store.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id=session, data=payload(i))
            )
        self.counter += n

    def _batch(self, start: int, size: int) -> list[Event]:
        return [
            Event(type=EventType.MESSAGE_SENT, session_id=self.session, data=payload(i))
            for i in range(start, start + size)
        ]

    def append_batch(self, n: int, size: int) -> None:
        for start in range(self.counter, self.counter + n, size):
            self.store.append_events(self._batch(start, size))
        self.counter += n

    def store_batch_rate(self, n: int, size: int) -> float:
        """:meth:`append_batch`'s rate with every ``Event`` built before the clock starts:
        the store's own cost of a batch, without the records its caller builds."""
        store = self.store
        batches = [self._batch(start, size) for start in range(self.counter, self.counter + n, size)]
        began = time.perf_counter()
        for batch in batches:
            store.append_events(batch)
        elapsed = time.perf_counter() - began
        self.counter += n
        return n / elapsed

    def read_all(self, session: str) -> int:
        cursor = 0
        count = 0
        get_events = self.store.get_events
        while True:
            page = get_events(session, after=cursor, limit=PAGE)
            if not page:
                return count
            count += len(page)
            cursor = page[-1].sequence_number

    def read_page(self, session: str, after: int) -> int:
        return len(self.store.get_events(session, after=after, limit=PAGE))

    def read_feed_all(self) -> int:
        """Every event of the store through the feed, page by page (position cursors)."""
        cursor = 0
        count = 0
        read_feed = self.store.read_feed
        while True:
            page = read_feed(after=cursor, limit=PAGE)
            if not page:
                return count
            count += len(page)
            cursor = page[-1].position

    def read_sessions_all(self, sessions: list[str]) -> int:
        """Every event of the store through each session's cursor pages."""
        return sum(self.read_all(session) for session in sessions)

    def close(self) -> None:
        self.store.close()


# The raw limit on apsw ---------------------------------------------------------------------

_DUPLICATE = "SELECT 1 FROM events WHERE id = ?"
_LATEST = "SELECT latest_seq FROM streams WHERE session_id = ?"
# The feed position as the store takes it: the highest so far plus one (one writer at a time).
_INSERT = (
    "INSERT INTO events (session_id, seq, id, type, run_id, ts, data, metadata, position) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT ifnull(max(position), 0) + 1 FROM events))"
)
_SET_LATEST = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET latest_seq = excluded.latest_seq"
)
_PAGE = (
    "SELECT session_id, seq, id, type, run_id, ts, data, metadata FROM events "
    "WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def create_schema_apsw(conn: apsw.Connection) -> None:
    """The store's own schema.sql (the raw baselines write the same tables and indexes)."""
    conn.execute("BEGIN IMMEDIATE")  # several processes may race to create it
    if not conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'events'").fetchall():
        conn.execute(SQLiteSessionStore.schema_sql())
    conn.execute("COMMIT")


def _decode(row: Any) -> tuple[Any, ...]:
    session_id, seq, event_id, type_, run_id, ts, data, metadata = row
    return (session_id, seq, event_id, type_, run_id, ts, json.loads(data), json.loads(metadata))


class _RawTransactions:
    """The hand-written append, batch and page loops, on any DB-API-like connection whose
    ``execute`` returns an iterable cursor with ``fetchall`` (apsw and stdlib sqlite3 alike)."""

    conn: Any
    session: str
    counter: int

    def append(self, n: int) -> None:
        execute, session = self.conn.execute, self.session
        start = self.counter
        for i in range(start, start + n):
            event_id = new_event_id()
            data, metadata = dumps(payload(i)), dumps({})
            execute("BEGIN IMMEDIATE")
            try:
                if execute(_DUPLICATE, (event_id,)).fetchall():
                    raise RuntimeError("duplicate")
                rows = execute(_LATEST, (session,)).fetchall()
                seq = (rows[0][0] if rows else 0) + 1
                execute(_INSERT, (session, seq, event_id, "message_sent", None, now_micros(), data, metadata))
                execute(_SET_LATEST, (session, seq))
                execute("COMMIT")
            except BaseException:
                execute("ROLLBACK")
                raise
        self.counter += n

    def append_batch(self, n: int, size: int) -> None:
        execute, session = self.conn.execute, self.session
        for start in range(self.counter, self.counter + n, size):
            ids = [new_event_id() for _ in range(size)]
            bodies = [(dumps(payload(i)), dumps({})) for i in range(start, start + size)]
            execute("BEGIN IMMEDIATE")
            try:
                for event_id in ids:
                    if execute(_DUPLICATE, (event_id,)).fetchall():
                        raise RuntimeError("duplicate")
                rows = execute(_LATEST, (session,)).fetchall()
                latest = rows[0][0] if rows else 0
                ts = now_micros()
                self.conn.executemany(
                    _INSERT,
                    [
                        (session, latest + k + 1, ids[k], "message_sent", None, ts, *bodies[k])
                        for k in range(size)
                    ],
                )
                execute(_SET_LATEST, (session, latest + size))
                execute("COMMIT")
            except BaseException:
                execute("ROLLBACK")
                raise
        self.counter += n

    def read_all(self, session: str) -> int:
        cursor = 0
        count = 0
        execute = self.conn.execute
        while True:
            page = [_decode(row) for row in execute(_PAGE, (session, cursor, PAGE))]
            if not page:
                return count
            count += len(page)
            cursor = page[-1][1]

    def close(self) -> None:
        self.conn.close()


class RawApsw(_RawTransactions):
    """The same transaction as an append, written by hand against apsw."""

    label = "raw apsw"

    def __init__(
        self, path: Path, synchronous: str, session: str = "bench", *, readonly: bool = False
    ) -> None:
        flags = (
            apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        )
        self.conn = apsw.Connection(str(path), flags=flags)
        self.conn.set_busy_timeout(5000)
        if not readonly:
            self.conn.pragma("journal_mode", "wal")
            create_schema_apsw(self.conn)
        self.conn.pragma("synchronous", synchronous.upper())
        self.session = session
        self.counter = 0

    def read_page(self, session: str, after: int) -> int:
        return len([_decode(row) for row in self.conn.execute(_PAGE, (session, after, PAGE))])

    def latest(self, session: str) -> int:
        rows = self.conn.execute(_LATEST, (session,)).fetchall()
        return rows[0][0] if rows else 0


class RawExecutemany(RawApsw):
    """A batch as one ``executemany`` with no duplicate probe (the unique index alone guards the
    ids): the least a batch can cost on this schema, the physical limit of the batch path."""

    label = "raw executemany"

    def append_batch(self, n: int, size: int) -> None:
        execute, session = self.conn.execute, self.session
        for start in range(self.counter, self.counter + n, size):
            execute("BEGIN IMMEDIATE")
            try:
                rows = execute(_LATEST, (session,)).fetchall()
                latest = rows[0][0] if rows else 0
                ts = now_micros()
                self.conn.executemany(
                    _INSERT,
                    [
                        (session, latest + k + 1, new_event_id(), "message_sent", None, ts, body, "{}")
                        for k, body in enumerate(dumps(payload(start + k)) for k in range(size))
                    ],
                )
                execute(_SET_LATEST, (session, latest + size))
                execute("COMMIT")
            except BaseException:
                execute("ROLLBACK")
                raise
        self.counter += n


class RawSharedCommits(RawApsw):
    """The single appends of ``writers`` writers (each to its own session) committed
    ``writers`` to a transaction by one thread, each in a savepoint as a group commit runs its
    members: what sharing commits can gain at most on this schema, with no queue, no thread
    hand-off and no lock. Many threads of one store object cannot go faster than this, since
    their SQLite work is serialized by the write lock and their Python work by the GIL."""

    label = "raw apsw, shared commits"

    def __init__(self, path: Path, synchronous: str, writers: int) -> None:
        super().__init__(path, synchronous)
        self.writers = writers

    def append(self, n: int) -> None:
        execute = self.conn.execute
        sessions = [f"{self.session}{k}" for k in range(self.writers)]
        for start in range(self.counter, self.counter + n, self.writers):
            execute("BEGIN IMMEDIATE")
            try:
                for k, session in enumerate(sessions):
                    event_id = new_event_id()
                    data, metadata = dumps(payload(start + k)), dumps({})
                    execute("SAVEPOINT append")
                    if execute(_DUPLICATE, (event_id,)).fetchall():
                        raise RuntimeError("duplicate")
                    rows = execute(_LATEST, (session,)).fetchall()
                    seq = (rows[0][0] if rows else 0) + 1
                    execute(
                        _INSERT, (session, seq, event_id, "message_sent", None, now_micros(), data, metadata)
                    )
                    execute(_SET_LATEST, (session, seq))
                    execute("RELEASE append")
                execute("COMMIT")
            except BaseException:
                execute("ROLLBACK")
                raise
        self.counter += n


# The same on the stdlib sqlite3 module ------------------------------------------------------


class RawSqlite3(_RawTransactions):
    """The same transaction on the standard library's sqlite3 (autocommit, explicit BEGIN)."""

    label = "raw sqlite3"

    def __init__(self, path: Path, synchronous: str, session: str = "bench") -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        if not self.conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'events'").fetchall():
            self.conn.executescript("BEGIN;" + SQLiteSessionStore.schema_sql() + ";COMMIT;")
        self.session = session
        self.counter = 0


# The anchor design's naive in-memory store --------------------------------------------------


class NaiveMemory:
    """The reference design's simplest in-memory store: caller-built ``Event`` records appended
    to one list under a lock (the sequence set with ``dataclasses.replace``), reads scanning the
    whole list. An id set keeps the duplicate check O(1) so the comparison is about reads and
    per-call overhead, not a quadratic duplicate scan."""

    label = "naive list"

    def __init__(self, session: str = "bench") -> None:
        self.events: list[Event] = []
        self.ids: set[str] = set()
        self.latest: dict[str, int] = {}
        self.lock = threading.Lock()
        self.session = session
        self.counter = 0

    def _append_one(self, event: Event) -> Event:
        with self.lock:
            if event.id in self.ids:
                raise RuntimeError("duplicate")
            seq = self.latest.get(event.session_id, 0) + 1
            self.latest[event.session_id] = seq
            stored = dataclasses.replace(event, sequence_number=seq)
            self.events.append(stored)
            self.ids.add(event.id)
        return stored

    def append(self, n: int) -> None:
        start = self.counter
        for i in range(start, start + n):
            self._append_one(Event(type=EventType.MESSAGE_SENT, session_id=self.session, data=payload(i)))
        self.counter += n

    def read_all(self, session: str) -> int:
        cursor = 0
        count = 0
        while True:
            with self.lock:
                mine = [e for e in self.events if e.session_id == session]
                page = [e for e in mine if (e.sequence_number or 0) > cursor][:PAGE]
            if not page:
                return count
            count += len(page)
            cursor = page[-1].sequence_number or cursor

    def close(self) -> None:
        self.events.clear()
