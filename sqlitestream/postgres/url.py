"""PostgreSQL store locations as one string, for the command line and ``copy``.

A location is a libpq URL, ``postgresql://`` or ``postgres://``, optionally with a ``schema``
query parameter naming the store's PostgreSQL schema (default ``sqlitestream``), e.g.
``postgresql://app@db.internal:5432/app?schema=agents``. The ``schema`` parameter is ours:
it is removed before the URL reaches libpq. Anything else is handed to libpq unchanged.

Nothing here imports psycopg until a store is opened.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from sqlitestream._core.validate import describe
from sqlitestream.errors import ValidationError

if TYPE_CHECKING:
    from sqlitestream.sqlite.admin import MigrationResult, SchemaStatus
    from sqlitestream.postgres.store import PostgresSessionStore

__all__ = ["PostgresSchemas", "display_url", "is_postgres_url", "open_postgres", "split_location"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL store (anything else is a SQLite file path)."""
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


def split_location(location: str) -> tuple[str, str | None]:
    """``(dsn for libpq, schema or None)`` from a location URL."""
    if not is_postgres_url(location):
        raise ValidationError(f"not a postgresql:// URL: {describe(location)}")
    parts = urlsplit(location)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in params if key == "schema"]
    if len(schemas) > 1:
        raise ValidationError(f"the URL names the schema {len(schemas)} times: {describe(location)}")
    rest = [(key, value) for key, value in params if key != "schema"]
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    return dsn, (schemas[0] if schemas else None)


def display_url(dsn: str, schema: str) -> str:
    """The store's location as a URL without the password, with its ``schema`` parameter."""
    from sqlitestream.postgres.connection import load_psycopg

    psycopg = load_psycopg()
    try:
        params = dict(psycopg.conninfo.conninfo_to_dict(dsn))
    except psycopg.Error:
        return f"postgresql://<unparsable DSN>?schema={schema}"
    params.pop("password", None)
    user, host = params.pop("user", None), params.pop("host", None)
    port, dbname = params.pop("port", None), params.pop("dbname", None)
    netloc = f"{quote(str(user), safe='')}@" if user else ""
    netloc += quote(str(host), safe=",") if host else ""
    netloc += f":{port}" if port else ""
    path = f"/{quote(str(dbname), safe='')}" if dbname else ""
    query = urlencode([*sorted((key, str(value)) for key, value in params.items()), ("schema", schema)])
    return f"postgresql://{netloc}{path}?{query}"


def open_postgres(location: str, *, readonly: bool = False, create: bool = True) -> PostgresSessionStore:
    """Open the PostgreSQL store at a location URL (see the module docs)."""
    from sqlitestream.postgres.store import DEFAULT_SCHEMA, PostgresSessionStore

    dsn, schema = split_location(location)
    return PostgresSessionStore(
        dsn, schema=DEFAULT_SCHEMA if schema is None else schema, readonly=readonly, create=create
    )


class PostgresSchemas:
    """Schema inspection and migration for locations, shaped like the SQLite store's
    classmethods of the same names so the command line calls either alike."""

    @staticmethod
    def inspect_schema(location: str | os.PathLike[str]) -> SchemaStatus:
        """The schema version of the store at ``location`` and the upgrades it is missing;
        reads without creating or changing anything."""
        from sqlitestream.postgres import schema as _pg_schema
        from sqlitestream.sqlite.admin import SchemaStatus, SchemaStep

        with open_postgres(os.fspath(location), readonly=True, create=False) as store:
            version = store.schema_version()
            steps = tuple(
                SchemaStep(step, step + 1, _pg_schema.UPGRADES[step])
                for step in _pg_schema.pending_upgrades(version)
            )
            return SchemaStatus(store.path, version, _pg_schema.SCHEMA_VERSION, steps)

    @staticmethod
    def migrate_schema(
        location: str | os.PathLike[str], *, backup_path: str | os.PathLike[str] | None = None
    ) -> MigrationResult:
        """Upgrade the store at ``location`` to this code's schema version, never creating one.

        All steps run in one transaction. A backup file is not written for PostgreSQL: with
        pending upgrades, ``backup_path`` is refused (``ValidationError``); back up with
        ``pg_dump --schema=NAME`` (or ``sqlitestream export``) first.
        """
        from sqlitestream.sqlite.admin import MigrationResult

        status = PostgresSchemas.inspect_schema(location)
        if status.up_to_date:
            return MigrationResult(status.path, status.version, status.version, None)
        if backup_path is not None:
            raise ValidationError(
                "backup_path: a PostgreSQL store is not backed up to a file by migrate; run "
                "pg_dump --schema=NAME (or sqlitestream export) first, then migrate without a backup"
            )
        with open_postgres(os.fspath(location), create=False) as store:
            started = store.upgraded_from
        return MigrationResult(
            status.path, status.version if started is None else started, status.code_version, None
        )
