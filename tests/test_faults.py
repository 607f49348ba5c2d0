"""Faults: a full disk, a lock held by another process, a KeyboardInterrupt at any moment of a write,
read-only files and directories. Each gives a clear ``StorageError`` (or lets the caller's own
exception through), writes nothing partial, and the store works again once the cause is gone.

(Foreign, garbage, truncated and newer-version files are in ``test_sqlite_store.py``.)
"""

from __future__ import annotations

import errno
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from support import INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED

import tools.interrupts as interrupts
from sqlitestream import (
    Event,
    EventIdConflictError,
    Session,
    SQLiteSessionStore,
    StorageError,
    StoreBusyError,
)

_SQLITE_FULL = 13


def _dump(path: Path) -> dict[str, list[Any]]:
    """Every row of every table, read with a connection of our own."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1, 2').fetchall() for t in tables}
    finally:
        conn.close()


def _integrity(path: Path) -> list[str]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def _gap_free(store: SQLiteSessionStore, session_ids: list[str]) -> None:
    for session_id in session_ids:
        seqs = [e.sequence_number for e in store.get_events(session_id)]
        assert seqs == list(range(1, len(seqs) + 1)), (session_id, seqs)
        assert store.get_latest_sequence(session_id) == len(seqs)


# Real interrupts at random moments -------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED
def test_keyboard_interrupts_at_random_moments_leave_every_write_whole_and_nothing_held(
    tmp_path: Path,
) -> None:
    """A real SIGALRM raising KeyboardInterrupt at a random moment of each of 3,000 single
    appends and batches: each write is whole or absent, and after each interrupted one another
    store object, another thread and a fresh side-lock descriptor all get on at once (the checks
    are in tools/interrupts.py; its long version takes --writes and --seed)."""
    summary = interrupts.run(tmp_path / "events.db", writes=3000, seed=1)
    assert summary.violations == []
    assert summary.interrupted > 300, summary  # the alarms did strike inside writes


# A full disk ----------------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of our own, so filling it hurts nothing else."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root on Linux to mount a small tmpfs")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"mount is not permitted here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path, name: str = "filler") -> Path:
    """Write to a file until the file system is full; the file holds the space until deleted."""
    filler = directory / name
    chunk = b"\xff" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True, capture_output=True)


def test_full_disk_raises_storage_error_writes_nothing_and_recovers(small_fs: Path) -> None:
    path = small_fs / "events.db"
    store = SQLiteSessionStore(path)
    acked = {
        e.id
        for e in store.append_events([Event("message_sent", "s1", data={"x": "a" * 500}) for _ in range(20)])
    }
    filler = _fill(small_fs)
    failures: list[StorageError] = []
    refused: set[str] = set()
    for _round_no in range(200):  # fill whatever room is left, then keep trying
        batch = [Event("message_sent", f"s{i % 2}", data={"x": "b" * 3000}) for i in range(8)]
        try:
            acked |= {e.id for e in store.append_events(batch)}
        except StorageError as exc:
            failures.append(exc)
            refused |= {e.id for e in batch}
            if len(failures) >= 5:
                break
        single = Event("message_sent", "s1", data={"x": "c" * 3000})
        try:
            acked.add(store.append_event_with_sequence(single).id)
        except StorageError as exc:
            failures.append(exc)
            refused.add(single.id)
    assert len(failures) >= 5, "the disk never filled up"
    assert all(not isinstance(exc, StoreBusyError) for exc in failures)
    assert all(exc.sqlite_code is not None and exc.sqlite_code & 0xFF == _SQLITE_FULL for exc in failures)
    assert all(exc.sqlstate is None for exc in failures)  # a PostgreSQL field
    assert all("full" in str(exc) for exc in failures)

    stored = {e.id for sid in ("s0", "s1") for e in store.get_events(sid)}  # reads work while full
    assert acked <= stored
    assert not refused & stored, "a refused write left events behind"
    _gap_free(store, ["s0", "s1"])

    filler.unlink()  # space is back: the same store object writes again
    again = store.append_events([Event("message_sent", "s1", id=f"after-{n}") for n in range(10)])
    assert [e.sequence_number for e in again] == list(
        range(store.get_latest_sequence("s1") - 9, store.get_latest_sequence("s1") + 1)
    )
    _gap_free(store, ["s0", "s1"])
    store.close()
    assert _integrity(path) == ["ok"]
    with SQLiteSessionStore(path) as reopened:
        assert acked | {e.id for e in again} <= {
            e.id for sid in ("s0", "s1") for e in reopened.get_events(sid)
        }


def test_full_disk_when_creating_a_store_is_a_clear_error_and_retrying_works(small_fs: Path) -> None:
    filler = _fill(small_fs)
    path = small_fs / "new.db"
    with pytest.raises(StorageError, match="full|disk|space"):
        SQLiteSessionStore(path)
    filler.unlink()
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
        assert store.get_latest_sequence("s1") == 1
    assert _integrity(path) == ["ok"]


# A lock held by another process ---------------------------------------------------------------------

_LOCK_HOLDER = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO streams (session_id, latest_seq) VALUES ('holder', 99)")
print("locked", flush=True)
if sys.stdin.readline().strip() == "commit":
    conn.execute("COMMIT")
else:
    conn.execute("ROLLBACK")
print("released", flush=True)
sys.stdin.readline()
"""


