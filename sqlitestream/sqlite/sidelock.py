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
import queue
import stat
import threading

_WRITERS_TO_READ_WRITE = ((stat.S_IWUSR, 0o600), (stat.S_IWGRP, 0o060), (stat.S_IWOTH, 0o006))


def lock_mode(store_mode: int) -> int:
    """The side file's mode: read and write for exactly the classes (owner, group, others)
    that may write the store. ``flock`` needs only a read open, so anyone who can read the
    side file can hold the lock and make writers wait."""
    mode = 0
    for write_bit, read_write in _WRITERS_TO_READ_WRITE:
        if store_mode & write_bit:
            mode |= read_write
    return mode


def _open_side_file(path: str, owner: int, mode: int) -> int:
    """``path`` opened for reading and writing, created with ``mode`` (less the umask) if
    missing; ``OSError`` unless it is a regular file owned by ``owner``. A symlink is never
    followed (a planted one could make us create or lock a file elsewhere), and a FIFO or
    device planted there is never waited on (``O_NONBLOCK``)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner:
            raise OSError(f"{path!r} is not a regular file owned like the store file")
        if info.st_mode & 0o777 & ~mode and info.st_uid == os.geteuid():
            os.fchmod(fd, info.st_mode & mode & 0o777)  # made before the mode was narrowed
    except BaseException:
        os.close(fd)
        raise
    return fd


class SideLock:
    """An exclusive ``flock`` on ``path`` (a regular file owned by ``owner``, created with
    ``mode`` less the umask), waited for with a bound.

    ``flock`` has no timeout, so a contended wait is done by a small waiter thread with a file
    description of its own, doing the blocking call while the caller waits at most its timeout
    for the grant; a grant that comes after the caller gave up is let go at once. The lock
    belongs to this object's file descriptions, so every store object needs its own; the
    caller serialises :meth:`acquire`/:meth:`release` (the store's write lock).

    The caller's side uses only primitives implemented in C (a ``Lock`` in ``with``, a
    ``SimpleQueue``, a ``Lock`` as the grant), so an interrupt striking it anywhere leaves
    no internal lock held; :meth:`release` then undoes whatever it got, and an interrupted
    :meth:`release` can be called again to finish.
    """

    @classmethod
    def beside(cls, store_path: str) -> SideLock:
        """The side lock ``<store>-lock`` of the store file at ``store_path``: owned like the
        store, readable and writable only by those who may write the store (:func:`lock_mode`).
        ``OSError`` when it cannot be used (the caller then writes without it)."""
        store = os.stat(store_path)
        return cls(store_path + "-lock", lock_mode(store.st_mode), owner=store.st_uid)

    def __init__(self, path: str, mode: int, *, owner: int) -> None:
        self._fd = _open_side_file(path, owner, mode)
        try:
            # The waiter's own description: its lock never merges with a non-blocking one
            # taken through ``_fd`` meanwhile, and unlocking one never undoes the other.
            self._waiter_fd = _open_side_file(path, owner, mode)
            first, second = os.fstat(self._fd), os.fstat(self._waiter_fd)
            if (first.st_dev, first.st_ino) != (second.st_dev, second.st_ino):
                os.close(self._waiter_fd)
                raise OSError(f"{path!r} was replaced while it was opened")
        except BaseException:
            os.close(self._fd)
            raise
        self._mutex = threading.Lock()  # guards the fields below, with the waiter thread
        self._requests: queue.SimpleQueue[bool | None] = queue.SimpleQueue()  # None: stop
        self._grant = threading.Lock()  # released by the waiter to hand the lock over
        self._grant.acquire()
        self._wanted = False  # a caller is waiting for a grant
        self._granted = False  # the caller holds the lock through the waiter's description
        self._closing = False
        self._waiter: threading.Thread | None = None

    def acquire(self, timeout_s: float) -> bool:
        """Take the lock, waiting at most ``timeout_s``; whether it was taken. Failing to take
        it is not an error (see the module docstring)."""
        with self._mutex:
            if self._closing:
                return False
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass  # another holds it: queue below
            except OSError:
                return False  # this file system has no locks: go without
            self._grant.acquire(blocking=False)  # no grant left over from an earlier wait
            self._wanted = True
            if self._waiter is None:
                self._waiter = threading.Thread(target=self._serve, name="sqlitestream-sidelock", daemon=True)
                self._waiter.start()
            self._requests.put(True)
        granted = self._grant.acquire(timeout=timeout_s)
        with self._mutex:
            self._wanted = False
            return granted or self._grant.acquire(blocking=False)  # granted as the wait ended

    def release(self) -> None:
        """Let go of the lock if this object holds it, and cancel a wait (safe to call when
        it does neither)."""
        with self._mutex:
            self._wanted = False
            self._grant.acquire(blocking=False)
            if self._closing:
                return
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            if self._granted:
                # Unlocked before it is marked: an interrupt inside ``flock`` (an audit hook runs
                # Python code there) leaves it marked, so the release that finishes the write
                # lets go of it; marked first, it would stay held until this object's next write.
                fcntl.flock(self._waiter_fd, fcntl.LOCK_UN)
                self._granted = False

    def close(self) -> None:
        """Release and close the files; a waiter still blocked in ``flock`` (its holder is
        stopped) closes its own when that returns, so the descriptor is never reused under it."""
        with self._mutex:
            if self._closing:
                return
            self._closing = True
            self._wanted = False
            os.close(self._fd)
            if self._waiter is None:
                os.close(self._waiter_fd)
            else:
                self._requests.put(None)

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                os.close(self._waiter_fd)  # its lock, if any, goes with it
                return
            try:
                fcntl.flock(self._waiter_fd, fcntl.LOCK_EX)
            except OSError:
                continue  # the caller times out and goes without
            with self._mutex:
                if self._granted:
                    continue  # a request left from an abandoned wait: the lock is the caller's
                if self._wanted and not self._closing:
                    self._wanted = False
                    self._granted = True
                    self._grant.release()
                else:
                    fcntl.flock(self._waiter_fd, fcntl.LOCK_UN)
