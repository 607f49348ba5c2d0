"""The shared contract suite against a real PostgreSQL server (SQLITESTREAM_PG_DSN)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlitestream import SessionStore
from sqlitestream.postgres import PostgresSessionStore
from sqlitestream.testing import SessionStoreContract


class TestPostgresStore(SessionStoreContract):
    """Each test gets an empty store (``pg_store_schema``: one schema per test process, emptied
    before each test); ``reopen`` closes the store and opens the schema again."""

    @pytest.fixture(autouse=True)
    def _server(self, pg_dsn: str, pg_store_schema: str) -> None:
        self.dsn, self.schema = pg_dsn, pg_store_schema

    def make_store(self, tmp_path: Path) -> SessionStore:
        return PostgresSessionStore(self.dsn, schema=self.schema)

    def reopen(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        store.close()
        return PostgresSessionStore(self.dsn, schema=self.schema)
