"""Group commit for PostgreSQL: the appends that threads of one store object make at the same
time share one transaction, so that one commit (one WAL flush, one turn at the feed row and at
``NOTIFY``'s commit lock) acknowledges all of them.

**Why.** Every append takes its feed position by updating the one ``feed`` row and holds that
row until its commit has ended (see ``feed.py``), and PostgreSQL serialises the commits of
notifying transactions: appends commit one at a time whatever the number of writers. Sharing
the transaction is what lets many writers go faster than one.

**How.** While one append or group is being written, appends arriving from other threads
queue; when it ends, the oldest queued append becomes the leader of the next group (at most
:data:`MAX_APPENDS` appends and :data:`MAX_BYTES` of payload) and writes it on one pooled
connection, then wakes every member with its own outcome and hands the lead on. An append that
finds nothing queued or being written goes at once, so a lone appender waits for nobody.

A group of single events without ``expected_sequence`` (the common case) is one statement, so
one transaction and one round trip, as a lone append is (``Statements.append_plain``). Any
other group is one transaction of two round trips, sent as a psycopg pipeline: lock the
counters of every session it touches (in sorted order, so no two transactions deadlock) and
look its event ids up; then, planned in Python, one statement that takes the positions, raises
the counters (notifying once per session) and inserts every new event, and ``COMMIT``. Either
way the positions are taken once every counter is locked (counters, then the feed row: the
order every write keeps). Each member is
checked on its own account against the locked counters and the stored ids, as if it ran alone
after the members before it: an ``expected_sequence`` conflict or an id held by another session
refuses that member only, a repeated id returns the original (also one appended earlier in the
same group). A failure of the transaction itself (after the pool's retries: see
``connection.py``) fails every member not refused on its own account: nothing of theirs is
written, none is acknowledged.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from sqlitestream._core.groupcommit import MAX_APPENDS, MAX_BYTES, GroupCommitStats, release_all, release_rest
from sqlitestream.errors import (
    EventIdConflictError,
    SequenceConflictError,
    SqliteStreamError,
    StorageError,
)
from sqlitestream.models import Event, StoredEvent, with_sequence
from sqlitestream.postgres.rows import event_from_row

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection
    from sqlitestream.postgres.statements import Statements

__all__ = ["Append", "GroupCommit", "GroupCommitStats"]


_QUEUED, _LEAD, _TAKEN = range(3)

Run = Callable[..., None]
"""``Database.run``: work on a pooled connection, with its retries (see ``connection.py``)."""
Pipelined = Callable[[str, Callable[["Connection"], tuple[Callable[[], None], bool]]], None]
"""``Database.run_pipelined``: one transaction sent as a pipeline (see ``connection.py``)."""


class Append:
    """One caller's append: its events (one, or a batch), then its outcome.

    ``slots`` holds, per event, the stored original or the index of the event among the new
    events of its group, which get their positions only once the group's insert has run.
    """

    __slots__ = (
        "error",
        "events",
        "expected",
        "group",
        "payloads",
        "result",
        "size",
        "slots",
        "state",
        "wakeup",
    )

    def __init__(
        self, events: Sequence[Event], payloads: Sequence[tuple[str, str]], size: int, expected: int | None
    ) -> None:
        self.events = events
        self.payloads = payloads
        self.size = size
        self.expected = expected
        self.state = _QUEUED
        self.wakeup: threading.Lock | None = None  # held while its caller waits in the queue
        self.group: list[Append] = []  # the group it leads, once named the leader
        self.slots: list[StoredEvent | int] = []
        self.result: list[StoredEvent] | None = None
        self.error: BaseException | None = None

    def outcome(self) -> list[StoredEvent]:
        """Its stored events, or its own error, or the shared transaction's."""
        error, self.error = self.error, None  # no cycle through this record's frame
        if error is not None:
            try:
                raise error
            finally:
                del error
        if self.result is None:
            raise StorageError(
                "cannot tell whether the append happened: the thread committing it was interrupted"
            )
        return self.result


