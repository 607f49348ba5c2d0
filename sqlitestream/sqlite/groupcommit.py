"""Group commit: the appends that threads of one process make at the same time share write
transactions, so a burst of N appends pays for one commit (and, at ``synchronous="full"``,
one fsync) instead of N.

While one transaction runs, appends arriving from other threads queue; the next transaction
takes every queued append (at most :data:`MAX_APPENDS` of them and :data:`MAX_BYTES` of
payload). Each runs inside a savepoint of its own, so an append refused on its own account
(an ``expected_sequence`` conflict, an id another session holds) rolls back only its own
writes and raises only in its own caller. A failure of the shared transaction (its commit, a
moved store file, a closed store) fails every append in it: none of them is acknowledged,
none is written. An append that finds nobody queued or writing commits at once, in a
transaction of its own and without a savepoint.

The queue hands the lead on as LevelDB's write queue does, with one difference: the leader is
whoever holds the writer's thread lock, so an interrupt at any moment leaves no leadership
held that the lock's own release does not give back (see ``transaction.py``). The oldest
queued append is the *head*: it alone waits for that lock, and the others wait on a lock of
their own. Holding it, the head takes every queued append (its own first), names the next
head, runs them on the store's one write path
(:class:`~sqlitestream.sqlite.transaction.Writer`), and wakes each member with its outcome.
So a finished member returns at once instead of queueing for the writer's lock, and the
next head is already waiting for it when the transaction ends. Between processes nothing
changes: each group is one ordinary write transaction.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import apsw

from sqlitestream._core.groupcommit import MAX_APPENDS, MAX_BYTES, GroupCommitStats, release_all, release_rest
from sqlitestream.errors import SqliteStreamError, StorageError
from sqlitestream.sqlite.connection import translate
from sqlitestream.sqlite.transaction import Writer

T = TypeVar("T")


_QUEUED, _HEAD, _TAKEN, _DONE = range(4)
_NOT_YET = [False]  # never set: the flag of an append not (yet) taken into a transaction


class _Append(Generic[T]):
    """One caller's append: its work on the write connection, and then its outcome."""

    __slots__ = ("action", "committed", "error", "result", "size", "state", "wakeup", "work")

    def __init__(self, action: str, work: Callable[[apsw.Connection], T], size: int) -> None:
        self.action = action
        self.work = work
        self.size = size
        self.state = _QUEUED
        self.result: T | None = None
        self.error: BaseException | None = None
        self.wakeup: threading.Lock | None = None  # held while its caller waits, if it waits
        self.committed: list[bool] = _NOT_YET  # its group's flag, shared by the members: see _lead

    def outcome(self) -> T:
        """Its result, its own error, or the shared transaction's failure; when its leader was
        interrupted before it could tell whether the commit happened, an error that says so."""
        error, self.error = self.error, None  # no cycle through this record's frame
        if error is None and not self.committed[0]:
            error = StorageError(
                f"cannot tell whether {self.action[0].lower()}{self.action[1:]} happened: the thread "
                "committing it together with others was interrupted; read the session to see"
            )
        if error is not None:
            try:
                raise error
            finally:
                del error
        return self.result  # type: ignore[return-value]  # committed, and not refused


