"""Group commit on PostgreSQL: appends from threads of one store object share transactions.

Groups are formed deterministically: a test connection holds the feed row, so that a first
append (taking the one-statement path) waits for it on the server while the appends started
after it queue in the store; letting go of the row lets the first commit and the queued ones
go together as one group. Real threads, a real server, and pg_terminate_backend for the
failures of a shared transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from support import ThreadCall, interrupt_once_at, wait_until

from sqlitestream import (
    Event,
    EventIdConflictError,
    SequenceConflictError,
    StorageError,
    StoredEvent,
    ValidationError,
)
from sqlitestream.postgres import PostgresSessionStore

pytestmark = pytest.mark.usefixtures("pg_dsn")

APP = "sqlitestream-groupcommit-test"


@pytest.fixture
def store(pg_dsn: str, pg_schema: str) -> Iterator[PostgresSessionStore]:
    opened = PostgresSessionStore(pg_dsn, schema=pg_schema, application_name=APP, pool_size=4)
    try:
        yield opened
    finally:
        opened.close()


def _event(session_id: str, **fields: Any) -> Event:
    return Event(type="message_sent", session_id=session_id, **fields)


def _appending(store: PostgresSessionStore, session_id: str, event_id: str) -> Callable[[], StoredEvent]:
    """A call that appends the event ``event_id`` to ``session_id``, building it when it runs."""
    return lambda: store.append_event_with_sequence(_event(session_id, id=event_id))


def _waiting_backends(dsn: str) -> list[int]:
    """The store's backends waiting for a lock right now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (APP,),
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def _in_one_group(
    store: PostgresSessionStore,
    dsn: str,
    schema: str,
    calls: list[Callable[[], Any]],
    meanwhile: Callable[[], None] = lambda: None,
) -> tuple[Any, list[Any]]:
    """Run a first append, then ``calls`` queued behind it, so that they share one
    transaction (``meanwhile`` runs while they are queued); the first append's outcome and
    theirs."""
    with psycopg.connect(dsn) as holder:
        holder.execute(f'UPDATE "{schema}".feed SET last_position = last_position')
        first = ThreadCall(lambda: store.append_event_with_sequence(_event("first")))
        wait_until(lambda: bool(_waiting_backends(dsn)), what="the first append to wait for the feed row")
        queued = [ThreadCall(call) for call in calls]
        wait_until(lambda: store.group_commit_stats().queued == len(calls), what="the appends to queue")
        meanwhile()
        before = store.group_commit_stats()
        holder.rollback()
    outcomes = [call.result() for call in queued]
    first_outcome = first.result()
    after = store.group_commit_stats()
    assert after.transactions - before.transactions == 1  # the group: one transaction
    assert after.largest >= len(calls)
    return first_outcome, outcomes


