"""SQLite connections: how we open them, the settings we apply, the busy handler, and the one
place that turns apsw errors into sqlitestream errors (the write transaction itself is in
``transaction.py``).

Settings are applied to the store's own connections only; nothing here touches apsw's
process-global hooks, so a host application's other SQLite use is unaffected.
"""

from __future__ import annotations

import os
import random
import time
import urllib.parse

import apsw

from sqlitestream._core import descriptors
from sqlitestream.errors import StorageError, StoreBusyError

SYNCHRONOUS_LEVELS = {"normal": "NORMAL", "full": "FULL"}
"""``synchronous`` choices. ``normal`` (WAL): a commit survives a process crash; ``full``: it
also survives power loss or an OS crash, at the cost of an fsync per commit."""

INCREMENTAL_VACUUM = 2
"""``PRAGMA auto_vacuum`` of every new store: pages a trim empties can be handed back to the
file system (``PRAGMA incremental_vacuum``) instead of waiting on the free list."""
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the WAL file is truncated back to after a checkpoint, so it does not stay huge."""

PAGE_CACHE_KIB = 8 * 1024
"""Each connection's page cache (grown as pages are read, up to this). SQLite's default 2 MiB
holds about 8,000 events of ~150-byte payloads; a reader paging back through a longer
session then re-reads every page from the OS (measured: cursor page reads 2-3% faster with
8 MiB on a 20,000-event session)."""

_BUSY_FIRST_SLEEP_SECONDS = 0.0001
_BUSY_MAX_SLEEP_SECONDS = 0.002
"""Sleeps between lock attempts: 0.1 ms doubling to 2 ms, each with +-50% jitter. SQLite's
default handler backs off to 100 ms sleeps and gave multi-second appends under two-process
contention; a fixed 0.5 ms kept the waiters polling so hard that, with more writer processes
than cores, they starved the lock holder (measured: 4 processes x 2 threads on 2 cores,
aggregate 0.46x of one writer with a fixed 0.5 ms, 0.55x with this back-off; worst append
83 ms -> 57 ms). Jitter keeps waiting processes from retrying in lock-step."""


def open_connection(path: str, *, readonly: bool, immutable: bool = False) -> apsw.Connection:
    """A connection to ``path``; ``immutable`` (read-only) reads the file as it is, without
    the -wal and -shm files that SQLite would otherwise need (see :func:`frozen_location`)."""
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    target = path
    if immutable:
        flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
        target = f"file:{urllib.parse.quote(path)}?immutable=1"
    with translating(f"open {path!r}"):
        return apsw.Connection(target, flags=flags)


def frozen_location(path: str) -> bool:
    """Whether ``path`` sits in a directory this process cannot write (a read-only mount or
    directory) with no -wal file holding commits beside it.

    SQLite reads a WAL-mode file only through its -shm file, which it cannot create there, so a
    read-only open must read the file as immutable. That is exact: with no -wal file there is
    nothing beyond the file itself, and no writer can work in a directory where it cannot
    create its -wal (a writer reaching the file through another, writable mount is not seen).
    """
    directory = os.path.dirname(path) or "."
    if os.access(directory, os.W_OK):
        return False
    try:
        return os.stat(f"{path}-wal").st_size == 0
    except FileNotFoundError:
        return True


class BusyRetry:
    """A busy handler: retry a locked database with short, jittered, growing sleeps (0.1 ms up
    to 2 ms) until ``busy_timeout_ms`` has passed since the first retry of this wait."""

    __slots__ = ("_until", "limit")

    def __init__(self, busy_timeout_ms: int) -> None:
        self.limit = busy_timeout_ms / 1000.0
        self._until = 0.0

    def __call__(self, prior_calls: int) -> bool:
        now = time.monotonic()
        if prior_calls == 0:  # a new wait
            self._until = now + self.limit
        if now >= self._until:
            return False
        backoff = min(_BUSY_MAX_SLEEP_SECONDS, _BUSY_FIRST_SLEEP_SECONDS * (1 << min(prior_calls, 5)))
        time.sleep(backoff * (0.5 + random.random()))
        return True


def apply_settings(conn: apsw.Connection, *, synchronous: str, busy_timeout_ms: int) -> None:
    """The per-connection settings every store connection gets (see docs/sqlite-file.md). A write
    transaction sets the busy handler each ``BEGIN`` needs (see ``transaction.py``)."""
    conn.set_busy_handler(BusyRetry(busy_timeout_ms))
    level = SYNCHRONOUS_LEVELS[synchronous]  # never formatted from unchecked input
    with translating("configure the connection"):
        conn.pragma("foreign_keys", True)
        conn.pragma("trusted_schema", False)
        conn.pragma("synchronous", level)
        conn.pragma("journal_size_limit", JOURNAL_SIZE_LIMIT)
        conn.pragma("cache_size", -PAGE_CACHE_KIB)  # negative: KiB rather than pages


def enable_wal(conn: apsw.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to write-ahead logging (persistent; readers never block the writer).

    Switching needs an exclusive lock, and when another process is opening the same new file at
    that moment SQLite can answer busy at once, without calling the busy handler (waiting could
    deadlock two lock upgrades); so this retries on its own until ``busy_timeout_ms`` has passed.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000.0
    while True:
        try:
            with translating("switch the store to WAL mode"):
                mode = conn.pragma("journal_mode", "wal")
            break
        except StoreBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_BUSY_MAX_SLEEP_SECONDS * random.random())
    if str(mode).lower() != "wal":
        raise StorageError(f"could not switch the store to WAL mode (journal_mode is {mode!r})")


def translate(exc: apsw.Error, action: str) -> StorageError:
    """The sqlitestream error for an apsw error, keeping SQLite's result code."""
    code = getattr(exc, "extendedresult", None) or getattr(exc, "result", None)
    detail = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return StoreBusyError(
            f"{action}: the store stayed locked by another connection past the busy timeout",
            sqlite_code=code,
        )
    if isinstance(exc, apsw.FullError):
        return StorageError(f"{action}: the disk or database is full ({detail})", sqlite_code=code)
    if isinstance(exc, apsw.ReadOnlyError):
        return StorageError(
            f"{action}: the store file or its directory is read-only ({detail})", sqlite_code=code
        )
    if isinstance(exc, apsw.NotADBError):
        return StorageError(f"{action}: the file is not a SQLite database", sqlite_code=code)
    if isinstance(exc, apsw.CorruptError):
        return StorageError(f"{action}: the database file is corrupt ({detail})", sqlite_code=code)
    # SQLite says only "unable to open database file" (or a disk I/O error for -wal and -shm).
    if isinstance(exc, (apsw.CantOpenError, apsw.IOError)) and descriptors.ran_out():
        return StorageError(f"{action}: {descriptors.ran_out_message(_HOLDS)}", sqlite_code=code)
    if isinstance(exc, apsw.CantOpenError):
        return StorageError(f"{action}: cannot open the file ({detail})", sqlite_code=code)
    if isinstance(exc, apsw.ConnectionClosedError):
        return StorageError(f"{action}: the connection is closed", sqlite_code=code)
    return StorageError(f"{action} failed: {type(exc).__name__}: {detail}", sqlite_code=code)


_HOLDS = "the file, -wal, -shm and -lock, per connection"


def translate_os_error(exc: OSError, action: str) -> StorageError:
    """The sqlitestream error for an OS error from one of our own file operations."""
    if descriptors.ran_out(exc):
        return StorageError(f"{action}: {descriptors.ran_out_message(_HOLDS)}")
    where = f" ({exc.filename})" if exc.filename else ""
    return StorageError(f"{action}: {exc.strerror or exc}{where}")


class translating:
    """Re-raise any apsw error from the block as a ``StorageError`` (the single translation).

    A small class rather than a generator context manager: it wraps every read, and the
    class costs a fraction of a generator's set-up (it holds nothing that would need the
    clean-up a dropped generator gets).
    """

    __slots__ = ("action",)

    def __init__(self, action: str) -> None:
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, apsw.Error):
            raise translate(exc, self.action) from exc
