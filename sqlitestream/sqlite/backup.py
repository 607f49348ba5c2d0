"""A SQLite store's online backup: a consistent copy of the live file, written page by page
through SQLite's backup API into a temporary file beside the destination, then renamed.

The copy reads one snapshot: the source connection holds a read transaction for the whole
backup, so commits by other connections and processes neither restart it (SQLite restarts a
stepped backup whenever the source changes under it) nor get half into it; in WAL mode the
writers are not held up meanwhile.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import apsw

from sqlitestream._core.validate import check_text, describe
from sqlitestream.admin import ProgressCallback
from sqlitestream.errors import StorageError, ValidationError
from sqlitestream.sqlite.connection import open_connection, translating

PAGES_PER_STEP = 256
"""Pages copied between two progress reports (1 MiB at SQLite's default 4 KiB page size)."""

TEMPORARY_SUFFIX = ".backup-tmp"
"""The temporary file is ``.<dest name>.<random>.backup-tmp`` in the destination's directory;
only a backup killed outright (SIGKILL, power loss) can leave one behind."""

_STORE_FILES = ("", "-wal", "-shm", "-journal", "-lock")

Reading = Callable[[str], AbstractContextManager[apsw.Connection]]


def write_backup(
    read: Reading,
    source: str,
    dest: object,
    *,
    overwrite: bool,
    on_progress: ProgressCallback | None,
) -> str:
    """Copy the store read through ``read`` (a store's ``_read``) to ``dest``; return
    ``dest``'s absolute path. See :meth:`SQLiteSessionStore.backup`."""
    target = _destination(dest, source)
    if type(overwrite) is not bool:
        raise ValidationError(f"overwrite must be a bool, got {describe(overwrite)}")
    if on_progress is not None and not callable(on_progress):
        raise ValidationError(f"on_progress must be callable, got {describe(on_progress)}")
    action = f"back up {source!r} to {target!r}"
    keep_mode = _check_target(target, source, overwrite=overwrite)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.lexists(directory) else "does not exist"
        raise StorageError(f"{action}: the directory {directory!r} {what}")
    name = os.path.basename(target)
    import secrets  # here: it loads OpenSSL (through hmac), which every store open would pay for

    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
    try:
        _copy_into(temporary, read, action, on_progress)
        _fsync_file(temporary)
        if keep_mode is not None:
            os.chmod(temporary, keep_mode)
        _publish(temporary, target, overwrite=overwrite)
        _fsync_directory(directory)
    except BaseException as exc:
        _remove(temporary)
        if isinstance(exc, OSError):
            raise StorageError(f"{action}: {exc.strerror or exc}") from exc
        raise
    return target


def _destination(dest: object, source: str) -> str:
    if not isinstance(dest, (str, os.PathLike)):
        raise ValidationError(f"dest must be a str or a path, got {describe(dest)}")
    text = os.fspath(dest)
    if not isinstance(text, str) or not text or "\x00" in text or text == ":memory:":
        raise ValidationError(f"dest must be a file path, got {describe(dest)}")
    check_text(text, "dest")
    target = os.path.abspath(text)
    if source != ":memory:" and any(target == source + end for end in _STORE_FILES):
        raise ValidationError(f"dest {target!r} is the store itself or one of its files")
    return target


def _check_target(target: str, source: str, *, overwrite: bool) -> int | None:
    """Refuse a destination the backup must not replace; the mode an overwritten file keeps."""
    for end in ("-wal", "-journal"):
        if _has_content(target + end):
            # SQLite would apply these commits (or this roll-back) to the copy when it is opened.
            raise ValidationError(
                f"dest {target!r} has a non-empty {target + end!r} beside it (a store in use, or "
                "left over from one); close that store or remove the file, or choose another dest"
            )
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return None
    if not overwrite:
        raise ValidationError(f"dest {target!r} already exists; choose another, or pass overwrite=True")
    if os.path.isdir(target):
        raise ValidationError(f"dest {target!r} is a directory")
    if source != ":memory:" and os.path.samefile(target, source):
        raise ValidationError(f"dest {target!r} is the store itself")
    return mode & 0o7777


def _has_content(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def _copy_into(temporary: str, read: Reading, action: str, on_progress: ProgressCallback | None) -> None:
    # SQLite creates the file, so it gets the mode a new store file gets (0o644 less the umask).
    dest = open_connection(temporary, readonly=False)
    try:
        with translating(action):
            # A failed backup is thrown away whole, so there is nothing to journal, and the file
            # is synced once, before it is renamed into place.
            dest.pragma("journal_mode", "off")
            dest.pragma("synchronous", "off")
            with read(action) as source:
                _copy_snapshot(source, dest, on_progress)
    finally:
        dest.close()


def _copy_snapshot(
    source: apsw.Connection, dest: apsw.Connection, on_progress: ProgressCallback | None
) -> None:
    # A read transaction (not a write: it takes no lock that writers wait for) pins the snapshot.
    source.execute("BEGIN DEFERRED")
    try:
        source.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        with dest.backup("main", source, "main") as backup:
            while not backup.done:
                backup.step(PAGES_PER_STEP)
                if on_progress is not None:
                    total = backup.page_count
                    on_progress(total - backup.remaining, total)
    finally:
        # The connection goes back to the store's readers: it must not keep the old snapshot.
        source.execute("ROLLBACK")


def _publish(temporary: str, target: str, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        # A hard link fails if the name is taken, so a file that appeared at ``target`` since the
        # check is never replaced.
        os.link(temporary, target)
    except FileExistsError:
        raise ValidationError(
            f"dest {target!r} already exists; choose another, or pass overwrite=True"
        ) from None
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            raise ValidationError(
                f"dest {target!r} already exists; choose another, or pass overwrite=True"
            ) from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


def _fsync_file(path: str) -> None:
    """Flush the backup to the disk before it is renamed, so the new name never shows a file
    whose pages a power loss could still take away."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (where the system lets a directory be synced)."""
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _remove(temporary: str) -> None:
    with contextlib.suppress(OSError):  # already gone (e.g. with its directory)
        os.unlink(temporary)
