"""The Linux WAL-file wake-up hint behind cross-process long-polls (sqlitestream.sqlite.walhint).

The hint only decides when the watcher looks; whether a commit happened is always read from
PRAGMA data_version, which the cross-process streaming and long-poll tests cover end to end.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from sqlitestream.sqlite.walhint import WalHint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")


def _open(path: Path) -> WalHint:
    hint = WalHint.open(str(path))
    if hint is None:
        pytest.skip("inotify is not available here")
    return hint


def test_times_out_when_nothing_is_written(tmp_path: Path) -> None:
    wal = tmp_path / "store.db-wal"
    wal.write_bytes(b"")
    hint = _open(wal)
    try:
        assert hint.wait(0.02) is False
    finally:
        hint.close()


def test_a_write_to_the_wal_file_wakes_the_waiter(tmp_path: Path) -> None:
    wal = tmp_path / "store.db-wal"
    wal.write_bytes(b"")
    hint = _open(wal)
    try:

        def append_frame() -> None:
            with wal.open("ab") as file:
                file.write(b"frame")

        writer = threading.Thread(target=append_frame)
        writer.start()
        assert hint.wait(10) is True
        writer.join()
    finally:
        hint.close()


def test_a_wal_file_created_after_opening_is_watched(tmp_path: Path) -> None:
    wal = tmp_path / "store.db-wal"
    hint = _open(wal)
    try:
        wal.write_bytes(b"")  # the directory watch reports the new file and re-arms
        assert hint.wait(10) is True
        while hint.wait(0):  # drain whatever the creation reported
            pass
        with wal.open("ab") as file:
            file.write(b"frame")
        assert hint.wait(10) is True
    finally:
        hint.close()


def test_interrupt_wakes_the_waiter(tmp_path: Path) -> None:
    hint = _open(tmp_path / "store.db-wal")
    try:
        threading.Timer(0.01, hint.interrupt).start()
        assert hint.wait(10) is True
    finally:
        hint.close()
