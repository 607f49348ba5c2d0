"""The byte streams of a PostgreSQL store (``store.byte_streams()``), in the store's schema:
every change is one transaction of :meth:`Database.run` running the shared rules
(``_core/streamrules.py``) on :class:`_Tx`; a read is one statement (one snapshot) on a pooled
connection, except that a stream with a sliding TTL is first touched in a write.

Across nodes, each rule stays atomic because every stream row the rule reads inside its
transaction is read ``FOR UPDATE``: a second node's change of the same stream waits for the
first to commit and then reads the committed row (read committed re-reads a locked row). Two
creates of a new name meet on its unique index; the loser is retried and finds the stream.
Each change notifies the stream's name on the store's channel inside its transaction, so other
nodes' watchers wake when it commits (the listener's poll covers lost notifications).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlitestream._core.rulestreams import PAGE_CHUNKS, RuleStreams
from sqlitestream._core.streamrules import STREAM_COLUMNS, Chunk, StreamRow, StreamTx
from sqlitestream._core.waiting import WakeHub
from sqlitestream.bytestreams import WakeSignal, check_stream_name
from sqlitestream.postgres.listener import STREAM_KIND, payload

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection

T = TypeVar("T")

_COLUMNS = STREAM_COLUMNS
_PREFIXED = ", ".join("s." + column.strip() for column in _COLUMNS.split(","))


def _values(row: StreamRow) -> tuple[Any, ...]:
    """The columns after ``id`` and ``name``."""
    return (
        row.content_type,
        row.ttl_seconds,
        row.expires_at_us,
        row.closed,
        row.deleted,
        row.appends,
        row.size,
        row.stream_seq,
        row.forked_from,
        row.fork_offset,
        row.fork_sub_offset,
        row.accessed_us,
        None if row.closed_by is None else row.closed_by.encode(),
        row.version,
    )


class _Sql:
    def __init__(self, schema: str, channel: str) -> None:
        s = f'"{schema}"'
        self.channel = channel
        self.select = f"SELECT {_COLUMNS} FROM {s}.ds_streams"
        self.streams, self.chunks, self.producers = f"{s}.ds_streams", f"{s}.ds_chunks", f"{s}.ds_producers"
        self.insert = (
            f"INSERT INTO {s}.ds_streams ({_COLUMNS.split(', ', 1)[1]}) "
            f"VALUES ({', '.join(['%s'] * 15)}) RETURNING id"
        )
        self.update = (
            f"UPDATE {s}.ds_streams SET content_type = %s, ttl_seconds = %s, expires_at = %s, "
            "closed = %s, deleted = %s, appends = %s, size = %s, stream_seq = %s, forked_from = %s, "
            "fork_offset = %s, fork_sub_offset = %s, accessed_at = %s, closed_by = %s, version = %s "
            "WHERE id = %s"
        )
        # The stream and the page after a cursor in one statement: one snapshot, nothing held.
        self.read = (
            f"SELECT {_PREFIXED}, c.seq, c.end_size, c.data FROM {s}.ds_streams AS s "
            f"LEFT JOIN {s}.ds_chunks AS c ON c.stream_id = s.id "
            "AND c.seq > %(after)s AND c.seq <= %(after)s + %(limit)s "
            "WHERE s.name = %(name)s ORDER BY c.seq"
        )


class _Tx:
    """:class:`~sqlitestream._core.streamrules.StreamTx` on one connection inside its
    transaction. ``changed``: the names whose readers must still hear of this transaction
    (an update that changes a stream notifies as it writes)."""

    __slots__ = ("changed", "conn", "notified", "seen", "sql")

    def __init__(self, conn: Connection, sql: _Sql) -> None:
        self.conn = conn
        self.sql = sql
        self.changed: set[str] = set()
        self.notified: set[str] = set()  # changed names already notified by their update
        self.seen: dict[int, int] = {}  # id -> version as read, to tell a TTL touch from a change

    def _one(self, where: str, bindings: tuple[Any, ...]) -> StreamRow | None:
        found = self.conn.execute(f"{self.sql.select} WHERE {where} FOR UPDATE", bindings).fetchone()
        if found is None:
            return None
        row = StreamRow.from_row(found)
        self.seen[row.id] = row.version
        return row

    def find(self, name: str) -> StreamRow | None:
        return self._one("name = %s", (name,))

    def by_id(self, stream_id: int) -> StreamRow | None:
        return self._one("id = %s", (stream_id,))

    def insert(self, row: StreamRow) -> int:
        inserted = self.conn.execute(self.sql.insert, (row.name, *_values(row))).fetchone()
        assert inserted is not None
        self.changed.add(row.name)
        return int(inserted[0])

    def update(self, row: StreamRow) -> None:
        if self.seen.get(row.id) == row.version or row.name in self.notified:
            self.conn.execute(self.sql.update, (*_values(row), row.id))
            return
        # A change readers care about: notify in the same statement (one round trip fewer).
        self.conn.execute(
            f"{self.sql.update} RETURNING pg_notify(%s, %s)",
            (*_values(row), row.id, self.sql.channel, payload(STREAM_KIND, row.name)),
        )
        self.notified.add(row.name)

    def remove(self, stream_id: int) -> None:
        self.drop_data(stream_id)
        gone = self.conn.execute(
            f"DELETE FROM {self.sql.streams} WHERE id = %s RETURNING name", (stream_id,)
        ).fetchone()
        if gone is not None:
            self.changed.add(str(gone[0]))

    def drop_data(self, stream_id: int) -> None:
        self.conn.execute(f"DELETE FROM {self.sql.chunks} WHERE stream_id = %s", (stream_id,))
        self.conn.execute(f"DELETE FROM {self.sql.producers} WHERE stream_id = %s", (stream_id,))

    def fork_count(self, stream_id: int) -> int:
        found = self.conn.execute(
            f"SELECT count(*) FROM {self.sql.streams} WHERE forked_from = %s", (stream_id,)
        ).fetchone()
        return 0 if found is None else int(found[0])

    def add_chunks(self, stream_id: int, chunks: Sequence[Chunk]) -> None:
        rows = [(stream_id, chunk.seq, chunk.end, chunk.data) for chunk in chunks]
        insert = f"INSERT INTO {self.sql.chunks} (stream_id, seq, end_size, data) VALUES (%s, %s, %s, %s)"
        if len(rows) == 1:  # an append: one statement, not executemany's pipeline
            self.conn.execute(insert, rows[0])
        else:
            self.conn.cursor().executemany(insert, rows)

    def chunk(self, stream_id: int, seq: int) -> Chunk | None:
        found = self.conn.execute(
            f"SELECT end_size, data FROM {self.sql.chunks} WHERE stream_id = %s AND seq = %s",
            (stream_id, seq),
        ).fetchone()
        return None if found is None else Chunk(seq, int(found[0]), bytes(found[1]))

    def copy_chunks(self, source_id: int, target_id: int, last_seq: int) -> None:
        self.conn.execute(
            f"INSERT INTO {self.sql.chunks} (stream_id, seq, end_size, data) "
            f"SELECT %s, seq, end_size, data FROM {self.sql.chunks} WHERE stream_id = %s AND seq <= %s",
            (target_id, source_id, last_seq),
        )

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        found = self.conn.execute(
            f"SELECT epoch, seq FROM {self.sql.producers} WHERE stream_id = %s AND producer_id = %s",
            (stream_id, producer_id),
        ).fetchone()
        return None if found is None else (int(found[0]), int(found[1]))

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self.conn.execute(
            f"INSERT INTO {self.sql.producers} (stream_id, producer_id, epoch, seq) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (stream_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq",
            (stream_id, producer_id, epoch, seq),
        )


class PostgresByteStreams(RuleStreams):
    """See :class:`~sqlitestream.bytestreams.ByteStreams`. Built by the store, which passes
    its one way to run work (``run(action, work, transaction)``), the listener's arming
    (``listen()``, LISTENing when it returns), its notification channel and the wake-up hub
    its listener serves for byte streams."""

    def __init__(
        self,
        run: Callable[[str, Callable[[Connection], Any], bool], Any],
        listen: Callable[[], object],
        schema: str,
        channel: str,
        hub: WakeHub,
    ) -> None:
        super().__init__(hub)
        self._run = run
        self._listen = listen
        self._sql = _Sql(schema, channel)
        self._channel = channel

    def _transact(self, action: str, rule: Callable[[StreamTx, int], T]) -> T:
        def work(conn: Connection) -> T:
            tx = _Tx(conn, self._sql)
            result = rule(tx, self._clock())
            pending = tx.changed - tx.notified
            if pending:
                conn.execute(
                    "SELECT pg_notify(%s, note) FROM unnest(%s::text[]) AS note",
                    (self._channel, [payload(STREAM_KIND, name) for name in sorted(pending)]),
                )
            return result

        result: T = self._run(action, work, True)
        return result

    def _snapshot(self, name: str, after: int | None) -> tuple[StreamRow | None, list[Chunk]]:
        if after is None:
            rows = self._fetch(f"{self._sql.select} WHERE name = %s", (name,))
            return (StreamRow.from_row(rows[0]) if rows else None), []
        rows = self._fetch(self._sql.read, {"name": name, "after": after, "limit": PAGE_CHUNKS})
        if not rows:
            return None, []
        chunks = [Chunk(int(r[16]), int(r[17]), bytes(r[18])) for r in rows if r[16] is not None]
        return StreamRow.from_row(rows[0]), chunks

    def _fetch(self, sql: str, params: Any) -> list[Any]:
        rows: list[Any] = self._run("read a stream", lambda conn: conn.execute(sql, params).fetchall(), False)
        return rows

    def _name_of(self, stream_id: int) -> str | None:
        found = self._fetch(f"SELECT name FROM {self._sql.streams} WHERE id = %s", (stream_id,))
        return str(found[0][0]) if found else None

    def watch_stream(self, name: str, woken: WakeSignal) -> AbstractContextManager[None]:
        name = check_stream_name(name)
        # LISTENing before the waiter registers and re-reads, so no commit slips between.
        self._listen()
        return super().watch_stream(name, woken)
