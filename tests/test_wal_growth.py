"""The WAL stays bounded, and ``info``/``check`` report a large or pinned one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.sqlite.connection import JOURNAL_SIZE_LIMIT

_PINNER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
cursor = conn.execute("SELECT * FROM events")
cursor.fetchone()  # the cursor reads one row ahead: the table needs three rows or more
print("pinned", flush=True)
sys.stdin.readline()
conn.close()
"""
_BIG = "x" * 1_000_000


def _wal_size(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


def test_wal_returns_under_the_limit_once_a_pinning_reader_leaves(tmp_path: Path) -> None:
    path = tmp_path / "pinned.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", data={"n": n}) for n in range(10)])
        pinner = subprocess.Popen(
            [sys.executable, "-c", _PINNER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert pinner.stdout is not None and pinner.stdin is not None
        assert pinner.stdout.readline().strip() == "pinned"
        while _wal_size(path) <= 2 * JOURNAL_SIZE_LIMIT:
            store.append_event_with_sequence(Event("message_sent", "s", data={"blob": _BIG}))
        info = store.store_info()
        assert info.wal_pinned is True and info.checkpoint_pending is True
        assert [finding.kind for finding in store.check_integrity().findings] == ["large_wal"]
        pinner.stdin.write("\n")
        pinner.stdin.flush()
        assert pinner.wait(timeout=60) == 0
        deadline = time.monotonic() + 60
        while _wal_size(path) >= JOURNAL_SIZE_LIMIT and time.monotonic() < deadline:
            store.append_event_with_sequence(Event("message_sent", "s", data={"n": 1}))
        assert _wal_size(path) < JOURNAL_SIZE_LIMIT
        assert store.store_info().wal_pinned is False
        assert store.check_integrity().ok


def test_info_says_a_checkpoint_is_pending_while_the_data_is_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "pending.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", data={"n": n}) for n in range(100)])
        with SQLiteSessionStore(path, readonly=True) as reader:
            info = reader.store_info()
        assert info.wal_bytes is not None and info.wal_bytes > 0
        assert info.checkpoint_pending is True and info.wal_pinned is None
    with SQLiteSessionStore(path, readonly=True) as reader:
        info = reader.store_info()  # the last connection to close checkpointed the WAL away
    assert info.checkpoint_pending is False and info.wal_bytes == 0 and info.events == 100
