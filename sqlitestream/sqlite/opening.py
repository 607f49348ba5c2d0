"""Opening a store file: everything that is refused before SQLite writes a byte, then the
write connection (WAL, settings, schema creation or upgrade, the side lock, the identity of
its files), or for a read-only store its first read connection.

A refusal says what is wrong in the user's terms: another name for the file (hard links), a
file that is not a store, a missing or read-only directory, a newer schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import apsw

from sqlitestream.errors import SchemaVersionError, StorageError
from sqlitestream.sqlite import schema as _schema
from sqlitestream.sqlite.connection import (
    INCREMENTAL_VACUUM,
    apply_settings,
    enable_wal,
    frozen_location,
    open_connection,
    translating,
)
from sqlitestream.sqlite.files import StoreFiles
from sqlitestream.sqlite.sidelock import SideLock
from sqlitestream.sqlite.transaction import Writer


@dataclass(frozen=True)
class OpenedFile:
    """A store file as opened: its writer (with no connection when read-only), the first
    connection (the writer's, or a reader for a read-only store), whether the file is read
    as immutable (a read-only open in a read-only directory), and the schema version it was
    upgraded from (``None`` if it was not)."""

    writer: Writer
    conn: apsw.Connection
    immutable: bool
    upgraded_from: int | None


def open_file(path: str, *, readonly: bool, synchronous: str, busy_timeout_ms: int) -> OpenedFile:
    """Open the store file at ``path`` (resolved: no symlinks), creating it unless ``readonly``."""
    file = Path(path)
    if readonly and not file.exists():
        raise StorageError(f"no store at {path!r} (read-only open creates nothing)")
    _refuse_other_names(path)
    _schema.sniff_file(file)
    immutable = readonly and frozen_location(path)
    try:
        conn = open_connection(path, readonly=readonly, immutable=immutable)
    except StorageError as exc:
        _explain_unwritable(path, readonly, exc)
        raise
    writer = Writer(None, path, busy_timeout_ms=busy_timeout_ms)
    upgraded_from = None
    try:
        apply_settings(conn, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        state = _schema.read_state(conn, path)
        _schema.check_state(state, path, readonly=readonly)
        if not readonly:
            if state.is_blank:
                # Only possible before the first table exists and before the switch to WAL.
                with translating(f"create the store {path!r}"):
                    conn.pragma("auto_vacuum", INCREMENTAL_VACUUM)
            enable_wal(conn, busy_timeout_ms)
            writer = Writer(conn, path, busy_timeout_ms=busy_timeout_ms, side_lock=_open_side_lock(path))
            writer.files = StoreFiles((path,))  # the file this connection has open
            if state.user_version != _schema.SCHEMA_VERSION:
                upgraded_from = _schema.create_or_upgrade(writer, path)
            # A read in WAL mode makes SQLite open (and create) the -wal and -shm, which it
            # then keeps until the last connection closes; a file just switched to WAL has
            # not been read in that mode yet.
            conn.execute("PRAGMA schema_version").fetchall()
            writer.files = StoreFiles((path, path + "-wal", path + "-shm"))
    except BaseException as exc:
        writer.close()
        conn.close()
        if isinstance(exc, StorageError):
            _explain_unwritable(path, readonly, exc)
        raise
    return OpenedFile(writer, conn, immutable, upgraded_from)


def no_store_at(path: str) -> bool:
    """True when nothing (or an empty file) is at ``path``."""
    try:
        return os.path.getsize(path) == 0
    except FileNotFoundError:
        return True


def _open_side_lock(path: str) -> SideLock | None:
    try:
        return SideLock.beside(path)
    except OSError:  # only a fairness aid (see sidelock.py): write without it
        return None


def _explain_unwritable(path: str, readonly: bool, exc: StorageError) -> None:
    """A writable open in a directory that is missing or that we cannot write fails deep
    inside SQLite with a vague message; say what is wrong and what to do instead."""
    if readonly or isinstance(exc, SchemaVersionError):
        return
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.lexists(directory) else "does not exist"
        raise StorageError(
            f"cannot create {path!r}: the directory {directory!r} {what}",
            sqlite_code=exc.sqlite_code,
        ) from exc
    if not os.access(directory, os.W_OK):
        raise StorageError(
            f"cannot open {path!r} for writing: its directory is read-only (a store "
            "creates its -wal and -shm files beside it); open it with readonly=True to read it",
            sqlite_code=exc.sqlite_code,
        ) from exc


def _refuse_other_names(path: str) -> None:
    """Refuse a store file that has other names (hard links): SQLite keeps a -wal and -shm per
    name, so two processes opening it by two names would each have their own and corrupt it."""
    try:
        links = os.stat(path).st_nlink
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there yet: opening it says what is wrong with the directory
    except OSError as exc:
        raise StorageError(f"cannot open {path!r}: {exc}") from exc
    if links > 1:
        raise StorageError(
            f"cannot open {path!r}: the file has {links} names (hard links); a store must have "
            "exactly one, since SQLite keeps its -wal and -shm files by name and two names would "
            "give two of them and corrupt the store; copy it to a file of its own"
        )