def test_queued_appends_share_one_transaction_and_each_gets_its_own_sequence(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    calls: list[Callable[[], Any]] = [_appending(store, f"s{n % 3}", f"e{n}") for n in range(9)]
    first, outcomes = _in_one_group(store, pg_dsn, pg_schema, calls)
    assert isinstance(first, StoredEvent)
    assert all(isinstance(stored, StoredEvent) for stored in outcomes), outcomes
    assert [stored.id for stored in outcomes] == [f"e{n}" for n in range(9)]
    for session in ("s0", "s1", "s2"):
        mine = [stored for stored in outcomes if stored.session_id == session]
        assert sorted(stored.sequence_number for stored in mine) == [1, 2, 3]
        assert [e.to_dict() for e in store.get_events(session)] == [
            e.to_dict() for e in sorted(mine, key=lambda stored: stored.sequence_number)
        ]
    positions = sorted(stored.position for stored in [first, *outcomes])
    assert positions == list(range(1, 11))
    assert store.get_last_position() == 10


def test_a_refused_member_of_a_group_affects_only_its_own_caller(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    original = store.append_event_with_sequence(_event("s1", id="dup"))
    store.append_event_with_sequence(_event("s2", id="theirs"))
    calls: list[Callable[[], Any]] = [
        lambda: store.append_event_with_sequence(_event("s1", id="dup")),  # a duplicate
        lambda: store.append_event_with_sequence(_event("s1", id="theirs")),  # another session's id
        lambda: store.append_event_with_sequence(_event("s3", id="late"), expected_sequence=5),
        lambda: store.append_event_with_sequence(_event("s4", id="plain")),
        lambda: store.append_events([_event("s5", id="b1"), _event("s5", id="theirs")]),
        lambda: store.append_event_with_sequence(_event("s6", id="on-time"), expected_sequence=0),
        lambda: store.append_event_with_sequence(_event("s6", id="too-late"), expected_sequence=0),
        lambda: store.append_event_with_sequence(_event("s7", id="twin")),
        lambda: store.append_event_with_sequence(_event("s7", id="twin")),
        lambda: store.append_events([_event("s8", id="c1"), _event("s8", id="c2"), _event("s8", id="c1")]),
    ]

    def invalid() -> None:  # refused before it could queue: the group never sees it
        with pytest.raises(ValidationError):
            store.append_event_with_sequence(_event("s4", data={"text": "x" * (2 << 20)}))

    _, outcomes = _in_one_group(store, pg_dsn, pg_schema, calls, invalid)
    dup, theirs, late, plain, batch, on_time, too_late, twin_a, twin_b, repeats = outcomes
    assert dup.to_dict() == original.to_dict()
    assert isinstance(theirs, EventIdConflictError)
    assert isinstance(late, SequenceConflictError) and (late.expected, late.actual) == (5, 0)
    assert (plain.id, plain.sequence_number) == ("plain", 1)
    assert isinstance(batch, EventIdConflictError)
    assert (on_time.id, on_time.sequence_number) == ("on-time", 1)
    assert isinstance(too_late, SequenceConflictError) and (too_late.expected, too_late.actual) == (0, 1)
    assert twin_a.to_dict() == twin_b.to_dict() and twin_a.sequence_number == 1
    assert [(e.id, e.sequence_number) for e in repeats] == [("c1", 1), ("c2", 2), ("c1", 1)]
    assert [e.id for e in store.get_events("s1")] == ["dup"]
    assert store.get_events("s3") == [] and store.get_events("s5") == []
    assert [e.id for e in store.get_events("s6")] == ["on-time"]
    assert [e.id for e in store.get_events("s7")] == ["twin"]
    assert [e.id for e in store.get_events("s8")] == ["c1", "c2"]
    feed = store.read_feed(after=0, limit=100)
    assert [e.position for e in feed] == list(range(1, len(feed) + 1))


def test_a_group_of_plain_appends_returns_originals_and_refuses_foreign_ids_one_by_one(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    """Single events without expected_sequence go as one statement: the same rules apply."""
    original = store.append_event_with_sequence(_event("p1", id="dup"))
    store.append_event_with_sequence(_event("p2", id="theirs"))
    calls: list[Callable[[], Any]] = [
        lambda: store.append_event_with_sequence(_event("p1", id="dup")),
        lambda: store.append_event_with_sequence(_event("p1", id="theirs")),
        lambda: store.append_event_with_sequence(_event("p3", id="twin", data={"n": 1})),
        lambda: store.append_event_with_sequence(_event("p3", id="twin", data={"n": 2})),
        lambda: store.append_event_with_sequence(_event("p4", id="split")),
        lambda: store.append_event_with_sequence(_event("p5", id="split")),
        lambda: store.append_event_with_sequence(_event("p4")),
    ]
    _, outcomes = _in_one_group(store, pg_dsn, pg_schema, calls)
    dup, theirs, twin_a, twin_b, split_a, split_b, plain = outcomes
    assert dup.to_dict() == original.to_dict()
    assert isinstance(theirs, EventIdConflictError)
    assert twin_a.to_dict() == twin_b.to_dict() and twin_b.data == {"n": 1}  # the first one's
    assert (split_a.session_id, split_a.sequence_number) == ("p4", 1)
    assert isinstance(split_b, EventIdConflictError)
    assert plain.sequence_number == 2
    assert [e.id for e in store.get_events("p1")] == ["dup"]
    assert [e.id for e in store.get_events("p3")] == ["twin"]
    assert store.get_events("p5") == []
    feed = store.read_feed(after=0, limit=100)
    assert [e.position for e in feed] == list(range(1, len(feed) + 1))


def _kill_when_waiting(dsn: str, times: int) -> None:
    """``times`` times: wait for a backend of the store to wait for a lock, terminate it."""
    killed: set[int] = set()
    for _ in range(times):
        wait_until(lambda: bool(set(_waiting_backends(dsn)) - killed), what="the group to wait for the lock")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for pid in set(_waiting_backends(dsn)) - killed:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed.add(pid)


def _group_behind_a_counter_lock(
    store: PostgresSessionStore, dsn: str, schema: str, sessions: list[str], kills: int
) -> tuple[Any, list[Any]]:
    """A first append commits; the group queued behind it waits for the counter row of
    ``sessions[0]`` (held by a test connection), and its backend is terminated ``kills`` times."""
    with psycopg.connect(dsn) as counter:
        counter.execute(
            f'INSERT INTO "{schema}".streams AS c VALUES (%s, 0) '
            "ON CONFLICT (session_id) DO UPDATE SET latest_seq = c.latest_seq",
            (sessions[0],),
        )
        with psycopg.connect(dsn) as feed:
            feed.execute(f'UPDATE "{schema}".feed SET last_position = last_position')
            first = ThreadCall(lambda: store.append_event_with_sequence(_event("first")))
            wait_until(lambda: bool(_waiting_backends(dsn)), what="the first append to wait for the feed row")
            queued = [ThreadCall(_appending(store, session, f"{session}-1")) for session in sessions]
            wait_until(
                lambda: store.group_commit_stats().queued == len(sessions), what="the appends to queue"
            )
            feed.rollback()
        first_outcome = first.result()
        _kill_when_waiting(dsn, kills)
        counter.rollback()
    return first_outcome, [call.result() for call in queued]


def test_a_failed_shared_transaction_fails_every_member_and_writes_none_of_them(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    """The group's connection is lost twice (the store retries a lost connection once): every
    member gets the failure, none of their events is stored, and the append acknowledged
    before the group stays stored."""
    sessions = ["g1", "g2", "g3", "g4"]
    first, outcomes = _group_behind_a_counter_lock(store, pg_dsn, pg_schema, sessions, kills=2)
    assert isinstance(first, StoredEvent)
    assert all(isinstance(outcome, StorageError) for outcome in outcomes), outcomes
    assert len({id(outcome) for outcome in outcomes}) == len(outcomes)  # one exception each
    assert [e.id for e in store.get_events("first")] == [first.id]
    for session in sessions:
        assert store.get_events(session) == []
        assert store.get_latest_sequence(session) == 0
    assert store.get_last_position() == 1
    assert store.append_event_with_sequence(_event("g1")).sequence_number == 1  # the store goes on


def test_a_group_retried_after_a_lost_connection_stores_each_member_once(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    sessions = ["r1", "r2", "r3"]
    first, outcomes = _group_behind_a_counter_lock(store, pg_dsn, pg_schema, sessions, kills=1)
    assert isinstance(first, StoredEvent)
    assert [(e.id, e.sequence_number) for e in outcomes] == [(f"{s}-1", 1) for s in sessions]
    for session, stored in zip(sessions, outcomes, strict=True):
        assert [e.to_dict() for e in store.get_events(session)] == [stored.to_dict()]
    assert sorted(e.position for e in outcomes) == [2, 3, 4]


def test_threads_appending_with_expected_sequence_to_one_session_never_skip_or_repeat(
    store: PostgresSessionStore,
) -> None:
    """Optimistic concurrency through the groups: each thread reads the latest sequence and
    appends expecting it; an append that succeeds got exactly the next number."""
    successes: list[tuple[int, StoredEvent]] = []
    start = threading.Barrier(8)

    def writer(index: int) -> None:
        start.wait()
        for attempt in range(15):
            latest = store.get_latest_sequence("shared")
            try:
                stored = store.append_event_with_sequence(
                    _event("shared", id=f"w{index}-{attempt}"), expected_sequence=latest
                )
            except SequenceConflictError:
                continue
            successes.append((latest, stored))

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert successes
    assert all(stored.sequence_number == latest + 1 for latest, stored in successes)
    events = store.get_events("shared")
    assert [e.sequence_number for e in events] == list(range(1, len(successes) + 1))
    assert sorted(e.id for e in events) == sorted(stored.id for _, stored in successes)


def test_many_threads_appending_at_once_keep_every_session_gap_free(store: PostgresSessionStore) -> None:
    start = threading.Barrier(12)
    returned: dict[int, list[StoredEvent]] = {}

    def writer(index: int) -> None:
        start.wait()
        mine = [store.append_event_with_sequence(_event(f"t{index % 4}")) for _ in range(20)]
        mine += store.append_events([_event(f"t{index % 4}") for _ in range(5)])
        returned[index] = mine

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [stored for mine in returned.values() for stored in mine]
    assert len(everything) == 12 * 25
    for session in ("t0", "t1", "t2", "t3"):
        stored = store.get_events(session, limit=1000)
        assert [e.sequence_number for e in stored] == list(range(1, 76))
        assert {e.id: e.sequence_number for e in stored} == {
            e.id: e.sequence_number for e in everything if e.session_id == session
        }
    assert sorted(e.position for e in everything) == list(range(1, 12 * 25 + 1))


class _Interrupted(Exception):
    pass


def test_an_append_interrupted_while_queued_is_never_written_and_the_queue_goes_on(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    """A signal handler raising in the main thread while its append waits in the queue: the
    append leaves the queue unwritten, and the appends around it are written."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGUSR1, interrupt)
    main = threading.get_ident()
    try:
        with psycopg.connect(pg_dsn) as holder:
            holder.execute(f'UPDATE "{pg_schema}".feed SET last_position = last_position')
            first = ThreadCall(lambda: store.append_event_with_sequence(_event("first")))
            wait_until(
                lambda: bool(_waiting_backends(pg_dsn)), what="the first append to wait for the feed row"
            )
            later = ThreadCall(lambda: store.append_event_with_sequence(_event("later")))
            wait_until(lambda: store.group_commit_stats().queued == 1, what="the later append to queue")

            def signal_when_queued() -> None:
                wait_until(
                    lambda: store.group_commit_stats().queued == 2, what="the main thread's append to queue"
                )
                signal.pthread_kill(main, signal.SIGUSR1)

            signaller = threading.Thread(target=signal_when_queued)
            signaller.start()
            with pytest.raises(_Interrupted):
                store.append_event_with_sequence(_event("interrupted", id="never"))
            signaller.join()
            assert store.group_commit_stats().queued == 1
            holder.rollback()
        assert isinstance(first.result(), StoredEvent)
        assert isinstance(later.result(), StoredEvent)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert store.get_events("interrupted") == []
    assert store.append_event_with_sequence(_event("interrupted")).sequence_number == 1
    assert store.group_commit_stats().queued == 0


@pytest.mark.parametrize(
    ("function", "event_name", "moment"),
    [
        ("_lead", "call", "named the leader of a group, before leading it"),
        ("_count", "return", "just after claiming the write of a lone append"),
    ],
)
def test_an_interrupt_at_any_step_of_the_queue_leaves_nobody_waiting(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str, function: str, event_name: str, moment: str
) -> None:
    """An interrupt at one exact moment of a thread's append (traced, where a signal strikes
    only by chance): that append raises it, every other caller gets its own outcome, and the
    store's appends go on (neither a group nor the queue's busy flag is left behind)."""
    calls = [_appending(store, f"g{i}", f"e{i}") for i in range(3)]
    if function == "_lead":
        interrupt = interrupt_once_at(
            function, event_name, lambda frame: len(frame.f_locals["mine"].group) > 1
        )
    else:
        interrupt = interrupt_once_at(
            function, event_name, lambda frame: frame.f_back.f_code.co_name == "append"
        )
    threading.settrace(interrupt)
    try:
        first, outcomes = (
            _in_one_group(store, pg_dsn, pg_schema, calls)
            if function == "_lead"
            else (ThreadCall(calls[0]).result(), [ThreadCall(call).result() for call in calls[1:]])
        )
    finally:
        threading.settrace(None)
    everything = [first, *outcomes]
    interrupted = [outcome for outcome in everything if isinstance(outcome, KeyboardInterrupt)]
    assert len(interrupted) == 1, f"interrupted {moment}: {everything}"
    for outcome in everything:
        assert isinstance(outcome, (KeyboardInterrupt, StoredEvent)), outcome
    stored = {event.id for session in ("first", "g0", "g1", "g2") for event in store.get_events(session)}
    assert {o.id for o in everything if isinstance(o, StoredEvent)} <= stored
    assert store.append_event_with_sequence(_event("after")).sequence_number == 1  # not stranded
    assert store.group_commit_stats().queued == 0