class GroupCommit:
    """The append queue of one store object (see the module docs)."""

    def __init__(
        self,
        sql: Statements,
        channel: str,
        run: Run,
        pipelined: Pipelined,
        wake: Callable[[Iterable[str]], None],
    ) -> None:
        self._sql = sql
        self._channel = channel
        self._run = run
        self._pipelined = pipelined
        self._wake = wake
        self._mutex = threading.Lock()  # guards the queue, the busy flag, the figures, each state
        self._queue: list[Append] = []
        self._busy = False  # an append or a group is being written
        self._transactions = 0
        self._appends = 0
        self._largest = 0

    def append(self, mine: Append, alone: Callable[[], list[StoredEvent]] | None = None) -> list[StoredEvent]:
        """Write ``mine``, alone or with the appends queued beside it; return its stored events
        once committed, or raise its own error or the shared transaction's. ``alone``, if
        given, is how to write it when nothing else is queued or being written (a cheaper
        statement than a group's); otherwise it goes as a group of one."""
        # Written for an interrupt at any moment: from the instant ``claimed`` is set (in the
        # same statement as the busy flag) the finally hands the lead on, and until it leads,
        # an interrupted waiter withdraws (so neither the flag nor a group is ever stranded).
        claimed = False
        try:
            with self._mutex:
                if self._busy:
                    mine.wakeup = threading.Lock()
                    mine.wakeup.acquire()
                    self._queue.append(mine)
                else:
                    self._busy = claimed = True
                    self._count(1)
            if claimed:
                if alone is not None:
                    return alone()
                self._write([mine])
            else:
                mine.wakeup.acquire()  # type: ignore[union-attr]  # until led, or named the leader
                if mine.state == _LEAD:
                    self._lead(mine)
        except BaseException:
            if not claimed:
                self._withdraw(mine)
            raise
        finally:
            if claimed:
                self._hand_on()
        return mine.outcome()

    def stats(self) -> GroupCommitStats:
        with self._mutex:
            return GroupCommitStats(self._transactions, self._appends, self._largest, len(self._queue))

    def _count(self, appends: int) -> None:
        self._transactions += 1
        self._appends += appends
        self._largest = max(self._largest, appends)

    def _hand_on(self) -> None:
        """The write in progress ended: name the oldest queued append the leader of the next
        group (the others it takes stay asleep until it wakes them), or mark the queue idle."""
        with self._mutex:
            if not self._queue:
                self._busy = False
                return
            group: list[Append] = []
            size = 0
            for other in self._queue:
                if group and (len(group) == MAX_APPENDS or size + other.size > MAX_BYTES):
                    break
                group.append(other)
                size += other.size
                other.state = _TAKEN
            del self._queue[: len(group)]
            leader = group[0]
            leader.state = _LEAD
            leader.group = group
            self._count(len(group))
        leader.wakeup.release()  # type: ignore[union-attr]

    def _withdraw(self, mine: Append) -> None:
        """An interrupted waiter: out of the queue if nobody took it yet (it is then never
        written); if it was just named the leader, its group goes back to the queue's front
        and the lead to the next. One taken into another's group stays there: its outcome is
        unknown to its caller, as for an append interrupted just before its commit."""
        with self._mutex:
            if mine.state == _QUEUED:
                if mine in self._queue:  # an interrupt may have come before it queued
                    self._queue.remove(mine)
                return
            if mine.state != _LEAD or not mine.group:  # not led, or its lead began: see _lead
                return
            others = [member for member in mine.group if member is not mine]
            for member in others:
                member.state = _QUEUED
            self._queue[:0] = others
            self._transactions -= 1
            self._appends -= len(mine.group)
            mine.group = []
        self._hand_on()

    def _lead(self, mine: Append) -> None:
        """Write the group ``mine`` leads, wake every other member (one C call: an interrupt
        cannot leave one asleep) and hand the lead on."""
        group = mine.group
        wakeups = [member.wakeup for member in group if member is not mine and member.wakeup is not None]
        try:
            mine.group = []  # from here on this lead wakes them and hands on (not _withdraw)
            self._write(group)
        finally:
            try:
                release_all(wakeups)
            except BaseException:
                release_rest(wakeups)
                raise
            self._hand_on()

    def _write(self, group: list[Append]) -> None:
        """Write ``group`` in one transaction and settle each member's outcome."""
        try:
            if all(member.expected is None and len(member.events) == 1 for member in group):
                self._run("append events", lambda conn: self._plain(conn, group), transaction=False)
            else:
                self._pipelined("append events", lambda conn: self._transaction(conn, group))
        except BaseException as exc:
            _fail(group, exc)
            if not isinstance(exc, Exception):
                raise  # an interrupt of this thread: its caller sees it, the others an error
            return
        touched = {event.session_id for member in group if member.result for event in member.events}
        if touched:
            self._wake(touched)

    def _plain(self, conn: Connection, group: list[Append]) -> None:
        """A group of single events without ``expected_sequence``: one statement, its own
        transaction, one round trip (``Statements.append_plain``), where the general path
        takes two and plans in Python between them. Each append gets its id's row: the
        stored original or the event inserted for the id's first occurrence in the group,
        unless that row is another session's."""
        events = [member.events[0] for member in group]
        columns = [
            [event.session_id for event in events],
            [event.id for event in events],
            [event.type.value for event in events],
            [event.run_id for event in events],
            [event.timestamp for event in events],
            [member.payloads[0][0] for member in group],
            [member.payloads[0][1] for member in group],
        ]
        first: dict[str, Event] = {}
        for event in events:
            first.setdefault(event.id, event)
        found: dict[str, StoredEvent] = {}
        for row in conn.execute(self._sql.append_plain, (*columns, self._channel)):
            if row[0]:
                found[row[3]] = with_sequence(first[row[3]], int(row[2]), int(row[9]))
            else:
                found[row[3]] = event_from_row(row[1:])
        for member, event in zip(group, events, strict=True):
            stored = found[event.id]
            if stored.session_id != event.session_id:
                member.error = EventIdConflictError(event.id, event.session_id, stored.session_id)
            else:
                member.result = [stored]

    def _transaction(self, conn: Connection, group: list[Append]) -> tuple[Callable[[], None], bool]:
        """The group's statements, and how to settle its members once they committed (their
        positions arrive with the commit); nothing to commit if no member adds an event."""
        sql = self._sql
        sessions = sorted({event.session_id for member in group for event in member.events})
        ids = list({event.id for member in group for event in member.events})
        latest: dict[str, int] = {}
        stored: dict[str, StoredEvent] = {}
        for row in conn.execute(sql.lock_and_probe, (sessions, ids)):
            if row[2] is None:
                latest[row[0]] = int(row[1])
            else:
                stored[row[2]] = event_from_row(row)
        new = _plan(group, stored, dict(latest))
        if any(isinstance(member.error, SequenceConflictError) for member in group):
            # Before refusing one, look again in a snapshot taken after the locks: an append
            # of the same id that committed while we waited for its counter is then found
            # (and returned) rather than taken for a later append the sequence contradicts.
            stored.update((row[2], event_from_row(row)) for row in conn.execute(sql.events_by_ids, (ids,)))
            new = _plan(group, stored, dict(latest))
        if not new:
            return lambda: _settle(group, new, 0), False
        rows = [
            (event.session_id, seq, event.id, event.type.value, event.run_id, event.timestamp, data, metadata)
            for event, seq, (data, metadata) in new
        ]
        counted = sorted({event.session_id: seq for event, seq, _ in new}.items())  # each one's last
        written = conn.execute(
            sql.write_group,
            (
                len(rows),
                [session_id for session_id, _ in counted],
                [seq for _, seq in counted],
                self._channel,
                len(rows),
                *map(list, zip(*rows, strict=True)),
            ),
        )

        def settle() -> None:
            row = written.fetchone()
            assert row is not None and row[2] == len(rows)
            _settle(group, new, int(row[0]) - len(rows))

        return settle, True


