"""The shared contract suite, run against every store this project ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from sqlitestream import InMemorySessionStore, SessionStore, SQLiteSessionStore
from sqlitestream.testing import SessionStoreContract


def _rows(path: Path) -> dict[str, list[Any]]:
    """Every row of every table, read beside the store with a connection of our own."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        return {table: conn.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2').fetchall() for table in tables}
    finally:
        conn.close()


class TestInMemoryStore(SessionStoreContract):
    def make_store(self, tmp_path: Path) -> SessionStore:
        return InMemorySessionStore()


class TestSQLiteMemoryStore(SessionStoreContract):
    def make_store(self, tmp_path: Path) -> SessionStore:
        return SQLiteSessionStore(":memory:")


class TestSQLiteFileStore(SessionStoreContract):
    def make_store(self, tmp_path: Path) -> SessionStore:
        return SQLiteSessionStore(tmp_path / "events.db")

    def stored_state(self, store: SessionStore, tmp_path: Path) -> object:
        return _rows(tmp_path / "events.db")


class TestSQLiteReopenedFileStore(SessionStoreContract):
    """The same file closed and opened again between the steps of each test, with a small
    ``max_event_bytes``."""

    max_event_bytes = 512 * 1024

    def make_store(self, tmp_path: Path) -> SessionStore:
        return SQLiteSessionStore(
            tmp_path / "events.db", synchronous="full", max_event_bytes=self.max_event_bytes
        )

    def reopen(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        store.close()
        return SQLiteSessionStore(
            tmp_path / "events.db", synchronous="full", max_event_bytes=self.max_event_bytes
        )

    def stored_state(self, store: SessionStore, tmp_path: Path) -> object:
        return _rows(tmp_path / "events.db")
