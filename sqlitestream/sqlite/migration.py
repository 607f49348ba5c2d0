"""Schema inspection and migration of a SQLite store file, by path: opening a store object
would upgrade the file, so these work on the file itself (see :func:`sqlitestream.inspect_schema`
and :func:`sqlitestream.migrate_schema`, which dispatch here for file paths)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlitestream._core.validate import describe
from sqlitestream.admin import MigrationResult, SchemaStatus, SchemaStep
from sqlitestream.errors import StorageError, ValidationError
from sqlitestream.sqlite import schema as _schema
from sqlitestream.sqlite.connection import open_connection, translating
from sqlitestream.sqlite.store import SQLiteSessionStore

__all__ = ["inspect_schema", "migrate_schema"]


def inspect_schema(path: str | os.PathLike[str]) -> SchemaStatus:
    """The schema version of the store file at ``path`` and the upgrades it is missing.

    Reads without modifying or creating anything, whatever the version. Raises
    ``StorageError`` if there is no store at ``path`` (no file, an empty file, not a
    sqlitestream store) and ``SchemaVersionError`` if the file is newer than this code.
    """
    path_text = _store_file(path)
    conn = open_connection(path_text, readonly=True)
    try:
        state = _schema.read_state(conn, path_text)
    finally:
        conn.close()
    if state.is_blank:
        raise StorageError(f"{path_text!r} is empty: not a sqlitestream store yet")
    _schema.check_state(state, path_text, readonly=False)
    steps = tuple(
        SchemaStep(version, version + 1, _schema.UPGRADES[version])
        for version in _schema.pending_upgrades(state.user_version)
    )
    return SchemaStatus(path_text, state.user_version, _schema.SCHEMA_VERSION, steps)


def migrate_schema(
    path: str | os.PathLike[str], *, backup_path: str | os.PathLike[str] | None = None
) -> MigrationResult:
    """Upgrade the store file at ``path`` to this code's schema version, never creating one.

    With ``backup_path``, first writes a consistent copy of the file as it is (``VACUUM
    INTO``) there; an existing file at ``backup_path`` is refused (``ValidationError``), and
    no backup is written when there is nothing to upgrade. The upgrade itself runs as every
    writable open does: all steps in one transaction, so a failure leaves the file at its
    old version. Raises like :func:`inspect_schema` for a missing, foreign or newer file.
    """
    status = inspect_schema(path)
    if status.up_to_date:
        return MigrationResult(status.path, status.version, status.version, None)
    backup_text = None
    if backup_path is not None:
        backup_text = os.path.abspath(os.fspath(backup_path))
        if os.path.lexists(backup_text):
            raise ValidationError(f"backup_path {backup_text!r} already exists; choose another")
        conn = open_connection(status.path, readonly=True)
        try:
            with translating(f"write a backup of {status.path!r} to {backup_text!r}"):
                conn.execute("VACUUM INTO ?", (backup_text,))
        finally:
            conn.close()
    with SQLiteSessionStore(status.path, create=False) as store:
        from_version = store.upgraded_from
    return MigrationResult(
        status.path,
        status.version if from_version is None else from_version,
        _schema.SCHEMA_VERSION,
        backup_text,
    )


def _store_file(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"path must be a str or a path, got {describe(path)}")
    path_text = os.path.abspath(os.fspath(path))
    file = Path(path_text)
    if not file.exists():
        raise StorageError(f"no store at {path_text!r}")
    _schema.sniff_file(file)
    return path_text
