"""The byte streams of a SQLite store (``store.byte_streams()``), in the store's file: every
change is one transaction of the store's writer running the shared rules
(``_core/streamrules.py``) on :class:`_Tx`; a read is one statement (one snapshot) on a pooled
read connection, except that a stream with a sliding TTL is first touched in a write."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import apsw

from sqlitestream._core import streamrules as rules
from sqlitestream._core.streamrules import Chunk, StreamRow
from sqlitestream._core.validate import check_int, describe
from sqlitestream._core.waiting import WakeHub
from sqlitestream.bytestreams import (
    AppendResult,
    ByteStreams,
    CreateResult,
    Producer,
    StreamFork,
    StreamRead,
    StreamState,
    WakeSignal,
    check_stream_name,
    parse_offset,
)
from sqlitestream.errors import StreamDeletedError, StreamNotFoundError, ValidationError
from sqlitestream.sqlite.transaction import WriteTransaction

_COLUMNS = (
    "id, name, content_type, ttl_seconds, expires_at, closed, deleted, appends, size, stream_seq, "
    "forked_from, fork_offset, fork_sub_offset, accessed_at, closed_by, version"
)
_SELECT = f"SELECT {_COLUMNS} FROM ds_streams"
_UPDATE = (
    "UPDATE ds_streams SET content_type = ?2, ttl_seconds = ?3, expires_at = ?4, closed = ?5, "
    "deleted = ?6, appends = ?7, size = ?8, stream_seq = ?9, forked_from = ?10, fork_offset = ?11, "
    "fork_sub_offset = ?12, accessed_at = ?13, closed_by = ?14, version = ?15 WHERE id = ?1"
)
# The stream and the page after a cursor in one statement: one snapshot, nothing held after it.
_READ = (
    f"SELECT {', '.join('s.' + column.strip() for column in _COLUMNS.split(','))}, c.seq, c.end_size, c.data "
    "FROM ds_streams AS s LEFT JOIN ds_chunks AS c ON c.stream_id = s.id AND c.seq > ?2 AND c.seq <= ?2 + ?3 "
    "WHERE s.name = ?1 ORDER BY c.seq"
)
_PAGE_CHUNKS = 1000  # appends read at most per page (then cut to max_bytes)


def _row(values: Sequence[Any]) -> StreamRow:
    return StreamRow(
        id=int(values[0]),
        name=str(values[1]),
        content_type=str(values[2]),
        ttl_seconds=None if values[3] is None else int(values[3]),
        expires_at_us=None if values[4] is None else int(values[4]),
        closed=bool(values[5]),
        deleted=bool(values[6]),
        appends=int(values[7]),
        size=int(values[8]),
        stream_seq=None if values[9] is None else str(values[9]),
        forked_from=None if values[10] is None else int(values[10]),
        fork_offset=None if values[11] is None else str(values[11]),
        fork_sub_offset=int(values[12]),
        accessed_us=int(values[13]),
        closed_by=None if values[14] is None else str(values[14]),
        version=int(values[15]),
    )


def _values(row: StreamRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.content_type,
        row.ttl_seconds,
        row.expires_at_us,
        int(row.closed),
        int(row.deleted),
        row.appends,
        row.size,
        row.stream_seq,
        row.forked_from,
        row.fork_offset,
        row.fork_sub_offset,
        row.accessed_us,
        row.closed_by,
        row.version,
    )


class _Tx:
    """:class:`~sqlitestream._core.streamrules.StreamTx` on the writer's connection, inside
    its transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def _one(self, sql: str, bindings: tuple[Any, ...]) -> StreamRow | None:
        rows = self.conn.execute(sql, bindings).fetchall()
        return _row(rows[0]) if rows else None

    def find(self, name: str) -> StreamRow | None:
        return self._one(f"{_SELECT} WHERE name = ?", (name,))

    def by_id(self, stream_id: int) -> StreamRow | None:
        return self._one(f"{_SELECT} WHERE id = ?", (stream_id,))

    def insert(self, row: StreamRow) -> int:
        values = _values(row)
        self.conn.execute(
            f"INSERT INTO ds_streams ({_COLUMNS}) VALUES (NULL, ?, {', '.join('?' * 14)})",
            (row.name, *values[1:]),
        )
        return int(self.conn.last_insert_rowid())

    def update(self, row: StreamRow) -> None:
        self.conn.execute(_UPDATE, _values(row))

    def remove(self, stream_id: int) -> None:
        self.drop_data(stream_id)
        self.conn.execute("DELETE FROM ds_streams WHERE id = ?", (stream_id,))

    def drop_data(self, stream_id: int) -> None:
        self.conn.execute("DELETE FROM ds_chunks WHERE stream_id = ?", (stream_id,))
        self.conn.execute("DELETE FROM ds_producers WHERE stream_id = ?", (stream_id,))

    def fork_count(self, stream_id: int) -> int:
        count: int = self.conn.execute(
            "SELECT count(*) FROM ds_streams WHERE forked_from = ?", (stream_id,)
        ).get
        return count

    def add_chunks(self, stream_id: int, chunks: Sequence[Chunk]) -> None:
        self.conn.executemany(
            "INSERT INTO ds_chunks (stream_id, seq, end_size, data) VALUES (?, ?, ?, ?)",
            [(stream_id, chunk.seq, chunk.end, chunk.data) for chunk in chunks],
        )

    def chunk(self, stream_id: int, seq: int) -> Chunk | None:
        rows = self.conn.execute(
            "SELECT end_size, data FROM ds_chunks WHERE stream_id = ? AND seq = ?", (stream_id, seq)
        ).fetchall()
        if not rows:
            return None
        return Chunk(seq, int(rows[0][0]), bytes(rows[0][1]))  # type: ignore[arg-type]

    def copy_chunks(self, source_id: int, target_id: int, last_seq: int) -> None:
        self.conn.execute(
            "INSERT INTO ds_chunks (stream_id, seq, end_size, data) "
            "SELECT ?, seq, end_size, data FROM ds_chunks WHERE stream_id = ? AND seq <= ?",
            (target_id, source_id, last_seq),
        )

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        rows = self.conn.execute(
            "SELECT epoch, seq FROM ds_producers WHERE stream_id = ? AND producer_id = ?",
            (stream_id, producer_id),
        ).fetchall()
        return (int(rows[0][0]), int(rows[0][1])) if rows else None  # type: ignore[arg-type]

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self.conn.execute(
            "INSERT INTO ds_producers (stream_id, producer_id, epoch, seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (stream_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq",
            (stream_id, producer_id, epoch, seq),
        )


