"""The PostgreSQL backend: :class:`PostgresSessionStore`, the same contract on one PostgreSQL
schema shared by many processes and machines.

Modules by concern: ``store`` (the contract's operations), ``groupcommit`` (concurrent appends
sharing transactions), ``connection`` (the pool, retries and
the one psycopg error translation), ``schema`` (+ ``schema.sql``: versions and upgrades),
``admin`` (inspection, integrity check, import), ``listener`` (LISTEN/NOTIFY wake-ups),
``rows`` (row codecs), ``url`` (``postgresql://`` locations). psycopg is imported only when a
store is opened. Only the names re-exported here are public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_SCHEMA", "GroupCommitStats", "MissingDependencyError", "PostgresSessionStore"]

# Loaded on first use (PEP 562): every command line run asks ``url`` whether its --db is a
# PostgreSQL URL, and importing the package must not load the whole store for that (it made
# up about a fifth of `sqlitestream latest`'s imports).
_FROM = {
    "DEFAULT_SCHEMA": "store",
    "GroupCommitStats": "groupcommit",
    "PostgresSessionStore": "store",
    "MissingDependencyError": "connection",
}

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import MissingDependencyError as MissingDependencyError
    from sqlitestream.postgres.groupcommit import GroupCommitStats as GroupCommitStats
    from sqlitestream.postgres.store import DEFAULT_SCHEMA as DEFAULT_SCHEMA
    from sqlitestream.postgres.store import PostgresSessionStore as PostgresSessionStore


def __getattr__(name: str) -> Any:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_FROM])
