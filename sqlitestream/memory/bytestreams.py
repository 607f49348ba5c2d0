"""The in-memory store's byte streams: the shared rules (``_core/rulestreams.py``) on
tables held in the store's memory, under its lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sqlitestream._core.rulestreams import PAGE_CHUNKS, RuleStreams
from sqlitestream._core.streamrules import Chunk, StreamRow, StreamTx
from sqlitestream._core.waiting import WakeHub

__all__ = ["InMemoryByteStreams"]

T = TypeVar("T")


class _MemoryTx:
    """:class:`~sqlitestream._core.streamrules.StreamTx` on copies of the tables, which
    replace the store's only when the rule returns (so a rule that raises changes nothing)."""

    def __init__(self, tables: _StreamTables) -> None:
        self.rows = dict(tables.rows)
        self.names = dict(tables.names)
        self.chunks = dict(tables.chunks)  # lists replaced, never changed in place
        self.producers = dict(tables.producers)
        self.next_id = tables.next_id

    def find(self, name: str) -> StreamRow | None:
        stream_id = self.names.get(name)
        return None if stream_id is None else self.rows[stream_id]

    def by_id(self, stream_id: int) -> StreamRow | None:
        return self.rows.get(stream_id)

    def insert(self, row: StreamRow) -> int:
        self.next_id += 1
        self.rows[self.next_id] = replace(row, id=self.next_id)
        self.names[row.name] = self.next_id
        return self.next_id

    def update(self, row: StreamRow) -> None:
        self.rows[row.id] = row

    def remove(self, stream_id: int) -> None:
        self.drop_data(stream_id)
        row = self.rows.pop(stream_id)
        del self.names[row.name]

    def drop_data(self, stream_id: int) -> None:
        self.chunks.pop(stream_id, None)
        for key in [key for key in self.producers if key[0] == stream_id]:
            del self.producers[key]

    def fork_count(self, stream_id: int) -> int:
        return sum(1 for row in self.rows.values() if row.forked_from == stream_id)

    def add_chunks(self, stream_id: int, chunks: Sequence[Chunk]) -> None:
        self.chunks[stream_id] = [*self.chunks.get(stream_id, []), *chunks]

    def chunk(self, stream_id: int, seq: int) -> Chunk | None:
        stored = self.chunks.get(stream_id, [])
        return stored[seq - 1] if 1 <= seq <= len(stored) else None

    def copy_chunks(self, source_id: int, target_id: int, last_seq: int) -> None:
        self.chunks[target_id] = list(self.chunks.get(source_id, [])[:last_seq])

    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None:
        return self.producers.get((stream_id, producer_id))

    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None:
        self.producers[(stream_id, producer_id)] = (epoch, seq)


@dataclass
class _StreamTables:
    rows: dict[int, StreamRow] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)
    chunks: dict[int, list[Chunk]] = field(default_factory=dict)
    producers: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    next_id: int = 0


class InMemoryByteStreams(RuleStreams):
    """The in-memory store's byte streams (``InMemorySessionStore.byte_streams()``)."""

    def __init__(self, lock: threading.RLock, check_open: Callable[[], None]) -> None:
        super().__init__(WakeHub())
        self._lock = lock
        self._check_open = check_open
        self._tables = _StreamTables()

    def _transact(self, action: str, rule: Callable[[StreamTx, int], T]) -> T:
        with self._lock:
            self._check_open()
            tx = _MemoryTx(self._tables)
            result = rule(tx, self._clock())
            self._tables = _StreamTables(tx.rows, tx.names, tx.chunks, tx.producers, tx.next_id)
            return result

    def _snapshot(self, name: str, after: int | None) -> tuple[StreamRow | None, list[Chunk]]:
        with self._lock:
            self._check_open()
            stream_id = self._tables.names.get(name)
            if stream_id is None:
                return None, []
            row = self._tables.rows[stream_id]
            if after is None:
                return row, []
            return row, self._tables.chunks.get(stream_id, [])[after : after + PAGE_CHUNKS]

    def _name_of(self, stream_id: int) -> str | None:
        with self._lock:
            row = self._tables.rows.get(stream_id)
            return None if row is None else row.name