class GroupCommit:
    """The append queue of one store object (see the module docs)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._mutex = threading.Lock()  # guards the queue, the head, the figures, each state
        self._queue: list[_Append[Any]] = []
        self._head: _Append[Any] | None = None
        self._transactions = 0
        self._appends = 0
        self._largest = 0
        self._alone = 0  # appends committed by the lone-appender path, one a transaction

    def append(self, action: str, work: Callable[[apsw.Connection], T], size: int) -> T:
        """Run ``work(conn)`` in a write transaction, alone or with the appends queued beside
        it, and return its result once that transaction committed; raise its own error, or
        the shared transaction's. ``size`` is its payload in bytes (for :data:`MAX_BYTES`)."""
        writer = self._writer
        if self._head is None and writer.running is None:
            # Nobody queued or writing: commit at once, as if there were no queue (an append
            # arriving meanwhile becomes the head and waits for the writer's lock, as it would
            # anyway). A lone appender so pays nothing for the queue (its own path: ~2 us).
            # Two threads may both find it so: the second waits for the lock, as without a queue.
            with writer.transaction(action) as conn:
                # Counted under the writer's lock: taking the mutex only to count cost this
                # path 3,800 instructions of a single append's ~187,500 (callgrind).
                self._alone += 1
                result = work(conn)
            return result
        mine = _Append(action, work, size)
        try:
            with self._mutex:
                self._queue.append(mine)
                if self._head is None:
                    self._head = mine
                    mine.state = _HEAD
                else:
                    mine.wakeup = threading.Lock()
                    mine.wakeup.acquire()
            if mine.wakeup is not None:
                mine.wakeup.acquire()  # until a leader ran it, or named it the head
            if mine.state == _HEAD:
                with self._writer.lock:
                    self._lead(mine)
        except BaseException:
            with self._mutex:
                self._withdraw(mine)
            raise
        return mine.outcome()

    def stats(self) -> GroupCommitStats:
        with self._mutex:
            alone = self._alone
            return GroupCommitStats(
                self._transactions + alone,
                self._appends + alone,
                max(self._largest, min(alone, 1)),
                len(self._queue),
            )

    def _withdraw(self, mine: _Append[Any]) -> None:
        """Take an interrupted caller's append out of the queue (under the mutex) if nobody took
        it yet: it is then never written. One already taken stays in its transaction: its
        outcome is unknown to its caller, as for an append interrupted just before its commit."""
        if mine.state in (_QUEUED, _HEAD):
            self._queue = [other for other in self._queue if other is not mine]
            mine.state = _DONE
        # Also when interrupted part way through taking its group; and a queue is never left
        # without a head (only that could leave it so).
        if self._head is mine or self._head is None:
            self._head = None
            self._name_head()

    def _name_head(self) -> None:
        """Make the oldest queued append the head, and wake it to wait for the writer's lock
        (under the mutex, with no head)."""
        if self._queue:
            head = self._head = self._queue[0]
            head.state = _HEAD
            if head.wakeup is not None:
                head.wakeup.release()

    def _lead(self, mine: _Append[Any]) -> None:
        """Run ``mine`` and the appends queued after it in one transaction (under the writer's
        thread lock) and settle each one's outcome.

        Written for an interrupt at any moment of the leader's thread: one that comes before
        the transaction begins (part way through taking the group, say) gives the other
        members back to the queue, unwritten and still waiting, for the next head; after it,
        whatever was taken is in ``group`` and woken by one C call in ``finally`` (no bytecode
        runs between the wake-ups; see ``release_rest`` for an interrupt around that call),
        and ``committed`` (one flag shared by the group) turns true only once the transaction
        is over, so a member whose outcome was never set is told it is unknown.
        """
        group = [mine]
        committed = [False]
        wakeups: list[threading.Lock] = []
        begun = False
        try:
            with self._mutex:
                self._head = None
                queue = self._queue
                if len(queue) == 1 and queue[0] is mine:  # alone: the common case, kept short
                    self._queue = []
                    mine.state = _TAKEN
                else:
                    self._take(group)
                    wakeups[:] = [m.wakeup for m in group if m.wakeup is not None and m is not mine]
                    self._name_head()
                for member in group:
                    member.committed = committed
                self._transactions += 1
                self._appends += len(group)
                self._largest = max(self._largest, len(group))
            begun = True
            if len(group) == 1:
                with self._writer.transaction(mine.action) as conn:
                    mine.result = mine.work(conn)
            else:
                self._run(group)
            committed[0] = True
        except BaseException as exc:
            if not begun:
                self._give_back(group, wakeups)
            _fail(group, exc)
            if not isinstance(exc, Exception):
                raise  # an interrupt of this thread: its caller sees it, the others an error
        finally:
            try:
                release_all(wakeups)
            except BaseException:
                release_rest(wakeups)
                raise

    def _give_back(self, group: list[_Append[Any]], wakeups: list[threading.Lock]) -> None:
        """Return the other members of a group whose leader was interrupted before its
        transaction began to the queue's front, still waiting (they are not woken: the next
        head takes them), and leave only the leader in ``group``. Taking may have stopped at
        any step, so each one not in the queue any more goes back."""
        with self._mutex:
            others = group[1:]
            del group[1:]
            wakeups.clear()
            queued = set(map(id, self._queue))
            for member in others:
                member.state = _QUEUED
            self._queue[:0] = [member for member in others if id(member) not in queued]
            if self._head is None:
                self._name_head()

    def _take(self, group: list[_Append[Any]]) -> None:
        """Add the oldest other queued appends within the bounds to ``group`` (holding the
        leader's own) and take them out of the queue (under the mutex)."""
        mine = group[0]
        queue = self._queue
        size = mine.size
        for other in queue:
            if len(group) == MAX_APPENDS or size + other.size > MAX_BYTES:
                break
            if other is not mine:
                group.append(other)
                size += other.size
        chosen = set(map(id, group))
        self._queue = [other for other in queue if id(other) not in chosen]
        for member in group:
            member.state = _TAKEN

    def _run(self, group: list[_Append[Any]]) -> None:
        """A group of several in one transaction, each member in a savepoint of its own."""
        actions = {member.action for member in group}
        action = actions.pop() if len(actions) == 1 else "append events"
        with self._writer.transaction(action) as conn:
            for member in group:
                conn.execute("SAVEPOINT append")
                try:
                    member.result = member.work(conn)
                except SqliteStreamError as exc:
                    member.error = exc.with_traceback(None)  # raised again in its own thread
                    conn.execute("ROLLBACK TO append")
                except apsw.Error as exc:
                    if conn.getautocommit():  # SQLite ended the whole transaction (disk full)
                        raise
                    member.error = translate(exc, member.action)
                    conn.execute("ROLLBACK TO append")
                conn.execute("RELEASE append")


def _fail(group: list[_Append[Any]], exc: BaseException) -> None:
    """Every member not refused on its own account gets the shared transaction's failure: the
    leader the exception itself, the others a copy each, since one exception object raised in
    several threads would share a traceback. An error means nothing of theirs was committed
    (nothing after the COMMIT raises one); an interrupt of the leader's thread leaves that
    unknown, and the others are told so.
    """
    for index, member in enumerate(group):
        if member.error is None:
            if index == 0:
                # An interrupt is raised on in the leader's thread and kept nowhere: its
                # traceback holds the transaction, which must be freed (and so finished) then.
                member.error = exc if isinstance(exc, Exception) else None
            elif isinstance(exc, Exception):
                member.error = copy.copy(exc)
            else:
                # The interrupt may have struck after the COMMIT (in the checkpoint that
                # follows it, say): whether it was written is not known here.
                member.error = StorageError(
                    f"cannot tell whether {member.action[0].lower()}{member.action[1:]} happened: "
                    f"the thread committing it together with others was interrupted "
                    f"({type(exc).__name__}); read the session to see"
                )