def _plan(
    group: list[Append], stored: dict[str, StoredEvent], latest: dict[str, int]
) -> list[tuple[Event, int, tuple[str, str]]]:
    """Check each member as if it ran alone after the ones before it (the rules of
    :func:`sqlitestream._core.batch.plan_batch`, plus ``expected_sequence``), filling its
    ``slots`` or its ``error``; ``latest`` ends with each session's counter after the group.
    The new events, with their sequences and payload texts, in group order."""
    new: list[tuple[Event, int, tuple[str, str]]] = []
    first: dict[str, int] = {}  # id -> index in new, for the group's members so far
    for member in group:
        member.error, member.slots, member.result = None, [], None
        mine: dict[str, int] = {}
        fresh: list[tuple[Event, tuple[str, str]]] = []
        try:
            for event, texts in zip(member.events, member.payloads, strict=True):
                original = stored.get(event.id)
                index = first.get(event.id, mine.get(event.id))
                owner = original.session_id if original is not None else None
                if owner is None and index is not None:
                    owner = (new[index][0] if index < len(new) else fresh[index - len(new)][0]).session_id
                if owner is not None and owner != event.session_id:
                    raise EventIdConflictError(event.id, event.session_id, owner)
                if original is not None:
                    member.slots.append(original)
                elif index is not None:
                    member.slots.append(index)
                else:
                    mine[event.id] = len(new) + len(fresh)
                    member.slots.append(mine[event.id])
                    fresh.append((event, texts))
            if member.expected is not None and fresh:
                session_id = fresh[0][0].session_id
                if latest[session_id] != member.expected:
                    raise SequenceConflictError(session_id, member.expected, latest[session_id])
        except SqliteStreamError as exc:
            member.error, member.slots = exc, []
            continue
        for event, texts in fresh:
            latest[event.session_id] += 1
            new.append((event, latest[event.session_id], texts))
        first.update(mine)
    return new


def _settle(group: list[Append], new: list[tuple[Event, int, tuple[str, str]]], base: int) -> None:
    """Each member's stored events, now that the group's new events start at ``base + 1``."""
    numbered = [with_sequence(event, seq, base + index) for index, (event, seq, _) in enumerate(new, 1)]
    for member in group:
        if member.error is None:
            member.result = [
                slot if isinstance(slot, StoredEvent) else numbered[slot] for slot in member.slots
            ]


def _fail(group: list[Append], exc: BaseException) -> None:
    """Every member not refused on its own account gets the shared transaction's failure: the
    leader the exception itself, the others a copy each (one exception object raised in several
    threads would share a traceback). An interrupt of the leader's thread leaves it unknown
    whether the commit happened, and the others are told so."""
    for index, member in enumerate(group):
        member.result = None
        if member.error is not None:
            continue
        if isinstance(exc, Exception):
            member.error = exc if index == 0 else copy.copy(exc)
        elif index:
            member.error = StorageError(
                "cannot tell whether the append happened: the thread committing it together with "
                f"others was interrupted ({type(exc).__name__}); read the session to see"
            )
