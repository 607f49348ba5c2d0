"""A wake-up hint for cross-process long-polls on Linux: inotify on the store's ``-wal`` file.

Another process's commit writes frames to the WAL file before it publishes them in the
shared index, so a write to the file means "a commit is on its way". The watcher treats it
as a hint only: after every wake-up it re-reads ``PRAGMA data_version`` (the source of truth)
and it keeps a slower timed poll as the fallback. Where inotify is missing (not Linux, no
libc symbol, no more watches) ``WalHint.open`` returns None and the watcher polls as before.
"""

from __future__ import annotations

import os
import select
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_IN_MODIFY = 0x00000002
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100


class WalHint:
    """Blocks in :meth:`wait` until the WAL file is written (or created/replaced in its
    directory), the timeout passes, or :meth:`interrupt` is called. Not thread-safe except
    :meth:`interrupt`, which the owner must not call after :meth:`close`."""

    def __init__(self, libc: ctypes.CDLL, fd: int, wal_path: bytes) -> None:
        self._libc = libc
        self._fd = fd
        self._wal_path = wal_path
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)
        self._poller.register(self._wake_r, select.POLLIN)
        self._arm()

    @classmethod
    def open(cls, wal_path: str) -> WalHint | None:
        """The hint for ``wal_path``, or None where inotify cannot be used."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            import ctypes  # here, not at import: only a waiting store needs it (CLI start-up)

            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (ImportError, OSError, AttributeError):  # OSError: also no descriptor to import with
            return None
        add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        path = os.fsencode(wal_path)
        # The directory tells us when the WAL file appears or is replaced (a new inode needs a
        # new watch); without it the hint could go deaf, so no directory watch, no hint.
        directory = os.path.dirname(path) or b"."
        if add(fd, directory, _IN_CREATE | _IN_MOVED_TO) < 0:
            os.close(fd)
            return None
        try:
            return cls(libc, fd, path)
        except OSError:
            os.close(fd)
            return None

    def _arm(self) -> None:
        # Adding a watch on an already-watched inode is a no-op; a missing file (no WAL yet)
        # fails quietly and the directory watch reports its creation.
        self._libc.inotify_add_watch(self._fd, self._wal_path, _IN_MODIFY)

    def wait(self, timeout_s: float) -> bool:
        """True if woken by a write (or :meth:`interrupt`), False on timeout."""
        if not self._poller.poll(max(0, int(timeout_s * 1000))):
            return False
        for fd in (self._fd, self._wake_r):
            try:
                while os.read(fd, 4096):
                    pass
            except BlockingIOError:
                pass
        self._arm()
        return True

    def interrupt(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already pending, or closing

    def close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
