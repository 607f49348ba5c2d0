"""The byte-stream capability: named, append-only streams of bytes with opaque offsets, the
storage side of the Durable Streams protocol (what ``sqlitestream.http`` serves at
``/v1/stream/{name}``).

A store that has the capability returns a :class:`ByteStreams` from ``byte_streams()``. The
docstrings of :class:`ByteStreams` are its specification; the shared contract tests
(``sqlitestream.testing.bytestreams``) check it on every store that has it.

The model, in the protocol's words:

* A stream has a **content type** fixed at creation. ``application/json`` streams keep message
  boundaries: an append of a JSON array stores each element as a message (one level
  flattened); a read returns the messages of its range as one JSON array. Any other type is
  bytes, and the bytes of successive appends are concatenated.
* **Offsets** are strings ``"%016d_%016d"`` (appends so far, bytes so far): they sort as the
  positions they name. ``"-1"`` means the start and ``"now"`` the current tail.
* A stream may be **closed** (atomically with a final append): it then takes no appends and
  readers at its tail see the end. Closing is durable and cannot be undone.
* **TTL** (seconds, sliding: every read or write, but not a ``stream_state`` look, restarts it)
  or an absolute **expiry**: past it the stream reads as absent and its name is free again.
* **Idempotent producers** (:class:`Producer`): an append retried with the same
  ``(id, epoch, seq)`` is stored once; older epochs are fenced; gaps are refused.
* A **fork** (:class:`StreamFork`) is a new stream that starts with a source stream's data up to
  an offset (and ``sub_offset`` messages or bytes into the next append), then lives on its own.
  Deleting a stream that has forks only marks it deleted (:class:`~sqlitestream.errors.StreamDeletedError`
  on every use) until its last fork is gone.

Every change (create, append, close, delete, a producer's state) is one transaction:
all of it is stored, or none.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlitestream._core.validate import check_int, check_text, describe
from sqlitestream.errors import ValidationError

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "MAX_SAFE_INTEGER",
    "AppendResult",
    "ByteStreams",
    "CreateResult",
    "Producer",
    "StreamFork",
    "StreamRead",
    "StreamState",
    "WakeSignal",
    "check_stream_name",
    "format_offset",
    "is_json",
    "media_type",
    "parse_offset",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest producer epoch or sequence (JavaScript's ``Number.MAX_SAFE_INTEGER``)."""
MAX_NAME_LENGTH = 1024

_OFFSET = re.compile(r"\A(\d{16})_(\d{16})\Z")


def format_offset(appends: int, size: int) -> str:
    """The offset after ``appends`` appends holding ``size`` bytes in all."""
    return f"{appends:016d}_{size:016d}"


def parse_offset(offset: str, name: str = "offset") -> tuple[int, int]:
    """``(appends, bytes)`` of an offset minted by :func:`format_offset` (``"-1"``: the start);
    ``ValidationError`` for anything else (``"now"`` included: the caller resolves it)."""
    if offset == "-1":
        return (0, 0)
    match = _OFFSET.match(offset) if isinstance(offset, str) else None
    if match is None:
        raise ValidationError(
            f"{name} must be -1 or an offset returned by the server, got {describe(offset)}"
        )
    return (int(match.group(1)), int(match.group(2)))


