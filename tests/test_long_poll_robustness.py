"""Long-poll under load: hundreds of waiting threads on many sessions all wake with the right
events (appended here or by another process); deleting a session releases its waiters with
``[]``; closing the store makes them raise ``StoreClosedError``; timeouts are never cut short;
and a store nobody waits on runs no background thread.

The suite runs ``WAITERS = 300``; ``python -m tools.long_poll_load`` runs this file with
thousands (1,500 waiters on 300 sessions, 2,000 under the descriptor limit).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from support import python_output, run_in_another_process, wait_until

from sqlitestream import (
    Event,
    InMemorySessionStore,
    SessionStore,
    SQLiteSessionStore,
    StoreClosedError,
    StoredEvent,
)

WAITERS = int(os.environ.get("SQLITESTREAM_LONG_POLL_WAITERS", "300"))
SESSIONS = WAITERS // 5  # five waiters per session, each kind of filter once
CROWD = WAITERS // 5  # waiters on one session
FD_LIMIT = 256
FD_WAITERS = WAITERS * 4 // 3  # one session each: more waiters than the process may open files
LONG = 60_000  # ms: a waiter that needs this long has missed its wake-up


@pytest.fixture(autouse=True)
def small_thread_stacks() -> Iterator[None]:
    old = threading.stack_size(256 * 1024)
    try:
        yield
    finally:
        threading.stack_size(old)


class StoreThreads:
    """Counts the threads the store runs, by their number rather than their names: the threads
    alive now beyond those alive when this was made, less the test's own waiters."""

    def __init__(self) -> None:
        self.before = threading.active_count()

    def __call__(self, *own: Waiters) -> int:
        mine = sum(waiters.alive() for waiters in own)  # first: a waiter ending now undercounts
        return threading.active_count() - self.before - mine


