"""``InMemorySessionStore``: the reference implementation of the contract, for tests and
prototypes. Thread-safe; nothing survives the process.

Per session, events live in a list where sequence N sits at index N-1, so a cursor read
slices from ``after`` in O(1) plus the page; an id index makes duplicate checks O(1).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlitestream._core import codec
from sqlitestream._core.validate import check_choice, check_id, check_int
from sqlitestream._core.waiting import WakeHub, long_poll
from sqlitestream.errors import (
    EventIdConflictError,
    RunNotFoundError,
    SequenceConflictError,
    SessionNotFoundError,
    StoreClosedError,
)
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
    stored_event,
    with_sequence,
)
from sqlitestream.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventFilter,
    SessionStore,
    check_event,
    check_events,
    check_max_event_bytes,
    check_record,
)

__all__ = ["InMemorySessionStore"]


@dataclass
class _Stream:
    events: list[StoredEvent] = field(default_factory=list)


class InMemorySessionStore(SessionStore):
    """The whole contract, long-poll included, held in this process's memory."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = check_max_event_bytes(max_event_bytes)
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._runs: dict[str, Run] = {}
        self._streams: dict[str, _Stream] = {}
        self._event_index: dict[str, StoredEvent] = {}
        self._hub = WakeHub()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    # Sessions -----------------------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        check_record(session, Session, "session")
        with self._lock:
            self._check_open()
            self._sessions[session.id] = replace(session)

    def get_session(self, session_id: str) -> Session:
        session_id = check_id(session_id, "session_id")
        with self._lock:
            self._check_open()
            try:
                return replace(self._sessions[session_id])
            except KeyError:
                raise SessionNotFoundError(session_id) from None

    def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        wanted_status = None if status is None else check_choice(status, "status", SessionStatus)
        wanted_agent = None if agent_id is None else check_id(agent_id, "agent_id")
        limit = check_int(limit, "limit", minimum=1)
        start = check_int(offset, "offset", minimum=0) or 0
        with self._lock:
            self._check_open()
            sessions = sorted(self._sessions.values(), key=lambda s: (s.created_at, s.id))
        matching = [
            s
            for s in sessions
            if (wanted_status is None or s.status is wanted_status)
            and (wanted_agent is None or s.agent_id == wanted_agent)
        ]
        return [replace(s) for s in matching[start : None if limit is None else start + limit]]

    def delete_session(self, session_id: str) -> None:
        session_id = check_id(session_id, "session_id")
        with self._lock:
            self._check_open()
            self._sessions.pop(session_id, None)
            for run_id in [r.id for r in self._runs.values() if r.session_id == session_id]:
                del self._runs[run_id]
            stream = self._streams.pop(session_id, None)
            if stream is not None:
                for event in stream.events:
                    del self._event_index[event.id]
        self._hub.release(session_id)

    # Runs ---------------------------------------------------------------------------------

    def save_run(self, run: Run) -> None:
        check_record(run, Run, "run")
        with self._lock:
            self._check_open()
            if run.session_id not in self._sessions:
                raise SessionNotFoundError(run.session_id)
            self._runs[run.id] = replace(run)

    def get_run(self, run_id: str) -> Run:
        run_id = check_id(run_id, "run_id")
        with self._lock:
            self._check_open()
            try:
                return replace(self._runs[run_id])
            except KeyError:
                raise RunNotFoundError(run_id) from None

    def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        session_id = check_id(session_id, "session_id")
        wanted = None if status is None else check_choice(status, "status", RunStatus)
        limit = check_int(limit, "limit", minimum=1)
        with self._lock:
            self._check_open()
            runs = [
                r
                for r in self._runs.values()
                if r.session_id == session_id and (wanted is None or r.status is wanted)
            ]
        runs.sort(key=lambda r: (r.started_at, r.id))
        return [replace(r) for r in runs[:limit]]

    def get_active_run(self, session_id: str) -> Run | None:
        running = self.list_runs(session_id, status=RunStatus.RUNNING)
        return running[-1] if running else None

    # Events -------------------------------------------------------------------------------

    def _existing(self, event: Event) -> StoredEvent | None:
        """The stored event with ``event.id`` if it belongs to the same session."""
        stored = self._event_index.get(event.id)
        if stored is not None and stored.session_id != event.session_id:
            raise EventIdConflictError(event.id, event.session_id, stored.session_id)
        return stored

    def _store(self, event: Event) -> StoredEvent:
        stream = self._streams.get(event.session_id)
        if stream is None:
            stream = self._streams[event.session_id] = _Stream()
        stored = with_sequence(event, len(stream.events) + 1)
        stream.events.append(stored)
        self._event_index[stored.id] = stored
        return stored

    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        check_event(event, self._max_event_bytes)
        expected_sequence = check_int(expected_sequence, "expected_sequence", minimum=0)
        with self._lock:
            self._check_open()
            existing = self._existing(event)
            if existing is not None:
                return _copy(existing)
            if expected_sequence is not None:
                latest = self._latest(event.session_id)
                if latest != expected_sequence:
                    raise SequenceConflictError(event.session_id, expected_sequence, latest)
            stored = self._store(event)
        self._hub.wake([stored.session_id])
        return _copy(stored)

    def append_events(self, events: Sequence[Event]) -> list[StoredEvent]:
        batch = check_events(events, self._max_event_bytes)
        with self._lock:
            self._check_open()
            # Check every id before storing anything: all or nothing.
            seen: dict[str, Event] = {}
            for event in batch:
                earlier = seen.get(event.id)
                if earlier is not None and earlier.session_id != event.session_id:
                    raise EventIdConflictError(event.id, event.session_id, earlier.session_id)
                self._existing(event)
                seen.setdefault(event.id, event)
            results: list[StoredEvent] = []
            stored_now: dict[str, StoredEvent] = {}
            for event in batch:
                stored = self._event_index.get(event.id) or stored_now.get(event.id)
                if stored is None:
                    stored = stored_now[event.id] = self._store(event)
                results.append(stored)
        self._hub.wake({event.session_id for event in stored_now.values()})
        return [_copy(event) for event in results]

    def _latest(self, session_id: str) -> int:
        stream = self._streams.get(session_id)
        return 0 if stream is None else len(stream.events)

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
        query = EventFilter.build(
            session_id,
            run_id=run_id,
            type=type,
            since=since,
            after=after,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
        )
        self._check_open()
        return long_poll(self._hub, query.session_id, lambda: self._query(query), query.wait_seconds)

    def _query(self, query: EventFilter) -> list[StoredEvent]:
        with self._lock:
            self._check_open()
            stream = self._streams.get(query.session_id)
            if stream is None:
                return []
            events = stream.events
            start = query.after or 0
            stop = len(events) if query.before is None else max(start, query.before - 1)
            unfiltered = query.run_id is None and query.type is None and query.since is None
            if unfiltered:
                if query.limit is not None:
                    stop = min(stop, start + query.limit)
                return [_copy(event) for event in events[start:stop]]
            found: list[StoredEvent] = []
            for index in range(start, min(stop, len(events))):
                event = events[index]
                if query.matches(event):
                    found.append(_copy(event))
                    if query.limit is not None and len(found) >= query.limit:
                        break
            return found

    def get_latest_sequence(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        with self._lock:
            self._check_open()
            return self._latest(session_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._hub.close()


def _copy(event: StoredEvent) -> StoredEvent:
    """A copy whose payload dicts the caller may mutate without touching the store."""
    return stored_event(
        event.type,
        event.session_id,
        codec.decode(codec.encode(event.data)),
        codec.decode(codec.encode(event.metadata)),
        event.run_id,
        event.id,
        event.timestamp,
        event.sequence_number,
    )