def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` value, lower case, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    return media_type(content_type) == JSON_CONTENT_TYPE


def check_stream_name(name: object) -> str:
    """A stream name: 1 to 1024 characters of text, no NUL or control characters, no empty,
    ``.`` or ``..`` path segment (names come from URL paths and must never act like one)."""
    if type(name) is not str or not name:
        raise ValidationError(f"a stream name must be a non-empty string, got {describe(name)}")
    check_text(name, "stream name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"a stream name must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise ValidationError(f"a stream name must not contain control characters, got {describe(name)}")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValidationError(
            f"a stream name must not have empty, '.' or '..' segments, got {describe(name)}"
        )
    return name


def _check_count(value: object, name: str) -> int:
    checked = check_int(value, name, minimum=0, allow_none=False)
    assert checked is not None
    if checked > MAX_SAFE_INTEGER:
        raise ValidationError(f"{name} must be at most 2**53-1, got {checked}")
    return checked


@dataclass(frozen=True)
class Producer:
    """An idempotent producer's stamp on one append: its ``id``, its ``epoch`` (raised on each
    restart) and the append's ``seq`` (0, 1, 2, ... within an epoch)."""

    id: str
    epoch: int
    seq: int

    def __post_init__(self) -> None:
        if type(self.id) is not str or not self.id:
            raise ValidationError(f"the producer id must be a non-empty string, got {describe(self.id)}")
        check_text(self.id, "the producer id")
        if "\x00" in self.id:
            raise ValidationError(f"the producer id must not contain NUL, got {describe(self.id)}")
        _check_count(self.epoch, "the producer epoch")
        _check_count(self.seq, "the producer seq")


@dataclass(frozen=True)
class StreamFork:
    """Create the stream as a fork of ``source``, inheriting its data up to ``offset`` (default:
    its tail) plus ``sub_offset`` messages (JSON) or bytes (anything else) of the append after it."""

    source: str
    offset: str | None = None
    sub_offset: int = 0

    def __post_init__(self) -> None:
        check_stream_name(self.source)
        if self.offset is not None:
            parse_offset(self.offset, "the fork offset")
        _check_count(self.sub_offset, "the fork sub-offset")


@dataclass(frozen=True)
class StreamState:
    """What a stream is right now (a ``HEAD``)."""

    name: str
    content_type: str
    next_offset: str
    """The tail: the offset the next append will start at."""
    closed: bool
    ttl_seconds: int | None
    expires_at: datetime | None
    generation: int
    """Tells this stream from an earlier one of the same name (it is part of the ETag)."""
    forked_from: str | None = None
    fork_offset: str | None = None
    fork_sub_offset: int = 0


@dataclass(frozen=True)
class CreateResult:
    """``created``: False when an identical stream was already there (idempotent create)."""

    created: bool
    state: StreamState


@dataclass(frozen=True)
class AppendResult:
    """The stream after the append. ``duplicate``: the producer's ``(id, epoch, seq)`` was
    already stored, nothing was written. ``producer_seq``: the highest sequence stored for the
    producer's epoch (None without a producer)."""

    state: StreamState
    duplicate: bool = False
    producer_epoch: int | None = None
    producer_seq: int | None = None


@dataclass(frozen=True)
class StreamRead:
    """A read from ``start_offset``: ``chunks`` (the stored appends, for JSON each a
    comma-separated run of messages), up to ``next_offset``. ``up_to_date``: nothing more was
    stored at the time; ``closed``: and nothing more ever will be."""

    state: StreamState
    start_offset: str
    next_offset: str
    chunks: tuple[bytes, ...] = field(default=())
    up_to_date: bool = True
    closed: bool = False

    @property
    def has_data(self) -> bool:
        return any(self.chunks)

    def body(self) -> bytes:
        """The response body: the bytes, or for a JSON stream one array of the messages."""
        if is_json(self.state.content_type):
            return b"[" + b",".join(chunk for chunk in self.chunks if chunk) + b"]"
        return b"".join(self.chunks)


class WakeSignal(Protocol):
    """Set (from any thread) when a watched stream may have changed."""

    def set(self) -> None: ...


class ByteStreams(ABC):
    """Named byte streams in one store (see the module docs for the model). Every method
    raises :class:`~sqlitestream.errors.ValidationError` for a bad argument, with nothing
    written, and :class:`~sqlitestream.errors.StreamDeletedError` for a name whose stream was
    deleted while forks of it remain."""

    @abstractmethod
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
        """Create the stream ``name`` with ``data`` as its first append (for JSON: a value or
        an array of messages; ``[]`` is none), closed at once if ``closed``.

        ``content_type`` defaults to ``application/octet-stream`` (a fork: the source's, and a
        different one is a ``StreamConflictError``). ``ttl_seconds`` and ``expires_at`` exclude
        each other; a fork without either inherits its source's. If the stream exists with the
        same content type, TTL or expiry, closed state and fork origin, nothing changes and
        ``created`` is False; with any other configuration it is a ``StreamConflictError``.
        A fork of a missing source raises ``StreamNotFoundError``, of a deleted one
        ``StreamConflictError``; an offset past the source's tail, or a sub-offset past the
        append after it, ``ValidationError``. A fork shares no producer or ``stream_seq``
        state with its source.
        """

    @abstractmethod
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
        """Append ``data`` (and close the stream in the same transaction if ``close``).

        Checks, in this order: the stream exists (``StreamNotFoundError``); it is open, else
        ``StreamClosedError`` -- except that closing again without data, or the producer
        stamp that closed it, is an idempotent success; ``data`` is non-empty unless closing
        (``ValidationError``) and its ``content_type`` (required with data) has the stream's
        media type (``StreamConflictError``); the producer: an epoch older than the stored one
        is ``ProducerEpochError``, a newer one must start at seq 0 (``ValidationError``), a seq
        already stored is a ``duplicate`` (nothing written), one past the next is
        ``ProducerSequenceGapError``; ``stream_seq`` must be greater (byte-wise) than the last
        one stored (``StreamConflictError``); JSON data must be valid JSON and not ``[]``
        (``ValidationError``). Appends reset a sliding TTL and wake the stream's watchers.
        """

    @abstractmethod
    def read_stream(self, name: str, *, offset: str = "-1", max_bytes: int = 1 << 22) -> StreamRead:
        """The appends after ``offset`` (``"-1"`` the start, ``"now"`` the tail), at least one
        and then as many as fit in ``max_bytes``; ``up_to_date`` when they reach the tail.
        ``StreamNotFoundError`` for a missing or expired stream; resets a sliding TTL. Reads one
        snapshot and holds nothing once it returns."""

    @abstractmethod
    def stream_state(self, name: str) -> StreamState:
        """The stream's state (``StreamNotFoundError`` if missing or expired); leaves the TTL."""

    @abstractmethod
    def delete_stream(self, name: str) -> None:
        """Delete the stream and its data (``StreamNotFoundError`` if missing). With forks
        left, it is only marked deleted until the last of them is deleted; then it goes too,
        and so on up a chain of forks."""

    @abstractmethod
    def watch_stream(self, name: str, woken: WakeSignal) -> AbstractContextManager[None]:
        """Inside the block, ``woken.set()`` is called (from any thread) after each change to
        the stream, in this process or another: a hint to read again, never the data itself.
        Register before reading, so a change between the read and the wait is not missed."""


def iter_json_messages(chunk: bytes) -> Iterator[bytes]:
    """The messages of a stored JSON chunk, each its JSON text (used to split at a sub-offset)."""
    if not chunk:
        return
    for message in json.loads(b"[" + chunk + b"]"):
        yield json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
