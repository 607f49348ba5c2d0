"""Cross-process wake-ups for a SQLite file store.

Commits by other processes do not pass through our in-process wake hub. While (and only while)
someone in this process waits, one thread polls ``PRAGMA data_version`` on its own idle
connection; when it changes, it wakes the feed's waiters (any commit may extend the feed), reads
the latest sequence of each waited-on session and wakes the sessions whose latest sequence moved (or releases those that were deleted, or deleted and
written again: their first event changed). A connection
with no open statement sees other processes' commits through the PRAGMA; apsw's
``Connection.data_version()`` alone would not until the connection begins a read.

On Linux the thread sleeps on an inotify watch of the ``-wal`` file (``_walhint``) instead of a
short timer: a write to it wakes the thread, which then re-checks ``data_version`` every
0.2 ms for up to 5 ms (the frames reach the file just before the commit is published), and a
timed poll every ``max(interval, 50 ms)`` stays as the fallback. The PRAGMA is always the
source of truth; the hint only decides when to look.

A look sends each waited session's last known sequence and gets back only the sessions whose
sequence differs (in chunks of :data:`_CHUNK`), so its Python work is in proportion to what
changed, not to the thousands of sessions waited on. A waiter registering tells the watcher its
session's tip as of that moment (:meth:`DataVersionWatcher.tip_of`, read before the waiter
re-queries), so the look after it wakes it only if its session changed since; without that seed
the watcher must wake every session it sees for the first time, and a watcher starting under
thousands of waiters woke them all at once. The thread retries a failed start with back-off
for as long as anyone waits, and every registration makes sure it runs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import apsw
import orjson

from sqlitestream._core.waiting import FEED, NO_SEED, WakeHub
from sqlitestream.errors import StorageError
from sqlitestream.sqlite.walhint import WalHint

# One row holding every tip as JSON: apsw hands the GIL back and forth for each row fetched,
# and with thousands of waited sessions while other Python threads are busy (an event loop of
# followers, a server) those hand-offs dominate. Measured on 5,000 sessions: alone, 15-24 ms a
# look row by row and 29-36 ms as JSON; beside three busy threads, 400-430 ms and 100-150 ms.
# The argument maps each session to the sequence last seen (null: no such session; -1: never
# seen), so only sessions that changed come back, each with its latest event's id and the id
# of the event now at the sequence last seen: another id there means another log. (Not the
# first event's id: a trim removes the first events, and must not look like a new log.)
_CHANGED = (
    "SELECT json_group_array(json_array(k.key, s.latest_seq, "
    "(SELECT id FROM events WHERE session_id = k.key AND seq = s.latest_seq), "
    "(SELECT id FROM events WHERE session_id = k.key AND seq = k.value))) "
    "FROM json_each(?) AS k LEFT JOIN streams AS s ON s.session_id = k.key "
    "WHERE s.latest_seq IS NOT k.value"
)
# The same, the argument mapping each session to [sequence, id of the event at it]: it also
# finds a session deleted and written again to as many events. Reading the event at every seen
# sequence makes it about 3x the cost of _CHANGED (10,000 sessions: 38-45 ms against 12 ms on a
# loaded machine), so it runs at most every _FULL_LOOK_S, and always within that of a commit.
_CHANGED_OR_REPLACED = (
    "SELECT json_group_array(json_array(k.key, s.latest_seq, "
    "(SELECT id FROM events WHERE session_id = k.key AND seq = s.latest_seq), o.id)) "
    "FROM json_each(?) AS k LEFT JOIN streams AS s ON s.session_id = k.key "
    "LEFT JOIN events AS o ON o.session_id = k.key AND o.seq = k.value ->> 0 "
    "WHERE s.latest_seq IS NOT k.value ->> 0 OR o.id IS NOT k.value ->> 1"
)
_FULL_LOOK_S = 0.5
_TIP_OF = (
    "SELECT latest_seq, (SELECT id FROM events AS e WHERE e.session_id = ?1 AND e.seq = s.latest_seq) "
    "FROM streams AS s WHERE session_id = ?1"
)


@dataclass(frozen=True)
class WatchQueries:
    """What a watcher reads, for one kind of key: ``changed`` and ``changed_or_replaced`` take
    the JSON map of keys to last-seen tips and return the keys whose tip differs, as one JSON
    array of ``[key, number, identity, identity at the number last seen]``; ``tip_of`` returns
    one key's ``(number, identity)``. A tip's number only grows while the thing lives; another
    identity at the number last seen means it was deleted and made again."""

    changed: str
    changed_or_replaced: str
    tip_of: str


SESSIONS = WatchQueries(_CHANGED, _CHANGED_OR_REPLACED, _TIP_OF)
"""Sessions: the latest sequence and the id of the event at it."""

BYTE_STREAMS = WatchQueries(
    "SELECT json_group_array(json_array(k.key, s.version, CAST(s.id AS TEXT), CAST(s.id AS TEXT))) "
    "FROM json_each(?) AS k LEFT JOIN ds_streams AS s ON s.name = k.key "
    "WHERE s.version IS NOT k.value",
    "SELECT json_group_array(json_array(k.key, s.version, CAST(s.id AS TEXT), CAST(s.id AS TEXT))) "
    "FROM json_each(?) AS k LEFT JOIN ds_streams AS s ON s.name = k.key "
    "WHERE s.version IS NOT k.value ->> 0 OR CAST(s.id AS TEXT) IS NOT k.value ->> 1",
    "SELECT version, CAST(id AS TEXT) FROM ds_streams WHERE name = ?1",
)
"""Byte streams (``sqlitestream.bytestreams``): the version every change bumps and the id of
the stream's generation."""