def _now_us() -> int:
    return time.time_ns() // 1000


class SQLiteByteStreams(ByteStreams):
    """See :class:`~sqlitestream.bytestreams.ByteStreams`. Built by the store, which passes
    its one write path (``write(action)``), its read path (``fetch``) and the wake-up hub of
    its byte streams (which its watcher also serves, for other processes' changes)."""

    def __init__(
        self,
        write: Callable[[str], WriteTransaction],
        fetch: Callable[[str, str, tuple[Any, ...]], list[Any]],
        hub: WakeHub,
        clock: Callable[[], int] = _now_us,
    ) -> None:
        self._write = write
        self._fetch = fetch
        self._hub = hub
        self._clock = clock

    def _change(self, action: str, name: str, rule: Callable[[_Tx, int], Any]) -> Any:
        with self._write(action) as conn:
            result = rule(_Tx(conn), self._clock())
        self._hub.wake((name,))
        return result

    def create_stream(
        self,
        name: str,
        *,
        content_type: str | None = None,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        closed: bool = False,
        data: bytes = b"",
        fork: StreamFork | None = None,
    ) -> CreateResult:
        name = check_stream_name(name)
        ttl = check_int(ttl_seconds, "ttl_seconds", minimum=0)
        expires_us = None if expires_at is None else rules.to_micros(expires_at)
        _check_bytes(data)
        if content_type is not None and type(content_type) is not str:
            raise ValidationError(f"content_type must be a str, got {describe(content_type)}")
        if fork is not None and not isinstance(fork, StreamFork):
            raise ValidationError(f"fork must be a StreamFork, got {describe(fork)}")

        def rule(tx: _Tx, now: int) -> CreateResult:
            return rules.create(
                tx,
                now,
                name,
                content_type=content_type,
                ttl_seconds=ttl,
                expires_at_us=expires_us,
                closed=bool(closed),
                data=bytes(data),
                fork=fork,
            )

        return self._change("create a stream", name, rule)  # type: ignore[no-any-return]

    def append(
        self,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        close: bool = False,
        stream_seq: str | None = None,
        producer: Producer | None = None,
    ) -> AppendResult:
        name = check_stream_name(name)
        _check_bytes(data)
        if producer is not None and not isinstance(producer, Producer):
            raise ValidationError(f"producer must be a Producer, got {describe(producer)}")

        def rule(tx: _Tx, now: int) -> AppendResult:
            return rules.append(
                tx,
                now,
                name,
                bytes(data),
                content_type=content_type,
                close=bool(close),
                stream_seq=stream_seq,
                producer=producer,
            )

        return self._change("append to a stream", name, rule)  # type: ignore[no-any-return]

    def read_stream(self, name: str, *, offset: str = "-1", max_bytes: int = 1 << 22) -> StreamRead:
        name = check_stream_name(name)
        start = None if offset == "now" else parse_offset(offset)
        limit = check_int(max_bytes, "max_bytes", minimum=1, allow_none=False) or 1
        now = self._clock()
        rows = self._fetch("read a stream", _READ, (name, -1 if start is None else start[0], _PAGE_CHUNKS))
        row = _row(rows[0]) if rows else None
        if row is not None and row.ttl_seconds is not None and not row.deleted:
            with self._write("read a stream") as conn:
                rules.touch(_Tx(conn), now, name)
            rows = self._fetch(
                "read a stream", _READ, (name, -1 if start is None else start[0], _PAGE_CHUNKS)
            )
            row = _row(rows[0]) if rows else None
        if row is None or (not row.deleted and row.expired(now)):
            raise StreamNotFoundError(name)
        if row.deleted:
            raise StreamDeletedError(name)
        if start is None:
            return rules.read_result(row, (row.appends, row.size), [], False)
        chunks = [Chunk(int(r[16]), int(r[17]), bytes(r[18])) for r in rows if r[16] is not None]
        taken, more = rules.page(chunks, limit)
        return rules.read_result(row, start, taken, more)

    def stream_state(self, name: str) -> StreamState:
        name = check_stream_name(name)
        rows = self._fetch("read a stream", f"{_SELECT} WHERE name = ?", (name,))
        row = _row(rows[0]) if rows else None
        if row is None or (not row.deleted and row.expired(self._clock())):
            raise StreamNotFoundError(name)
        if row.deleted:
            raise StreamDeletedError(name)
        source = None
        if row.forked_from is not None:
            found = self._fetch(
                "read a stream", "SELECT name FROM ds_streams WHERE id = ?", (row.forked_from,)
            )
            source = str(found[0][0]) if found else None
        return rules.state_of(row, source)

    def delete_stream(self, name: str) -> None:
        name = check_stream_name(name)
        self._change("delete a stream", name, lambda tx, now: rules.delete(tx, now, name))

    def close(self) -> None:
        """The store is closing: watchers wake (and then read a closed store)."""
        self._hub.close()

    def watch_stream(self, name: str, woken: WakeSignal) -> AbstractContextManager[None]:
        return self._watching(check_stream_name(name), woken)

    @contextmanager
    def _watching(self, name: str, woken: WakeSignal) -> Iterator[None]:
        with self._hub.waiting(name, woken):
            yield


def _check_bytes(data: object) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"data must be bytes, got {describe(data)}")
