"""The store file after close(): the .db alone holds every committed event, so a plain copy of
a closed store is a whole store (the -wal and -shm files are gone, as SQLite leaves them after
its last connection)."""

from __future__ import annotations

import shutil
import threading
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


def _open_at_once(path: Path, start: threading.Barrier, failures: list[BaseException]) -> None:
    start.wait()
    try:
        SQLiteSessionStore(path).close()
    except BaseException as exc:
        failures.append(exc)


def test_store_objects_opening_one_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Six store objects (six connections) opening the same new file at the same moment, 60
    times: each one opens the store that one of them created. (The schema used to be read in
    three snapshots, and a creator's commit between them made the new store look like another
    application's file: about one round in ten failed.)"""
    for round_no in range(60):
        start, failures = threading.Barrier(6), []  # type: ignore[var-annotated]
        openers = [
            threading.Thread(target=_open_at_once, args=(tmp_path / f"new-{round_no}.db", start, failures))
            for _ in range(6)
        ]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
        assert failures == [], f"round {round_no}: {failures[0]!r}"
