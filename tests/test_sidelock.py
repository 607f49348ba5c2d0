"""The side lock (``<db>-lock``): contended writers queue on it before SQLite's write lock.

It is a fairness aid only, so these tests check correctness, not timing: the file and its
permissions, that a stopped holder never blocks a writer past its busy timeout, that an
interrupt at any moment of a contended write leaves nothing held, and that writers that do not
take it are still served by SQLite's own lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from support import INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED, python_output
from test_faults import _gap_free, _integrity

from sqlitestream import Event, SQLiteSessionStore, StoreBusyError
from tools import interrupts
from tools.interrupts import side_lock_free

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and SIGSTOP semantics")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_side_lock_file_is_created_beside_the_store_with_the_umask(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "events.db"
    previous = os.umask(umask)
    try:
        SQLiteSessionStore(path).close()
    finally:
        os.umask(previous)
    # Read and write for those who may write the store (here only its owner), less the umask.
    assert os.stat(path).st_mode & 0o777 == 0o644 & ~umask
    assert os.stat(f"{path}-lock").st_mode & 0o777 == 0o600 & ~umask


def test_read_only_and_memory_stores_take_no_side_lock(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
    os.unlink(f"{path}-lock")
    with SQLiteSessionStore(path, readonly=True) as reader:
        assert reader.get_latest_sequence("s1") == 1
    assert not os.path.exists(f"{path}-lock")
    before = set(os.listdir(tmp_path))
    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with SQLiteSessionStore(":memory:") as memory:
            memory.append_event(Event("message_sent", "s1"))
    finally:
        os.chdir(old_cwd)
    assert set(os.listdir(tmp_path)) == before


def test_closing_the_store_releases_and_closes_the_side_lock(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path)
    store.append_event(Event("message_sent", "s1"))
    store.close()
    assert side_lock_free(path, within_s=0.0)


# A stopped process holding the side lock ------------------------------------------------------------

_HOLDER = """
import fcntl, os, sys, apsw
fd = os.open(sys.argv[1] + "-lock", os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
if sys.argv[2] == "both":
    conn = apsw.Connection(sys.argv[1])
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO streams (session_id, latest_seq) VALUES ('holder', 99)")
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def stopped_holder(tmp_path: Path) -> Iterator[Any]:
    """Start a process that takes the side lock (and, with "both", SQLite's write lock), then
    SIGSTOP it, as a stopped or frozen writer would be."""
    processes: list[subprocess.Popen[str]] = []

    def start(path: Path, what: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path), what],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        os.kill(process.pid, signal.SIGSTOP)
        return process

    try:
        yield start
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _append_in_thread(store: SQLiteSessionStore, event: Event) -> list[object]:
    """Append from a thread and wait for it (60 s, far past any busy timeout used here): the
    append's result or exception, or [] if it never returned."""
    outcome: list[object] = []

    def append() -> None:
        try:
            outcome.append(store.append_event_with_sequence(event))
        except BaseException as exc:  # reported to the test
            outcome.append(exc)

    thread = threading.Thread(target=append, daemon=True)
    thread.start()
    thread.join(60)
    return outcome


def test_stopped_holder_of_both_locks_gives_busy_error_not_a_hang(
    tmp_path: Path, stopped_holder: Any
) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=200)
    try:
        store.append_event(Event("message_sent", "s1", id="before"))
        holder = stopped_holder(path, "both")
        outcome = _append_in_thread(store, Event("message_sent", "s1", id="blocked"))
        assert outcome, "the append blocked past its busy timeout behind a stopped side-lock holder"
        assert isinstance(outcome[0], StoreBusyError), outcome[0]
        assert [e.id for e in store.get_events("s1")] == ["before"]
        holder.kill()
        holder.wait()
        # The waiter thread still blocked in flock for the abandoned append gets the lock now
        # and lets it go; the store writes normally.
        outcome = _append_in_thread(store, Event("message_sent", "s1", id="after"))
        assert [getattr(e, "sequence_number", e) for e in outcome] == [2]
        assert store.get_latest_sequence("holder") == 0
        assert side_lock_free(path, within_s=10.0)
    finally:
        store.close()
    assert _integrity(path) == ["ok"]


def test_stopped_holder_of_only_the_side_lock_does_not_stop_writes(
    tmp_path: Path, stopped_holder: Any
) -> None:
    """SQLite's lock is the truth: with it free, writes succeed whatever the side lock does,
    even when SQLite was busy at the first attempt (the writer then waits for the side lock
    at most its busy timeout, and goes on to SQLite's lock without it)."""
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=300)
    try:
        stopped_holder(path, "side")
        assert store.append_event_with_sequence(Event("message_sent", "s1")).sequence_number == 1
        blocker = apsw.Connection(str(path))
        blocker.execute("BEGIN IMMEDIATE")
        releaser = threading.Timer(0.05, lambda: blocker.execute("ROLLBACK"))
        releaser.start()
        try:
            outcome = _append_in_thread(store, Event("message_sent", "s1"))
        finally:
            releaser.join()
            blocker.close()
        assert [getattr(e, "sequence_number", e) for e in outcome] == [2]
    finally:
        store.close()


