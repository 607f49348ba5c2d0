"""Schema inspection and migration of a PostgreSQL store by location URL (see
:func:`sqlitestream.inspect_schema` and :func:`sqlitestream.migrate_schema`, which dispatch
here for ``postgresql://`` locations)."""

from __future__ import annotations

from sqlitestream.admin import MigrationResult, SchemaStatus, SchemaStep
from sqlitestream.errors import ValidationError
from sqlitestream.postgres import schema as _pg_schema
from sqlitestream.postgres.store import DEFAULT_SCHEMA, PostgresSessionStore
from sqlitestream.postgres.url import split_location

__all__ = ["inspect_schema", "migrate_schema", "open_location"]


def open_location(
    location: str, *, readonly: bool = False, create: bool = True, **options: object
) -> PostgresSessionStore:
    """The store at a ``postgresql://`` location (its ``schema`` parameter, default
    ``sqlitestream``, names the PostgreSQL schema); ``options`` are the store's other
    keyword arguments."""
    dsn, schema = split_location(location)
    return PostgresSessionStore(
        dsn,
        schema=DEFAULT_SCHEMA if schema is None else schema,
        readonly=readonly,
        create=create,
        **options,  # type: ignore[arg-type]
    )


def inspect_schema(location: str) -> SchemaStatus:
    """The schema version of the store at ``location`` and the upgrades it is missing; reads
    without creating or changing anything (``StorageError`` if there is no store there)."""
    with open_location(location, readonly=True, create=False) as store:
        version = store.schema_version()
        steps = tuple(
            SchemaStep(step, step + 1, _pg_schema.UPGRADES[step])
            for step in _pg_schema.pending_upgrades(version)
        )
        return SchemaStatus(store.path, version, _pg_schema.SCHEMA_VERSION, steps)


def migrate_schema(location: str, *, backup_path: object = None) -> MigrationResult:
    """Upgrade the store at ``location`` to this code's schema version, never creating one;
    all steps run in one transaction.

    A PostgreSQL store is not backed up to a file here: a ``backup_path`` is refused with
    ``ValidationError`` before anything is read or changed (back up with
    ``pg_dump --schema=NAME``, or ``sqlitestream export``, first).
    """
    if backup_path is not None:
        raise ValidationError(
            "backup_path: migrate does not back up a PostgreSQL store to a file; run "
            "pg_dump --schema=NAME (or sqlitestream export) first, then migrate without a backup"
        )
    status = inspect_schema(location)
    if status.up_to_date:
        return MigrationResult(status.path, status.version, status.version, None)
    with open_location(location, create=False) as store:
        started = store.upgraded_from
    return MigrationResult(
        status.path, status.version if started is None else started, status.code_version, None
    )