class _LockHolder:
    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOCK_HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self, how: str = "rollback") -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(how + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "released"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def test_lock_held_past_busy_timeout_gives_busy_error_and_nothing_partial(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=150)
    store.append_event(Event("message_sent", "s1", id="before"))
    before = _dump(path)
    holder = _LockHolder(path)
    try:
        with pytest.raises(StoreBusyError, match="busy timeout") as caught:
            store.append_events([Event("message_sent", "s1", id=f"b{n}") for n in range(5)])
        assert caught.value.sqlite_code is not None and caught.value.sqlite_code & 0xFF == apsw.SQLITE_BUSY
        with pytest.raises(StoreBusyError):
            store.append_event(Event("message_sent", "s1", id="single"))
        with pytest.raises(StoreBusyError):
            store.save_session(Session(agent_id="a", id="ses"))
        with pytest.raises(StoreBusyError):
            store.delete_session("s1")
        assert [e.id for e in store.get_events("s1")] == ["before"]  # reads never wait (WAL)
        assert store.get_latest_sequence("holder") == 0  # the holder's write is not visible
        holder.release("rollback")
        assert _dump(path) == before
        stored = store.append_events([Event("message_sent", "s1", id=f"b{n}") for n in range(5)])
        assert [e.sequence_number for e in stored] == [2, 3, 4, 5, 6]
    finally:
        holder.close()
        store.close()


def test_lock_holder_killed_releases_the_lock_and_its_write(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=100)
    store.append_event(Event("message_sent", "s1"))
    holder = _LockHolder(path)
    try:
        with pytest.raises(StoreBusyError):
            store.append_event(Event("message_sent", "s1"))
        holder.process.kill()
        holder.process.wait()
        assert store.append_event_with_sequence(Event("message_sent", "s1")).sequence_number == 2
        assert store.get_latest_sequence("holder") == 0
    finally:
        holder.close()
        store.close()
    assert _integrity(path) == ["ok"]


def test_writer_waits_for_a_lock_released_within_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=30_000)
    holder = _LockHolder(path)
    try:
        result: list[Any] = []
        appender = threading.Thread(
            target=lambda: result.append(store.append_event_with_sequence(Event("message_sent", "s1")))
        )
        appender.start()
        holder.release("commit")
        appender.join(60)
        assert [e.sequence_number for e in result] == [1]
        assert store.get_latest_sequence("holder") == 99
    finally:
        holder.close()
        store.close()


def test_long_read_transaction_in_another_process_does_not_block_appends(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path, busy_timeout_ms=100)
    store.append_events([Event("message_sent", "s1") for _ in range(10)])
    reader = apsw.Connection(str(path))
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM events").fetchall() == [(10,)]
    try:
        for _ in range(200):
            store.append_event(Event("message_sent", "s1", data={"x": "y" * 1000}))
        assert reader.execute("SELECT count(*) FROM events").fetchall() == [(10,)]  # its snapshot
    finally:
        reader.execute("COMMIT")
        reader.close()
        store.close()


# An exception inside a batch ------------------------------------------------------------------------


def test_exception_from_the_callers_iterable_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
        before = _dump(path)

        class Boom(Exception):
            pass

        def events() -> Iterator[Event]:
            yield Event("message_sent", "s1")
            yield Event("message_sent", "s2")
            raise Boom("the caller's generator failed")

        with pytest.raises(Boom):
            store.append_events(events())
        assert _dump(path) == before


def test_conflicting_id_in_the_middle_of_a_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "other", id="taken"))
        before = _dump(path)
        batch = [
            Event("message_sent", "s1", id="a"),
            Event("message_sent", "s2", id="b"),
            Event("message_sent", "s1", id="taken"),  # stored in another session
            Event("message_sent", "s1", id="c"),
        ]
        with pytest.raises(EventIdConflictError):
            store.append_events(batch)
        assert _dump(path) == before
        assert [e.sequence_number for e in store.append_events(batch[:2] + batch[3:])] == [1, 1, 2]


