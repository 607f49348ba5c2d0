"""How the watcher (:mod:`sqlitestream.sqlite.watcher`) finds the waiters that another
process's commit concerns, by feed position.

Every event has a store-wide position, commit-ordered and never reused (see ``feed.py``). So
"which sessions got events since position P" is one range scan of ``events_by_position``,
whose cost is in proportion to the new events, not to the thousands of sessions waited on;
and only the waiters of those sessions are looked at and woken.

Each waiter carries a :class:`Seen`: every event of its session at a position up to
``Seen.position`` was either in its query or has woken it, and ``Seen.tip`` was the session's
latest sequence as of that position. A waiter starts with the one its registering thread read
(:meth:`PositionLook.seed`, before the waiter re-queries), so a new waiter is woken only by an
event committed after it looked. A log only grows, and a deleted session's next log starts
again at sequence 1 with new positions: so an event above a waiter's position whose sequence is
not above its tip means the session was deleted and written again, and the waiter is released
(``[]``, as a delete in this process releases it). That needs neither the first event (a trim
removes it) nor any read per waited session.

A delete leaves no position behind. It raises the feed's floor (``feed.last_position``) to the
highest position first, so a look that finds the floor moved (a delete or a trim happened), or
that saw the floor at the top (a delete then changes nothing), surveys every waited session's
latest sequence once: a session gone, or whose counter went below a waiter's tip, releases its
waiters; a trim changes no counter and wakes nobody. The same survey serves a look that finds
more new events than :data:`_SCAN_MAX` (a bulk import) and a watcher's first look.

Known limit: a session deleted, written again past a waiter's tip and then trimmed of every
event up to that tip, all between two looks (a few milliseconds), looks like an append: its
waiters are woken rather than released.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

import apsw
import orjson

from sqlitestream._core.waiting import FEED, Waiter, WakeHub

UNKNOWN_TIP = -1
"""A :attr:`Seen.tip` for a waiter whose session's latest sequence is not known (sequences
are >= 0)."""


@dataclass(frozen=True, slots=True)
class Seen:
    """What a waiter is accounted for up to (see the module docs). ``position`` None: not
    known, so the next look wakes the waiter to re-query; ``tip`` None: no such session."""

    position: int | None
    tip: int | None


_SEED = (
    "SELECT ifnull((SELECT max(position) FROM events), 0), "
    "(SELECT latest_seq FROM streams WHERE session_id = ?1)"
)
_TOP = "SELECT ifnull((SELECT max(position) FROM events), 0), (SELECT last_position FROM feed)"
# One row holding every new event as JSON: apsw hands the GIL back and forth for each row
# fetched, and beside thousands of busy waiter threads those hand-offs dominate a look.
_SCAN = (
    "SELECT json_group_array(json_array(session_id, seq, position)) FROM ("
    "SELECT session_id, seq, position FROM events WHERE position > ?1 AND position <= ?2 "
    "ORDER BY position LIMIT ?3)"
)
_LATEST = (
    "SELECT json_group_array(json_array(k.value, s.latest_seq)) "
    "FROM json_each(?1) AS k LEFT JOIN streams AS s ON s.session_id = k.value"
)
_SCAN_MAX = 5000
"""New events a look reads one by one; beyond it, surveying the waited sessions is cheaper."""
_NOT_READ = object()


class PositionLook:
    """The looks of one watcher over a session store's waiters. Used by the watcher thread
    only, except :meth:`seed` (any registering thread, on its own connection)."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        """A new run of the watcher thread: everything it knew may be stale."""
        self._done: int | None = None  # the top position of the last look
        self._done_before: int | None = None  # ... and of the look before it
        self._floor: int | None = None
        self._top_at_floor = False
        self._everyone_new = True

    @staticmethod
    def seed(conn: apsw.Connection, session_id: str) -> Seen:
        """The session's :class:`Seen` as of now, in one snapshot."""
        position, tip = conn.execute(_SEED, (session_id,)).fetchall()[0]
        return Seen(int(position), None if tip is None else int(tip))  # type: ignore[arg-type]

    def failed(self, hub: WakeHub) -> None:
        """A look failed (a transient read error): every waiter re-queries, and the next look
        starts over from what each waiter has seen."""
        hub.wake_waiters(waiter for group in hub.waiters().values() for waiter in group)
        self._everyone_new = True

    @staticmethod
    def due(now: float) -> bool:
        """Nothing is ever owed without a commit."""
        return False

    def look(self, conn: apsw.Connection, hub: WakeHub, *, committed: bool = True) -> None:
        """Another connection committed: wake the waiters it concerns, release those whose
        session was deleted."""
        fresh = hub.newcomers()
        if self._everyone_new:
            fresh = [waiter for group in hub.waiters().values() for waiter in group]
        unknown: list[Waiter] = []
        low = self._done
        for waiter in fresh:
            if not isinstance(waiter.seed, Seen):
                # No seed read: it registered after the look before last took its snapshot.
                waiter.seed = Seen(self._done_before, UNKNOWN_TIP)
            position = waiter.seed.position
            if position is None:
                unknown.append(waiter)
            elif low is None or position < low:
                low = position
        conn.execute("BEGIN")
        try:
            top, floor = conn.execute(_TOP).fetchall()[0]
            assert isinstance(top, int) and isinstance(floor, int)
            rows: list[tuple[str, int, int]] = []
            if low is not None and low < top:
                scanned = json.loads(str(conn.execute(_SCAN, (low, top, _SCAN_MAX + 1)).get))
                rows = [(str(session_id), int(seq), int(position)) for session_id, seq, position in scanned]
            overflow = len(rows) > _SCAN_MAX
            survey = overflow or self._everyone_new or self._top_at_floor or floor != self._floor
            waiting = hub.waiters() if survey else hub.waiters([*{row[0] for row in rows}, FEED])
            latest: dict[str, int | None] = {}
            if survey:
                sessions = [session_id for session_id in waiting if session_id != FEED]
                latest = dict(json.loads(str(conn.execute(_LATEST, (orjson.dumps(sessions),)).get)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        new_events: dict[str, list[tuple[int, int]]] = {}
        for session_id, seq, position in rows:
            new_events.setdefault(session_id, []).append((position, seq))
        last_new = rows[-1][2] if rows else 0
        woken: list[Waiter] = list(unknown)
        released: list[Waiter] = []
        for session_id, group in waiting.items():
            for waiter in group:
                seen = waiter.seed
                if not isinstance(seen, Seen) or seen.position is None or seen.position > top:
                    continue  # not drained yet, or registered after this snapshot: next look
                if session_id == FEED:
                    if overflow or last_new > seen.position:
                        woken.append(waiter)
                    waiter.seed = Seen(top, UNKNOWN_TIP)
                    continue
                verdict, tip = _judge(
                    seen.position,
                    seen.tip,
                    [] if overflow else new_events.get(session_id, []),
                    latest.get(session_id) if survey else _NOT_READ,
                )
                if verdict is _Verdict.RELEASE:
                    released.append(waiter)
                elif verdict is _Verdict.WAKE:
                    woken.append(waiter)
                waiter.seed = Seen(top, tip)
        for waiter in unknown:
            waiter.seed = Seen(top, UNKNOWN_TIP)
        if released:
            hub.release_waiters(released)
        if woken:
            hub.wake_waiters(woken)
        self._done_before, self._done = self._done, max(top, self._done or 0)
        self._floor, self._top_at_floor = floor, top <= floor
        self._everyone_new = False


class _Verdict(enum.Enum):
    WAKE = "wake"
    RELEASE = "release"
    KEEP = "keep"


def _judge(
    position: int, old: int | None, new_events: list[tuple[int, int]], latest: object
) -> tuple[_Verdict, int | None]:
    """What a waiter's session did since the waiter's ``position`` and ``old`` tip, given the
    look's new events of it (``(position, sequence)`` in position order) and, if surveyed, its
    latest sequence now (``_NOT_READ`` if not): wake, release or keep waiting; and its tip now."""
    after = [seq for at, seq in new_events if at > position]
    if old is not None and old != UNKNOWN_TIP:
        if after and min(after) <= old:
            return _Verdict.RELEASE, None  # a log only grows: a sequence seen again is a new log
        if latest is not _NOT_READ and (latest is None or (isinstance(latest, int) and latest < old)):
            return _Verdict.RELEASE, None  # deleted (and maybe written again, to fewer events)
    if latest is _NOT_READ:
        return (_Verdict.WAKE, max(after)) if after else (_Verdict.KEEP, old)
    tip = latest if isinstance(latest, int) else None
    return (_Verdict.WAKE if after or tip != old else _Verdict.KEEP), tip
