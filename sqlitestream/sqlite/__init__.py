"""The SQLite backend: :class:`SQLiteSessionStore` on one embedded file (or ``":memory:"``).

Modules by concern: ``store`` (the contract's operations), ``appends`` (what one append, a
batch and a producer's stamp write), ``records`` (sessions and runs), ``connection`` (opening
connections, their settings, the one apsw error translation), ``schema`` (+ ``schema.sql``:
versions and upgrades), ``admin`` (inspection, integrity check, import, migration), ``watcher``
and ``walhint`` (cross-process wake-ups), ``sidelock`` (queueing writers across processes),
``groupcommit`` (appends of several threads sharing write transactions).
Only the names re-exported here are public.
"""

from sqlitestream._core.groupcommit import GroupCommitStats
from sqlitestream.sqlite.store import SQLiteSessionStore

__all__ = ["GroupCommitStats", "SQLiteSessionStore"]
