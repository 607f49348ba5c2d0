"""The store contract: :class:`SessionStore`. Its docstrings are the specification.

Every store (in-memory, SQLite, PostgreSQL, or your own) implements this class and runs the
shared contract tests in :mod:`sqlitestream.testing`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self

from sqlitestream._core import codec
from sqlitestream._core.validate import (
    check_aware_datetime,
    check_choice,
    check_id,
    check_int,
    describe,
)
from sqlitestream.errors import ValidationError
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
    to_micros,
)

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "EventFilter", "SessionFilter", "SessionStore"]

DEFAULT_MAX_EVENT_BYTES = 1_048_576
"""Default upper bound on an event's encoded ``data`` + ``metadata`` (1 MiB)."""


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """The checked arguments of :meth:`SessionStore.list_sessions`: what every store lists by."""

    status: SessionStatus | None = None
    agent_id: str | None = None
    limit: int | None = None
    offset: int = 0

    @classmethod
    def build(
        cls, *, status: object = None, agent_id: object = None, limit: object = None, offset: object = None
    ) -> SessionFilter:
        """Validate every argument; a bad one raises ``ValidationError`` naming it."""
        return cls(
            status=None if status is None else check_choice(status, "status", SessionStatus),
            agent_id=None if agent_id is None else check_id(agent_id, "agent_id"),
            limit=check_int(limit, "limit", minimum=1),
            offset=check_int(offset, "offset", minimum=0) or 0,
        )

    @property
    def status_text(self) -> str | None:
        """The status as stored (its value), or None for any."""
        return None if self.status is None else self.status.value


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A validated ``get_events`` query. Build it with :meth:`build`; stores share it."""

    session_id: str
    run_id: str | None = None
    type: EventType | None = None
    since: datetime | None = None
    after: int | None = None
    before: int | None = None
    limit: int | None = None
    wait_timeout_ms: int | None = None

    @classmethod
    def build(
        cls,
        session_id: object,
        *,
        run_id: object = None,
        type: object = None,
        since: object = None,
        after: object = None,
        before: object = None,
        limit: object = None,
        wait_timeout_ms: object = None,
    ) -> EventFilter:
        """Validate every argument; a bad one raises ``ValidationError`` naming it."""
        return cls(
            session_id=check_id(session_id, "session_id"),
            run_id=None if run_id is None else check_id(run_id, "run_id"),
            type=None if type is None else check_choice(type, "type", EventType),
            since=None if since is None else check_aware_datetime(since, "since"),
            after=check_int(after, "after", minimum=0),
            before=check_int(before, "before", minimum=0),
            limit=check_int(limit, "limit", minimum=1),
            wait_timeout_ms=check_int(wait_timeout_ms, "wait_timeout_ms", minimum=0),
        )

    @property
    def since_micros(self) -> int | None:
        return None if self.since is None else to_micros(self.since)

    @property
    def wait_seconds(self) -> float:
        return (self.wait_timeout_ms or 0) / 1000.0

    def matches(self, event: Event) -> bool:
        """Whether a stored event of this filter's session passes every filter."""
        seq = event.sequence_number or 0
        return (
            (self.after is None or seq > self.after)
            and (self.before is None or seq < self.before)
            and (self.run_id is None or event.run_id == self.run_id)
            and (self.type is None or event.type is self.type)
            and (self.since is None or event.timestamp >= self.since)
        )


def check_event(event: object, max_event_bytes: int, name: str = "event") -> Event:
    """An ``Event`` whose encoded payload fits in ``max_event_bytes``."""
    event_size(event, max_event_bytes, name)
    return event  # type: ignore[return-value]


def event_size(event: object, max_event_bytes: int, name: str = "event") -> int:
    """The encoded data + metadata bytes of an ``Event`` that :func:`check_event` accepts."""
    return encoded_payload(event, max_event_bytes, name)[2]