def test_a_busy_timeout_of_zero_fails_at_once_when_both_locks_are_held(
    tmp_path: Path, stopped_holder: Any
) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path, busy_timeout_ms=0) as store:
        store.append_event(Event("message_sent", "s1"))
        stopped_holder(path, "both")
        outcome = _append_in_thread(store, Event("message_sent", "s1"))
        assert outcome and isinstance(outcome[0], StoreBusyError), outcome


# Interrupts during a contended write ------------------------------------------------------------------


@INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED
def test_keyboard_interrupts_during_contended_writes_leave_nothing_held(tmp_path: Path) -> None:
    """Every write meets both locks held (a failed first attempt, a wait for the side lock in
    its waiter thread, then SQLite's busy handler) and a real SIGALRM raising KeyboardInterrupt
    strikes at a random moment of it; afterwards nothing is held (see tools/interrupts.py)."""
    summary = interrupts.run(tmp_path / "events.db", writes=400, seed=2, contended=True)
    assert summary.violations == []
    assert summary.interrupted > 40, summary


# An audit hook (sys.addaudithook) runs Python code inside fcntl.flock, before its system call,
# so a signal handler can raise there. The hook here raises KeyboardInterrupt once, at the main
# thread's n-th unlock of the side lock as the write ends (a contended write lets go of two file
# descriptions), as such a handler would; the child prints "free" if another file description
# can take the lock at once afterwards.
_INTERRUPTED_UNLOCK = """
import fcntl, os, sys, threading
import apsw
from sqlitestream import Event, SQLiteSessionStore
path, contended, unlock = sys.argv[1], sys.argv[2] == "contended", int(sys.argv[3])
store = SQLiteSessionStore(path, busy_timeout_ms=30_000)
store.append_event(Event("message_sent", "s1"))
armed = False
queued = threading.Event()  # the write has reached the side lock: the locks may go
def interrupt_the_unlock(event, args):
    global armed, unlock
    if not armed or event != "fcntl.flock":
        return
    if threading.current_thread() is not threading.main_thread():
        if args[1] == fcntl.LOCK_EX:  # the store's waiter thread queues on it
            queued.set()
        return
    if args[1] == fcntl.LOCK_EX | fcntl.LOCK_NB and not contended:  # the store takes it
        queued.set()
    if args[1] == fcntl.LOCK_UN:
        unlock -= 1
        if unlock == 0:
            armed = False
            raise KeyboardInterrupt
sys.addaudithook(interrupt_the_unlock)
# SQLite's write lock held until the write waits, so it takes the side lock: at once, or when
# "contended" (held here too) through the store's waiter thread and its own description.
sqlite_holder = apsw.Connection(path)
sqlite_holder.execute("BEGIN IMMEDIATE")
other = os.open(path + "-lock", os.O_RDONLY)
if contended:
    fcntl.flock(other, fcntl.LOCK_EX)
def let_go():
    queued.wait(30)
    if contended:
        fcntl.flock(other, fcntl.LOCK_UN)
    sqlite_holder.execute("ROLLBACK")
releaser = threading.Thread(target=let_go)
releaser.start()
armed = True
try:
    store.append_event(Event("message_sent", "s1"))
except KeyboardInterrupt:
    print("interrupted")
releaser.join()
try:
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("held")
"""


@pytest.mark.parametrize(("contended", "unlock"), [("uncontended", 1), ("contended", 1), ("contended", 2)])
def test_an_interrupt_inside_the_side_locks_unlock_still_lets_it_go(
    tmp_path: Path, contended: str, unlock: int
) -> None:
    output = python_output(_INTERRUPTED_UNLOCK, str(tmp_path / "events.db"), contended, str(unlock))
    assert output.split() == ["interrupted", "free"], output


# Writers with and without the side lock ----------------------------------------------------------------


def test_writers_without_the_side_lock_are_still_serialised_by_sqlite(tmp_path: Path) -> None:
    """A plain SQLite client bumping a counter row while store objects append under contention:
    SQLite's own lock keeps every sequence gap-free and the counter exact."""
    path = tmp_path / "events.db"
    stores = [SQLiteSessionStore(path) for _ in range(3)]
    plain = apsw.Connection(str(path))
    plain.set_busy_timeout(30_000)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def append(store: SQLiteSessionStore, n: int) -> None:
        try:
            start.wait()
            for _ in range(150):
                store.append_event_with_sequence(Event("message_sent", f"s{n}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def bump() -> None:
        try:
            start.wait()
            for _ in range(150):
                with plain:  # a plain SQLite transaction, no side lock
                    plain.execute(
                        "INSERT INTO streams (session_id, latest_seq) VALUES ('plain', 1) "
                        "ON CONFLICT (session_id) DO UPDATE SET latest_seq = latest_seq + 1"
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(s, n)) for n, s in enumerate(stores)]
    threads.append(threading.Thread(target=bump))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        _gap_free(stores[0], ["s0", "s1", "s2"])
        assert [stores[0].get_latest_sequence(f"s{n}") for n in range(3)] == [150, 150, 150]
        assert stores[0].get_latest_sequence("plain") == 150
    finally:
        plain.close()
        for store in stores:
            store.close()
