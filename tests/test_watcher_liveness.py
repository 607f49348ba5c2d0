"""The cross-process watcher: restarts after a failed start, and wakes only what changed.

These drive :class:`~sqlitestream.sqlite.watcher.DataVersionWatcher` directly: its
``open_connection`` argument (what the store passes its read-connection opener as) is the seam
that makes one start fail deterministically, as a moment at the file descriptor limit would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream._core.waiting import WakeHub
from sqlitestream.sqlite.connection import open_connection
from sqlitestream.sqlite.watcher import DataVersionWatcher


class _Signal:
    """A waiter's signal that remembers how often it was set."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.count = 0

    def set(self) -> None:
        self.count += 1
        self.event.set()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    with SQLiteSessionStore(tmp_path / "w.db") as store:
        store.append_event_with_sequence(Event("message_sent", "quiet", data={}))
        store.append_event_with_sequence(Event("message_sent", "busy", data={}))
        yield store


def _watcher(path: str, opener: Callable[[], apsw.Connection]) -> tuple[WakeHub, DataVersionWatcher]:
    holder: list[DataVersionWatcher] = []
    hub = WakeHub(
        on_register=lambda: holder[0].ensure_running(), seed=lambda session_id: holder[0].tip_of(session_id)
    )
    watcher = DataVersionWatcher(opener, hub, interval_s=0.002, wal_path=path + "-wal")
    holder.append(watcher)
    return hub, watcher


def test_watcher_restarts_after_a_failed_start_while_waiters_remain(store: SQLiteSessionStore) -> None:
    failed = threading.Event()

    def opener() -> apsw.Connection:
        if threading.current_thread().name == "sqlitestream-watcher" and not failed.is_set():
            failed.set()
            raise apsw.CantOpenError("too many open files")
        return open_connection(store.path, readonly=True)

    hub, watcher = _watcher(store.path, opener)
    signal = _Signal()
    try:
        with hub.waiting("busy", signal):
            assert failed.wait(30)
            signal.event.clear()  # the failed start woke its waiters to re-query
            store.append_event_with_sequence(Event("message_sent", "busy", data={}))
            # The in-process hub of ``store`` is another one: only the watcher can wake this.
            assert signal.event.wait(30), "the watcher never came back after its failed start"
    finally:
        watcher.stop()


def test_a_new_waiter_is_not_woken_by_the_watchers_first_look(store: SQLiteSessionStore) -> None:
    hub, watcher = _watcher(store.path, lambda: open_connection(store.path, readonly=True))
    quiet, busy = _Signal(), _Signal()
    try:
        with hub.waiting("quiet", quiet), hub.waiting("busy", busy):
            store.append_event_with_sequence(Event("message_sent", "busy", data={}))
            assert busy.event.wait(30)  # the watcher has looked since both registered
            assert quiet.count == 0
    finally:
        watcher.stop()


def test_closing_after_ctrl_c_interrupted_the_watchers_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C can land in the thread that registers a long-poll while it starts the watcher
    thread (``tail --follow`` under load). The store must still close cleanly: joining a
    thread whose start was interrupted raised RuntimeError, so Ctrl-C ended ``tail`` with
    "unexpected RuntimeError" and exit 1 instead of 130."""
    real_start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        if thread.name == "sqlitestream-watcher":
            raise KeyboardInterrupt  # as if the signal came just before the thread launched
        real_start(thread)

    path = tmp_path / "w.db"
    store = SQLiteSessionStore(path)
    try:
        store.append_event_with_sequence(Event("message_sent", "s1", data={}))
        monkeypatch.setattr(threading.Thread, "start", interrupted_start)
        with pytest.raises(KeyboardInterrupt):
            store.get_events("s1", after=1, wait_timeout_ms=30_000)
        monkeypatch.undo()
    finally:
        store.close()
    with SQLiteSessionStore(path) as again:
        assert [event.sequence_number for event in again.get_events("s1")] == [1]
        assert again.get_events("s1", after=1, wait_timeout_ms=1) == []
