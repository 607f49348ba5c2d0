"""The store file is one file under one name, and a store only acknowledges writes that went
into the file its path names.

A file with two names (hard links) gets a -wal and -shm per name, so writers through the two
names corrupt it; a symlink put our side files beside the link while SQLite put its own beside
the target; and a file deleted or replaced under open stores took acknowledged commits that
nobody could read again.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import apsw
import pytest
from support import run_in_another_process

from sqlitestream import Event, SQLiteSessionStore, StorageError


def _integrity(path: Path) -> list[str]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def _append_in_other_process(path: Path, event_id: str) -> str:
    """The new event's sequence number as another process appends it to ``path``, or the
    ``StorageError`` that process got, as ``"StorageError: ..."``."""
    script = (
        "import sys\nfrom sqlitestream import Event, SQLiteSessionStore, StorageError\n"
        "try:\n"
        "    with SQLiteSessionStore(sys.argv[1]) as store:\n"
        "        print(store.append_event_with_sequence(Event('message_sent', 's1', id=sys.argv[2])).sequence_number)\n"
        "except StorageError as exc:\n"
        "    print(f'StorageError: {exc}')\n"
    )
    return run_in_another_process(script, str(path), event_id).strip()


# One file, one name ---------------------------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_file_with_a_second_hard_link_is_refused_by_both_names(
    tmp_path: Path, readonly: bool
) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
    os.link(path, tmp_path / "other-name.db")
    before = path.read_bytes()
    for name in (path, tmp_path / "other-name.db"):
        with pytest.raises(StorageError, match="hard link"):
            SQLiteSessionStore(name, readonly=readonly)
    assert path.read_bytes() == before
    assert not os.path.exists(tmp_path / "other-name.db-wal")


def test_a_process_opening_a_hard_linked_name_is_refused_while_another_writes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1", id="first"))
        os.link(path, tmp_path / "alias.db")
        other = _append_in_other_process(tmp_path / "alias.db", "through-alias")
        assert other.startswith("StorageError: ") and "hard link" in other, other
        store.append_event(Event("message_sent", "s1", id="second"))
        assert [e.id for e in store.get_events("s1")] == ["first", "second"]
    assert _integrity(path) == ["ok"]


def test_a_store_opened_through_a_symlink_keeps_every_side_file_beside_the_real_file(tmp_path: Path) -> None:
    real_dir = tmp_path / "data"
    real_dir.mkdir()
    real = real_dir / "events.db"
    link = tmp_path / "link.db"
    link.symlink_to(real)
    with SQLiteSessionStore(link) as store:
        store.append_event(Event("message_sent", "s1"))
        assert store.path == str(real)
        info = store.store_info()
        assert info.path == str(real)
        assert info.wal_bytes is not None and info.wal_bytes > 0  # the commit is in the real -wal
        other = _append_in_other_process(real, "through-the-target")
        assert other == "2"
        assert store.get_latest_sequence("s1") == 2
        assert sorted(os.listdir(real_dir)) == [
            "events.db",
            "events.db-lock",
            "events.db-shm",
            "events.db-wal",
        ]
    assert sorted(os.listdir(tmp_path)) == ["data", "link.db"]


# The file moved, deleted or replaced under an open store --------------------------------------------


def _settle(directory: Path) -> None:
    """Date the directory's last change an hour back, as for a store that has been open a
    while: commits then check the directory instead of each file (sqlite/files.py)."""
    an_hour_ago = time.time() - 3600
    os.utime(directory, (an_hour_ago, an_hour_ago))


@pytest.mark.parametrize("settled", [False, True], ids=["new-directory", "settled-directory"])
@pytest.mark.parametrize("removed", ["", "-wal", "-shm"])
def test_a_store_whose_file_was_deleted_refuses_to_acknowledge(
    tmp_path: Path, removed: str, settled: bool
) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path)
    try:
        if settled:
            _settle(tmp_path)
        store.append_event(Event("message_sent", "s1", id="kept"))
        store.append_event(Event("message_sent", "s1", id="kept-too"))
        subprocess.run(["rm", f"{path}{removed}"], check=True)
        for call in (
            lambda: store.append_event(Event("message_sent", "s1", id="lost")),
            lambda: store.append_events([Event("message_sent", "s2", id="lost-too")]),
        ):
            with pytest.raises(StorageError, match="moved or deleted"):
                call()
    finally:
        store.close()


@pytest.mark.parametrize("settled", [False, True], ids=["new-directory", "settled-directory"])
def test_a_store_whose_file_was_replaced_refuses_to_acknowledge(tmp_path: Path, settled: bool) -> None:
    path = tmp_path / "events.db"
    replacement = tmp_path / "replacement.db"
    with SQLiteSessionStore(replacement) as other:
        other.append_event(Event("message_sent", "s1", id="replacement"))
    store = SQLiteSessionStore(path)
    try:
        if settled:
            _settle(tmp_path)
        store.append_event(Event("message_sent", "s1", id="original"))
        store.append_event(Event("message_sent", "s1", id="original-too"))
        os.replace(replacement, path)
        with pytest.raises(StorageError, match="moved or deleted"):
            store.append_event(Event("message_sent", "s1", id="lost"))
        with pytest.raises(StorageError, match="moved or deleted"):
            store.append_events([Event("message_sent", "s1", id="lost-too")])
    finally:
        store.close()


def test_a_store_whose_directory_was_swapped_for_a_copy_refuses_to_acknowledge(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    store = SQLiteSessionStore(directory / "events.db")
    try:
        _settle(directory)
        store.append_event(Event("message_sent", "s1", id="original"))
        store.append_event(Event("message_sent", "s1", id="original-too"))
        # The copy keeps every name and time of the original; only the directory is another.
        subprocess.run(["cp", "-a", str(directory), str(tmp_path / "copy")], check=True)
        os.rename(directory, tmp_path / "moved-away")
        os.rename(tmp_path / "copy", directory)
        with pytest.raises(StorageError, match="moved or deleted"):
            store.append_event(Event("message_sent", "s1", id="lost"))
    finally:
        store.close()


def test_a_store_whose_file_was_deleted_leaves_a_new_store_at_the_path_whole(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    old = SQLiteSessionStore(path)
    try:
        old.append_event(Event("message_sent", "s1", id="old"))
        for suffix in ("", "-wal", "-shm"):
            os.unlink(f"{path}{suffix}")
        with pytest.raises(StorageError, match="moved or deleted"):
            old.append_event(Event("message_sent", "s1", id="lost"))
        created = _append_in_other_process(path, "new")
        assert created == "1"
        with SQLiteSessionStore(path) as new:
            with pytest.raises(StorageError, match="moved or deleted"):
                old.append_event(Event("message_sent", "s1", id="lost"))
            new.append_event(Event("message_sent", "s1", id="new-2"))
    finally:
        old.close()  # must not checkpoint into, or delete the -wal and -shm of, the new file
    assert _integrity(path) == ["ok"]
    with SQLiteSessionStore(path) as reopened:
        assert [e.id for e in reopened.get_events("s1")] == ["new", "new-2"]
