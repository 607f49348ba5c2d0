"""Cross-process wake-ups for a SQLite file store.

Commits by other processes do not pass through our in-process wake hub. While (and only while)
someone in this process waits, one thread polls ``PRAGMA data_version`` on its own idle
connection; when it changes, a look finds the waiters the commit concerns and wakes them (or
releases those whose session was deleted). A connection with no open statement sees other
processes' commits through the PRAGMA; apsw's ``Connection.data_version()`` alone would not
until the connection begins a read. What a look reads is the look's own: for sessions,
:mod:`sqlitestream.sqlite.positionlook` (the new events' positions, in proportion to what was
appended); for byte streams, :mod:`sqlitestream.sqlite.tiplook` (each waited stream's version).

On Linux the thread sleeps on an inotify watch of the ``-wal`` file (``_walhint``) instead of a
short timer: a write to it wakes the thread, which then re-checks ``data_version`` every
0.2 ms for up to 5 ms (the frames reach the file just before the commit is published), and a
timed poll every ``max(interval, 50 ms)`` stays as the fallback. The PRAGMA is always the
source of truth; the hint only decides when to look.

A waiter registering reads its seed (:meth:`DataVersionWatcher.tip_of`, before the waiter
re-queries), so the looks after it wake it only for what changed since. The thread retries a
failed start with back-off for as long as anyone waits, and every registration makes sure it
runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

import apsw

from sqlitestream._core.waiting import NO_SEED, WakeHub
from sqlitestream.errors import StorageError
from sqlitestream.sqlite.positionlook import PositionLook
from sqlitestream.sqlite.tiplook import BYTE_STREAMS, TipLook, WatchQueries
from sqlitestream.sqlite.walhint import WalHint

__all__ = ["BYTE_STREAMS", "DataVersionWatcher", "WatchQueries"]


class Look(Protocol):
    """What a watcher reads on each commit, and what it remembers between looks."""

    def start(self) -> None:
        """A new run of the watcher thread: forget what the last one knew."""

    def seed(self, conn: apsw.Connection, key: str) -> object:
        """A new waiter's seed, read on ``conn`` in the registering thread."""

    def look(self, conn: apsw.Connection, hub: WakeHub, *, committed: bool) -> None:
        """Wake (or release) the waiters concerned by what was committed (``committed``) or
        by what :meth:`due` owes."""

    def due(self, now: float) -> bool:
        """Whether a look is owed although nothing was committed."""

    def failed(self, hub: WakeHub) -> None:
        """A look raised: make the waiters re-query."""


_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))
_HINTED_FALLBACK_S = 0.05  # the timed poll while the WAL hint is armed
_BURST_S = 0.005  # after a hint, how long to keep looking for the commit to become visible
_BURST_SPIN_S = 0.0005  # the first part of it: re-check after only yielding the CPU
_BURST_STEP_S = 0.0002
_RETRY_FIRST_S = 0.01  # a failed start is retried after this, doubling up to _RETRY_MAX_S
_RETRY_MAX_S = 1.0


