"""Idempotent producers on sessions: the contract kit on the SQLite and the in-memory store,
and the upgrade of a version 3 file."""

from __future__ import annotations

from pathlib import Path

import apsw

from sqlitestream import Event, InMemorySessionStore, SQLiteSessionStore
from sqlitestream.bytestreams import Producer
from sqlitestream.producers import SessionProducers
from sqlitestream.testing.producers import SessionProducersContract
from tools.oldstores import downgrade_sqlite_store


def _schema(path: Path) -> list[tuple[object, ...]]:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
    finally:
        conn.close()


class TestSQLiteSessionProducers(SessionProducersContract):
    def make_store(self, tmp_path: Path) -> SessionProducers:
        self.sqlite_store = SQLiteSessionStore(tmp_path / "store.db")
        return self.sqlite_store

    def close_store(self) -> None:
        self.sqlite_store.close()


class TestInMemorySessionProducers(SessionProducersContract):
    def make_store(self, tmp_path: Path) -> SessionProducers:
        self.memory = InMemorySessionStore()
        return self.memory

    def close_store(self) -> None:
        self.memory.close()


def test_a_version_4_store_is_upgraded_to_the_schema_of_a_new_one(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    SQLiteSessionStore(new).close()
    with SQLiteSessionStore(old) as store:
        store.append_event(Event("message_sent", "s1"))
        store.byte_streams().create_stream("a", data=b"x")
    downgrade_sqlite_store(old, 4)
    with SQLiteSessionStore(old) as store:
        assert store.upgraded_from == 4
        store.append_events_as(Producer("p", 0, 0), [Event("message_sent", "s1")])
        assert store.get_latest_sequence("s1") == 2
    assert _schema(old) == _schema(new)
