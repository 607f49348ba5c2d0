"""The byte streams of the SQLite store: the contract kit on a file, in memory and after a
reopen; the upgrade of a version 2 file; wake-ups from another process."""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
from support import run_in_another_process

from sqlitestream import Event, InMemorySessionStore, SQLiteSessionStore
from sqlitestream.bytestreams import ByteStreams
from sqlitestream.testing.bytestreams import ByteStreamsContract
from tools.oldstores import downgrade_sqlite_store


class TestSQLiteFileByteStreams(ByteStreamsContract):
    def make_streams(self, tmp_path: Path) -> ByteStreams:
        self.store = SQLiteSessionStore(tmp_path / "store.db")
        return self.store.byte_streams()

    def close_streams(self) -> None:
        self.store.close()


class TestSQLiteMemoryByteStreams(TestSQLiteFileByteStreams):
    def make_streams(self, tmp_path: Path) -> ByteStreams:
        self.store = SQLiteSessionStore(":memory:")
        return self.store.byte_streams()


def test_streams_survive_a_reopen(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        store.byte_streams().create_stream("a", content_type="text/plain", data=b"kept", closed=True)
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        read = store.byte_streams().read_stream("a")
        assert (read.body(), read.closed) == (b"kept", True)


def _schema(path: Path) -> list[tuple[object, ...]]:
    """The byte streams' tables and indexes as SQLite stores their SQL (the rest of the
    upgraded schema is compared column by column in test_sqlite_store.py)."""
    conn = apsw.Connection(str(path))
    try:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_schema WHERE name LIKE 'ds%' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()


def test_a_version_2_store_is_upgraded_to_the_schema_of_a_new_one(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    SQLiteSessionStore(new).close()
    with SQLiteSessionStore(old) as store:
        store.append_event(Event("message_sent", "s1"))
    downgrade_sqlite_store(old, 2)
    with SQLiteSessionStore(old) as store:
        assert store.upgraded_from == 2
        assert store.get_latest_sequence("s1") == 1
        store.byte_streams().create_stream("a", data=b"x")
    assert _schema(old) == _schema(new)


def test_an_append_by_another_process_wakes_a_watcher(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteSessionStore(path) as store:
        streams = store.byte_streams()
        streams.create_stream("a", content_type="text/plain")
        woken = threading.Event()
        with streams.watch_stream("a", woken):
            code = (
                "from sqlitestream import SQLiteSessionStore\n"
                f"with SQLiteSessionStore({str(path)!r}) as s:\n"
                "    s.byte_streams().append('a', b'x', content_type='text/plain')\n"
            )
            run_in_another_process(code)
            assert woken.wait(10)
        assert streams.read_stream("a").body() == b"x"


class TestInMemoryByteStreams(ByteStreamsContract):
    def make_streams(self, tmp_path: Path) -> ByteStreams:
        self.store = InMemorySessionStore()
        return self.store.byte_streams()

    def close_streams(self) -> None:
        self.store.close()
