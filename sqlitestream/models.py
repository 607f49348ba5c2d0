"""The records: :class:`Event`, :class:`Session`, :class:`Run` and their enumerations.

Records are frozen dataclasses, validated when built: a record that exists is a record a store
accepts. JSON payloads (``data``, ``metadata``, ``context``, ``input``, ``output``, ``error``,
``token_usage``) are deep-copied on construction; tuples come back as lists.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from itertools import repeat
from operator import truediv
from typing import Any

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
    json_object_with_text,
)
from sqlitestream.errors import ValidationError

__all__ = [
    "EventType",
    "SessionStatus",
    "RunStatus",
    "Event",
    "Session",
    "Run",
    "new_id",
    "utc_now",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNSET: Any = object()  # "argument not given" for Event's defaults built per event


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
    return datetime.now(timezone.utc)


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
    if micros and 0 <= min(micros) and max(micros) < _FLOAT_EXACT_MICROS:
        return list(map(_from_timestamp, map(truediv, micros, repeat(1e6)), repeat(timezone.utc)))
    return [from_micros(value) for value in micros]


_from_timestamp = datetime.fromtimestamp


# Frozen records set their own fields through object.__setattr__; bound once, called directly.
_set = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One entry of a session's log.

    ``Event(type, session_id, data={}, metadata={}, run_id=None, id=<new>, timestamp=<now>,
    sequence_number=None)``. ``type`` is an :class:`EventType` or its string value.
    ``sequence_number`` is ``None`` until a store assigns it: stored events carry 1, 2, 3, ...
    per session. ``timestamp`` is when it happened (aware; kept to the microsecond; returned
    in UTC), defaulting to now.
    """

    type: EventType
    session_id: str
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    id: str = field(default_factory=lambda: new_id("evt_"))
    timestamp: datetime = field(default_factory=utc_now)
    sequence_number: int | None = None
    # Canonical JSON of (data, metadata), computed once while validating and reused on write.
    _json: tuple[str, str] = field(default=("", ""), init=False, repr=False, compare=False)

    def __init__(
        self,
        type: EventType | str,
        session_id: str,
        data: dict[str, Any] = _UNSET,
        metadata: dict[str, Any] = _UNSET,
        run_id: str | None = None,
        id: str = _UNSET,
        timestamp: datetime = _UNSET,
        sequence_number: int | None = None,
    ) -> None:
        # Written by hand (init=False) so that each field is validated and set once: the
        # generated __init__ set every field and __post_init__ then set it again, a tenth of
        # the cost of an append. The checks are the shared ones in _validate; the inline
        # conditions only skip a call when the value is already what the check returns.
        if type.__class__ is not EventType:
            type = check_choice(type, "type", EventType)
        if (
            session_id.__class__ is not str
            or not session_id
            or not session_id.isascii()
            or "\x00" in session_id
        ):
            session_id = check_id(session_id, "session_id")
        data, data_text = ({}, "{}") if data is _UNSET else json_object_with_text(data, "data")
        metadata, metadata_text = (
            ({}, "{}") if metadata is _UNSET else json_object_with_text(metadata, "metadata")
        )
        _set_type(self, type)
        _set_session_id(self, session_id)
        _set_data(self, data)
        _set_metadata(self, metadata)
        _set_run_id(self, None if run_id is None else check_id(run_id, "run_id"))
        _set_id(self, new_id("evt_") if id is _UNSET else check_id(id, "id"))
        _set_timestamp(self, utc_now() if timestamp is _UNSET else check_aware_datetime(timestamp, "timestamp"))
        if sequence_number is not None:
            sequence_number = check_int(sequence_number, "sequence_number", minimum=1)
        _set_sequence_number(self, sequence_number)
        _set_json(self, (data_text, metadata_text))

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
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        """Build an event from :meth:`to_dict` output (validated like any new event)."""
        return cls(**_from_dict(raw, _EVENT_FIELDS, ("timestamp",), "event"))


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


# Event's fields are set through their slot descriptors, bound once: a frozen dataclass's
# object.__setattr__ looks each name up, and an append or a page read sets nine of them per
# event (measured: 1.0 us -> 0.6 us per event).
_EVENT_SETTERS = tuple(
    Event.__dict__[name].__set__
    for name in (
        "type",
        "session_id",
        "data",
        "metadata",
        "run_id",
        "id",
        "timestamp",
        "sequence_number",
        "_json",
    )
)
(
    _set_type,
    _set_session_id,
    _set_data,
    _set_metadata,
    _set_run_id,
    _set_id,
    _set_timestamp,
    _set_sequence_number,
    _set_json,
) = _EVENT_SETTERS
_new_event = Event.__new__
_consume = deque[None](maxlen=0).extend  # runs an iterator to its end, keeping nothing


def stored_event(
    type: EventType,
    session_id: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    run_id: str | None,
    id: str,
    timestamp: datetime,
    sequence_number: int,
    json_text: tuple[str, str],
) -> Event:
    """An event from values a store already validated (no re-validation); positional in the
    field order on the hot paths."""
    event = _new_event(Event)
    _set_type(event, type)
    _set_session_id(event, session_id)
    _set_data(event, data)
    _set_metadata(event, metadata)
    _set_run_id(event, run_id)
    _set_id(event, id)
    _set_timestamp(event, timestamp)
    _set_sequence_number(event, sequence_number)
    _set_json(event, json_text)
    return event


def with_sequence(event: Event, seq: int) -> Event:
    """``event`` as stored with sequence number ``seq`` (no re-validation)."""
    return stored_event(
        event.type,
        event.session_id,
        event.data,
        event.metadata,
        event.run_id,
        event.id,
        event.timestamp,
        seq,
        event._json,
    )


def stored_events(count: int, *columns: Iterable[Any]) -> list[Event]:
    """``count`` events from validated values given column by column, in :func:`stored_event`'s
    argument order: each field is set for all events in one C loop (``map`` over its slot
    setter), with no Python call per event, for a page read."""
    events = list(map(_new_event, repeat(Event, count)))
    for setter, values in zip(_EVENT_SETTERS, columns, strict=True):
        _consume(map(setter, events, values))
    return events


@dataclass(frozen=True, slots=True)
class Session:
    """A saved session: who runs it, its status, and free-form metadata and context."""

    agent_id: str
    id: str = field(default_factory=lambda: new_id("ses_"))
    status: SessionStatus = SessionStatus.PENDING
    parent_session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

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
    """One agent run inside a session: its input, outcome, token usage and timing."""

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
    "type", "session_id", "data", "metadata", "run_id", "id", "timestamp", "sequence_number",
)
_SESSION_FIELDS = (
    "agent_id", "id", "status", "parent_session_id", "metadata", "context", "tags",
    "created_at", "updated_at",
)
_RUN_FIELDS = (
    "session_id", "id", "status", "input", "output", "error", "metadata", "turn_count",
    "token_usage", "started_at", "ended_at",
)
_REQUIRED = {"event": ("type", "session_id"), "session": ("agent_id",), "run": ("session_id",)}
