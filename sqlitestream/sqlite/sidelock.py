"""The side lock: a cross-process advisory lock (``flock``) on a file beside the store that
writers queue on before ``BEGIN IMMEDIATE``.

SQLite's write lock has no blocking wait: a process that meets it can only sleep and retry, so
under contention the waiters either poll hard (taking CPU from the holder) or sleep past the
moment the lock frees. Queued on the side lock instead, a waiting process is woken by the
kernel as soon as the writer ahead of it commits.

It is a fairness aid only. SQLite's lock and busy handler stay the truth: a writer that does
not take the side lock (another SQLite client) is still correct, and a holder that never lets
go (a stopped process) costs a waiter at most its busy timeout, after which it goes on to
SQLite's lock without the side lock.
"""

from __future__ import annotations

import fcntl
import os
import threading


class SideLock:
    """An exclusive ``flock`` on ``path`` (created with ``mode`` less the umask), waited for
    with a bound.

    ``flock`` has no timeout, so a contended wait runs in a small waiter thread doing the
    blocking call while the caller waits on an event for at most its timeout; a grant that
    comes after the caller gave up is released at once. The lock belongs to this object's open
    file description, so every store object needs its own; the caller serialises
    :meth:`acquire`/:meth:`release` (the store's write lock).
    """

    def __init__(self, path: str, mode: int) -> None:
        # Opened for writing, though flock needs only reading: only those who may write the
        # file may hold the lock and make writers wait.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        self._changed = threading.Condition(threading.Lock())
        self._granted = threading.Event()
        self._pending = False  # the waiter thread owes a blocking flock (or is inside one)
        self._wanted = False  # a caller is waiting for that flock
        self._closing = False
        self._waiter: threading.Thread | None = None

    def acquire(self, timeout_s: float) -> bool:
        """Take the lock, waiting at most ``timeout_s``; whether it was taken. Failing to take
        it is not an error (see the module docstring)."""
        with self._changed:
            if self._closing:
                return False
            if not self._pending:
                # A pending waiter shares our file description: a flock of ours could succeed
                # just before its own and then be undone by its release.
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass  # another holds it: queue below
                except OSError:
                    return False  # this file system has no locks: go without
                # In this order, so that an interrupt between any two steps leaves no request
                # that the waiter thread does not see (it wakes only once we let go).
                if self._waiter is None or not self._waiter.is_alive():
                    self._waiter = threading.Thread(target=self._serve, name="sqlitestream-sidelock", daemon=True)
                    self._waiter.start()
                self._changed.notify()
                self._pending = True
            self._granted.clear()
            self._wanted = True
        self._granted.wait(timeout_s)
        with self._changed:
            self._wanted = False
            return self._granted.is_set()

    def release(self) -> None:
        """Let go of the lock if this object holds it (safe to call when it does not)."""
        with self._changed:
            self._wanted = False
            self._granted.clear()
            if not self._pending and not self._closing:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release and close the file; a waiter still blocked in ``flock`` (its holder is
        stopped) closes it when that returns, so the descriptor is never reused under it."""
        with self._changed:
            if self._closing:
                return
            self._closing = True
            self._wanted = False
            self._changed.notify()
            if not self._pending:
                os.close(self._fd)

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return  # closing, nothing owed
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                taken = True
            except OSError:
                taken = False
            with self._changed:
                self._pending = False
                if self._closing:
                    os.close(self._fd)
                    return
                if taken and self._wanted:
                    self._granted.set()
                elif taken:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