def encoded_payload(event: object, max_event_bytes: int, name: str = "event") -> tuple[str, str, int]:
    """The JSON texts of an ``Event``'s data and metadata (as a store writes them) and their
    size in bytes, for an event that :func:`check_event` accepts: a store that writes the texts
    it checked encodes each payload once."""
    if not isinstance(event, Event):
        raise ValidationError(f"{name} must be an Event, got {describe(event)}")
    data, metadata = codec.encode(event.data), codec.encode(event.metadata)
    size = len(data.encode()) + len(metadata.encode())
    if size > max_event_bytes:
        raise ValidationError(
            f"{name} {event.id!r} has {size} bytes of data and metadata, over the store's "
            f"max_event_bytes={max_event_bytes}"
        )
    return data, metadata, size


def check_events(events: object, max_event_bytes: int) -> list[Event]:
    """A list of valid events for a batch append (any iterable except a str or a single Event)."""
    return check_encoded_events(events, max_event_bytes).events


class EncodedBatch(NamedTuple):
    """A batch that :func:`check_events` accepts, with each event's :func:`encoded_payload`
    texts (in batch order) and the batch's encoded data + metadata bytes."""

    events: list[Event]
    payloads: list[tuple[str, str]]
    size: int


def check_encoded_events(events: object, max_event_bytes: int) -> EncodedBatch:
    """:func:`check_events`, with the texts and size of every event's payload."""
    if isinstance(events, (str, bytes, Event, dict)) or not isinstance(events, Iterable):
        raise ValidationError(f"events must be a list of Event, got {describe(events)}")
    checked = list(events)
    payloads = []
    size = 0
    for index, event in enumerate(checked):
        data, metadata, event_bytes = encoded_payload(event, max_event_bytes, f"events[{index}]")
        payloads.append((data, metadata))
        size += event_bytes
    return EncodedBatch(checked, payloads, size)


def check_max_event_bytes(value: object) -> int:
    checked = check_int(value, "max_event_bytes", minimum=1, allow_none=False)
    assert checked is not None
    return checked


def check_record(value: object, kind: type[Any], name: str) -> Any:
    if not isinstance(value, kind):
        raise ValidationError(f"{name} must be a {kind.__name__}, got {describe(value)}")
    return value


