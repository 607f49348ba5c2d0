"""Cross-process wake-ups for a SQLite file store.

Commits by other processes do not pass through our in-process wake hub. While (and only while)
someone in this process waits, one thread polls ``PRAGMA data_version`` on its own idle
connection; when it changes, it reads the latest sequence of each waited-on session and wakes
the sessions whose latest sequence moved (or releases those that were deleted, or deleted and
written again: their first event changed). A connection
with no open statement sees other processes' commits through the PRAGMA; apsw's
``Connection.data_version()`` alone would not until the connection begins a read.

On Linux the thread sleeps on an inotify watch of the ``-wal`` file (``_walhint``) instead of a
short timer: a write to it wakes the thread, which then re-checks ``data_version`` every
0.2 ms for up to 5 ms (the frames reach the file just before the commit is published), and a
timed poll every ``max(interval, 50 ms)`` stays as the fallback. The PRAGMA is always the
source of truth; the hint only decides when to look.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

import apsw

from sqlitestream._core.waiting import WakeHub
from sqlitestream.sqlite.walhint import WalHint

# One row holding every tip as JSON: apsw hands the GIL back and forth for each row fetched,
# and with thousands of waited sessions while other Python threads are busy (an event loop of
# followers, a server) those hand-offs dominate. Measured on 5,000 sessions: alone, 15-24 ms a
# look row by row and 29-36 ms as JSON; beside three busy threads, 400-430 ms and 100-150 ms.
_LATEST_OF = (
    "SELECT json_group_array(json_array(s.session_id, s.latest_seq, e.id)) "
    "FROM streams AS s LEFT JOIN events AS e ON e.session_id = s.session_id AND e.seq = 1 "
    "WHERE s.session_id IN (SELECT value FROM json_each(?))"
)
_Tip = tuple[int, "str | None"]
"""A session's latest sequence and the id of its first event: a log only grows, so a first
event that changed means the session was deleted and written again."""
_UNKNOWN = object()
_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))
_HINTED_FALLBACK_S = 0.05  # the timed poll while the WAL hint is armed
_BURST_S = 0.005  # after a hint, how long to keep looking for the commit to become visible
_BURST_SPIN_S = 0.0005  # the first part of it: re-check after only yielding the CPU
_BURST_STEP_S = 0.0002
_KEEP_UNWAITED = 10_000  # tips kept for sessions nobody waits on right now, before pruning


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
    ) -> None:
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

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def ensure_running(self) -> None:
        with self._lock:
            if self._stop.is_set() or self.running:
                return
            self._thread = threading.Thread(
                target=self._run, name="sqlitestream-watcher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
            if self._hint is not None:
                self._hint.interrupt()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        try:
            conn = self._open_connection()
        except Exception:
            # Without a connection we cannot watch; wake everyone so waiters re-query and
            # fall back to their timeouts rather than hang on a missed commit.
            self._hub.wake(self._hub.sessions())
            with self._lock:
                self._thread = None
            return
        try:
            self._poll(conn)
        finally:
            conn.close()

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
        last_version: object = None
        known: dict[str, object] = {}
        watched: set[str] = set()  # the sessions waited on at the last look
        idle_since: float | None = None
        spin_until = burst_until = 0.0
        while not self._stop.is_set():
            sessions = self._hub.sessions()
            if not sessions:
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
                    tips = conn.execute(_LATEST_OF, (json.dumps(sessions),)).get
                    latest: dict[str, _Tip] = {
                        str(session_id): (int(seq), None if tip_id is None else str(tip_id))
                        for session_id, seq, tip_id in json.loads(str(tips))
                    }
                    self._wake_changed(sessions, latest, known, watched)
                    watched = set(sessions)
                    # Kept across looks (not only for the sessions waited on now): a follower
                    # that re-arms its long-poll after each page must not look new every time.
                    known.update((session_id, latest.get(session_id)) for session_id in sessions)
                    if len(known) > 2 * len(sessions) + _KEEP_UNWAITED:
                        known = {session_id: known[session_id] for session_id in sessions}
            except apsw.Error:
                # A transient read failure (e.g. the file is being checkpointed); wake waiters so
                # they re-query and see the truth, then keep watching.
                self._hub.wake(sessions)
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

    def _wake_changed(
        self,
        sessions: list[str],
        latest: dict[str, _Tip],
        known: dict[str, object],
        watched: set[str],
    ) -> None:
        changed = []
        for session_id in sessions:
            before = known.get(session_id, _UNKNOWN)
            now = latest.get(session_id)
            if before == now:
                continue
            if before is _UNKNOWN or before is None:
                changed.append(session_id)  # first sight of it, or its first events
            elif session_id not in watched:
                # Its tip is from before its present waiters came: whatever happened since
                # (even a delete) happened before they queried, so they only re-query.
                changed.append(session_id)
            elif now is None or _replaced(before, now):  # type: ignore[arg-type]
                # Deleted by another process (and maybe refilled since the last look): its
                # waiters return [] as they do when this process deletes it.
                self._hub.release(session_id)
            else:
                changed.append(session_id)
        if changed:
            self._hub.wake(changed)


def _replaced(before: _Tip, now: _Tip) -> bool:
    """Whether the session was deleted and written again between two looks: its counter went
    down or its first event is another one. With no first event to compare (a damaged log),
    only the counter tells."""
    return now[0] < before[0] or (before[1] is not None and now[1] != before[1])
