"""The SQLite half of retention (:class:`sqlitestream.retention.RetentionStore`): trimming a
session's oldest events, a session's log facts, and giving freed pages back to the file system.

A trim deletes in transactions of at most :data:`TRIM_CHUNK` events, oldest first, so that a
large trim never holds the write lock for long (appends from other threads and processes go
between the chunks) and a reader only ever sees the first sequence rise. Each chunk first raises
the feed's floor, so positions held by deleted events are never handed out again.

New stores are created with ``auto_vacuum = INCREMENTAL_VACUUM``: after a trim, pages emptied by it
are handed back in bounded ``incremental_vacuum`` steps, and the file shrinks at the next
checkpoint. A store created before that keeps its freed pages on SQLite's free list, where
later appends reuse them; :func:`compact` rewrites such a file (once) to incremental mode.

Like :mod:`sqlitestream.sqlite.feed`, the functions take the store's accessors explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw

from sqlitestream.admin import ProgressCallback, StreamInfo
from sqlitestream.models import from_micros
from sqlitestream.retention import TrimRule
from sqlitestream.sqlite import feed as _feed
from sqlitestream.sqlite.connection import INCREMENTAL_VACUUM
from sqlitestream.sqlite.feed import Fetch, Write

__all__ = [
    "TRIM_CHUNK",
    "compact",
    "count_trim",
    "give_back_pages",
    "stream_info",
    "trim",
    "trimmable_sessions",
]


TRIM_CHUNK = 200_000
"""Events deleted per write transaction. Each transaction rewrites most pages of the id and
position indexes, so fewer, larger ones are faster: a 1M-event trim (tools/trim_bench, quiet
2-core machine, one run) took 13.7 s at 50,000, 10.5 s at 100,000 and 9.2 s at 200,000, against
7.0 s for one transaction. At 200,000 a transaction holds the write lock for about 1.5 s, which
appends from other threads and processes wait out (well within the default busy timeout)."""

VACUUM_STEP_PAGES = 4096
"""Free pages handed back per ``incremental_vacuum`` transaction (16 MiB at 4 KiB pages)."""

_FACTS = (
    "SELECT (SELECT latest_seq FROM streams WHERE session_id = ?1), "
    "(SELECT min(seq) FROM events WHERE session_id = ?1)"
)
_FIRST_RECENT = "SELECT seq FROM events WHERE session_id = ?1 AND ts >= ?2 ORDER BY seq LIMIT 1"
_DELETE_RANGE = "DELETE FROM events WHERE session_id = ? AND seq >= ? AND seq < ?"
_STREAM_INFO = (
    "SELECT (SELECT latest_seq FROM streams WHERE session_id = ?1), count(*), min(seq), "
    "ifnull(sum(octet_length(data) + octet_length(metadata)), 0), max(ts) "
    "FROM events WHERE session_id = ?1"
)
_SESSIONS_WITH_EVENTS = "SELECT DISTINCT session_id FROM events"


Query = Callable[[str, tuple[Any, ...]], list[Any]]


def _bound(query: Query, session_id: str, rule: TrimRule) -> tuple[int, int]:
    """The session's lowest retained sequence and the trim's exclusive bound (equal when there
    is nothing to trim)."""
    latest, lowest = query(_FACTS, (session_id,))[0]
    if lowest is None:
        return 0, 0
    first_recent = None
    if rule.older_than_micros is not None:
        found = query(_FIRST_RECENT, (session_id, rule.older_than_micros))
        first_recent = int(found[0][0]) if found else None
    return int(lowest), max(int(lowest), rule.before(int(latest or 0), first_recent))


def count_trim(fetch: Fetch, session_id: str, rule: TrimRule) -> int:
    """A dry run: how many events :func:`trim` would remove now (a read; writes nothing)."""
    lowest, bound = _bound(lambda sql, bindings: fetch("count a trim", sql, bindings), session_id, rule)
    return bound - lowest


def trim(
    write: Write, session_ids: list[str], rule: TrimRule, on_progress: ProgressCallback | None = None
) -> int:
    """Trim each session by ``rule``, sharing write transactions between sessions: each deletes
    up to :data:`TRIM_CHUNK` events, from one session or several. Deleting a few events from
    each of many sessions per transaction, rather than a transaction per session, matters: a
    session's events are spread over every page of the id and position indexes, so each
    transaction rewrites most of those pages (a transaction per session made a 1M-event trim
    over 100 sessions 3x slower than one transaction, same run). Returns the events removed;
    ``on_progress(done, total)`` is called after the commit that finished each session."""
    removed, index = 0, 0
    while index < len(session_ids):
        budget, finished = TRIM_CHUNK, index
        with write("trim sessions") as conn:
            conn.execute(_feed.RAISE_FLOOR)
            while finished < len(session_ids) and budget > 0:
                session_id = session_ids[finished]
                lowest, bound = _bound(
                    lambda sql, bindings: conn.execute(sql, bindings).fetchall(), session_id, rule
                )
                stop = min(bound, lowest + budget)
                if stop > lowest:
                    conn.execute(_DELETE_RANGE, (session_id, lowest, stop))
                    budget -= stop - lowest
                    removed += conn.changes()
                if stop < bound:
                    break  # the budget ran out inside this session: the next transaction goes on
                finished += 1
        if on_progress is not None:
            for done in range(index + 1, finished + 1):
                on_progress(done, len(session_ids))
        index = finished
    return removed


def give_back_pages(write: Write) -> None:
    """Hand emptied pages back to the file system, a bounded step per transaction (nothing on a
    store without incremental auto-vacuum: its free pages wait for later appends)."""
    while True:
        with write("give trimmed pages back") as conn:
            if int(conn.pragma("auto_vacuum")) != INCREMENTAL_VACUUM or not int(
                conn.pragma("freelist_count")
            ):
                return
            conn.execute(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES})").fetchall()


def compact(conn: apsw.Connection) -> None:
    """Rewrite the file without free pages, in incremental auto-vacuum mode. ``conn`` is the
    writer connection, outside any transaction (``VACUUM`` cannot run inside one) and under the
    writer's thread lock. ``VACUUM`` is atomic (a crash leaves the old file or the new one) and
    needs as much free disk as the file's size."""
    conn.pragma("auto_vacuum", INCREMENTAL_VACUUM)
    conn.execute("VACUUM")


def trimmable_sessions(fetch: Fetch) -> list[str]:
    return [row[0] for row in fetch("list the sessions with events", _SESSIONS_WITH_EVENTS, ())]


def stream_info(fetch: Fetch, session_id: str) -> StreamInfo:
    latest, count, lowest, size, last_ts = fetch("read a session's log facts", _STREAM_INFO, (session_id,))[0]
    return StreamInfo.of(
        session_id,
        latest=int(latest or 0),
        count=int(count),
        lowest=lowest,
        size=int(size),
        last_event_at=None if last_ts is None else from_micros(last_ts),
    )
