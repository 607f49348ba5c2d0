"""Stores by location: one string names a store, whichever backend holds it.

A location is either a ``postgresql://`` (or ``postgres://``) URL, optionally with a
``schema`` query parameter naming the store's PostgreSQL schema (default ``sqlitestream``),
e.g. ``postgresql://app@db.internal:5432/app?schema=agents``; or anything else, taken as a
SQLite file path (``":memory:"``: a private in-memory SQLite store). This is what the command
line's ``--db`` takes. Nothing here imports psycopg until a PostgreSQL store is opened.
"""

from __future__ import annotations

import os
from typing import Any

from sqlitestream._core.validate import describe
from sqlitestream.admin import AdminStore, MigrationResult, SchemaStatus
from sqlitestream.errors import ValidationError

__all__ = ["inspect_schema", "is_postgres_location", "migrate_schema", "open_store"]


def is_postgres_location(location: object) -> bool:
    """Whether ``location`` is a PostgreSQL URL (anything else names a SQLite file)."""
    from sqlitestream.postgres.url import is_postgres_url

    return is_postgres_url(location)


def _location(location: object) -> str:
    if not isinstance(location, (str, os.PathLike)):
        raise ValidationError(f"location must be a str or a path, got {describe(location)}")
    text = os.fspath(location)
    if not isinstance(text, str):
        raise ValidationError(f"location must be a str or a path, got {describe(location)}")
    return text


def open_store(
    location: str | os.PathLike[str],
    *,
    readonly: bool = False,
    create: bool = True,
    **options: Any,
) -> AdminStore:
    """Open the store at ``location`` (see the module docs): a
    :class:`~sqlitestream.SQLiteSessionStore` for a file path or ``":memory:"``, a
    :class:`~sqlitestream.PostgresSessionStore` for a ``postgresql://`` URL.

    ``readonly`` and ``create`` mean what they mean on both stores: read-only opens create and
    change nothing; ``create=False`` raises ``StorageError`` when there is no store there yet.
    ``options`` are passed on to the store's constructor (e.g. ``synchronous="full"`` for
    SQLite, ``pool_size=4`` for PostgreSQL; ``poll_interval_ms`` and ``max_event_bytes`` for
    both); one the backend does not take raises ``ValidationError``. Close the store (or use it
    as a context manager) when done.
    """
    text = _location(location)
    if is_postgres_location(text):
        from sqlitestream.postgres import PostgresSessionStore
        from sqlitestream.postgres.migration import open_location

        _check_options(PostgresSessionStore, options)
        return open_location(text, readonly=readonly, create=create, **options)
    from sqlitestream.sqlite import SQLiteSessionStore

    _check_options(SQLiteSessionStore, options)
    return SQLiteSessionStore(text, readonly=readonly, create=create, **options)


def _check_options(store: type[AdminStore], options: dict[str, Any]) -> None:
    """Refuse, as a ``ValidationError`` naming them, options this backend does not take
    (the location already gave its path, or its DSN and schema)."""
    import inspect

    given_by_location = {"path", "dsn", "schema", "readonly", "create"}
    accepted = set(inspect.signature(store).parameters) - given_by_location
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValidationError(
            f"{store.__name__} does not take {', '.join(unknown)}; "
            f"its options are {', '.join(sorted(accepted))}"
        )


def inspect_schema(location: str | os.PathLike[str]) -> SchemaStatus:
    """The schema version of the store at ``location`` and the upgrades it is missing.

    Reads without creating or changing anything, whatever the version (opening a store would
    upgrade it). Raises ``StorageError`` if there is no store there and ``SchemaVersionError``
    if it is newer than this code.
    """
    text = _location(location)
    if is_postgres_location(text):
        from sqlitestream.postgres.migration import inspect_schema as inspect_postgres

        return inspect_postgres(text)
    from sqlitestream.sqlite.migration import inspect_schema as inspect_sqlite

    return inspect_sqlite(text)


def migrate_schema(
    location: str | os.PathLike[str], *, backup_path: str | os.PathLike[str] | None = None
) -> MigrationResult:
    """Upgrade the store at ``location`` to this code's schema version, never creating one;
    all steps run in one transaction, so a failure leaves the old version.

    ``backup_path``: for a SQLite file, a consistent copy of the file as it was is written
    there first (an existing file there is refused with ``ValidationError``; nothing is written
    when there is nothing to upgrade). A PostgreSQL store is never backed up to a file: a
    ``backup_path`` is refused with ``ValidationError`` before anything changes (use
    ``pg_dump --schema=NAME`` first). Raises like :func:`inspect_schema`.
    """
    text = _location(location)
    if is_postgres_location(text):
        from sqlitestream.postgres.migration import migrate_schema as migrate_postgres

        return migrate_postgres(text, backup_path=backup_path)
    from sqlitestream.sqlite.migration import migrate_schema as migrate_sqlite

    return migrate_sqlite(text, backup_path=backup_path)
