"""Contention: several processes x several threads appending to the same sessions while readers
and long-poll followers run. No busy error, no gap, no duplicate, every event seen exactly once
by a follower in each process. A short run of ``tools/stress.py``, plus thread-level checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from spawned import start_shared_session
from support import processes

from sqlitestream import Event, SQLiteSessionStore, StoreBusyError
from tools import stress


def test_processes_and_threads_contending_lose_and_repeat_nothing(tmp_path: Path) -> None:
    plan = stress.Plan(
        path=str(tmp_path / "stress.db"),
        processes=3,
        threads=3,
        readers=2,
        events_per_thread=120,
        shared_sessions=2,
        cas_per_thread=10,
        busy_timeout_ms=5000,
        follow_timeout_s=60.0,
        seed=5,
    )
    report = stress.run(plan)
    print("\n".join(report.lines()))  # the measured latencies, shown with -s
    assert report.violations == []
    assert report.events == sum(plan.expected_totals().values()) == 3 * 3 * (120 + 10)
    assert report.reads > 0


def test_stress_checks_catch_a_lost_event(tmp_path: Path) -> None:
    """The file check is not vacuous: an acknowledged event that is not stored is reported."""
    path = tmp_path / "events.db"
    plan = stress.Plan(str(path), 1, 1, 0, 2, 1, 0, 5000, 1.0, 0)
    with SQLiteSessionStore(path) as store:
        stored = store.append_event_with_sequence(Event("message_sent", "shared-0", id="a"))
    acked = {"a": ("shared-0", 1), "b": ("shared-0", 2)}
    violations = stress.check_file(plan, acked, {"shared-0": 2, "private-0": 0, "cas": 0})
    assert stored.sequence_number == 1
    assert any("not 1..2" in v for v in violations)


def test_many_threads_on_one_store_object_and_many_store_objects(tmp_path: Path) -> None:
    """Sixteen threads: half share one store object, half each open their own on the same file."""
    path = tmp_path / "events.db"
    shared = SQLiteSessionStore(path)
    errors: list[BaseException] = []
    acked: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def append(own_store: bool, n: int) -> None:
        store = SQLiteSessionStore(path) if own_store else shared
        try:
            start.wait()
            for index in range(40):
                session_id = f"s{index % 2}"
                if index % 4 == 3:
                    results = store.append_events([Event("message_sent", session_id) for _ in range(3)])
                else:
                    results = [store.append_event_with_sequence(Event("message_sent", session_id))]
                with lock:
                    acked.extend((e.session_id, e.sequence_number or 0) for e in results)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if own_store:
                store.close()

    threads = [threading.Thread(target=append, args=(n % 2 == 0, n)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [e for e in errors if isinstance(e, StoreBusyError)]
    assert errors == []
    for session_id in ("s0", "s1"):
        seqs = sorted(seq for sid, seq in acked if sid == session_id)
        assert seqs == list(range(1, len(seqs) + 1))
        assert [e.sequence_number for e in shared.get_events(session_id)] == seqs
        assert shared.get_latest_sequence(session_id) == len(seqs)
    assert len(acked) == 16 * (30 + 10 * 3)
    shared.close()


@pytest.mark.parametrize("busy_timeout_ms", [0, 50])
def test_short_busy_timeout_gives_busy_error_or_success_never_partial(
    tmp_path: Path, busy_timeout_ms: int
) -> None:
    """With a tiny busy timeout some appends may fail with StoreBusyError; each failed batch is
    absent, each acknowledged one present, and sequences stay gap-free."""
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    acked: list[str] = []
    failed: list[list[str]] = []
    others: list[BaseException] = []
    lock = threading.Lock()

    def open_store() -> SQLiteSessionStore:
        # Opening reads the schema, so with a tiny timeout it may meet a lock too: that is a
        # StoreBusyError as well (nothing written), and the caller may simply try again.
        deadline = time.monotonic() + 30
        while True:
            try:
                return SQLiteSessionStore(path, busy_timeout_ms=busy_timeout_ms)
            except StoreBusyError:
                if time.monotonic() > deadline:
                    raise

    def append(n: int) -> None:
        with open_store() as store:
            for index in range(30):
                batch = [Event("message_sent", "s1", id=f"t{n}-{index}-{k}") for k in range(3)]
                try:
                    store.append_events(batch)
                except StoreBusyError:
                    with lock:
                        failed.append([e.id for e in batch])
                except BaseException as exc:
                    others.append(exc)
                else:
                    with lock:
                        acked.extend(e.id for e in batch)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert others == []
    with SQLiteSessionStore(path) as store:
        events = store.get_events("s1")
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    stored = {e.id for e in events}
    assert stored == set(acked)
    assert all(not stored & set(batch) for batch in failed)


def test_processes_starting_one_session_id_have_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    SQLiteSessionStore(path).close()  # created up front, so the race is only over the session
    context = processes()
    ready, go, outcomes = context.Semaphore(0), context.Event(), context.Queue()
    children = [
        context.Process(target=start_shared_session, args=(str(path), f"agent-{n}", ready, go, outcomes))
        for n in range(6)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:  # each has opened the store and waits: the race starts together
            assert ready.acquire(timeout=60)
        go.set()
        results = sorted(outcomes.get(timeout=60) for _ in children)
    finally:
        go.set()  # a failed wait above must not leave the children waiting for it
        for child in children:
            child.join(60)
    assert [child.exitcode for child in children] == [0] * 6
    assert results == ["conflict"] * 5 + ["created"]
    with SQLiteSessionStore(path) as store:
        assert len(store.get_events("ses-shared")) == 1
