"""``SQLiteSessionStore.backup``: a consistent, complete copy of a live store, never a partial
destination file. Real files, a real writer process, real signals."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spawned import append_until_stopped
from support import child_env, processes

from sqlitestream import (
    Event,
    Run,
    Session,
    SQLiteSessionStore,
    StorageError,
    StoreClosedError,
    ValidationError,
)

DEADLINE = 60.0
SESSIONS = [f"w{i}" for i in range(4)]


def _fill(store: SQLiteSessionStore, events: int, *, payload: int = 800) -> None:
    """``events`` events over the SESSIONS, about ``payload`` bytes each (many pages)."""
    batch = [
        Event(type="message_sent", session_id=SESSIONS[i % len(SESSIONS)], data={"text": "x" * payload})
        for i in range(events)
    ]
    store.append_events(batch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    with SQLiteSessionStore(tmp_path / "live.db") as opened:
        _fill(opened, 3000)  # ~3 MB: a dozen steps of 256 pages
        yield opened


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    """A live store of a few events, for the checks made before anything is copied (a store of
    many pages is ``store``)."""
    with SQLiteSessionStore(tmp_path / "live.db") as opened:
        _fill(opened, len(SESSIONS))
        yield opened


def _leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".backup-tmp"))


def _all_events(store: SQLiteSessionStore, session_id: str) -> list[Any]:
    return [(e.id, e.sequence_number, e.data) for e in store.get_events(session_id)]


# A complete store -------------------------------------------------------------------------------


def test_backup_is_a_complete_store_with_sessions_runs_and_events(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "live.db") as live:
        live.save_session(Session(id="w0", agent_id="agent"))
        live.save_run(Run(session_id="w0", id="r1"))
        _fill(live, 50)
        written = live.backup(tmp_path / "copy.db")
        assert written == str(tmp_path / "copy.db")
        with SQLiteSessionStore(written, readonly=True) as copy:
            assert copy.list_sessions() == live.list_sessions()
            assert copy.list_runs("w0") == live.list_runs("w0")
            for session_id in SESSIONS:
                assert _all_events(copy, session_id) == _all_events(live, session_id)
            assert copy.check_integrity().ok
            assert copy.store_info().schema_version == SQLiteSessionStore.SCHEMA_VERSION
    # It is a store like any other: writable, and its counters go on from where they stood.
    with SQLiteSessionStore(written) as copy:
        assert (
            copy.append_event_with_sequence(Event(type="message_sent", session_id="w1")).sequence_number == 14
        )


def test_backup_returns_the_absolute_path_of_a_relative_dest(
    small_store: SQLiteSessionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert small_store.backup("relative.db") == str(tmp_path / "relative.db")


def test_backup_holds_commits_still_in_the_wal(store: SQLiteSessionStore, tmp_path: Path) -> None:
    assert os.path.getsize(store.path + "-wal") > 0  # the fixture's events are not checkpointed
    store.backup(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db-wal").exists()
    with SQLiteSessionStore(tmp_path / "copy.db", readonly=True) as copy:
        assert sum(stream.event_count for stream in copy.list_streams()) == 3000


def test_backup_of_a_read_only_store(store: SQLiteSessionStore, tmp_path: Path) -> None:
    with SQLiteSessionStore(store.path, readonly=True) as reader:
        reader.backup(tmp_path / "copy.db")
    with SQLiteSessionStore(tmp_path / "copy.db", readonly=True) as copy:
        assert copy.get_latest_sequence("w0") == 750 and copy.check_integrity().ok


def test_backup_of_an_in_memory_store_is_a_store_file(tmp_path: Path) -> None:
    with SQLiteSessionStore(":memory:") as memory:
        _fill(memory, 40)
        memory.backup(tmp_path / "kept.db")
    with SQLiteSessionStore(tmp_path / "kept.db") as kept:
        assert [e.sequence_number for e in kept.get_events("w3")] == list(range(1, 11))
        assert kept.check_integrity().ok


def test_backup_of_a_closed_store_raises(tmp_path: Path) -> None:
    closed = SQLiteSessionStore(tmp_path / "live.db")
    closed.close()
    with pytest.raises(StoreClosedError):
        closed.backup(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists() and _leftovers(tmp_path) == []


def test_progress_counts_pages_up_to_the_total(store: SQLiteSessionStore, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    store.backup(tmp_path / "copy.db", on_progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == [min(256 * n, total) for n in range(1, len(calls) + 1)]
    assert len(calls) > 3
    with SQLiteSessionStore(tmp_path / "copy.db", readonly=True) as copy:
        page_size = os.path.getsize(copy.path) // total
        assert page_size * total == os.path.getsize(copy.path)


# Consistent while another process writes ------------------------------------------------------


def _wait_for_more(store: SQLiteSessionStore, seen: int) -> int:
    """The total of the sessions' latest sequences, once it has moved past ``seen``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        total = sum(store.get_latest_sequence(session_id) for session_id in SESSIONS)
        if total > seen:
            return total
        assert time.monotonic() < deadline, "the writer process committed nothing"


