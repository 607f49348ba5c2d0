"""The side lock file cannot be turned against the store: a planted symlink is never followed,
those who cannot write the store cannot open it to hold the lock, and a wait for it that times
out leaves SQLite's own lock a full busy timeout of its own."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from sqlitestream import Event, SQLiteSessionStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and SIGSTOP semantics")


def test_a_dangling_symlink_planted_as_the_side_lock_is_never_followed(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    target = tmp_path / "elsewhere" / "created-by-the-store"
    (tmp_path / "elsewhere").mkdir()
    os.symlink(target, f"{path}-lock")
    with SQLiteSessionStore(path) as store:
        assert store.append_event_with_sequence(Event("message_sent", "s1")).sequence_number == 1
    assert not target.exists()
    assert os.path.islink(f"{path}-lock")


@pytest.mark.parametrize(
    ("store_mode", "lock_mode"),
    [(0o644, 0o600), (0o664, 0o660), (0o660, 0o660), (0o600, 0o600), (0o646, 0o606)],
)
def test_the_side_lock_is_readable_only_by_those_who_may_write_the_store(
    tmp_path: Path, store_mode: int, lock_mode: int
) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    os.unlink(f"{path}-lock")
    path.chmod(store_mode)
    previous = os.umask(0)
    try:
        with SQLiteSessionStore(path) as store:
            store.append_event(Event("message_sent", "s1"))
    finally:
        os.umask(previous)
        path.chmod(0o600)
    assert stat.S_IMODE(os.stat(f"{path}-lock").st_mode) == lock_mode


def test_an_old_side_lock_readable_by_others_is_narrowed_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    os.chmod(f"{path}-lock", 0o644)  # as stores made it before the mode followed the writers
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
    assert stat.S_IMODE(os.stat(f"{path}-lock").st_mode) == 0o600


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user can enter (pytest's own are private to the user running it)."""
    directory = Path(tempfile.mkdtemp(prefix="sqlitestream-shared-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


_TRY_TO_HOLD = """
import fcntl, os, sys
os.setgid(65534)
os.setuid(65534)
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except PermissionError:
    print("refused", flush=True)
    sys.exit(0)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
"""


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another user"
)
def test_a_user_who_cannot_write_the_store_cannot_hold_its_side_lock(shared_dir: Path) -> None:
    path = shared_dir / "events.db"
    with SQLiteSessionStore(path) as store:  # 0o644: others may read the store, not write it
        store.append_event(Event("message_sent", "s1"))
        assert stat.S_IMODE(path.stat().st_mode) & 0o004
        out = subprocess.run(
            [sys.executable, "-c", _TRY_TO_HOLD, f"{path}-lock"], capture_output=True, text=True
        )
        assert out.stdout.strip() == "refused", (out.stdout, out.stderr)


_SIDE_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1] + "-lock", os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_after_the_side_lock_wait_times_out_sqlites_lock_gets_its_own_busy_timeout(tmp_path: Path) -> None:
    """A stopped process holds the side lock; another connection holds SQLite's lock for longer
    than one busy timeout but less than two. The write waits out the side lock (one timeout),
    then waits for SQLite's lock with a fresh timeout, and succeeds."""
    path = tmp_path / "events.db"
    busy_timeout_ms = 2000
    with SQLiteSessionStore(path, busy_timeout_ms=busy_timeout_ms) as store:
        store.append_event(Event("message_sent", "s1"))
        holder = subprocess.Popen(
            [sys.executable, "-c", _SIDE_HOLDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            os.kill(holder.pid, signal.SIGSTOP)
            blocker = apsw.Connection(str(path))
            blocker.execute("BEGIN IMMEDIATE")
            released = threading.Timer(1.5 * busy_timeout_ms / 1000, lambda: blocker.execute("ROLLBACK"))
            released.start()
            try:
                sequence = store.append_event_with_sequence(Event("message_sent", "s1")).sequence_number
            finally:
                released.join()
                blocker.close()
            assert sequence == 2
        finally:
            holder.kill()
            holder.wait()
