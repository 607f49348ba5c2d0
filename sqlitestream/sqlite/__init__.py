"""The SQLite backend: :class:`SQLiteSessionStore` on one embedded file (or ``":memory:"``).

Modules by concern: ``store`` (the contract's operations), ``connection`` (opening connections,
their settings, the one apsw error translation), ``schema`` (+ ``schema.sql``: versions and
upgrades), ``admin`` (inspection, integrity check, import, migration), ``watcher`` and
``walhint`` (cross-process wake-ups), ``sidelock`` (queueing writers across processes).
Only the names re-exported here are public.
"""

from sqlitestream.sqlite.store import SQLiteSessionStore

__all__ = ["SQLiteSessionStore"]
