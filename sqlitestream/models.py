"""The records: :class:`Event`, :class:`Session`, :class:`Run` and their enumerations.

Records are frozen dataclasses, validated when built: a record that exists is a record a store
accepts. JSON payloads (``data``, ``metadata``, ``context``, ``input``, ``output``, ``error``,
``token_usage``) are deep-copied on construction; tuples come back as lists.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from itertools import repeat
from operator import truediv
from typing import TYPE_CHECKING, Any, Self

from sqlitestream._core.validate import (
    check_aware_datetime,
    check_choice,
    check_id,
    check_int,
    check_json_object,
    check_optional_id,
    check_optional_json_object,
    check_tags,
    describe,
)
from sqlitestream.errors import ValidationError

__all__ = [
    "Event",
    "EventType",
    "Run",
    "RunStatus",
    "Session",
    "SessionStatus",
    "StoredEvent",
    "new_id",
    "utc_now",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventType(str, Enum):
    """The 25 event types. ``Event(type=...)`` takes a member or its string value."""

    SESSION_CREATED = "session_created"
    SESSION_STARTED = "session_started"
    SESSION_PAUSED = "session_paused"
    SESSION_RESUMED = "session_resumed"
    SESSION_COMPLETED = "session_completed"
    SESSION_FAILED = "session_failed"
    SESSION_CANCELLED = "session_cancelled"
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_TIMEOUT = "run_timeout"
    MESSAGE_SENT = "message_sent"
    MESSAGE_RECEIVED = "message_received"
    MESSAGE_STREAMED = "message_streamed"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    ERROR_OCCURRED = "error_occurred"
    ERROR_RECOVERED = "error_recovered"
    TOKEN_USAGE_UPDATED = "token_usage_updated"
    TURN_COMPLETED = "turn_completed"
    WORKSPACE_SNAPSHOT_TAKEN = "workspace_snapshot_taken"
    WORKSPACE_DIFF_COMPUTED = "workspace_diff_computed"
    POLICY_VIOLATION = "policy_violation"

    def __str__(self) -> str:
        return self.value


class SessionStatus(str, Enum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class RunStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


def new_id(prefix: str) -> str:
    """``prefix`` + 32 lowercase hex: 12 hex of Unix milliseconds, then 80 random bits.

    The leading time keeps ids of new records close together in an index.
    """
    # os.urandom is what secrets.token_hex uses, without its two Python-level calls.
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    # Positional: timedelta's keyword parsing is a third of this call.
    return _EPOCH + timedelta(0, 0, micros)


_FLOAT_EXACT_MICROS = (1 << 32) * 1_000_000
"""Below this (about the year 2106) ``micros / 1e6`` seconds is within half a
microsecond of the truth (a double's spacing there is under 1e-6 s), so
``datetime.fromtimestamp`` rounds it back to exactly ``micros``."""


def from_micros_many(micros: Sequence[int]) -> list[datetime]:
    """``[from_micros(m) for m in micros]`` in C loops (``map``), for a page of events.

    A page read converts a timestamp per event and a Python-level call each was a tenth of
    the read; from 1970 to :data:`_FLOAT_EXACT_MICROS` the float route is exact (tested
    through page reads over the whole datetime range), outside it each value takes the exact
    route.
    """
    # From 1970 only: some platforms' fromtimestamp refuses times before the epoch.
    if micros and min(micros) >= 0 and max(micros) < _FLOAT_EXACT_MICROS:
        return list(map(_from_timestamp, map(truediv, micros, repeat(1e6)), repeat(UTC)))
    return [from_micros(value) for value in micros]


_from_timestamp = datetime.fromtimestamp


# Frozen records store their normalised fields through object.__setattr__ in __post_init__.
_set = object.__setattr__


def _new_event_id() -> str:
    return new_id("evt_")


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a session's log.

    ``type`` is an :class:`EventType` or its string value. ``timestamp`` is when it happened
    (aware; kept to the microsecond; returned in UTC), defaulting to now. ``sequence_number``
    is ``None`` until a store assigns it: what reads and appends return is a
    :class:`StoredEvent`, whose ``sequence_number`` is its place in its session's log.
    """

    type: EventType
    session_id: str
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    id: str = field(default_factory=_new_event_id)
    timestamp: datetime = field(default_factory=utc_now)
    sequence_number: int | None = None

    if TYPE_CHECKING:
        # The generated __init__'s signature, except that type checkers also accept the
        # string value of an EventType, as __post_init__ does.
        def __init__(
            self,
            type: EventType | str,
            session_id: str,
            data: dict[str, Any] = ...,
            metadata: dict[str, Any] = ...,
            run_id: str | None = None,
            id: str = ...,
            timestamp: datetime = ...,
            sequence_number: int | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        _set(self, "data", check_json_object(self.data, "data"))  # deep copies
        _set(self, "metadata", check_json_object(self.metadata, "metadata"))
        # The other checks return their argument itself when it is already in normal form (an
        # EventType, a str, a UTC datetime), as it nearly always is, and only a field whose
        # check changed it is set again: setting a frozen field costs as much as checking it
        # (building the benchmark's event: 53,268 -> 47,547 instructions, callgrind).
        if (type_ := check_choice(self.type, "type", EventType)) is not self.type:
            _set(self, "type", type_)
        if (session_id := check_id(self.session_id, "session_id")) is not self.session_id:
            _set(self, "session_id", session_id)
        if (run_id := check_optional_id(self.run_id, "run_id")) is not self.run_id:
            _set(self, "run_id", run_id)
        if (id_ := check_id(self.id, "id")) is not self.id:
            _set(self, "id", id_)
        if (timestamp := check_aware_datetime(self.timestamp, "timestamp")) is not self.timestamp:
            _set(self, "timestamp", timestamp)
        if self.sequence_number is not None:  # None for a new event: no call (~900 instructions)
            check_int(self.sequence_number, "sequence_number", minimum=1)  # an int, kept as given

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamp as ISO 8601 UTC); inverse of :meth:`from_dict`."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "sequence_number": self.sequence_number,
            "type": self.type.value,
            "run_id": self.run_id,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Self:
        """Build an event from :meth:`to_dict` output (validated like any new event)."""
        return cls(**_from_dict(raw, _EVENT_FIELDS, ("timestamp",), "event"))


@dataclass(frozen=True, slots=True)
class StoredEvent(Event):
    """An event as a store holds it: what every read and append returns.

    ``sequence_number`` is its place in its session's log: 1, 2, 3, ... with no gaps.
    ``position`` is its place in the store-wide feed (see :class:`~sqlitestream.feed.FeedStore`):
    strictly increasing in commit order across all sessions, never reused.
    A stored event is not equal to an :class:`Event` with the same fields (dataclass
    equality compares classes); compare ``to_dict()`` for that.
    """

    sequence_number: int = field(kw_only=True)
    position: int = field(kw_only=True)

    if TYPE_CHECKING:
        # As Event's: type checkers also accept the string value of an EventType.
        def __init__(
            self,
            type: EventType | str,
            session_id: str,
            data: dict[str, Any] = ...,
            metadata: dict[str, Any] = ...,
            run_id: str | None = None,
            id: str = ...,
            timestamp: datetime = ...,
            *,
            sequence_number: int,
            position: int,
        ) -> None: ...

    def __post_init__(self) -> None:
        # Event.__post_init__ by name: zero-argument super() fails in a slotted dataclass.
        Event.__post_init__(self)
        if self.sequence_number is None:
            raise ValidationError("sequence_number is required for a stored event, got None")
        _set(self, "position", check_int(self.position, "position", minimum=1, allow_none=False))

    def to_dict(self) -> dict[str, Any]:
        """:meth:`Event.to_dict` plus ``position`` (which :meth:`Event.from_dict` ignores: a
        position belongs to the store that assigned it)."""
        return {**Event.to_dict(self), "position": self.position}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Self:
        """A stored event from :meth:`to_dict` output (``sequence_number`` and ``position``
        required), validated like any record."""
        return cls(**_from_dict(raw, (*_EVENT_FIELDS, "position"), ("timestamp",), "stored event"))


def parse_timestamp(value: object, name: str) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string with an offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(f"{name} is not an ISO 8601 timestamp: {value!r}") from exc
    return check_aware_datetime(value, name)


def _from_dict(raw: object, names: tuple[str, ...], times: tuple[str, ...], kind: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValidationError(f"a {kind} record must be a JSON object, got {type(raw).__name__}")
    fields = {name: raw[name] for name in names if name in raw}
    missing = [name for name in _REQUIRED[kind] if name not in fields]
    if missing:
        raise ValidationError(f"a {kind} record needs {', '.join(missing)}; got {describe(raw)}")
    for name in times:
        if fields.get(name) is not None:
            fields[name] = parse_timestamp(fields[name], name)
    return fields


_new_object = object.__new__
_bind_setattr = object.__setattr__.__get__


def stored_event(
    type: EventType,
    session_id: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    run_id: str | None,
    id: str,
    timestamp: datetime,
    sequence_number: int,
    position: int,
) -> StoredEvent:
    """A stored event from values that are already valid: those of a validated event, or
    those a store read back from what it wrote; positional, in field order.

    It sets the fields as the generated ``__init__`` does, without ``__post_init__``: checking
    a page read's events again would encode and decode each payload once more, about 2 us an
    event where a whole page read costs about 10 us an event (``tools.bench``, read case).
    """
    event = _new_object(StoredEvent)
    # object.__setattr__ bound to the new record once: called unbound, as _set is, it copies
    # its arguments into a new tuple on every call (nine calls: 12,205 -> 10,129 instructions,
    # callgrind; a stored event is built for every append and every event a read returns).
    put = _bind_setattr(event)
    put("type", type)
    put("session_id", session_id)
    put("data", data)
    put("metadata", metadata)
    put("run_id", run_id)
    put("id", id)
    put("timestamp", timestamp)
    put("sequence_number", sequence_number)
    put("position", position)
    return event


def with_sequence(event: Event, seq: int, position: int) -> StoredEvent:
    """``event`` as stored with sequence number ``seq`` at feed ``position`` (no re-validation)."""
    return stored_event(
        event.type,
        event.session_id,
        event.data,
        event.metadata,
        event.run_id,
        event.id,
        event.timestamp,
        seq,
        position,
    )


@dataclass(frozen=True, slots=True)
class Session:
    """A saved session: who runs it, its status, and free-form metadata and context.

    ``status`` is a :class:`SessionStatus` or its string value.
    """

    agent_id: str
    id: str = field(default_factory=lambda: new_id("ses_"))
    status: SessionStatus = SessionStatus.PENDING
    parent_session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    if TYPE_CHECKING:
        # The generated __init__'s signature, except that type checkers also accept the
        # string value of a SessionStatus, as __post_init__ does.
        def __init__(
            self,
            agent_id: str,
            id: str = ...,
            status: SessionStatus | str = SessionStatus.PENDING,
            parent_session_id: str | None = None,
            metadata: dict[str, Any] = ...,
            context: dict[str, Any] = ...,
            tags: list[str] = ...,
            created_at: datetime = ...,
            updated_at: datetime = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        _set(self, "agent_id", check_id(self.agent_id, "agent_id"))
        _set(self, "id", check_id(self.id, "id"))
        _set(self, "status", check_choice(self.status, "status", SessionStatus))
        _set(self, "parent_session_id", check_optional_id(self.parent_session_id, "parent_session_id"))
        _set(self, "metadata", check_json_object(self.metadata, "metadata"))
        _set(self, "context", check_json_object(self.context, "context"))
        _set(self, "tags", check_tags(self.tags, "tags"))
        _set(self, "created_at", check_aware_datetime(self.created_at, "created_at"))
        _set(self, "updated_at", check_aware_datetime(self.updated_at, "updated_at"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "agent_id": self.agent_id,
            "status": self.status.value,
            "parent_session_id": self.parent_session_id,
            "metadata": self.metadata,
            "context": self.context,
            "tags": self.tags,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Session:
        return cls(**_from_dict(raw, _SESSION_FIELDS, ("created_at", "updated_at"), "session"))


@dataclass(frozen=True, slots=True)
class Run:
    """One agent run inside a session: its input, outcome, token usage and timing.

    ``status`` is a :class:`RunStatus` or its string value.
    """

    session_id: str
    id: str = field(default_factory=lambda: new_id("run_"))
    status: RunStatus = RunStatus.PENDING
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    turn_count: int = 0
    token_usage: dict[str, Any] = field(default_factory=dict)
    started_at: datetime = field(default_factory=utc_now)
    ended_at: datetime | None = None

    if TYPE_CHECKING:
        # The generated __init__'s signature, except that type checkers also accept the
        # string value of a RunStatus, as __post_init__ does.
        def __init__(
            self,
            session_id: str,
            id: str = ...,
            status: RunStatus | str = RunStatus.PENDING,
            input: dict[str, Any] | None = None,
            output: dict[str, Any] | None = None,
            error: dict[str, Any] | None = None,
            metadata: dict[str, Any] = ...,
            turn_count: int = 0,
            token_usage: dict[str, Any] = ...,
            started_at: datetime = ...,
            ended_at: datetime | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        _set(self, "session_id", check_id(self.session_id, "session_id"))
        _set(self, "id", check_id(self.id, "id"))
        _set(self, "status", check_choice(self.status, "status", RunStatus))
        _set(self, "input", check_optional_json_object(self.input, "input"))
        _set(self, "output", check_optional_json_object(self.output, "output"))
        _set(self, "error", check_optional_json_object(self.error, "error"))
        _set(self, "metadata", check_json_object(self.metadata, "metadata"))
        _set(self, "turn_count", check_int(self.turn_count, "turn_count", minimum=0, allow_none=False))
        _set(self, "token_usage", check_json_object(self.token_usage, "token_usage"))
        _set(self, "started_at", check_aware_datetime(self.started_at, "started_at"))
        ended_at = self.ended_at
        _set(self, "ended_at", None if ended_at is None else check_aware_datetime(ended_at, "ended_at"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "metadata": self.metadata,
            "turn_count": self.turn_count,
            "token_usage": self.token_usage,
            "started_at": self.started_at.isoformat(),
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Run:
        return cls(**_from_dict(raw, _RUN_FIELDS, ("started_at", "ended_at"), "run"))


_EVENT_FIELDS = (
    "type",
    "session_id",
    "data",
    "metadata",
    "run_id",
    "id",
    "timestamp",
    "sequence_number",
)
_SESSION_FIELDS = (
    "agent_id",
    "id",
    "status",
    "parent_session_id",
    "metadata",
    "context",
    "tags",
    "created_at",
    "updated_at",
)
_RUN_FIELDS = (
    "session_id",
    "id",
    "status",
    "input",
    "output",
    "error",
    "metadata",
    "turn_count",
    "token_usage",
    "started_at",
    "ended_at",
)
_REQUIRED = {
    "event": ("type", "session_id"),
    "stored event": ("type", "session_id", "sequence_number", "position"),
    "session": ("agent_id",),
    "run": ("session_id",),
}
