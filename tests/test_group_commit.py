"""Group commit: concurrent appends on one SQLite store object share write transactions, and
each caller still gets exactly its own stored event, sequence and error.

To make a group form on purpose, a connection of the test's own holds SQLite's write lock
while the appending threads start: the first to get the store's writer waits for SQLite's
lock, the others queue behind it (``group_commit_stats().queued`` shows them), and once the
lock is let go the next transaction takes all of them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest
from support import INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED, interrupt_once_at, wait_until

import tools.interrupts as interrupts
from sqlitestream import (
    AsyncStore,
    Event,
    EventIdConflictError,
    SequenceConflictError,
    SQLiteSessionStore,
    StorageError,
    StoredEvent,
)


def event(session_id: str, **fields: Any) -> Event:
    return Event(type="message_sent", session_id=session_id, **fields)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    opened = SQLiteSessionStore(tmp_path / "events.db", busy_timeout_ms=60_000)
    yield opened
    opened.close()


def run_threads(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each call on a thread of its own, all released at once; each one's result or exception."""
    outcomes: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = calls[index]()
        except BaseException as exc:  # the outcome under test (an interrupt too)
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


@contextmanager
def sqlite_lock_held(path: Path) -> Iterator[apsw.Connection]:
    """SQLite's write lock on ``path``, held by a connection of our own until the block ends."""
    conn = apsw.Connection(str(path))
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def queued_while_locked(
    store: SQLiteSessionStore, calls: Sequence[Callable[[], Any]]
) -> Iterator[tuple[threading.Thread, list[Any]]]:
    """Run ``calls`` on threads of their own while SQLite's lock is held elsewhere: the block
    runs once all but the first are queued, and the lock goes when it ends. Yields the thread
    running them (a daemon, so one left waiting fails its test, not the run) and the list
    their outcomes go into; the thread is joined (up to 60 s) after the block."""
    outcomes: list[Any] = []
    with sqlite_lock_held(Path(store.path)):
        runner = threading.Thread(target=lambda: outcomes.extend(run_threads(calls)), daemon=True)
        runner.start()
        wait_until(lambda: store.group_commit_stats().queued == len(calls) - 1, 30, "the appends queued")
        yield runner, outcomes
    runner.join(60)