def test_backup_while_another_process_appends_is_a_gap_free_prefix(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    context = processes()
    stop, started = context.Event(), context.Event()
    writer = context.Process(target=append_until_stopped, args=(store.path, SESSIONS, 8, 200, stop, started))
    writer.start()
    seen = [0]

    def on_progress(done: int, total: int) -> None:
        # Between every two steps of the copy the other process commits more.
        seen[0] = _wait_for_more(store, seen[0])

    try:
        assert started.wait(DEADLINE)
        store.backup(tmp_path / "copy.db", on_progress=on_progress)
    finally:
        stop.set()
        writer.join(DEADLINE)
    assert writer.exitcode == 0
    with SQLiteSessionStore(tmp_path / "copy.db", readonly=True) as copy:
        assert copy.check_integrity().ok
        copied = {session_id: _all_events(copy, session_id) for session_id in SESSIONS}
    final = {session_id: _all_events(store, session_id) for session_id in SESSIONS}
    for session_id in SESSIONS:
        events = copied[session_id]
        assert [sequence for _, sequence, _ in events] == list(range(1, len(events) + 1))
        assert events == final[session_id][: len(events)]
    assert sum(map(len, copied.values())) < sum(map(len, final.values()))  # written on after it


# Never a partial destination ---------------------------------------------------------------------


def test_a_failing_progress_callback_leaves_no_dest_and_no_temporary_file(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        store.backup(tmp_path / "copy.db", on_progress=fail)
    assert not (tmp_path / "copy.db").exists() and _leftovers(tmp_path) == []
    store.append_event_with_sequence(Event(type="message_sent", session_id="w0"))  # still usable
    assert store.get_latest_sequence("w0") == 751


def test_a_dest_directory_that_disappears_leaves_no_dest(store: SQLiteSessionStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def remove_directory(done: int, total: int) -> None:
        if out.exists():
            shutil.rmtree(out)

    with pytest.raises(StorageError, match="back up"):
        store.backup(out / "copy.db", on_progress=remove_directory)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["live.db", "live.db-lock", "live.db-shm", "live.db-wal"]


def test_a_missing_dest_directory_is_a_storage_error(small_store: SQLiteSessionStore, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"the directory '.*/nope' does not exist"):
        small_store.backup(tmp_path / "nope" / "copy.db")
    assert not (tmp_path / "nope").exists()


_BACKUP_UNTIL_SIGNALLED = """
import sys
from sqlitestream import SQLiteSessionStore

def on_progress(done, total):
    print("copying", flush=True)
    sys.stdin.readline()  # wait here, mid-backup, for the signal

with SQLiteSessionStore(sys.argv[1]) as store:
    try:
        store.backup(sys.argv[2], on_progress=on_progress)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _backup_until_signalled(store: SQLiteSessionStore, dest: Path, signum: int) -> int:
    env = child_env()
    child = subprocess.Popen(
        [sys.executable, "-c", _BACKUP_UNTIL_SIGNALLED, store.path, str(dest)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "copying\n"  # blocks until the copy is under way
        child.send_signal(signum)
        return child.wait(DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_interrupted_backup_leaves_no_dest_and_no_temporary_file(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    assert _backup_until_signalled(store, tmp_path / "copy.db", signal.SIGINT) == 130
    assert not (tmp_path / "copy.db").exists() and _leftovers(tmp_path) == []


def test_a_killed_backup_leaves_no_dest(store: SQLiteSessionStore, tmp_path: Path) -> None:
    assert _backup_until_signalled(store, tmp_path / "copy.db", signal.SIGKILL) == -signal.SIGKILL
    assert not (tmp_path / "copy.db").exists()
    # Only a kill can leave the temporary file, named so that it is recognisably one.
    assert all(name.startswith(".copy.db.") for name in _leftovers(tmp_path))
    assert store.check_integrity().ok


# What a backup refuses or replaces ---------------------------------------------------------------


def test_an_existing_dest_is_refused_and_left_alone(small_store: SQLiteSessionStore, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    dest.write_text("keep me")
    with pytest.raises(ValidationError, match="already exists.*overwrite=True"):
        small_store.backup(dest)
    assert dest.read_text() == "keep me" and _leftovers(tmp_path) == []


def test_overwrite_replaces_dest_and_keeps_its_permissions(store: SQLiteSessionStore, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    dest.write_text("an older backup")
    dest.chmod(0o600)
    store.backup(dest, overwrite=True)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with SQLiteSessionStore(dest, readonly=True) as copy:
        assert copy.get_latest_sequence("w2") == 750


def test_a_new_dest_gets_a_new_store_files_mode(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        with SQLiteSessionStore(tmp_path / "live.db") as live:
            live.backup(tmp_path / "copy.db")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "copy.db").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "live.db").stat().st_mode) and mode & 0o027 == 0


def test_a_dest_with_a_non_empty_wal_beside_it_is_refused(
    small_store: SQLiteSessionStore, tmp_path: Path
) -> None:
    (tmp_path / "copy.db-wal").write_bytes(b"frames of another store")
    with pytest.raises(ValidationError, match="copy.db-wal"):
        small_store.backup(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()


def test_a_backup_that_was_opened_read_only_can_be_overwritten(
    small_store: SQLiteSessionStore, tmp_path: Path
) -> None:
    small_store.backup(tmp_path / "copy.db")
    with SQLiteSessionStore(tmp_path / "copy.db", readonly=True) as copy:
        copy.list_streams()  # may leave an empty -wal and a -shm beside it
    small_store.backup(tmp_path / "copy.db", overwrite=True)


@pytest.mark.parametrize("name", ["live.db", "live.db-wal", "live.db-lock", "link.db"])
def test_the_store_itself_is_never_a_dest(small_store: SQLiteSessionStore, tmp_path: Path, name: str) -> None:
    os.symlink(small_store.path, tmp_path / "link.db")
    with pytest.raises(ValidationError, match="the store itself"):
        small_store.backup(tmp_path / name, overwrite=True)
    assert small_store.check_integrity().ok


@pytest.mark.parametrize("dest", [None, 3, "", ":memory:", "a\x00b"])
def test_a_dest_that_is_not_a_file_path_is_refused(small_store: SQLiteSessionStore, dest: Any) -> None:
    with pytest.raises(ValidationError, match="dest"):
        small_store.backup(dest)


def test_overwrite_must_be_a_bool(small_store: SQLiteSessionStore, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="overwrite"):
        small_store.backup(tmp_path / "copy.db", overwrite="yes")  # type: ignore[arg-type]
