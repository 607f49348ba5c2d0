"""What the concurrent clients do: a random but reproducible mix of the operations the model
knows, on a few shared sessions, with timing recorded around each call.

Every event id belongs to one session (``<session>-...``), and every batch stays in one session,
so each session's log depends only on its own operations and the check can split by session.
Ids are appended more than once on purpose: a thread repeats ids its process has issued
(including ones whose first append is still in flight in another thread), and every client
appends from a small per-session pool of "hot" ids, so processes race to store the same id.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlitestream import (
    Event,
    SequenceConflictError,
    SessionStore,
    SqliteStreamError,
    StorageError,
    StoreClosedError,
)

from .history import Kind, Operation, Status


@dataclass(frozen=True, slots=True)
class Workload:
    """The parameters every worker process gets (as JSON on its command line)."""

    location: str
    processes: int
    threads: int
    ops: int  # per thread
    sessions: int
    seed: int
    hot_ids: int = 4  # per session
    max_wait_ms: int = 60  # the longest long-poll

    def session_ids(self) -> list[str]:
        return [f"s{n}" for n in range(self.sessions)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Issued:
    """The ids a process has asked to append, per session, shared by its threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, list[tuple[str, str]]] = {}  # (client, id), in issue order

    def add(self, session: str, client: str, ids: list[str]) -> None:
        with self._lock:
            self._ids.setdefault(session, []).extend((client, event_id) for event_id in ids)

    def pick(self, session: str, client: str, rng: random.Random) -> str | None:
        """Half the time the latest id another thread issued (its append may be in flight),
        else any issued id; None before any."""
        with self._lock:
            issued = self._ids.get(session, [])
            if rng.random() < 0.5:
                for owner, event_id in reversed(issued):
                    if owner != client:
                        return event_id
            return rng.choice(issued)[1] if issued else None