_CHUNK = 2000  # sessions per look query: the first chunks' waiters wake without waiting for all
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
        self._queries = SESSIONS if queries is None else queries
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
                rows = self._seed_conn.execute(self._queries.tip_of, (session_id,)).fetchall()
            except (apsw.Error, StorageError):
                return NO_SEED  # the first look then wakes it to re-query: late, never lost
        if not rows:
            return None
        seq, first_id = rows[0]
        return (int(seq), None if first_id is None else str(first_id))  # type: ignore[arg-type]

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
        last_version: object = None
        # Whether a session may have been replaced since the last full look, and when the next
        # full look may run (see _FULL_LOOK_S).
        replaced_unchecked, next_full_look = False, 0.0
        known: dict[str, object] = {}
        watched: set[str] = set()  # the sessions waited on at the last look
        idle_since: float | None = None
        spin_until = burst_until = 0.0
        while not self._stop.is_set():
            sessions = self._hub.seeds()
            # Feed waiters follow every session: any commit may hold their next event.
            feed_waited = FEED in sessions
            sessions.pop(FEED, None)
            if not sessions and not feed_waited:
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
                now = time.monotonic()
                if version != last_version or (replaced_unchecked and now >= next_full_look):
                    if version != last_version:
                        changed = last_version is not None
                        last_version = version
                        replaced_unchecked = True
                        if feed_waited:  # also at the first look: a commit may precede it
                            self._hub.wake(())
                    full = now >= next_full_look
                    if sessions:
                        self._look(conn, sessions, known, watched, full=full)
                    if full:
                        replaced_unchecked, next_full_look = False, now + _FULL_LOOK_S
                    watched = set(sessions)
                    if len(known) > 2 * len(sessions) + _KEEP_UNWAITED:
                        known = {
                            session_id: known[session_id] for session_id in sessions if session_id in known
                        }
            except apsw.Error:
                # A transient read failure (e.g. the file is being checkpointed); wake waiters so
                # they re-query and see the truth, then keep watching.
                self._hub.wake(list(sessions))
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

    def _look(
        self,
        conn: apsw.Connection,
        sessions: dict[str, object],
        known: dict[str, object],
        watched: set[str],
        *,
        full: bool,
    ) -> None:
        """Wake the waited sessions whose tip moved (release those deleted) and note every
        waited session's tip in ``known``. Kept across looks (not only for the sessions waited
        on now): a follower that re-arms its long-poll after each page must not look new."""
        before: dict[str, object] = {}
        for session_id, seed in sessions.items():
            if session_id in watched:
                # Waited on at the last look: changes since then are what its waiters miss.
                before[session_id] = known.get(session_id, _UNKNOWN)
            elif seed is not NO_SEED:
                # Its waiters each read this tip as they registered, before they queried.
                before[session_id] = seed
            else:
                # A tip from before its present waiters came (or none): whatever happened
                # since happened before they queried, so a change only makes them re-query.
                before[session_id] = known.get(session_id, _UNKNOWN)
        ids = list(before)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            last_seen = {session_id: _as_seen(before[session_id], full) for session_id in chunk}
            sql = self._queries.changed_or_replaced if full else self._queries.changed
            rows = json.loads(str(conn.execute(sql, (orjson.dumps(last_seen),)).get))
            now: dict[str, _Tip | None] = {}
            at_seen: dict[str, str | None] = {}
            for session_id, seq, tip_id, seen_id in rows:
                key = str(session_id)
                now[key] = None if seq is None else (int(seq), None if tip_id is None else str(tip_id))
                at_seen[key] = None if seen_id is None else str(seen_id)
            self._wake_changed(now, at_seen, before, watched)
            known.update((session_id, now.get(session_id, before[session_id])) for session_id in chunk)

    def _wake_changed(
        self,
        now: dict[str, _Tip | None],
        at_seen: dict[str, str | None],
        before: dict[str, object],
        watched: set[str],
    ) -> None:
        changed = []
        for session_id, tip in now.items():
            was = before[session_id]
            if was == tip:
                continue
            if was is _UNKNOWN or was is None:
                changed.append(session_id)  # first sight of it, or its first events
            elif session_id not in watched:
                # Its tip is from before its present waiters queried: whatever happened since
                # (even a delete) happened before they queried, so they only re-query.
                changed.append(session_id)
            elif tip is None or _replaced(was, tip, at_seen[session_id]):  # type: ignore[arg-type]
                # Deleted by another process (and maybe refilled since the last look): its
                # waiters return [] as they do when this process deletes it.
                self._hub.release(session_id)
            else:
                changed.append(session_id)
        if changed:
            self._hub.wake(changed)


def _as_seen(tip: object, full: bool) -> object:
    """A tip as the look queries take it: -1 never seen, None no such session, else its
    sequence (with its first event's id for a full look)."""
    if tip is _UNKNOWN:
        return [-1, None] if full else -1
    if tip is None:
        return None
    assert isinstance(tip, tuple)
    return list(tip) if full else tip[0]


def _replaced(before: _Tip, now: _Tip, id_at_seen: str | None) -> bool:
    """Whether the session was deleted and written again between two looks: its counter went
    down, or the event now at the sequence last seen is another one. With no event there to
    compare (trimmed since, or a damaged log), only the counter tells."""
    return now[0] < before[0] or (
        before[1] is not None and id_at_seen is not None and id_at_seen != before[1]
    )
