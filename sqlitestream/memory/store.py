"""``InMemorySessionStore``: the reference implementation of the contract, for tests and
prototypes. Thread-safe; nothing survives the process.

Per session, the retained events live in a list where sequence N sits at index N - first
(``first`` is 1 until a trim), so a cursor read slices from ``after`` in O(1) plus the page; an
id index makes duplicate checks O(1).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from sqlitestream._core import codec
from sqlitestream._core.batch import plan_batch
from sqlitestream._core.transfer import plan_event_import
from sqlitestream._core.validate import check_choice, check_id, check_int, describe
from sqlitestream._core.waiting import FEED, WakeHub, long_poll
from sqlitestream.admin import (
    AdminStore,
    CheckFinding,
    CheckReport,
    ProgressCallback,
    SessionImport,
    StoreInfo,
    StreamInfo,
    check_session_import,
    sequence_findings,
)
from sqlitestream.bytestreams import Producer
from sqlitestream.errors import (
    ConflictError,
    CursorConflictError,
    EventIdConflictError,
    RunNotFoundError,
    SequenceConflictError,
    SessionNotFoundError,
    StoreClosedError,
    ValidationError,
)
from sqlitestream.feed import ConsumerCursor, FeedFilter, FeedStore
from sqlitestream.memory.bytestreams import InMemoryByteStreams
from sqlitestream.models import (
    Event,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
    stored_event,
    to_micros,
    utc_now,
    with_sequence,
)
from sqlitestream.producers import ProducerAppend, SessionProducers, producer_session, producer_verdict
from sqlitestream.retention import RetentionStore, TrimRule
from sqlitestream.store import (
    DEFAULT_MAX_EVENT_BYTES,
    EventFilter,
    SessionFilter,
    check_event,
    check_events,
    check_max_event_bytes,
    check_record,
)

__all__ = ["InMemorySessionStore"]


@dataclass
class _Stream:
    events: list[StoredEvent] = field(default_factory=list)  # the retained events
    latest: int = 0  # the sequence counter: it stays when events are trimmed
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)  # id: (epoch, seq)

    @property
    def first(self) -> int:
        """The first retained sequence (``latest + 1`` when none is retained)."""
        return self.events[0].sequence_number or 0 if self.events else self.latest + 1

    def info(self, session_id: str) -> StreamInfo:
        return StreamInfo.of(
            session_id,
            latest=self.latest,
            count=len(self.events),
            lowest=self.first,
            size=sum(_size(event) for event in self.events),
            last_event_at=max((event.timestamp for event in self.events), default=None),
        )


def _size(event: StoredEvent) -> int:
    return len(codec.encode(event.data).encode()) + len(codec.encode(event.metadata).encode())


class InMemorySessionStore(AdminStore, FeedStore, RetentionStore, SessionProducers):
    """The whole contract, long-poll and administration included, held in this process's
    memory. Its :attr:`path` is ``"<memory>"`` (no location opens it: construct it)."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = check_max_event_bytes(max_event_bytes)
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._runs: dict[str, Run] = {}
        self._streams: dict[str, _Stream] = {}
        self._event_index: dict[str, StoredEvent] = {}
        # The feed: every stored event in position order, and those positions (for bisect).
        self._feed: list[StoredEvent] = []
        self._positions: list[int] = []
        self._last_position = 0
        self._cursors: dict[str, ConsumerCursor] = {}
        self._hub = WakeHub()
        self._closed = False
        self._byte_streams = InMemoryByteStreams(self._lock, self._check_open)

    def byte_streams(self) -> InMemoryByteStreams:
        """The store's byte streams (:class:`~sqlitestream.bytestreams.ByteStreams`), in memory."""
        self._check_open()
        return self._byte_streams

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the store is closed")

    # Sessions -----------------------------------------------------------------------------

    def create_session(self, session: Session) -> None:
        check_record(session, Session, "session")
        with self._lock:
            self._check_open()
            if session.id in self._sessions:
                raise ConflictError(f"session {session.id!r} already exists")
            self._sessions[session.id] = replace(session)

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
        wanted = SessionFilter.build(status=status, agent_id=agent_id, limit=limit, offset=offset)
        with self._lock:
            self._check_open()
            sessions = sorted(self._sessions.values(), key=lambda s: (s.created_at, s.id))
        matching = [
            s
            for s in sessions
            if (wanted.status is None or s.status is wanted.status)
            and (wanted.agent_id is None or s.agent_id == wanted.agent_id)
        ]
        end = None if wanted.limit is None else wanted.offset + wanted.limit
        return [replace(s) for s in matching[wanted.offset : end]]

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
                self._forget({event.position for event in stream.events})
        self._hub.release(session_id)

    def _forget(self, positions: set[int]) -> None:
        """Take events out of the feed (their positions stay used: ``_last_position`` stays)."""
        self._feed = [event for event in self._feed if event.position not in positions]
        self._positions = [event.position for event in self._feed]

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

    def _keep(self, stored: StoredEvent) -> None:
        stream = self._streams.get(stored.session_id)
        if stream is None:
            stream = self._streams[stored.session_id] = _Stream()
        stream.events.append(stored)
        stream.latest = stored.sequence_number or 0
        self._event_index[stored.id] = stored
        self._feed.append(stored)
        self._positions.append(stored.position)
        self._last_position = stored.position

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
            stored = with_sequence(event, self._latest(event.session_id) + 1, self._last_position + 1)
            self._keep(stored)
        self._hub.wake([stored.session_id])
        return _copy(stored)

    def append_events(self, events: Iterable[Event]) -> list[StoredEvent]:
        batch = check_events(events, self._max_event_bytes)
        with self._lock:
            self._check_open()
            results, woken = self._append_locked(batch)
        self._hub.wake(woken)
        return results

    def append_events_as(self, producer: Producer, events: Sequence[Event]) -> ProducerAppend:
        check_record(producer, Producer, "producer")
        batch = check_events(events, self._max_event_bytes)
        session_id = producer_session(batch)
        with self._lock:
            self._check_open()
            stream = self._streams.get(session_id)
            last = producer_verdict(None if stream is None else stream.producers.get(producer.id), producer)
            if last is not None:
                return ProducerAppend([], True, producer.epoch, last)
            results, woken = self._append_locked(batch)
            stream = self._streams.setdefault(session_id, _Stream())
            stream.producers[producer.id] = (producer.epoch, producer.seq)
        self._hub.wake(woken)
        return ProducerAppend(results, False, producer.epoch, producer.seq)

    def _append_locked(self, batch: Sequence[Event]) -> tuple[list[StoredEvent], list[str]]:
        index = self._event_index
        plan = plan_batch(batch, {event.id: index[event.id] for event in batch if event.id in index})
        numbered = plan.numbered(
            {session_id: self._latest(session_id) + count for session_id, count in plan.counts.items()},
            self._last_position,
        )
        for stored in numbered:
            self._keep(stored)
        return [_copy(event) for event in plan.results(numbered)], list(plan.counts)

    def _latest(self, session_id: str) -> int:
        stream = self._streams.get(session_id)
        return 0 if stream is None else stream.latest

    def read_events(self, query: EventFilter) -> list[StoredEvent]:
        self._check_open()
        return long_poll(self._hub, query.session_id, lambda: self._query(query), query.wait_seconds)

    def _query(self, query: EventFilter) -> list[StoredEvent]:
        with self._lock:
            self._check_open()
            stream = self._streams.get(query.session_id)
            if stream is None:
                return []
            events, first = stream.events, stream.first
            start = max(0, (query.after or 0) - first + 1)
            stop = len(events) if query.before is None else max(start, query.before - first)
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

    def query_feed(self, query: FeedFilter) -> list[StoredEvent]:
        self._check_open()
        return long_poll(self._hub, FEED, lambda: self._feed_page(query), query.wait_seconds)

    def _feed_page(self, query: FeedFilter) -> list[StoredEvent]:
        with self._lock:
            self._check_open()
            found: list[StoredEvent] = []
            for index in range(bisect.bisect_right(self._positions, query.after), len(self._feed)):
                event = self._feed[index]
                if query.types is None or event.type in query.types:
                    found.append(_copy(event))
                    if query.limit is not None and len(found) >= query.limit:
                        break
            return found

    def get_last_position(self) -> int:
        with self._lock:
            self._check_open()
            return self._last_position

    def write_cursor(self, name: str, position: int, expected: int | None) -> None:
        with self._lock:
            self._check_open()
            current = self._cursors.get(name)
            actual = 0 if current is None else current.position
            if expected is not None and actual != expected:
                raise CursorConflictError(name, expected, actual)
            self._cursors[name] = ConsumerCursor(name, position, utc_now())

    def get_cursor(self, name: str) -> int:
        name = check_id(name, "name")
        with self._lock:
            self._check_open()
            cursor = self._cursors.get(name)
            return 0 if cursor is None else cursor.position

    def list_cursors(self) -> list[ConsumerCursor]:
        with self._lock:
            self._check_open()
            return [self._cursors[name] for name in sorted(self._cursors)]

    def delete_cursor(self, name: str) -> None:
        name = check_id(name, "name")
        with self._lock:
            self._check_open()
            self._cursors.pop(name, None)

    def _wait_hub(self) -> WakeHub:
        """See :mod:`sqlitestream._core.waiting`."""
        self._check_open()
        return self._hub

    def get_latest_sequence(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        with self._lock:
            self._check_open()
            return self._latest(session_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._hub.close()
        self._byte_streams.close()

    # Retention (the RetentionStore contract) ---------------------------------------------

    def apply_trim(self, session_id: str, rule: TrimRule, *, dry_run: bool) -> int:
        with self._lock:
            self._check_open()
            stream = self._streams.get(session_id)
            if stream is None or not stream.events:
                return 0
            first_recent = None
            if rule.older_than_micros is not None:
                first_recent = next(
                    (
                        e.sequence_number
                        for e in stream.events
                        if to_micros(e.timestamp) >= rule.older_than_micros
                    ),
                    None,
                )
            count = max(0, rule.before(stream.latest, first_recent) - stream.first)
            if dry_run or not count:
                return count
            trimmed, stream.events = stream.events[:count], stream.events[count:]
            for event in trimmed:
                del self._event_index[event.id]
            self._forget({event.position for event in trimmed})
            return count

    def trimmable_sessions(self) -> list[str]:
        with self._lock:
            self._check_open()
            return [session_id for session_id, stream in self._streams.items() if stream.events]

    def get_stream_info(self, session_id: str) -> StreamInfo:
        session_id = check_id(session_id, "session_id")
        with self._lock:
            self._check_open()
            return self._streams.get(session_id, _Stream()).info(session_id)

    # Administration (the AdminStore contract) -------------------------------------------

    @property
    def path(self) -> str:
        return "<memory>"

    @property
    def readonly(self) -> bool:
        return False

    @property
    def upgraded_from(self) -> int | None:
        return None

    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        if session_ids is not None:
            if isinstance(session_ids, str) or not isinstance(session_ids, Iterable):
                raise ValidationError(f"session_ids must be a list of ids, got {describe(session_ids)}")
            wanted = {check_id(session_id, "session_ids[]") for session_id in session_ids}
        with self._lock:
            self._check_open()
            found = [
                stream.info(session_id)
                for session_id, stream in self._streams.items()
                if (stream.events or stream.latest) and (session_ids is None or session_id in wanted)
            ]
        return sorted(found, key=lambda stream: stream.session_id)

    def store_info(self) -> StoreInfo:
        """See :class:`~sqlitestream.admin.StoreInfo`; no schema, so ``schema_version`` is None."""
        with self._lock:
            self._check_open()
            streams = sum(1 for stream in self._streams.values() if stream.events or stream.latest)
            return StoreInfo(
                backend="memory",
                path=self.path,
                schema_version=None,
                sessions=len(self._sessions),
                runs=len(self._runs),
                events=len(self._event_index),
                streams=streams,
            )

    def check_integrity(self, *, on_progress: ProgressCallback | None = None) -> CheckReport:
        """See :meth:`AdminStore.check_integrity`; the whole check is one snapshot."""
        with self._lock:
            self._check_open()
            findings = [
                CheckFinding("foreign_key", f"run {run.id!r} refers to a missing session", run.session_id)
                for run in self._runs.values()
                if run.session_id not in self._sessions
            ]
            facts = []
            for session_id in sorted(self._streams):
                sequences = [event.sequence_number or 0 for event in self._streams[session_id].events]
                facts.append((session_id, sequences))
        events = 0
        for done, (session_id, sequences) in enumerate(facts, 1):
            count = len(sequences)
            events += count
            low = min(sequences, default=1)
            missing = sorted(set(range(low, low + count)) - set(sequences))
            findings.extend(
                sequence_findings(
                    session_id,
                    self._streams[session_id].latest or None,
                    count,
                    min(sequences, default=None),
                    max(sequences, default=None),
                    missing[0] if missing else None,
                )
            )
            if on_progress is not None:
                on_progress(done, len(facts))
        return CheckReport(tuple(findings), sessions_checked=len(facts), events_checked=events)

    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
        first_sequence: int | None = None,
    ) -> SessionImport:
        """See :meth:`AdminStore.import_session`; everything is decided before anything is
        stored, under the store's lock, so a refused import leaves no trace."""
        session_id, ordered = check_session_import(
            session_id, session, runs, events, self._max_event_bytes, first_sequence
        )
        with self._lock:
            self._check_open()
            session_outcome = None if session is None else _outcome(self._sessions.get(session_id), session)
            if runs and session is None and session_id not in self._sessions:
                raise SessionNotFoundError(session_id)
            runs_outcome = [_outcome(self._runs.get(run.id), run) for run in runs]
            stored = {
                event.id: (found.session_id, found.sequence_number or 0)
                for event in ordered
                if (found := self._event_index.get(event.id)) is not None
            }
            stream = self._streams.get(session_id)
            plan = plan_event_import(
                session_id,
                ordered,
                self._latest(session_id),
                stored,
                first_retained=stream.first if stream is not None and stream.events else None,
                first_sequence=first_sequence,
            )
            new, skipped = plan.new, plan.skipped
            if session is not None:
                self._sessions[session_id] = replace(session)
            for run in runs:
                self._runs[run.id] = replace(run)
            for position, event in enumerate(new, self._last_position + 1):
                self._keep(_copy(event, position))
            if plan.latest:
                self._streams.setdefault(session_id, _Stream()).latest = plan.latest
        if new:
            self._hub.wake([session_id])
        return SessionImport.counted(session_id, session_outcome, runs_outcome, len(new), skipped)


def _outcome(stored: Session | Run | None, record: Session | Run) -> str:
    if stored is None:
        return "added"
    return "unchanged" if stored == record else "updated"


def _copy(event: StoredEvent, position: int | None = None) -> StoredEvent:
    """A copy whose payload dicts the caller may mutate without touching the store (at another
    ``position`` if given)."""
    return stored_event(
        event.type,
        event.session_id,
        codec.decode(codec.encode(event.data)),
        codec.decode(codec.encode(event.metadata)),
        event.run_id,
        event.id,
        event.timestamp,
        event.sequence_number,
        event.position if position is None else position,
    )
