"""The shared contract suite, run against every store this project ships."""

from __future__ import annotations

from pathlib import Path

from sqlitestream import InMemorySessionStore, SessionStore, SQLiteSessionStore
from sqlitestream.testing import SessionStoreContract


class TestInMemoryStore(SessionStoreContract):
    def make_store(self, tmp_path: Path) -> SessionStore:
        return InMemorySessionStore()


class TestSQLiteMemoryStore(SessionStoreContract):
    def make_store(self, tmp_path: Path) -> SessionStore:
        return SQLiteSessionStore(":memory:")


class TestSQLiteFileStore(SessionStoreContract):
    def make_store(self, tmp_path: Path) -> SessionStore:
        return SQLiteSessionStore(tmp_path / "events.db")


class TestSQLiteReopenedFileStore(SessionStoreContract):
    """The same file closed and opened again between the steps of each test."""

    def make_store(self, tmp_path: Path) -> SessionStore:
        return SQLiteSessionStore(tmp_path / "events.db", synchronous="full")

    def reopen(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        store.close()
        return SQLiteSessionStore(tmp_path / "events.db", synchronous="full")