class Waiters:
    """Threads each running one ``get_events`` call; results and errors kept by index."""

    def __init__(self, calls: list[Callable[[], list[StoredEvent]]]) -> None:
        self.results: list[Any] = [None] * len(calls)
        self.returned_at: list[float] = [0.0] * len(calls)
        self.started = threading.Semaphore(0)

        def run(index: int, call: Callable[[], list[StoredEvent]]) -> None:
            self.started.release()
            try:
                self.results[index] = call()
            except BaseException as exc:  # checked by the test
                self.results[index] = exc
            self.returned_at[index] = time.monotonic()

        self.threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
        for thread in self.threads:
            thread.start()
        for _ in calls:
            self.started.acquire()

    def join(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    def alive(self) -> int:
        return sum(thread.is_alive() for thread in self.threads)


class _PageQueries:
    """How many times each session's events were queried by any connection opened while this
    is installed (apsw's connection hooks and statement tracing). A long-poll queries once
    before it registers, once after, and once more on each wake-up: so the count tells how
    often its waiter was woken."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> _PageQueries:
        apsw.connection_hooks.append(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        apsw.connection_hooks.remove(self._hook)

    def _hook(self, conn: apsw.Connection) -> None:
        conn.exec_trace = self._trace

    def _trace(self, cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if sql.startswith("SELECT seq, id,") and bindings:
            with self._lock:
                self.counts[bindings[0]] = self.counts.get(bindings[0], 0) + 1
        return True


def _until_registered(queries: _PageQueries, waiters: dict[str, int]) -> None:
    """Wait until ``waiters[session]`` waiters of each session have registered (queried twice):
    until then a waiter has not read the log, and what another process does to it meanwhile
    decides what that waiter's first query returns, not what a registered waiter is given."""
    wait_until(
        lambda: all(queries.counts.get(session, 0) >= 2 * n for session, n in waiters.items()),
        30,
        "every waiter registered",
    )


def _append_in_another_process(path: Path, session_ids: list[str], type_: str = "message_sent") -> None:
    code = (
        "import sys; from sqlitestream import Event, SQLiteSessionStore\n"
        "with SQLiteSessionStore(sys.argv[1]) as store:\n"
        "    store.append_events([Event(sys.argv[2], s, id=f'{s}-{sys.argv[2]}-x') for s in sys.argv[3:]])\n"
    )
    run_in_another_process(code, str(path), type_, *session_ids)


def _delete_in_another_process(path: Path, session_id: str) -> None:
    code = (
        "import sys; from sqlitestream import SQLiteSessionStore\n"
        "with SQLiteSessionStore(sys.argv[1]) as store:\n"
        "    store.delete_session(sys.argv[2])\n"
    )
    run_in_another_process(code, str(path), session_id)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    made: SessionStore = (
        InMemorySessionStore() if request.param == "memory" else SQLiteSessionStore(tmp_path / "events.db")
    )
    yield made
    made.close()


# Waking -------------------------------------------------------------------------------------------


def _waiter_calls(store: SessionStore) -> list[Callable[[], list[StoredEvent]]]:
    """Five waiters per session with different filters: any type, one type, one run, a limit,
    and a cursor past the first event."""
    calls: list[Callable[[], list[StoredEvent]]] = []
    for index in range(WAITERS):
        session_id = f"s{index % SESSIONS}"
        kind = (index // SESSIONS) % 5
        if kind == 0:
            calls.append(functools.partial(store.get_events, session_id, after=0, wait_timeout_ms=LONG))
        elif kind == 1:
            calls.append(
                functools.partial(store.get_events, session_id, type="message_received", wait_timeout_ms=LONG)
            )
        elif kind == 2:
            calls.append(functools.partial(store.get_events, session_id, run_id="r2", wait_timeout_ms=LONG))
        elif kind == 3:
            calls.append(functools.partial(store.get_events, session_id, limit=1, wait_timeout_ms=LONG))
        else:
            calls.append(functools.partial(store.get_events, session_id, after=1, wait_timeout_ms=LONG))
    return calls


def _check_woken(waiters: Waiters) -> None:
    for index, result in enumerate(waiters.results):
        session_id = f"s{index % SESSIONS}"
        kind = (index // SESSIONS) % 5
        assert isinstance(result, list), (index, result)
        expected_ids = {
            0: [f"{session_id}-message_sent-x"],
            1: [f"{session_id}-message_received-x"],
            2: [f"{session_id}-message_received-x"],
            3: [f"{session_id}-message_sent-x"],
            4: [f"{session_id}-message_received-x"],
        }[kind]
        assert [e.id for e in result] == expected_ids, (index, kind, [e.id for e in result])
        assert all(e.session_id == session_id for e in result)


def test_many_waiters_wake_with_the_right_events(store: SessionStore) -> None:
    waiters = Waiters(_waiter_calls(store))
    started = time.monotonic()
    store.append_events(
        [Event("message_sent", f"s{n}", id=f"s{n}-message_sent-x", run_id="r1") for n in range(SESSIONS)]
    )
    wait_until(
        lambda: waiters.alive() == WAITERS - 2 * SESSIONS, 30, "the first wake-up"
    )  # kinds 0 and 3 woke
    store.append_events(
        [
            Event("message_received", f"s{n}", id=f"s{n}-message_received-x", run_id="r2")
            for n in range(SESSIONS)
        ]
    )
    assert waiters.join()
    _check_woken(waiters)
    print(
        f"\n{WAITERS} waiters: last returned {max(waiters.returned_at) - started:.3f} s after the first append"
    )


def test_many_waiters_wake_on_another_process_appending(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    threads = StoreThreads()
    with SQLiteSessionStore(path) as store:
        waiters = Waiters(_waiter_calls(store))
        wait_until(lambda: threads(waiters) == 1, 30, "the store's one watching thread")
        started = time.monotonic()
        sessions = [f"s{n}" for n in range(SESSIONS)]
        _append_in_another_process(path, sessions, "message_sent")
        wait_until(lambda: waiters.alive() == WAITERS - 2 * SESSIONS, 30, "the first wake-up")
        code = (
            "import sys; from sqlitestream import Event, SQLiteSessionStore\n"
            "with SQLiteSessionStore(sys.argv[1]) as store:\n"
            "    store.append_events([Event('message_received', s, id=f'{s}-message_received-x', run_id='r2')"
            " for s in sys.argv[2:]])\n"
        )
        run_in_another_process(code, str(path), *sessions)
        assert waiters.join()
        _check_woken(waiters)
        print(
            f"\ncross-process: last of {WAITERS} waiters returned {max(waiters.returned_at) - started:.3f} s after the first append began"
        )
        assert threads(waiters) <= 1
    wait_until(lambda: threads() <= 0, 30, "the store's threads to end")


# Releasing ----------------------------------------------------------------------------------------


def test_deleting_a_session_releases_only_its_waiters(store: SessionStore) -> None:
    store.append_events([Event("message_sent", s) for s in ("doomed", "kept")])
    doomed = Waiters([lambda: store.get_events("doomed", after=1, wait_timeout_ms=LONG)] * CROWD)
    kept = Waiters([lambda: store.get_events("kept", after=1, wait_timeout_ms=LONG)] * CROWD)
    store.delete_session("doomed")
    assert doomed.join()
    assert doomed.results == [[]] * CROWD
    assert kept.alive() == CROWD  # still waiting: their session was not deleted
    store.append_event(Event("message_sent", "kept", id="k2"))
    assert kept.join()
    assert all([e.id for e in result] == ["k2"] for result in kept.results)


def test_a_session_deleted_by_another_process_releases_waiters(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    threads = StoreThreads()
    with _PageQueries() as queries, SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", s) for s in ("doomed", "kept")])
        doomed = Waiters([lambda: store.get_events("doomed", after=1, wait_timeout_ms=LONG)] * CROWD)
        kept = Waiters([lambda: store.get_events("kept", after=1, wait_timeout_ms=LONG)] * CROWD)
        wait_until(lambda: threads(doomed, kept) == 1, 30, "the store's one watching thread")
        _until_registered(queries, {"doomed": CROWD, "kept": CROWD})
        _delete_in_another_process(path, "doomed")
        assert doomed.join()
        assert doomed.results == [[]] * CROWD
        assert kept.alive() == CROWD
        _append_in_another_process(path, ["kept"])
        assert kept.join()
        assert all([e.id for e in result] == ["kept-message_sent-x"] for result in kept.results)


def _replace_in_another_process(path: Path, session_id: str, events: int) -> None:
    """Delete the session and write ``events`` new ones in ONE transaction, as a delete and a
    refill that both land between two looks of the watcher would appear."""
    code = (
        "import sys, apsw\n"
        "conn = apsw.Connection(sys.argv[1]); s = sys.argv[2]; n = int(sys.argv[3])\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute('DELETE FROM events WHERE session_id = ?', (s,))\n"
        "first = conn.execute('SELECT ifnull(max(position), 0) FROM events').fetchall()[0][0]\n"
        "for seq in range(1, n + 1):\n"
        "    conn.execute(\"INSERT INTO events VALUES (?, ?, ?, 'message_sent', NULL, 0, '{}', '{}', ?)\","
        " (s, seq, f'{s}-new-{seq}', first + seq))\n"
        "conn.execute('UPDATE streams SET latest_seq = ? WHERE session_id = ?', (n, s))\n"
        "conn.execute('COMMIT')\n"
    )
    run_in_another_process(code, str(path), session_id, str(events))


@pytest.mark.parametrize("refilled_to", [1, 2, 4])
def test_a_session_replaced_by_another_process_between_looks_releases_waiters(
    tmp_path: Path, refilled_to: int
) -> None:
    """Deleted and written again (to fewer, as many, or more events) between two looks of the
    watcher: the waiters are released with [] as a delete releases them, not left to time out
    (as many events) or handed events of the new log (more)."""
    path = tmp_path / "events.db"
    threads = StoreThreads()
    with _PageQueries() as queries, SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", s) for s in ("doomed", "doomed", "kept")])
        doomed = Waiters([lambda: store.get_events("doomed", after=2, wait_timeout_ms=LONG)] * 20)
        kept = Waiters([lambda: store.get_events("kept", after=1, wait_timeout_ms=LONG)] * 20)
        wait_until(lambda: threads(doomed, kept) == 1, 30, "the store's one watching thread")
        _until_registered(queries, {"doomed": 20, "kept": 20})
        _replace_in_another_process(path, "doomed", refilled_to)
        assert doomed.join()
        assert doomed.results == [[]] * 20
        assert kept.alive() == 20
        _append_in_another_process(path, ["kept"])
        assert kept.join()
        assert [e.id for e in store.get_events("doomed")] == [
            f"doomed-new-{i}" for i in range(1, refilled_to + 1)
        ]


def test_a_counter_ahead_of_its_log_still_wakes_waiters_with_new_events(tmp_path: Path) -> None:
    """A damaged log whose counter points past its last event (no event at the tip to compare)
    is not taken for a replaced session: another process's append wakes the waiters with it."""
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", id=f"e{i}") for i in range(2)])
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE streams SET latest_seq = 3 WHERE session_id = 's'")
    conn.close()
    threads = StoreThreads()
    with SQLiteSessionStore(path) as store:
        waiters = Waiters([lambda: store.get_events("s", after=3, wait_timeout_ms=LONG)] * 5)
        wait_until(lambda: threads(waiters) == 1, 30, "the store's one watching thread")
        _append_in_another_process(path, ["s"])
        assert waiters.join()
        assert [[(e.id, e.sequence_number) for e in r] for r in waiters.results] == [
            [("s-message_sent-x", 4)]
        ] * 5


def _trim_in_another_process(path: Path, session_id: str, before_sequence: int) -> None:
    """Remove the session's events below ``before_sequence`` with ``trim_session``, in a
    process of its own."""
    code = (
        "import sys\n"
        "from sqlitestream import SQLiteSessionStore\n"
        "with SQLiteSessionStore(sys.argv[1]) as store:\n"
        "    store.trim_session(sys.argv[2], before_sequence=int(sys.argv[3]))\n"
    )
    run_in_another_process(code, str(path), session_id, str(before_sequence))


def test_a_session_trimmed_by_another_process_keeps_its_waiters(tmp_path: Path) -> None:
    """A trim removes the first events, the counter stays: the waiters are not released (a
    trim never wakes a waiter) and the next append wakes them with its event."""
    path = tmp_path / "events.db"
    threads = StoreThreads()
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", id=f"e{i}") for i in range(3)])
        waiters = Waiters([lambda: store.get_events("s", after=3, wait_timeout_ms=LONG)] * 5)
        marker = Waiters([lambda: store.get_events("marker", wait_timeout_ms=LONG)])
        wait_until(lambda: threads(waiters, marker) == 1, 30, "the store's one watching thread")
        _trim_in_another_process(path, "s", 3)
        _append_in_another_process(path, ["marker"])
        assert marker.join()  # the watcher has looked since the trim
        assert waiters.alive() == 5
        _append_in_another_process(path, ["s"])
        assert waiters.join()
        assert [[(e.id, e.sequence_number) for e in r] for r in waiters.results] == [
            [("s-message_sent-x", 4)]
        ] * 5


def test_a_trimmed_session_replaced_by_another_process_releases_waiters(tmp_path: Path) -> None:
    """Trimmed (its first event gone), then deleted and written again past the waiters' cursor
    in one transaction: the waiters are released with [], not handed the new log's events."""
    path = tmp_path / "events.db"
    threads = StoreThreads()
    with _PageQueries() as queries, SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", s) for s in ("doomed", "doomed", "doomed", "kept")])
        _trim_in_another_process(path, "doomed", 3)
        doomed = Waiters([lambda: store.get_events("doomed", after=3, wait_timeout_ms=LONG)] * 5)
        kept = Waiters([lambda: store.get_events("kept", after=1, wait_timeout_ms=LONG)] * 5)
        wait_until(lambda: threads(doomed, kept) == 1, 30, "the store's one watching thread")
        _until_registered(queries, {"doomed": 5, "kept": 5})
        _replace_in_another_process(path, "doomed", 5)
        assert doomed.join()
        assert doomed.results == [[]] * 5
        assert kept.alive() == 5
        _append_in_another_process(path, ["kept"])
        assert kept.join()


def test_another_processs_commits_wake_only_the_waiters_of_their_sessions(tmp_path: Path) -> None:
    """Appends to one session, a trim of another, a deleted session and a saved session
    record, all by another process: only the appended session's waiter is woken (queries
    again), the deleted one's is released, and every other waiter stays asleep."""
    path = tmp_path / "events.db"
    threads = StoreThreads()
    quiet = [f"q{n}" for n in range(SESSIONS)]
    with _PageQueries() as queries, SQLiteSessionStore(path) as store:
        store.append_events(
            [Event("message_sent", s) for s in ["hot", "trimmed", "trimmed", "doomed", *quiet]]
        )
        hot = Waiters([lambda: store.get_events("hot", after=1, limit=1, wait_timeout_ms=LONG)])
        trimmed = Waiters([lambda: store.get_events("trimmed", after=2, wait_timeout_ms=LONG)])
        doomed = Waiters([lambda: store.get_events("doomed", after=1, wait_timeout_ms=LONG)])
        asleep = Waiters(
            [functools.partial(store.get_events, s, after=1, wait_timeout_ms=LONG) for s in quiet]
        )
        marker = Waiters([lambda: store.get_events("marker", wait_timeout_ms=LONG)])
        everyone = (hot, trimmed, doomed, asleep, marker)
        wait_until(lambda: threads(*everyone) == 1, 30, "the store's one watching thread")
        wait_until(lambda: all(queries.counts.get(s) == 2 for s in quiet), 30, "every waiter registered")
        code = (
            "import sys; from sqlitestream import Event, Session, SQLiteSessionStore\n"
            "with SQLiteSessionStore(sys.argv[1]) as store:\n"
            "    for n in range(20):\n"
            "        store.append_event_with_sequence(Event('message_sent', 'hot'))\n"
            "    store.delete_session('doomed')\n"
            "    store.create_session(Session(id='record', agent_id='a'))\n"
        )
        run_in_another_process(code, str(path))
        _trim_in_another_process(path, "trimmed", 2)
        assert hot.join() and doomed.join()
        assert [e.sequence_number for e in hot.results[0]] == [2]
        assert doomed.results == [[]]
        _append_in_another_process(path, ["marker"])
        assert marker.join()  # the watcher has looked since the trim
        assert trimmed.alive() == 1 and asleep.alive() == len(quiet)
        assert {s: queries.counts[s] for s in ["trimmed", *quiet]} == dict.fromkeys(["trimmed", *quiet], 2)
        store.append_events([Event("message_sent", s) for s in ["trimmed", *quiet]])
        assert trimmed.join() and asleep.join()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_closing_the_store_releases_every_waiter_with_store_closed(tmp_path: Path, kind: str) -> None:
    threads = StoreThreads()
    store: SessionStore = (
        InMemorySessionStore() if kind == "memory" else SQLiteSessionStore(tmp_path / "e.db")
    )
    waiters = Waiters(
        [
            functools.partial(store.get_events, f"s{n % 50}", after=n % 3, wait_timeout_ms=LONG)
            for n in range(WAITERS * 2 // 3)
        ]
    )
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "close() hung with waiters blocked"
    assert waiters.join()
    assert all(isinstance(result, StoreClosedError) for result in waiters.results), {
        type(r).__name__ for r in waiters.results
    }
    with pytest.raises(StoreClosedError):
        store.get_events("s1", wait_timeout_ms=10)
    wait_until(lambda: threads() <= 0, 30, "the store's threads to end")


# Timeouts -----------------------------------------------------------------------------------------


def test_timeouts_are_never_cut_short_under_load(store: SessionStore) -> None:
    """Waiters whose filter never matches return [] no earlier than their timeout, while
    appends to their own session (other types) and to other sessions wake them spuriously."""
    timeouts = [50 + (n % 8) * 50 for n in range(WAITERS // 4)]
    stop = threading.Event()

    def churn() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            store.append_events(
                [Event("message_sent", f"t{count % 20}"), Event("message_sent", "other", run_id="x")]
            )

    churner = threading.Thread(target=churn)
    churner.start()
    began: list[float] = [0.0] * len(timeouts)

    def call(index: int) -> list[StoredEvent]:
        began[index] = time.monotonic()
        return store.get_events(f"t{index % 20}", type="policy_violation", wait_timeout_ms=timeouts[index])

    try:
        waiters = Waiters([functools.partial(call, i) for i in range(len(timeouts))])
        assert waiters.join()
    finally:
        stop.set()
        churner.join()
    overruns = []
    for index, result in enumerate(waiters.results):
        assert result == [], (index, result)
        elapsed = waiters.returned_at[index] - began[index]
        assert elapsed >= timeouts[index] / 1000.0, (index, elapsed, timeouts[index])
        overruns.append(elapsed - timeouts[index] / 1000.0)
    print(f"\ntimeouts under load: worst overrun {max(overruns) * 1000:.1f} ms over {len(overruns)} waiters")


# Idle ---------------------------------------------------------------------------------------------


def test_idle_store_has_no_polling_thread_even_after_heavy_waiting(tmp_path: Path) -> None:
    threads = StoreThreads()
    with SQLiteSessionStore(tmp_path / "events.db") as store:
        assert threads() <= 0
        store.append_event(Event("message_sent", "s1"))
        store.get_events("s1", after=1, wait_timeout_ms=0)
        store.get_events("s1", after=1)
        assert threads() <= 0  # queries that do not wait start nothing
        for _ in range(2):  # waiters come and go; the watcher follows them
            crowd = WAITERS // 3
            waiters = Waiters([lambda: store.get_events("s1", after=1, wait_timeout_ms=200)] * crowd)
            assert threads(waiters) <= 1
            assert waiters.join()
            assert waiters.results == [[]] * crowd
            wait_until(lambda: threads() <= 0, 10, "the store's threads to end")


def test_memory_store_never_starts_a_thread() -> None:
    before = set(threading.enumerate())
    with InMemorySessionStore() as store:
        store.append_event(Event("message_sent", "s1"))
        waiters = Waiters([lambda: store.get_events("s1", after=1, wait_timeout_ms=100)] * 50)
        assert waiters.join()
        started = set(threading.enumerate()) - before - set(waiters.threads)
    assert started == set()


_MANY_WAITERS_UNDER_FD_LIMIT = """
import resource, sys, threading
from sqlitestream import Event, SQLiteSessionStore
limit, waiters, sessions = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
threading.stack_size(256 * 1024)
with SQLiteSessionStore(sys.argv[1]) as store:
    results = [None] * waiters
    def wait(i):
        try:
            results[i] = [e.id for e in store.get_events(f"s{i % sessions}", wait_timeout_ms=60_000)]
        except Exception as exc:
            results[i] = f"{type(exc).__name__}: {exc}"
    threads = [threading.Thread(target=wait, args=(i,)) for i in range(waiters)]
    for t in threads:
        t.start()
    store.append_events([Event("message_sent", f"s{n}", id=f"e{n}") for n in range(sessions)])
    for t in threads:
        t.join()
bad = [r for i, r in enumerate(results) if r != [f"e{i % sessions}"]]
print(len(bad), bad[:3])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_many_waiters_fit_in_a_small_file_descriptor_limit(tmp_path: Path) -> None:
    """More waiters, each on its own session, than the process may open files (400 under 256
    in the suite, 2,000 in the long run): every read
    connection costs descriptors, so the store must not open one per waiting thread."""
    assert FD_WAITERS > FD_LIMIT, "too few waiters to show that they share connections"
    printed = python_output(
        _MANY_WAITERS_UNDER_FD_LIMIT,
        str(tmp_path / "events.db"),
        str(FD_LIMIT),
        str(FD_WAITERS),
        str(FD_WAITERS),
        timeout=300,
    )
    assert printed.startswith("0 []"), printed


def test_a_session_replaced_while_nobody_waited_does_not_release_its_next_waiter(tmp_path: Path) -> None:
    """The watcher remembers a session's tip after its waiters leave; if another process
    deletes and refills it meanwhile, the next waiter (who queried the new log) must get the
    next event, not an early ``[]`` as if the delete had happened during its wait."""
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        keeper = Waiters([lambda: store.get_events("keep-watching", wait_timeout_ms=LONG)])
        first = Waiters([lambda: store.get_events("s", wait_timeout_ms=LONG)])
        _append_in_another_process(path, ["s"])  # the watcher sees s at sequence 1
        assert first.join() and len(first.results[0]) == 1
        _delete_in_another_process(path, "s")
        _append_in_another_process(path, ["s"], "tool_call_started")
        _append_in_another_process(path, ["s"], "tool_call_completed")
        assert store.get_latest_sequence("s") == 2
        late = Waiters([lambda: store.get_events("s", after=2, wait_timeout_ms=LONG)])
        _append_in_another_process(path, ["s"], "tool_call_failed")
        assert late.join()
        assert [(e.sequence_number, e.type.value) for e in late.results[0]] == [(3, "tool_call_failed")]
        _append_in_another_process(path, ["keep-watching"])
        assert keeper.join()