class Client:
    """One thread's sequence of calls; :meth:`run` returns the operations it recorded."""

    def __init__(
        self, store: SessionStore, workload: Workload, process: int, thread: int, issued: Issued
    ) -> None:
        self.store = store
        self.workload = workload
        self.name = f"p{process}t{thread}"
        self.rng = random.Random(f"{workload.seed}/{process}/{thread}")
        self.issued = issued
        self.latest = dict.fromkeys(workload.session_ids(), 0)  # the latest this client saw
        self.fresh = 0
        self.recorded: list[Operation] = []

    def run(self) -> list[Operation]:
        choices = [
            (self.append_fresh, 22),
            (self.append_repeat, 14),
            (self.append_batch, 12),
            (self.append_expected, 12),
            (self.read, 18),
            (self.long_poll, 8),
            (self.get_latest, 10),
        ]
        actions = [action for action, _ in choices]
        weights = [weight for _, weight in choices]
        for _ in range(self.workload.ops):
            session = self.rng.choice(self.workload.session_ids())
            self.rng.choices(actions, weights)[0](session)
        return self.recorded

    # Ids ------------------------------------------------------------------------------------

    def new_id(self, session: str) -> str:
        self.fresh += 1
        return f"{session}-{self.name}n{self.fresh}"

    def old_id(self, session: str) -> str:
        """An id that this process issued, or a hot id: one that may already be stored."""
        issued = self.issued.pick(session, self.name, self.rng) if self.rng.random() < 0.5 else None
        return issued or f"{session}-hot{self.rng.randrange(self.workload.hot_ids)}"

    # Operations -----------------------------------------------------------------------------

    def append_fresh(self, session: str) -> None:
        self._append(session, [self.new_id(session)], Kind.APPEND)

    def append_repeat(self, session: str) -> None:
        self._append(session, [self.old_id(session)], Kind.APPEND)

    def append_batch(self, session: str) -> None:
        ids = [self.new_id(session) for _ in range(self.rng.randint(1, 3))]
        if self.rng.random() < 0.4:
            ids.append(self.old_id(session))
        if self.rng.random() < 0.5:
            ids.insert(self.rng.randrange(len(ids) + 1), self.rng.choice(ids))  # a repeat inside
        self._append(session, ids, Kind.APPEND_BATCH)

    def append_expected(self, session: str) -> None:
        event_id = self.new_id(session) if self.rng.random() < 0.7 else self.old_id(session)
        expected = max(0, self.latest[session] + self.rng.choice([0, 0, 0, 1, -1]))
        self._append(session, [event_id], Kind.APPEND_EXPECTED, expected)

    def _append(self, session: str, ids: list[str], kind: Kind, expected: int | None = None) -> None:
        self.issued.add(session, self.name, ids)
        events = [Event("message_sent", session, id=event_id) for event_id in ids]
        start = time.monotonic_ns()
        try:
            if kind is Kind.APPEND_BATCH:
                stored = self.store.append_events(events)
            else:
                stored = [self.store.append_event_with_sequence(events[0], expected_sequence=expected)]
        except Exception as exc:
            self._failed(kind, session, start, exc, ids=tuple(ids), expected=expected)
            return
        end = time.monotonic_ns()
        answered = [event.id for event in stored]
        if answered != ids:
            error = f"answered for {answered}"  # recorded as raised: the model refuses it
            self._record(kind, session, start, end, status=Status.RAISED, error=error, ids=tuple(ids))
            return
        seqs = tuple(event.sequence_number for event in stored)
        self.latest[session] = max(self.latest[session], *seqs)
        self._record(kind, session, start, end, ids=tuple(ids), expected=expected, seqs=seqs)

    def read(self, session: str) -> None:
        after = self.rng.randint(0, self.latest[session])
        self._read(session, after, self.rng.choice([None, 1, 2, 4]), 0)

    def long_poll(self, session: str) -> None:
        wait = self.rng.randint(1, self.workload.max_wait_ms)
        self._read(session, self.latest[session], self.rng.choice([None, 2]), wait)

    def _read(self, session: str, after: int, limit: int | None, wait_ms: int) -> None:
        start = time.monotonic_ns()
        try:
            found = self.store.get_events(session, after=after, limit=limit, wait_timeout_ms=wait_ms or None)
        except Exception as exc:
            self._failed(Kind.READ, session, start, exc, after=after, limit=limit, wait_ms=wait_ms)
            return
        end = time.monotonic_ns()
        events = tuple((event.id, event.sequence_number) for event in found)
        if events:
            self.latest[session] = max(self.latest[session], events[-1][1])
        self._record(Kind.READ, session, start, end, after=after, limit=limit, wait_ms=wait_ms, events=events)

    def get_latest(self, session: str) -> None:
        start = time.monotonic_ns()
        try:
            value = self.store.get_latest_sequence(session)
        except Exception as exc:
            self._failed(Kind.LATEST, session, start, exc)
            return
        end = time.monotonic_ns()
        self.latest[session] = max(self.latest[session], value)
        self._record(Kind.LATEST, session, start, end, value=value)

    def _failed(self, kind: Kind, session: str, start: int, exc: Exception, **fields: Any) -> None:
        end = time.monotonic_ns()
        if isinstance(exc, SequenceConflictError):
            self._record(kind, session, start, end, status=Status.CONFLICT, value=exc.actual, **fields)
            return
        # A storage error leaves a write's fate unknown; anything else the model never does.
        unknown = isinstance(exc, (StorageError, StoreClosedError))
        status = Status.FAILED if unknown else Status.RAISED
        kind_of = (
            type(exc).__name__ if isinstance(exc, SqliteStreamError) else f"unexpected {type(exc).__name__}"
        )
        self._record(kind, session, start, end, status=status, error=f"{kind_of}: {exc}", **fields)

    def _record(self, kind: Kind, session: str, start: int, end: int, **fields: Any) -> None:
        self.recorded.append(Operation(self.name, kind, session, start, end, **fields))
