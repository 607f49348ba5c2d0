"""The store file after close(): the .db alone holds every committed event, so a plain copy of
a closed store is a whole store (the -wal and -shm files are gone, as SQLite leaves them after
its last connection)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlitestream import Event, SQLiteSessionStore


def test_a_closed_store_is_self_contained_in_its_db_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s1", data={"n": n}) for n in range(200)])
        assert len(store.get_events("s1")) == 200  # reads open pool connections
        store.get_events("s1", after=199, wait_timeout_ms=1)  # and a waiter's
    assert not (tmp_path / "events.db-wal").exists()
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)  # the .db alone
    with SQLiteSessionStore(copy, readonly=True) as copied:
        assert [e.data["n"] for e in copied.get_events("s1")] == list(range(200))


def test_closing_one_of_two_stores_on_a_file_leaves_the_other_working(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first, second = SQLiteSessionStore(path), SQLiteSessionStore(path)
    first.append_event(Event("message_sent", "s1"))
    first.get_events("s1")
    first.close()
    second.append_event(Event("message_sent", "s1"))
    assert [e.sequence_number for e in second.get_events("s1")] == [1, 2]
    second.close()
    assert not (tmp_path / "events.db-wal").exists()
