""":class:`RuleStreams`: the :class:`~sqlitestream.bytestreams.ByteStreams` methods written
once on top of the shared rules (``streamrules``): argument checks, the rule each change runs,
reads and their TTL touch, wake-ups. A backend gives three things: its one write transaction
(:meth:`RuleStreams._transact`), a read of one snapshot (:meth:`RuleStreams._snapshot`) and
the name of a stream by id (:meth:`RuleStreams._name_of`)."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TypeVar

from sqlitestream._core import streamrules as rules
from sqlitestream._core.streamrules import Chunk, StreamRow, StreamTx
from sqlitestream._core.validate import check_int, check_text, describe
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

T = TypeVar("T")

PAGE_CHUNKS = 1000
"""Appends a read takes at most (then cut to its ``max_bytes``)."""


def now_us() -> int:
    return time.time_ns() // 1000


def _check_bytes(data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError(f"data must be bytes, got {describe(data)}")
    return bytes(data)


def _check_header(value: object, what: str) -> None:
    """A value that travels as an HTTP header: text without NUL (which no header can carry
    and PostgreSQL's text cannot store), or None."""
    if value is None:
        return
    if type(value) is not str:
        raise ValidationError(f"{what} must be a str, got {describe(value)}")
    check_text(value, what)
    if "\x00" in value:
        raise ValidationError(f"{what} must not contain NUL, got {describe(value)}")


class RuleStreams(ByteStreams):
    """See the module docs. ``hub`` wakes the watchers of each stream name."""

    def __init__(self, hub: WakeHub, clock: Callable[[], int] = now_us) -> None:
        self._hub = hub
        self._clock = clock

    @abstractmethod
    def _transact(self, action: str, rule: Callable[[StreamTx, int], T]) -> T:
        """Run ``rule(tx, now_us)`` in one write transaction; all of it is kept or none."""

    @abstractmethod
    def _snapshot(self, name: str, after: int | None) -> tuple[StreamRow | None, list[Chunk]]:
        """The stream ``name`` and up to :data:`PAGE_CHUNKS` of its appends after number
        ``after`` (none when ``after`` is None), as of one moment."""

    @abstractmethod
    def _name_of(self, stream_id: int) -> str | None:
        """The name of the stream with this id, if it is still stored."""

    def _change(self, action: str, name: str, rule: Callable[[StreamTx, int], T]) -> T:
        result = self._transact(action, rule)
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
        body = _check_bytes(data)
        _check_header(content_type, "content_type")
        if fork is not None and not isinstance(fork, StreamFork):
            raise ValidationError(f"fork must be a StreamFork, got {describe(fork)}")
        return self._change(
            "create a stream",
            name,
            lambda tx, now: rules.create(
                tx,
                now,
                name,
                content_type=content_type,
                ttl_seconds=ttl,
                expires_at_us=expires_us,
                closed=bool(closed),
                data=body,
                fork=fork,
            ),
        )

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
        body = _check_bytes(data)
        if producer is not None and not isinstance(producer, Producer):
            raise ValidationError(f"producer must be a Producer, got {describe(producer)}")
        for value, what in ((content_type, "content_type"), (stream_seq, "stream_seq")):
            _check_header(value, what)
        return self._change(
            "append to a stream",
            name,
            lambda tx, now: rules.append(
                tx,
                now,
                name,
                body,
                content_type=content_type,
                close=bool(close),
                stream_seq=stream_seq,
                producer=producer,
            ),
        )

    def read_stream(self, name: str, *, offset: str = "-1", max_bytes: int = 1 << 22) -> StreamRead:
        name = check_stream_name(name)
        start = None if offset == "now" else parse_offset(offset)
        limit = check_int(max_bytes, "max_bytes", minimum=1, allow_none=False) or 1
        now = self._clock()
        after = None if start is None else start[0]
        row, chunks = self._snapshot(name, after)
        if row is not None and row.ttl_seconds is not None and not row.deleted and not row.expired(now):
            # A read restarts a sliding TTL: a write, which wakes nobody (no version change).
            self._transact("read a stream", lambda tx, at: rules.touch(tx, at, name))
            row, chunks = self._snapshot(name, after)
        if row is None or (not row.deleted and row.expired(now)):
            raise StreamNotFoundError(name)
        if row.deleted:
            raise StreamDeletedError(name)
        if start is None:
            return rules.read_result(row, (row.appends, row.size), [], False)
        taken, more = rules.page(chunks, limit)
        return rules.read_result(row, start, taken, more)

    def stream_state(self, name: str) -> StreamState:
        name = check_stream_name(name)
        row, _ = self._snapshot(name, None)
        if row is None or (not row.deleted and row.expired(self._clock())):
            raise StreamNotFoundError(name)
        if row.deleted:
            raise StreamDeletedError(name)
        return rules.state_of(row, None if row.forked_from is None else self._name_of(row.forked_from))

    def delete_stream(self, name: str) -> None:
        name = check_stream_name(name)
        self._change("delete a stream", name, lambda tx, now: rules.delete(tx, now, name))

    def watch_stream(self, name: str, woken: WakeSignal) -> AbstractContextManager[None]:
        return self._watching(check_stream_name(name), woken)

    @contextmanager
    def _watching(self, name: str, woken: WakeSignal) -> Iterator[None]:
        with self._hub.waiting(name, woken):
            yield

    def close(self) -> None:
        """The store is closing: watchers wake (and then read a closed store)."""
        self._hub.close()
