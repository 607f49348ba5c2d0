"""The byte-stream rules, written once for every backend: create (and fork), append (with
producers, ``Stream-Seq`` and closing), delete (soft while forks remain), expiry, and reads.

Each rule runs inside the backend's one write transaction on a :class:`StreamTx`, the few
storage operations a backend provides; a rule that raises leaves the transaction to roll back,
so nothing it did is kept. Forks copy the source's appends up to the fork point (copy on fork):
a fork then reads like any stream, and a source can be dropped whatever its forks do.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlitestream.bytestreams import (
    DEFAULT_CONTENT_TYPE,
    AppendResult,
    CreateResult,
    Producer,
    StreamFork,
    StreamRead,
    StreamState,
    format_offset,
    is_json,
    iter_json_messages,
    media_type,
    parse_offset,
)
from sqlitestream.errors import (
    StreamClosedError,
    StreamConflictError,
    StreamDeletedError,
    StreamNotFoundError,
    ValidationError,
)
from sqlitestream.producers import producer_verdict

STREAM_COLUMNS = (
    "id, name, content_type, ttl_seconds, expires_at, closed, deleted, appends, size, stream_seq, "
    "forked_from, fork_offset, fork_sub_offset, accessed_at, closed_by, version"
)
"""The columns of a ``ds_streams`` row, as :meth:`StreamRow.from_row` reads them."""


@dataclass(frozen=True)
class StreamRow:
    """A stream as stored. ``appends``/``size``: the tail; ``version`` grows with every change
    a reader may care about (watchers compare it); ``closed_by``: the producer stamp of the
    append that closed it."""

    id: int
    name: str
    content_type: str
    ttl_seconds: int | None
    expires_at_us: int | None
    closed: bool
    deleted: bool
    appends: int
    size: int
    stream_seq: str | None
    forked_from: int | None
    fork_offset: str | None
    fork_sub_offset: int
    accessed_us: int
    closed_by: str | None
    version: int

    def expired(self, now_us: int) -> bool:
        if self.ttl_seconds is not None and self.accessed_us + self.ttl_seconds * 1_000_000 <= now_us:
            return True
        return self.expires_at_us is not None and self.expires_at_us <= now_us

    @property
    def next_offset(self) -> str:
        return format_offset(self.appends, self.size)

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> StreamRow:
        """A stream from its ``ds_streams`` row in :data:`STREAM_COLUMNS` order (``closed_by``
        is text in SQLite and ``bytea`` in PostgreSQL, which cannot hold the stamp's NULs)."""
        closed_by = values[14]
        if isinstance(closed_by, (bytes, bytearray, memoryview)):
            closed_by = bytes(closed_by).decode()
        return cls(
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
            closed_by=None if closed_by is None else str(closed_by),
            version=int(values[15]),
        )


@dataclass(frozen=True)
class Chunk:
    """One stored append: its number (1, 2, ...), the stream's size after it, its bytes."""

    seq: int
    end: int
    data: bytes


class StreamTx(Protocol):
    """What the rules need from a backend, inside one write transaction."""

    def find(self, name: str) -> StreamRow | None: ...
    def by_id(self, stream_id: int) -> StreamRow | None: ...
    def insert(self, row: StreamRow) -> int: ...  # ignores row.id; returns the new one
    def update(self, row: StreamRow) -> None: ...
    def remove(self, stream_id: int) -> None: ...  # the row, its chunks, its producers
    def drop_data(self, stream_id: int) -> None: ...  # its chunks and producers
    def fork_count(self, stream_id: int) -> int: ...
    def add_chunks(self, stream_id: int, chunks: Sequence[Chunk]) -> None: ...
    def chunk(self, stream_id: int, seq: int) -> Chunk | None: ...
    def copy_chunks(self, source_id: int, target_id: int, last_seq: int) -> None: ...
    def producer(self, stream_id: int, producer_id: str) -> tuple[int, int] | None: ...
    def set_producer(self, stream_id: int, producer_id: str, epoch: int, seq: int) -> None: ...


def state_of(row: StreamRow, source: str | None = None) -> StreamState:
    """The public state of a stored stream (``source``: the name it was forked from)."""
    expires = None if row.expires_at_us is None else datetime.fromtimestamp(row.expires_at_us / 1e6, UTC)
    return StreamState(
        name=row.name,
        content_type=row.content_type,
        next_offset=row.next_offset,
        closed=row.closed,
        ttl_seconds=row.ttl_seconds,
        expires_at=expires,
        generation=row.id,
        forked_from=source,
        fork_offset=row.fork_offset,
        fork_sub_offset=row.fork_sub_offset,
    )


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValidationError("expires_at must be a timezone-aware datetime")
    return int(moment.timestamp() * 1_000_000)


def encode_json(data: bytes, *, allow_empty_array: bool) -> tuple[bytes, int]:
    """A JSON body as a stored chunk (its messages, compact, comma-separated) and the number of
    messages: one level of array flattened; ``ValidationError`` for invalid JSON or, unless
    allowed (a create), an empty array."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    messages = value if isinstance(value, list) else [value]
    if not messages and not allow_empty_array:
        raise ValidationError("the body is an empty JSON array: an append needs at least one message")
    text = ",".join(json.dumps(message, ensure_ascii=False, separators=(",", ":")) for message in messages)
    return text.encode(), len(messages)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def live(tx: StreamTx, name: str, now_us: int) -> StreamRow | None:
    """The stream ``name``, with an expired one dropped first (so it reads as absent)."""
    row = tx.find(name)
    if row is not None and not row.deleted and row.expired(now_us):
        drop(tx, row)
        return None
    return row


def existing(tx: StreamTx, name: str, now_us: int) -> StreamRow:
    row = live(tx, name, now_us)
    if row is None:
        raise StreamNotFoundError(name)
    if row.deleted:
        raise StreamDeletedError(name)
    return row


def drop(tx: StreamTx, row: StreamRow) -> None:
    """Delete a stream: mark it deleted while forks of it remain, else remove it and then each
    deleted ancestor that this leaves without forks."""
    if tx.fork_count(row.id) > 0:
        tx.drop_data(row.id)
        tx.update(dataclasses.replace(row, deleted=True, version=row.version + 1))
        return
    tx.remove(row.id)
    parent_id = row.forked_from
    while parent_id is not None:
        parent = tx.by_id(parent_id)
        if parent is None or not parent.deleted or tx.fork_count(parent.id) > 0:
            return
        tx.remove(parent.id)
        parent_id = parent.forked_from


def source_name(tx: StreamTx, row: StreamRow) -> str | None:
    if row.forked_from is None:
        return None
    parent = tx.by_id(row.forked_from)
    return None if parent is None else parent.name


def _chunks_of(data: bytes, content_type: str, start_size: int, seq: int, *, create: bool) -> list[Chunk]:
    if not data:
        return []
    if is_json(content_type):
        data, count = encode_json(data, allow_empty_array=create)
        if count == 0:
            return []
    return [Chunk(seq, start_size + len(data), data)]


def create(
    tx: StreamTx,
    now_us: int,
    name: str,
    *,
    content_type: str | None,
    ttl_seconds: int | None,
    expires_at_us: int | None,
    closed: bool,
    data: bytes,
    fork: StreamFork | None,
) -> CreateResult:
    if ttl_seconds is not None and expires_at_us is not None:
        raise ValidationError("give a TTL or an expiry time, not both")
    source = None
    if fork is not None:
        source = live(tx, fork.source, now_us)
        if source is None:
            raise StreamNotFoundError(fork.source)
        if source.deleted:
            raise StreamConflictError(f"the fork source {fork.source!r} was deleted")
        if content_type is not None and media_type(content_type) != media_type(source.content_type):
            raise StreamConflictError(
                f"content type {content_type!r} differs from the fork source's {source.content_type!r}"
            )
        content_type = source.content_type
        if ttl_seconds is None and expires_at_us is None:
            ttl_seconds, expires_at_us = source.ttl_seconds, source.expires_at_us
    content_type = content_type or DEFAULT_CONTENT_TYPE
    current = live(tx, name, now_us)
    if current is not None:
        return _recreate(tx, current, content_type, ttl_seconds, expires_at_us, closed, fork, source)
    appends, size, inherited = 0, 0, list[Chunk]()
    if fork is not None and source is not None:
        appends, size, inherited = _fork_point(tx, source, fork)
    row = StreamRow(
        id=0,
        name=name,
        content_type=content_type,
        ttl_seconds=ttl_seconds,
        expires_at_us=expires_at_us,
        closed=False,
        deleted=False,
        appends=appends,
        size=size,
        stream_seq=None,
        forked_from=None if source is None else source.id,
        fork_offset=None if fork is None or source is None else _fork_offset(fork, source),
        fork_sub_offset=0 if fork is None else fork.sub_offset,
        accessed_us=now_us,
        closed_by=None,
        version=1,
    )
    chunks = _chunks_of(data, content_type, 0, 0, create=True)
    stream_id = tx.insert(row)
    if source is not None:
        tx.copy_chunks(source.id, stream_id, appends)
    numbered = []
    end, seq = size, appends
    for chunk in inherited + chunks:
        seq += 1
        end += len(chunk.data)
        numbered.append(Chunk(seq, end, chunk.data))
    if numbered:
        tx.add_chunks(stream_id, numbered)
    row = dataclasses.replace(row, id=stream_id, appends=seq, size=end, closed=closed)
    tx.update(row)
    return CreateResult(True, state_of(row, None if source is None else source.name))


def _fork_offset(fork: StreamFork, source: StreamRow) -> str:
    return source.next_offset if fork.offset is None else fork.offset


def _fork_point(tx: StreamTx, source: StreamRow, fork: StreamFork) -> tuple[int, int, list[Chunk]]:
    """The source's appends and size at the fork offset, and the part of the next append the
    sub-offset takes (as a chunk to store in the fork)."""
    appends, size = (source.appends, source.size) if fork.offset is None else parse_offset(fork.offset)
    if appends > source.appends:
        raise ValidationError(f"the fork offset {fork.offset} is past the tail of {source.name!r}")
    if appends > 0:
        anchor = tx.chunk(source.id, appends)
        if anchor is None:
            raise ValidationError(f"the fork offset {fork.offset} is not a position of {source.name!r}")
        size = anchor.end
    if fork.sub_offset == 0:
        return appends, size, []
    following = tx.chunk(source.id, appends + 1)
    if following is None:
        raise ValidationError("the fork sub-offset is past the tail of the source")
    if is_json(source.content_type):
        messages = list(iter_json_messages(following.data))
        if fork.sub_offset > len(messages):
            raise ValidationError(
                f"the fork sub-offset {fork.sub_offset} is past the {len(messages)} messages of the next append"
            )
        part = b",".join(messages[: fork.sub_offset])
    else:
        if fork.sub_offset > len(following.data):
            raise ValidationError(
                f"the fork sub-offset {fork.sub_offset} is past the {len(following.data)} bytes of the next append"
            )
        part = following.data[: fork.sub_offset]
    return appends, size, [Chunk(0, 0, part)]


def _recreate(
    tx: StreamTx,
    current: StreamRow,
    content_type: str,
    ttl_seconds: int | None,
    expires_at_us: int | None,
    closed: bool,
    fork: StreamFork | None,
    source: StreamRow | None,
) -> CreateResult:
    if current.deleted:
        raise StreamConflictError(f"stream {current.name!r} was deleted and its forks keep the name")
    same = (
        media_type(current.content_type) == media_type(content_type)
        and current.ttl_seconds == ttl_seconds
        and current.expires_at_us == expires_at_us
        and current.closed == closed
    )
    if fork is None:
        same = same and current.forked_from is None
    else:
        same = (
            same
            and source is not None
            and current.forked_from == source.id
            and current.fork_offset == _fork_offset(fork, source)
            and current.fork_sub_offset == fork.sub_offset
        )
    if not same:
        raise StreamConflictError(f"stream {current.name!r} exists with another configuration")
    return CreateResult(False, state_of(current, source_name(tx, current)))


def _stamp(producer: Producer) -> str:
    return f"{producer.id}\x00{producer.epoch}\x00{producer.seq}"


def append(
    tx: StreamTx,
    now_us: int,
    name: str,
    data: bytes,
    *,
    content_type: str | None,
    close: bool,
    stream_seq: str | None,
    producer: Producer | None,
) -> AppendResult:
    row = existing(tx, name, now_us)
    if row.closed:
        if producer is not None and row.closed_by == _stamp(producer):
            return AppendResult(state_of(row), True, producer.epoch, producer.seq)
        if close and not data:
            return AppendResult(state_of(row), producer is not None)
        raise StreamClosedError(name, row.next_offset)
    if not data and not close:
        raise ValidationError("an append needs a non-empty body (or closing the stream)")
    if data:
        if content_type is None:
            raise ValidationError("an append with a body needs its Content-Type")
        if media_type(content_type) != media_type(row.content_type):
            raise StreamConflictError(
                f"content type {content_type!r} differs from the stream's {row.content_type!r}"
            )
    if producer is not None:
        last = producer_verdict(tx.producer(row.id, producer.id), producer)
        if last is not None:
            return AppendResult(state_of(row), True, producer.epoch, last)
    # Stream-Seq is scoped per stream (one writer sequence for all writers), compared byte-wise.
    if (
        stream_seq is not None
        and row.stream_seq is not None
        and stream_seq.encode() <= row.stream_seq.encode()
    ):
        raise StreamConflictError(
            f"Stream-Seq {stream_seq!r} is not greater than the last one, {row.stream_seq!r}"
        )
    chunks = _chunks_of(data, row.content_type, row.size, row.appends + 1, create=False)
    if chunks:
        tx.add_chunks(row.id, chunks)
    if producer is not None:
        tx.set_producer(row.id, producer.id, producer.epoch, producer.seq)
    row = dataclasses.replace(
        row,
        appends=row.appends + len(chunks),
        size=chunks[-1].end if chunks else row.size,
        stream_seq=row.stream_seq if stream_seq is None else stream_seq,
        closed=close,
        closed_by=_stamp(producer) if close and producer is not None else None,
        accessed_us=now_us,
        version=row.version + 1,
    )
    tx.update(row)
    if producer is None:
        return AppendResult(state_of(row))
    return AppendResult(state_of(row), False, producer.epoch, producer.seq)


def delete(tx: StreamTx, now_us: int, name: str) -> None:
    drop(tx, existing(tx, name, now_us))


def touch(tx: StreamTx, now_us: int, name: str) -> StreamRow:
    """A read of the stream: it must exist; a sliding TTL restarts (no version change: a
    read wakes nobody)."""
    row = existing(tx, name, now_us)
    if row.ttl_seconds is not None:
        row = dataclasses.replace(row, accessed_us=now_us)
        tx.update(row)
    return row


def read_result(row: StreamRow, start: tuple[int, int], chunks: Sequence[Chunk], more: bool) -> StreamRead:
    """The read of ``chunks`` (those after ``start``, in order; ``more``: the page was cut
    short) from a snapshot in which the stream was ``row``."""
    start_offset = format_offset(*start)
    if chunks:
        next_offset = format_offset(chunks[-1].seq, chunks[-1].end)
        at_tail = not more and chunks[-1].seq >= row.appends
    else:
        at_tail = start[0] >= row.appends
        next_offset = row.next_offset if at_tail else start_offset
    return StreamRead(
        state=state_of(row),
        start_offset=start_offset,
        next_offset=next_offset,
        chunks=tuple(chunk.data for chunk in chunks),
        up_to_date=at_tail,
        closed=at_tail and row.closed,
    )


def page(chunks: Sequence[Chunk], max_bytes: int) -> tuple[list[Chunk], bool]:
    """The first chunks that fit in ``max_bytes`` (at least one), and whether any were left."""
    taken: list[Chunk] = []
    total = 0
    for chunk in chunks:
        if taken and total + len(chunk.data) > max_bytes:
            return taken, True
        taken.append(chunk)
        total += len(chunk.data)
    return taken, False