class DataVersionWatcher:
    """One polling thread per store, started by the first waiter, gone ``linger_s`` after the
    last waiter leaves (so an idle store does no background work)."""

    def __init__(
        self,
        open_connection: Callable[[], apsw.Connection],
        hub: WakeHub,
        *,
        interval_s: float,
        linger_s: float = 0.5,
        wal_path: str | None = None,
        queries: WatchQueries | None = None,
    ) -> None:
        """``queries`` None: the watcher of a session store's hub (by feed position); else of
        the keys those queries read (see :mod:`sqlitestream.sqlite.tiplook`)."""
        self._look: Look = PositionLook() if queries is None else TipLook(queries)
        self._open_connection = open_connection
        self._hub = hub
        self._interval_s = interval_s
        self._fallback_s = max(interval_s, _HINTED_FALLBACK_S)
        self._wal_path = wal_path
        self._hint: WalHint | None = None
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._seed_lock = threading.Lock()
        self._seed_conn: apsw.Connection | None = None  # for tip_of(), in registering threads

    def serve(self, hub: WakeHub) -> None:
        """Watch for ``hub`` instead (before the first waiter: a hub built with this
        watcher's ``ensure_running`` and ``tip_of``)."""
        self._hub = hub

    def tip_of(self, session_id: str) -> object:
        """The session's tip as of now, as a new waiter's seed (``NO_SEED`` if it cannot be
        read). Read in the registering thread before the waiter re-queries, so anything
        committed after it is either in the waiter's query or seen by a look as a change."""
        with self._seed_lock:
            try:
                if self._stop.is_set():
                    return NO_SEED
                if self._seed_conn is None:
                    self._seed_conn = self._open_connection()
                return self._look.seed(self._seed_conn, session_id)
            except (apsw.Error, StorageError):
                return NO_SEED  # a look then wakes it to re-query: late, never lost

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def ensure_running(self) -> None:
        with self._lock:
            if self._stop.is_set() or self.running:
                return
            self._thread = threading.Thread(target=self._run, name="sqlitestream-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
            # A thread not alive yet was never started, or its start() was interrupted (Ctrl-C
            # in the registering thread) before it ran: it can no longer be joined, and if it
            # runs at all, _run sees the stop first and returns without touching the file.
            if thread is not None and not thread.is_alive():
                thread = None
            if self._hint is not None:
                self._hint.interrupt()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._seed_lock:
            if self._seed_conn is not None:
                self._seed_conn.close()
                self._seed_conn = None

    def _run(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
        conn = self._connect()
        if conn is None:
            return
        try:
            self._poll(conn)
        finally:
            conn.close()

    def _connect(self) -> apsw.Connection | None:
        """The watcher's connection, retried with back-off while anyone waits (a moment at the
        file descriptor limit must not end cross-process wake-ups); None once nobody does."""
        pause = _RETRY_FIRST_S
        while True:
            try:
                return self._open_connection()
            except (apsw.Error, StorageError):
                # Waiters re-query now and meanwhile wait out their own timeouts.
                self._hub.wake(self._hub.sessions())
            if self._stop.wait(pause):
                break
            pause = min(2 * pause, _RETRY_MAX_S)
            with self._lock:
                if not self._hub.has_waiters():
                    break
        with self._lock:
            self._thread = None
        return None

    def _poll(self, conn: apsw.Connection) -> None:
        hint = WalHint.open(self._wal_path) if self._wal_path is not None else None
        with self._lock:
            self._hint = hint
        try:
            self._watch(conn, hint)
        finally:
            with self._lock:
                self._hint = None
            if hint is not None:
                hint.close()

    def _watch(self, conn: apsw.Connection, hint: WalHint | None) -> None:
        look = self._look
        look.start()
        last_version: object = None
        idle_since: float | None = None
        spin_until = burst_until = 0.0
        while not self._stop.is_set():
            if not self._hub.has_waiters():
                now = time.monotonic()
                idle_since = idle_since if idle_since is not None else now
                if now - idle_since >= self._linger_s:
                    with self._lock:
                        if not self._hub.has_waiters():
                            self._thread = None
                            return
                self._stop.wait(self._interval_s)
                continue
            idle_since = None
            changed = False
            try:
                version = conn.pragma("data_version")
                if version != last_version:
                    changed = last_version is not None
                    last_version = version
                    look.look(conn, self._hub, committed=True)  # also at the first: commits may precede it
                elif look.due(time.monotonic()):
                    look.look(conn, self._hub, committed=False)
            except apsw.Error:
                # A transient read failure (e.g. the file is being checkpointed); wake waiters so
                # they re-query and see the truth, then keep watching.
                look.failed(self._hub)
                last_version = None
            if hint is None:
                self._stop.wait(self._interval_s)
                continue
            if not changed and burst_until:
                # The WAL was written; its commit is not visible yet. It usually is within
                # microseconds (the writer publishes it right after its last frame), far less
                # than a sleep's timer slack, so first only yield the CPU between checks.
                now = time.monotonic()
                if now < spin_until:
                    _yield_cpu()
                    continue
                if now < burst_until:
                    time.sleep(_BURST_STEP_S)
                    continue
            burst_until = 0.0
            if hint.wait(self._fallback_s):
                now = time.monotonic()
                spin_until, burst_until = now + _BURST_SPIN_S, now + _BURST_S
