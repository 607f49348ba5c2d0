"""Retention beyond the contract kit: the SQLite file giving space back, compacting an older
store, trims racing appends in threads and in another process, long trims in several
transactions, and the ``trim`` and ``compact`` commands."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner, Result
from spawned import append_one_by_one
from support import processes

from sqlitestream import Event, InMemorySessionStore, SQLiteSessionStore
from sqlitestream.cli import cli
from sqlitestream.sqlite import retention as sqlite_retention
from sqlitestream.testing import Background


def fill(store: SQLiteSessionStore, count: int, session_id: str = "s1", size: int = 200) -> None:
    for start in range(0, count, 1000):
        store.append_events(
            [
                Event(session_id=session_id, type="message_sent", data={"x": "y" * size})
                for _ in range(min(1000, count - start))
            ]
        )


def auto_vacuum(path: Path) -> int:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(conn.pragma("auto_vacuum"))
    finally:
        conn.close()


def test_trimming_most_of_a_store_shrinks_its_file(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteSessionStore(path) as store:
        fill(store, 5000)
    full = os.path.getsize(path)
    with SQLiteSessionStore(path) as store:
        assert store.trim_session("s1", keep_last=500) == 4500
    assert os.path.getsize(path) < full * 0.2
    with SQLiteSessionStore(path) as store:
        assert store.get_stream_info("s1").first_sequence == 4501
        assert store.check_integrity().ok


def test_compact_switches_an_older_store_to_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteSessionStore(path) as store:
        fill(store, 3000)
    conn = apsw.Connection(str(path))  # as a store made before incremental vacuum was
    conn.pragma("auto_vacuum", 0)
    conn.execute("VACUUM")
    conn.close()
    assert auto_vacuum(path) == 0
    with SQLiteSessionStore(path) as store:
        store.trim_session("s1", keep_last=100)
    trimmed_size = os.path.getsize(path)
    with SQLiteSessionStore(path) as store:
        store.compact()
        assert [event.sequence_number for event in store.get_events("s1", limit=1)] == [2901]
    assert auto_vacuum(path) == 2
    assert os.path.getsize(path) < trimmed_size * 0.5


def test_a_long_trim_goes_in_several_transactions_and_removes_exactly_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_retention, "TRIM_CHUNK", 7)  # the chunk boundaries, without 100k events
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        fill(store, 50, size=1)
        assert store.trim_session("s1", keep_last=6) == 44
        assert [event.sequence_number for event in store.get_events("s1")] == list(range(45, 51))
        assert store.check_integrity().ok


def test_a_store_trim_shares_transactions_between_sessions_and_reports_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_retention, "TRIM_CHUNK", 7)
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        sizes = {"a": 5, "b": 20, "c": 3, "d": 1}
        for session_id, size in sizes.items():
            fill(store, size, session_id, size=1)
        progress: list[tuple[int, int]] = []
        removed = store.trim_store(
            keep_last=1, on_progress=lambda done, total: progress.append((done, total))
        )
        assert removed == sum(size - 1 for size in sizes.values())
        assert progress == [(n, 4) for n in range(1, 5)]
        for session_id, size in sizes.items():
            assert [e.sequence_number for e in store.get_events(session_id)] == [size]
        assert store.check_integrity().ok


def test_trims_racing_appends_in_threads_keep_every_log_gap_free(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        stop = threading.Event()
        appended: dict[str, list[int]] = {"a": [], "b": []}

        def append(session_id: str) -> None:
            for _ in range(400):
                appended[session_id].append(
                    store.append_event(Event(session_id=session_id, type="message_sent")).sequence_number or 0
                )
            stop.set()

        writers = [threading.Thread(target=append, args=(session_id,)) for session_id in appended]
        for writer in writers:
            writer.start()
        trims = 0
        while not stop.is_set() or trims == 0:
            trims += store.trim_store(keep_last=10)
        for writer in writers:
            writer.join()
        for session_id, sequences in appended.items():
            assert sequences == list(range(1, 401))
            retained = [event.sequence_number for event in store.get_events(session_id)]
            assert retained == list(range(retained[0] or 0, 401))
        assert store.check_integrity().ok


def test_a_trim_in_one_process_and_appends_in_another_agree(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteSessionStore(path) as store:
        fill(store, 100, size=1)
        child = processes().Process(target=append_one_by_one, args=(str(path), "s1", 100))
        child.start()
        trimmed_at = 100
        while child.is_alive():  # a trim each time the child has appended five more
            page = store.get_events("s1", after=trimmed_at + 4, limit=1, wait_timeout_ms=1000)
            if page:
                store.trim_session("s1", keep_last=5)
                trimmed_at = page[0].sequence_number or trimmed_at
        child.join()
        assert trimmed_at > 100
        assert child.exitcode == 0
        store.trim_session("s1", keep_last=5)
        assert [event.sequence_number for event in store.get_events("s1")] == list(range(196, 201))
        assert store.append_event(Event(session_id="s1", type="message_sent")).sequence_number == 201


def test_the_memory_store_reads_cursors_across_its_trimmed_layout() -> None:
    with InMemorySessionStore() as store:
        store.append_events([Event(session_id="s1", type="message_sent") for _ in range(10)])
        store.trim_session("s1", before_sequence=6)
        assert [e.sequence_number for e in store.get_events("s1", after=7, before=10)] == [8, 9]
        assert [e.sequence_number for e in store.get_events("s1", after=0, limit=2)] == [6, 7]


# The commands ----------------------------------------------------------------------------------


def run(db: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    with SQLiteSessionStore(path) as store:
        for session_id in ("a", "b"):
            fill(store, 20, session_id, size=1)
    return path


def test_trim_dry_run_counts_on_a_read_only_open(db: Path) -> None:
    result = run(db, "trim", "--keep-last", "5", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would remove 30 event(s) from 2 session(s)" in result.stdout
    with SQLiteSessionStore(db, readonly=True) as store:
        assert store.get_stream_info("a").event_count == 20


def test_trim_applies_a_policy_and_one_session(db: Path) -> None:
    result = run(db, "trim", "--keep-last", "5", "--no-progress")
    assert result.exit_code == 0 and "removed 30 event(s) from 2 session(s)" in result.stdout
    result = run(db, "trim", "--session", "a", "--before-sequence", "18")
    assert result.exit_code == 0 and "removed 2 event(s) from session a" in result.stdout
    with SQLiteSessionStore(db, readonly=True) as store:
        assert store.get_stream_info("a").first_sequence == 18
        assert store.get_stream_info("b").first_sequence == 16


def test_trim_older_than_takes_an_age(db: Path) -> None:
    result = run(db, "trim", "--older-than", "1d")
    assert result.exit_code == 0 and "removed 0 event(s)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say what to trim"),
        (("--older-than", "30 days"), "not an age"),
        (("--older-than", "99999999999w"), "too long"),
        (("--keep-last", "-1"), "keep-last"),
        (("--before-sequence", "3"), "needs --session"),
        (("--session", "", "--keep-last", "1"), "session_id"),
    ],
)
def test_trim_refuses_bad_options_and_removes_nothing(db: Path, args: tuple[str, ...], message: str) -> None:
    result = run(db, "trim", *args)
    assert result.exit_code in (1, 2) and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with SQLiteSessionStore(db, readonly=True) as store:
        assert store.get_stream_info("a").event_count == 20


def test_compact_reports_the_file_size(db: Path) -> None:
    result = run(db, "compact")
    assert result.exit_code == 0 and "compacted" in result.stdout and "bytes" in result.stdout


def test_sessions_lists_the_first_retained_sequence(db: Path) -> None:
    run(db, "trim", "--keep-last", "3")
    result = run(db, "sessions", "--json")
    assert '"first_sequence":18' in result.stdout.replace(" ", "")


def test_a_trim_through_another_store_object_does_not_release_a_waiter(tmp_path: Path) -> None:
    # Each round: a waiter on a session, a trim of all its events through another store
    # object, then a probe append that wakes a second waiter only once this store's watcher has
    # looked at the file after the trim; only then the append the first waiter must get. A
    # round where a waiter registers late proves nothing, but cannot fail either; of 20 rounds
    # most have the order that a watcher taking the trim for a new log fails.
    path = tmp_path / "store.db"
    with SQLiteSessionStore(path) as waiting, SQLiteSessionStore(path) as trimming:
        for n in range(20):
            session_id, probe = f"s{n}", f"probe{n}"
            trimming.append_events([Event(session_id=session_id, type="message_sent") for _ in range(3)])
            waiter = Background(waiting.get_events, session_id, after=3, wait_timeout_ms=60_000)
            prober = Background(waiting.get_events, probe, wait_timeout_ms=60_000)
            trimming.trim_session(session_id, keep_last=0)  # the first (and the latest) event go
            trimming.append_event(Event(session_id=probe, type="message_sent"))
            assert len(prober.result()) == 1
            trimming.append_event(Event(session_id=session_id, type="message_sent", id=f"after-trim-{n}"))
            assert [event.id for event in waiter.result()] == [f"after-trim-{n}"]
