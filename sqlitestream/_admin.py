"""Administration methods of :class:`~sqlitestream.SQLiteSessionStore` beyond the contract."""

from __future__ import annotations

from .store import SessionStore

__all__ = ["SQLiteAdminMixin"]


class SQLiteAdminMixin(SessionStore):
    """Inspection, integrity checks, schema migration and export/import for a SQLite store."""