class SessionStore(abc.ABC):
    """A durable, cursor-backed, per-session event log plus session and run records.

    **Sequencing.** Each newly stored event gets its session's next sequence number: 1, 2, 3,
    ... with no gaps and no repeats, under any number of concurrent threads and processes.
    ``get_events`` returns events oldest first, in sequence order.

    **Idempotency.** An event id is unique store-wide. Appending an id that the same session
    already holds writes nothing and returns the originally stored event (its sequence number,
    timestamp and data), even if the new payload differs. An id held by another session raises
    ``EventIdConflictError``.

    **Errors.** Bad arguments raise ``ValidationError`` naming the argument, before anything is
    written. Every error derives from ``SqliteStreamError``. After ``close()`` every call raises
    ``StoreClosedError``. A store is a context manager that closes on exit.

    **Threads.** One store object may be shared by any number of threads.
    """

    # Sessions -----------------------------------------------------------------------------

    @abc.abstractmethod
    def create_session(self, session: Session) -> None:
        """Insert the session record, atomically refusing an id that is already saved.

        If a session with ``session.id`` is saved (by this or any other process), raises
        ``ConflictError`` and writes nothing: of any number of concurrent creates of one id,
        exactly one succeeds. Events appended under the id before it was saved do not count.
        """

    @abc.abstractmethod
    def save_session(self, session: Session) -> None:
        """Insert or replace the session record with ``session.id``."""

    @abc.abstractmethod
    def get_session(self, session_id: str) -> Session:
        """The saved session; ``SessionNotFoundError`` if none was saved with this id.

        A session id that only has events (never saved) is not found.
        """

    @abc.abstractmethod
    def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        """Saved sessions ordered by ``created_at`` then ``id``, filtered by equality.

        ``limit`` >= 1 and ``offset`` >= 0 page through the ordered list.
        """

    @abc.abstractmethod
    def delete_session(self, session_id: str) -> None:
        """Remove the session, its runs, its events and its sequence counter, atomically.

        Idempotent: deleting an unknown id does nothing. Long-poll waiters on the session
        return ``[]``. Appending to the id afterwards starts again at sequence 1.
        """

    # Runs ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def save_run(self, run: Run) -> None:
        """Insert or replace the run record with ``run.id``.

        The run's session must be saved first, else ``SessionNotFoundError``.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run:
        """The saved run; ``RunNotFoundError`` if none has this id."""

    @abc.abstractmethod
    def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        """The session's runs ordered by ``started_at`` then ``id``; ``[]`` for an unknown id."""

    @abc.abstractmethod
    def get_active_run(self, session_id: str) -> Run | None:
        """The session's run with status ``running`` (the latest started if several), or None.

        Reads its own writes: a run saved as running is returned by the next call.
        """

    # Events -------------------------------------------------------------------------------

    def append_event(self, event: Event) -> StoredEvent:
        """Append one event: :meth:`append_event_with_sequence` without ``expected_sequence``
        (both names are kept: the seed's callbacks use each). Returns the stored event."""
        return self.append_event_with_sequence(event)

    @abc.abstractmethod
    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        """Append one event, atomically assigning the session's next sequence number.

        Returns the stored event (with ``sequence_number`` set). A duplicate id in the same
        session returns the originally stored event and writes nothing; an id stored in another
        session raises ``EventIdConflictError``. The session does not need to be saved: the log
        is usable on its own.

        ``expected_sequence=N`` (optimistic concurrency): store only if the session's latest
        sequence is N (0 for an empty session), else raise ``SequenceConflictError`` carrying the
        actual value. A duplicate id returns the original regardless of ``expected_sequence``.
        """

    @abc.abstractmethod
    def append_events(self, events: Iterable[Event]) -> list[StoredEvent]:
        """Append a batch atomically: all events are stored, or none (on any error).

        ``events`` is any iterable of events (a list, a generator): it is read to its end
        before anything is written, so an error it raises writes nothing. Sequences are
        contiguous per session in input order; results are in input order. An id already
        stored, or repeated inside the batch, in the same session yields the original stored
        event; in another session it raises ``EventIdConflictError`` and nothing of the batch is
        written. An empty batch returns ``[]``. This is the throughput path: one transaction,
        one commit.
        """

    def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[StoredEvent]:
        """The session's events, oldest first, passing every given filter.

        ``run_id`` and ``type`` match by equality; ``since`` keeps ``timestamp >= since`` (an
        aware datetime); ``after`` keeps ``sequence_number > after`` and ``before`` keeps
        ``sequence_number < before`` (cursors, ints >= 0); ``limit`` (>= 1) keeps the first N
        matches. Bad values raise ``ValidationError``; nothing is silently replayed.

        ``wait_timeout_ms`` > 0 (long-poll): if the result would be empty, block until a
        matching event is appended by any thread or process, or the timeout elapses, then
        return the matches (up to ``limit``) or ``[]``. A non-empty result never waits; 0 or None
        never waits. If the session is deleted while waiting, return ``[]``; if the store is
        closed while waiting, raise ``StoreClosedError``. Stores that cannot wait may ignore the
        argument (callers then fall back to sleep-based polling).

        Implemented here once: the arguments are checked and handed to :meth:`read_events`.
        """
        return self.read_events(
            EventFilter.build(
                session_id,
                run_id=run_id,
                type=type,
                since=since,
                after=after,
                before=before,
                limit=limit,
                wait_timeout_ms=wait_timeout_ms,
            )
        )

    @abc.abstractmethod
    def read_events(self, query: EventFilter) -> list[StoredEvent]:
        """:meth:`get_events` for a checked query: what a store implements.

        ``query`` holds valid values only (see :class:`EventFilter`, whose :meth:`~EventFilter.matches`
        says which events pass); return them as :meth:`get_events` documents, long-polling for
        up to ``query.wait_timeout_ms``. Call it through :meth:`get_events`, which checks the
        arguments.
        """

    @abc.abstractmethod
    def get_latest_sequence(self, session_id: str) -> int:
        """The highest sequence number assigned in the session; 0 when it has no events."""

    # Lifecycle ----------------------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release all resources; idempotent. Later calls raise ``StoreClosedError``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
