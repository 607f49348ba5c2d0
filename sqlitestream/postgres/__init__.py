"""The PostgreSQL backend: :class:`PostgresSessionStore`, the same contract on one PostgreSQL
schema shared by many processes and machines.

Modules by concern: ``store`` (the contract's operations), ``connection`` (the pool, retries and
the one psycopg error translation), ``schema`` (+ ``schema.sql``: versions and upgrades),
``admin`` (inspection, integrity check, import), ``listener`` (LISTEN/NOTIFY wake-ups),
``rows`` (row codecs), ``url`` (``postgresql://`` locations). psycopg is imported only when a
store is opened. Only the names re-exported here are public.
"""

from sqlitestream.postgres.connection import MissingDependencyError
from sqlitestream.postgres.store import DEFAULT_SCHEMA, PostgresSessionStore

__all__ = ["DEFAULT_SCHEMA", "MissingDependencyError", "PostgresSessionStore"]
