"""PostgreSQL store locations as one string (what :func:`sqlitestream.open_store` and the
command line's ``--db`` take).

A location is a libpq URL, ``postgresql://`` or ``postgres://``, optionally with a ``schema``
query parameter naming the store's PostgreSQL schema (default ``sqlitestream``), e.g.
``postgresql://app@db.internal:5432/app?schema=agents``. The ``schema`` parameter is ours:
it is removed before the URL reaches libpq. Anything else is handed to libpq unchanged.

Nothing here imports psycopg until a store is opened.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from sqlitestream._core.validate import describe
from sqlitestream.errors import ValidationError

__all__ = ["display_url", "is_postgres_url", "redacted", "split_location"]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL store (anything else is a SQLite file path)."""
    return isinstance(location, str) and location.lower().startswith(_SCHEMES)


def split_location(location: str) -> tuple[str, str | None]:
    """``(dsn for libpq, schema or None)`` from a location URL."""
    if not is_postgres_url(location):
        raise ValidationError(f"not a postgresql:// URL: {describe(redacted(location))}")
    parts = urlsplit(location)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in params if key == "schema"]
    if len(schemas) > 1:
        raise ValidationError(
            f"the URL names the schema {len(schemas)} times: {describe(redacted(location))}"
        )
    rest = [(key, value) for key, value in params if key != "schema"]
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    return dsn, (schemas[0] if schemas else None)


def redacted(location: object) -> object:
    """``location`` fit for a message: a URL's password (in its user part or a ``password``
    query parameter) replaced by ``***``; anything that is not a str is returned as it is."""
    if not isinstance(location, str):
        return location
    try:
        parts = urlsplit(location)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        params = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(key, "***" if key == "password" else value) for key, value in params], safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not even URL-shaped: say nothing of it
        return "<a location that is not a valid URL>"


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