# Read-only files and directories --------------------------------------------------------------------


def _make_store(path: Path) -> None:
    with SQLiteSessionStore(path) as store:
        store.save_session(Session(agent_id="a", id="s1"))
        store.append_events([Event("message_sent", "s1", id=f"e{n}") for n in range(3)])


def _reads_work_and_writes_fail(path: Path, readonly: bool) -> None:
    with SQLiteSessionStore(path, readonly=readonly) as store:
        assert [e.id for e in store.get_events("s1")] == ["e0", "e1", "e2"]
        assert store.get_latest_sequence("s1") == 3
        assert store.get_session("s1").agent_id == "a"
        assert store.get_events("s1", after=3, wait_timeout_ms=50) == []
        with pytest.raises(StorageError, match="read-only"):
            store.append_event(Event("message_sent", "s1"))
        with pytest.raises(StorageError, match="read-only"):
            store.append_events([Event("message_sent", "s1")])
        with pytest.raises(StorageError, match="read-only"):
            store.delete_session("s1")
        assert store.get_latest_sequence("s1") == 3


@pytest.fixture
def ro_mount(small_fs: Path) -> Iterator[Path]:
    _make_store(small_fs / "events.db")
    _remount(small_fs, "ro")
    try:
        yield small_fs / "events.db"
    finally:
        _remount(small_fs, "rw")


def test_store_on_read_only_medium_reads_with_readonly_open(ro_mount: Path) -> None:
    before = ro_mount.read_bytes()
    _reads_work_and_writes_fail(ro_mount, readonly=True)
    assert ro_mount.read_bytes() == before


def test_writable_open_on_read_only_medium_is_a_clear_error(ro_mount: Path) -> None:
    # The store file and the side lock file its earlier writable opens left (see _sidelock).
    before = sorted(p.name for p in ro_mount.parent.iterdir())
    assert before == ["events.db", "events.db-lock"]
    with pytest.raises(StorageError, match="read-only"):
        SQLiteSessionStore(ro_mount)
    assert sorted(p.name for p in ro_mount.parent.iterdir()) == before


def _as_unprivileged_user(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child as user nobody (root ignores file modes); its failure
    is reported back through a pipe."""
    if os.geteuid() != 0:
        check()
        return
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to drop privileges to")
    # Fork only with no other thread alive: a lock another thread held at the fork would stay
    # held for good in the child.
    deadline = time.monotonic() + 10
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    if threading.active_count() > 1:
        pytest.skip(f"threads still running, forking is unsafe: {threading.enumerate()}")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery past this point
        os.close(read_end)
        message = b""
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            check()
        except BaseException as exc:  # reported to the parent
            message = f"{type(exc).__name__}: {exc}".encode() or b"failed"
        os.write(write_end, message)
        os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + 120
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline:
            if select.select([pipe], [], [], 1.0)[0]:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert time.monotonic() < deadline, "the unprivileged child did not finish"
    assert b"".join(chunks).decode() == ""


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory the test's unprivileged user can reach (pytest's own tmp is private to
    root), holding a store that user owns."""
    top = Path(tempfile.mkdtemp(prefix="sqlitestream-faults-"))
    top.chmod(0o755)
    base = top / "store"
    base.mkdir(mode=0o755)
    _make_store(base / "events.db")
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            shutil.rmtree(top)
            pytest.skip("no user 'nobody' to drop privileges to")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        os.chown(base / "events.db", nobody.pw_uid, nobody.pw_gid)
    try:
        yield base
    finally:
        base.chmod(0o755)
        shutil.rmtree(top)


def test_read_only_file_reads_and_refuses_writes_clearly(nobody_dir: Path) -> None:
    path = nobody_dir / "events.db"
    path.chmod(0o444)
    before = path.read_bytes()

    def check() -> None:
        _reads_work_and_writes_fail(path, readonly=False)
        _reads_work_and_writes_fail(path, readonly=True)

    _as_unprivileged_user(check)
    assert path.read_bytes() == before


def test_read_only_directory_reads_with_readonly_open(nobody_dir: Path) -> None:
    path = nobody_dir / "events.db"
    nobody_dir.chmod(0o555)
    before = path.read_bytes()
    listing = sorted(p.name for p in nobody_dir.iterdir())  # the store and its side lock file

    def check() -> None:
        _reads_work_and_writes_fail(path, readonly=True)
        try:
            SQLiteSessionStore(path)
        except StorageError as exc:
            assert "read-only" in str(exc), str(exc)
        else:
            raise AssertionError("a writable open in a read-only directory succeeded")

    _as_unprivileged_user(check)
    assert path.read_bytes() == before
    assert sorted(p.name for p in nobody_dir.iterdir()) == listing