def in_one_group(store: SQLiteSessionStore, calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` as :func:`queued_while_locked` does and return their outcomes (they ran
    in two transactions: the first call alone, then all the others)."""
    before = store.group_commit_stats()
    with queued_while_locked(store, calls) as (_, outcomes):
        pass
    after = store.group_commit_stats()
    assert after.transactions - before.transactions == 2
    assert after.largest >= len(calls) - 1
    return outcomes


# Each caller its own sequence ---------------------------------------------------------------


def test_threads_appending_to_their_own_sessions_get_their_own_sequences(store: SQLiteSessionStore) -> None:
    per_thread = 40

    def appender(session_id: str) -> Callable[[], list[StoredEvent]]:
        return lambda: [
            store.append_event_with_sequence(event(session_id, data={"n": n})) for n in range(per_thread)
        ]

    outcomes = run_threads([appender(f"t{index}") for index in range(8)])
    for index, stored in enumerate(outcomes):
        session_id = f"t{index}"
        assert [(e.session_id, e.sequence_number, e.data["n"]) for e in stored] == [
            (session_id, n + 1, n) for n in range(per_thread)
        ]
        assert store.get_events(session_id) == stored
    stats = store.group_commit_stats()
    assert stats.appends == 8 * per_thread and stats.queued == 0
    assert stats.transactions <= stats.appends


def test_threads_appending_to_one_session_get_distinct_gap_free_sequences(store: SQLiteSessionStore) -> None:
    def appender(index: int) -> Callable[[], list[StoredEvent]]:
        return lambda: [store.append_event(event("shared", id=f"t{index}-{n}")) for n in range(30)]

    outcomes = run_threads([appender(index) for index in range(8)])
    returned = [e for stored in outcomes for e in stored]
    assert sorted(e.sequence_number for e in returned) == list(range(1, 241))
    for stored in outcomes:
        assert [e.sequence_number for e in stored] == sorted(e.sequence_number for e in stored)
    by_seq = {e.sequence_number: e for e in store.get_events("shared")}
    assert all(by_seq[e.sequence_number] == e for e in returned)
    assert sorted(e.position for e in returned) == list(range(1, 241))
    assert [e.position for e in store.read_feed()] == list(range(1, 241))


def test_appends_in_one_group_each_get_their_own_event(store: SQLiteSessionStore) -> None:
    calls = [lambda i=i: store.append_event_with_sequence(event(f"g{i}", id=f"e{i}")) for i in range(6)]
    outcomes = in_one_group(store, calls)
    for index, stored in enumerate(outcomes):
        assert isinstance(stored, StoredEvent)
        assert (stored.id, stored.session_id, stored.sequence_number) == (f"e{index}", f"g{index}", 1)
        assert store.get_events(f"g{index}") == [stored]


def test_a_lone_appender_commits_each_append_on_its_own(store: SQLiteSessionStore) -> None:
    for n in range(20):
        store.append_event(event("alone", id=f"a{n}"))
    stats = store.group_commit_stats()
    assert (stats.transactions, stats.appends, stats.largest, stats.queued) == (20, 20, 1, 0)


# Failure isolation --------------------------------------------------------------------------


def test_a_refused_append_in_a_group_fails_only_its_own_caller(store: SQLiteSessionStore) -> None:
    store.append_event(event("other", id="held-elsewhere"))
    original = store.append_event_with_sequence(event("repeat", id="again", data={"v": 1}))
    calls: list[Callable[[], Any]] = [
        lambda: store.append_event_with_sequence(event("a", id="a1")),
        lambda: store.append_event_with_sequence(event("b", id="b1"), expected_sequence=5),
        lambda: store.append_event_with_sequence(event("c", id="held-elsewhere")),
        lambda: store.append_event_with_sequence(event("repeat", id="again", data={"v": 2})),
        lambda: store.append_events([event("d", id="d1"), event("d", id="d2"), event("d", id="d3")]),
        lambda: store.append_events([event("e", id="e1"), event("e", id="held-elsewhere")]),
        lambda: store.append_event_with_sequence(event("a", id="a2")),
    ]
    outcomes = in_one_group(store, calls)
    assert {e.id for e in outcomes[0:1] + outcomes[6:7]} == {"a1", "a2"}
    assert sorted(e.sequence_number for e in store.get_events("a")) == [1, 2]
    assert isinstance(outcomes[1], SequenceConflictError)
    assert (outcomes[1].expected, outcomes[1].actual) == (5, 0)
    assert store.get_latest_sequence("b") == 0
    assert isinstance(outcomes[2], EventIdConflictError)
    assert store.get_latest_sequence("c") == 0
    assert outcomes[3] == original
    assert store.get_latest_sequence("repeat") == 1
    assert [(e.id, e.sequence_number) for e in outcomes[4]] == [("d1", 1), ("d2", 2), ("d3", 3)]
    assert isinstance(outcomes[5], EventIdConflictError)
    assert store.get_events("e") == [] and store.get_latest_sequence("e") == 0
    # The refused and repeated appends took positions inside the shared transaction and gave
    # them back: the feed has no hole, and the next append takes the next position.
    feed = store.read_feed()
    assert [e.position for e in feed] == list(range(1, len(feed) + 1))
    assert store.append_event(event("after", id="after")).position == len(feed) + 1


def test_a_failed_shared_commit_fails_every_caller_in_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=60_000)
    try:
        calls = [lambda i=i: store.append_event(event(f"s{i}", id=f"e{i}")) for i in range(5)]
        with queued_while_locked(store, calls) as (_, outcomes):
            # Moved while they wait: a commit now would go into a file nobody opening the path reads.
            os.rename(path, tmp_path / "moved.db")
        assert all(isinstance(outcome, StorageError) for outcome in outcomes), outcomes
        assert all("moved or deleted" in str(outcome) for outcome in outcomes)
        assert store.group_commit_stats().largest == len(calls) - 1
        os.rename(tmp_path / "moved.db", path)  # back beside its -wal, which holds its schema
    finally:
        store.close()
    with SQLiteSessionStore(path, readonly=True) as reopened:
        assert [reopened.get_latest_sequence(f"s{i}") for i in range(5)] == [0] * 5


# asyncio ------------------------------------------------------------------------------------


def test_async_appends_through_the_facade_share_transactions(store: SQLiteSessionStore) -> None:
    tasks = 24

    async def main() -> list[StoredEvent]:
        async with AsyncStore(store, max_threads=8) as facade:
            with sqlite_lock_held(Path(store.path)):
                running = asyncio.gather(
                    *(facade.append_event_with_sequence(event(f"task{n}", id=f"e{n}")) for n in range(tasks))
                )
                while store.group_commit_stats().queued < 7:  # every pool thread but the leader's
                    await asyncio.sleep(0.001)
            return await running

    stored = asyncio.run(main())
    assert [(e.id, e.session_id, e.sequence_number) for e in stored] == [
        (f"e{n}", f"task{n}", 1) for n in range(tasks)
    ]
    stats = store.group_commit_stats()
    assert stats.appends == tasks and stats.largest >= 7 and stats.transactions < tasks


# Interrupts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "event_name", "leads_others", "moment"),
    [
        ("_take", "return", lambda frame: len(frame.f_locals["group"]) > 1, "after taking its group"),
        (
            "release_all",
            "call",
            lambda frame: bool(frame.f_locals["wakeups"]),
            "just before waking its group",
        ),
    ],
)
def test_an_interrupt_of_the_leader_at_any_step_leaves_no_member_waiting(
    store: SQLiteSessionStore,
    function: str,
    event_name: str,
    leads_others: Callable[[Any], bool],
    moment: str,
) -> None:
    """The leader of a group is interrupted at one exact moment (before its transaction began,
    or after its commit); every other member still gets its own outcome (nobody is left
    waiting), and the queue goes on working."""
    leading = interrupt_once_at(function, event_name, leads_others)
    calls = [lambda i=i: store.append_event_with_sequence(event(f"g{i}", id=f"e{i}")) for i in range(5)]
    threading.settrace(leading)
    try:
        with queued_while_locked(store, calls) as (runner, outcomes):
            pass
    finally:
        threading.settrace(None)
    assert not runner.is_alive(), f"a member was left waiting (leader interrupted {moment})"
    interrupted = [index for index, outcome in enumerate(outcomes) if isinstance(outcome, KeyboardInterrupt)]
    assert len(interrupted) == 1, outcomes
    for index, outcome in enumerate(outcomes):
        stored = store.get_events(f"g{index}")
        if index in interrupted:
            # Before its transaction: never written. After its commit: written.
            assert [e.id for e in stored] == ([] if function == "_take" else [f"e{index}"])
        else:
            assert isinstance(outcome, StoredEvent) and stored == [outcome]
    assert store.group_commit_stats().queued == 0
    store.append_event(event("after"))  # the queue works on


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED
def test_interrupting_appends_in_group_commits_leaves_the_queue_working(tmp_path: Path) -> None:
    """A real SIGALRM raising KeyboardInterrupt at a random moment of each of 400 appends of the
    main thread while three other threads append on the same store object, so the interrupt
    lands while the main thread leads a group, waits in one, or is the next to lead: every
    thread's appends go on (nothing is left held or queued), the other threads' acknowledged
    events are all stored, each of the others is told its outcome is unknown (the interrupt may
    have come after the commit), and every session stays gap-free."""
    store = SQLiteSessionStore(tmp_path / "events.db", synchronous="full", busy_timeout_ms=60_000)
    stop = threading.Event()
    acked: list[list[StoredEvent]] = [[] for _ in range(3)]

    unknown: set[str] = set()

    def background(index: int) -> None:
        while not stop.is_set():
            mine = event(f"bg{index}")
            try:
                acked[index].append(store.append_event(mine))
            except StorageError as exc:  # the main thread was interrupted leading its group
                assert "cannot tell whether" in str(exc), exc
                unknown.add(mine.id)

    def append_main(n: int) -> Callable[[], StoredEvent]:
        return lambda: store.append_event(event("main", id=f"m{n}"))

    threads = [threading.Thread(target=background, args=(index,)) for index in range(3)]
    rng = random.Random(8)
    previous = signal.signal(signal.SIGALRM, interrupts.raise_interrupt)
    try:
        for thread in threads:
            thread.start()
        hits = sum(interrupts.interrupted(append_main(n), rng.uniform(0, 0.004)) for n in range(400))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        stop.set()
        for thread in threads:
            thread.join(60)
    try:
        assert not any(thread.is_alive() for thread in threads), "an appender hung"
        assert hits >= 10  # the alarms did strike inside appends (30-60 of 400 seen, on tmpfs)
        assert store.group_commit_stats().largest > 1  # and appends did share commits
        assert store.group_commit_stats().queued == 0
        for index, mine in enumerate(acked):
            stored = store.get_events(f"bg{index}")
            assert [e.sequence_number for e in stored] == list(range(1, len(stored) + 1))
            assert [e for e in stored if e.id not in unknown] == mine
        main = store.get_events("main")
        assert [e.sequence_number for e in main] == list(range(1, len(main) + 1))
        store.append_event(event("main", id="after"))  # the main thread gets on at once
    finally:
        store.close()
