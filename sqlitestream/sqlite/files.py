"""Is the store still the file its path names? The check a writer makes before every commit.

A commit into a file that was moved, deleted or replaced under an open store goes where nobody
opening the path will ever read it (and, for ``-wal`` and ``-shm``, can corrupt the files that
are there now). The plain check is a ``stat`` of each file (the store, its ``-wal`` and
``-shm``) compared with the device and inode it had when the store opened it: three system calls,
about a tenth of a single append.

So the check has a fast path, isolated here: one ``stat`` of the directory. Moving, deleting or
replacing a file is a change to its directory, which sets the directory's modification time; so
while the directory is the same one (device and inode) with the same times as at the last full
check, none of its files can have been swapped. Timestamps are coarse (one kernel tick, up to
10 ms), and a change in the same tick as the full check could leave the time unchanged: the
directory's state is only trusted when its modification time is older than :data:`SETTLED_S`
at the full check, so any later change carries a later time. A directory that keeps changing
(a store just created, another program's files beside it) gets the full check every time.
"""

from __future__ import annotations

import os
import time

from sqlitestream.errors import StorageError

SETTLED_S = 1.0
"""How old the directory's modification time must be for the fast path to trust it."""

_SETTLED_NS = int(SETTLED_S * 1e9)


class StoreFiles:
    """The files a write connection has open (all in one directory, paths with no symlinks:
    the store resolves its path), with the device and inode each had when it was opened."""

    __slots__ = ("_directory", "_files", "_trusted")

    def __init__(self, paths: tuple[str, ...]) -> None:
        self._directory = os.path.dirname(paths[0]) if paths else ""
        self._files = tuple(_identity(path) for path in paths)
        self._trusted: tuple[int, int, int, int] | None = None

    def moved(self) -> str | None:
        """The first path that no longer names the file opened under it, or None."""
        if not self._files:
            return None
        directory = _directory_state(self._directory)
        if directory is not None and directory == self._trusted:
            return None
        for path, device, inode in self._files:
            try:
                stat = os.stat(path)
            except OSError:
                return path
            if stat.st_ino != inode or stat.st_dev != device:
                return path
        settled = directory is not None and directory[2] < time.time_ns() - _SETTLED_NS
        self._trusted = directory if settled else None
        return None


def _directory_state(directory: str) -> tuple[int, int, int, int] | None:
    try:
        stat = os.stat(directory)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns)


def _identity(path: str) -> tuple[str, int, int]:
    """A file's path with its device and inode, which a commit checks are still the same."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise StorageError(f"the store file {path!r} disappeared while the store opened ({exc})") from exc
    return (path, stat.st_dev, stat.st_ino)
