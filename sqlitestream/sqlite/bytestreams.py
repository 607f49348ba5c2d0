"""The byte streams of a SQLite store (``store.byte_streams()``), in the store's file: every
change is one transaction of the store's writer running the shared rules
(``_core/streamrules.py``) on :class:`_Tx`; a read is one statement (one snapshot) on a pooled
read connection, except that a stream with a sliding TTL is first touched in a write."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import apsw

from sqlitestream._core.rulestreams import PAGE_CHUNKS, RuleStreams
from sqlitestream._core.streamrules import STREAM_COLUMNS, Chunk, StreamRow, StreamTx
from sqlitestream._core.waiting import WakeHub
from sqlitestream.sqlite.transaction import WriteTransaction
from sqlitestream.sqlite.watcher import BYTE_STREAMS, DataVersionWatcher

T = TypeVar("T")

_COLUMNS = STREAM_COLUMNS
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
        return StreamRow.from_row(rows[0]) if rows else None

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


class SQLiteByteStreams(RuleStreams):
    """See :class:`~sqlitestream.bytestreams.ByteStreams`. Built by the store, which passes
    its one write path (``write(action)``), its read path (``fetch``) and the wake-up hub of
    its byte streams (which its watcher also serves, for other processes' changes)."""

    def __init__(
        self,
        write: Callable[[str], WriteTransaction],
        fetch: Callable[[str, str, tuple[Any, ...]], list[Any]],
        hub: WakeHub,
    ) -> None:
        super().__init__(hub)
        self._write = write
        self._fetch = fetch

    def _transact(self, action: str, rule: Callable[[StreamTx, int], T]) -> T:
        with self._write(action) as conn:
            return rule(_Tx(conn), self._clock())

    def _snapshot(self, name: str, after: int | None) -> tuple[StreamRow | None, list[Chunk]]:
        if after is None:
            rows = self._fetch("read a stream", f"{_SELECT} WHERE name = ?", (name,))
            return (StreamRow.from_row(rows[0]) if rows else None), []
        rows = self._fetch("read a stream", _READ, (name, after, PAGE_CHUNKS))
        if not rows:
            return None, []
        chunks = [Chunk(int(r[16]), int(r[17]), bytes(r[18])) for r in rows if r[16] is not None]
        return StreamRow.from_row(rows[0]), chunks

    def _name_of(self, stream_id: int) -> str | None:
        found = self._fetch("read a stream", "SELECT name FROM ds_streams WHERE id = ?", (stream_id,))
        return str(found[0][0]) if found else None


def open_byte_streams(
    write: Callable[[str], WriteTransaction],
    fetch: Callable[[str, str, tuple[Any, ...]], list[Any]],
    open_reader: Callable[[], apsw.Connection] | None,
    *,
    interval_s: float,
    wal_path: str,
) -> tuple[SQLiteByteStreams, DataVersionWatcher | None]:
    """A store's byte streams and the watcher that brings other processes' changes to them
    (None for ``":memory:"``, which no other process opens; ``open_reader`` is None then)."""
    watcher = None
    if open_reader is not None:
        # The hub and its watcher refer to each other: the watcher gets its hub just below.
        watcher = DataVersionWatcher(
            open_reader, WakeHub(), interval_s=interval_s, wal_path=wal_path, queries=BYTE_STREAMS
        )
    hub = WakeHub(
        on_register=None if watcher is None else watcher.ensure_running,
        seed=None if watcher is None else watcher.tip_of,
    )
    if watcher is not None:
        watcher.serve(hub)
    return SQLiteByteStreams(write, fetch, hub), watcher
