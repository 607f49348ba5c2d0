"""How the watcher (:mod:`sqlitestream.sqlite.watcher`) finds the changed keys of a table
without positions (the byte streams of ``sqlitestream.bytestreams``), by comparing tips.

A look sends each waited key's last known tip and gets back only the keys whose tip differs
(in chunks of :data:`_CHUNK`), so its Python work is in proportion to what changed; its SQL
work is in proportion to the keys waited on. A waiter registering reads its key's tip
(:meth:`TipLook.seed`, before the waiter re-queries), so the look after it wakes it only if
its key changed since; without that seed the watcher must wake every key it sees for the first
time, and a watcher starting under thousands of waiters woke them all at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import apsw
import orjson

from sqlitestream._core.waiting import FEED, NO_SEED, WakeHub


@dataclass(frozen=True)
class WatchQueries:
    """What a watcher reads, for one kind of key: ``changed`` and ``changed_or_replaced`` take
    the JSON map of keys to last-seen tips and return the keys whose tip differs, as one JSON
    array of ``[key, number, identity]``; ``tip_of`` returns one key's ``(number, identity)``.
    A tip's number only grows while its identity stays; a new identity means the thing was
    deleted and made again."""

    changed: str
    changed_or_replaced: str
    tip_of: str


# One row holding every tip as JSON: apsw hands the GIL back and forth for each row fetched,
# and with thousands of waited keys while other Python threads are busy (an event loop of
# followers, a server) those hand-offs dominate. Measured on 5,000 keys: alone, 15-24 ms a
# look row by row and 29-36 ms as JSON; beside three busy threads, 400-430 ms and 100-150 ms.
BYTE_STREAMS = WatchQueries(
    "SELECT json_group_array(json_array(k.key, s.version, CAST(s.id AS TEXT))) "
    "FROM json_each(?) AS k LEFT JOIN ds_streams AS s ON s.name = k.key "
    "WHERE s.version IS NOT k.value",
    "SELECT json_group_array(json_array(k.key, s.version, CAST(s.id AS TEXT))) "
    "FROM json_each(?) AS k LEFT JOIN ds_streams AS s ON s.name = k.key "
    "WHERE s.version IS NOT k.value ->> 0 OR CAST(s.id AS TEXT) IS NOT k.value ->> 1",
    "SELECT version, CAST(id AS TEXT) FROM ds_streams WHERE name = ?1",
)
"""Byte streams (``sqlitestream.bytestreams``): the version every change bumps and the id of
the stream's generation."""

# Reading every identity makes a full look costlier than a plain one, so it runs at most every
# _FULL_LOOK_S, and always within that of a commit.
_FULL_LOOK_S = 0.5
_CHUNK = 2000  # keys per look query: the first chunks' waiters wake without waiting for all
_Tip = tuple[int, "str | None"]
"""A key's number and identity."""
_UNKNOWN = object()
_KEEP_UNWAITED = 10_000  # tips kept for keys nobody waits on right now, before pruning


class TipLook:
    """The looks of one watcher over the waiters of a hub keyed by ``queries``' keys. Used by
    the watcher thread only, except :meth:`seed` (any registering thread, own connection)."""

    def __init__(self, queries: WatchQueries) -> None:
        self.queries = queries
        self.start()

    def start(self) -> None:
        """A new run of the watcher thread: it knows no tips yet."""
        self._known: dict[str, object] = {}
        self._watched: set[str] = set()  # the keys waited on at the last look
        # Whether a key may have been replaced since the last full look, and when the next
        # full look may run.
        self._replaced_unchecked = False
        self._next_full_look = 0.0

    def seed(self, conn: apsw.Connection, key: str) -> object:
        """The key's tip as of now (None: no such key)."""
        rows = conn.execute(self.queries.tip_of, (key,)).fetchall()
        if not rows:
            return None
        number, identity = rows[0]
        return (int(number), None if identity is None else str(identity))  # type: ignore[arg-type]

    def due(self, now: float) -> bool:
        """Whether a full look is owed although nothing was committed since the last look."""
        return self._replaced_unchecked and now >= self._next_full_look

    def failed(self, hub: WakeHub) -> None:
        """A look failed: the waiters re-query and see the truth."""
        hub.wake(hub.sessions())

    def look(self, conn: apsw.Connection, hub: WakeHub, *, committed: bool) -> None:
        sessions = hub.seeds()
        feed_waited = FEED in sessions
        sessions.pop(FEED, None)
        now = time.monotonic()
        if committed:
            self._replaced_unchecked = True
            if feed_waited:
                hub.wake(())
        full = now >= self._next_full_look
        if sessions:
            self._look_at(conn, hub, sessions, self._known, self._watched, full=full)
        if full:
            self._replaced_unchecked, self._next_full_look = False, now + _FULL_LOOK_S
        self._watched = set(sessions)
        known = self._known
        if len(known) > 2 * len(sessions) + _KEEP_UNWAITED:
            self._known = {key: known[key] for key in sessions if key in known}

    def _look_at(
        self,
        conn: apsw.Connection,
        hub: WakeHub,
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
            sql = self.queries.changed_or_replaced if full else self.queries.changed
            rows = json.loads(str(conn.execute(sql, (orjson.dumps(last_seen),)).get))
            now: dict[str, _Tip | None] = {
                str(session_id): None if seq is None else (int(seq), None if tip_id is None else str(tip_id))
                for session_id, seq, tip_id in rows
            }
            self._wake_changed(hub, now, before, watched)
            known.update((session_id, now.get(session_id, before[session_id])) for session_id in chunk)

    @staticmethod
    def _wake_changed(
        hub: WakeHub, now: dict[str, _Tip | None], before: dict[str, object], watched: set[str]
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
            elif tip is None or _replaced(was, tip):  # type: ignore[arg-type]
                # Deleted by another process (and maybe refilled since the last look): its
                # waiters return [] as they do when this process deletes it.
                hub.release(session_id)
            else:
                changed.append(session_id)
        if changed:
            hub.wake(changed)


def _as_seen(tip: object, full: bool) -> object:
    """A tip as the look queries take it: -1 never seen, None no such session, else its
    sequence (with its first event's id for a full look)."""
    if tip is _UNKNOWN:
        return [-1, None] if full else -1
    if tip is None:
        return None
    assert isinstance(tip, tuple)
    return list(tip) if full else tip[0]


def _replaced(before: _Tip, now: _Tip) -> bool:
    """Whether the session was deleted and written again between two looks: its counter went
    down or its first event is another one. With no first event to compare (a damaged log),
    only the counter tells."""
    return now[0] < before[0] or (before[1] is not None and now[1] != before[1])
