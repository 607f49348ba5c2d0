"""The PostgreSQL half of retention (:class:`sqlitestream.retention.RetentionStore`).

A trim holds the session's counter row (``FOR UPDATE``) while it decides and deletes, so it
orders with the session's appends; it deletes in transactions of at most :data:`TRIM_CHUNK`
events, oldest first. Positions come from the feed's counter row and are never reused, so a
trim needs no floor. Freed space is PostgreSQL's to reuse (autovacuum marks the dead rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlitestream.admin import StreamInfo
from sqlitestream.models import from_micros
from sqlitestream.postgres.rows import utc
from sqlitestream.postgres.schema import quoted
from sqlitestream.retention import TrimRule

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["TRIM_CHUNK", "stream_info", "trim", "trimmable_sessions"]

T = TypeVar("T")
Fetch = Callable[[str, str, Sequence[Any]], list[Any]]
Transact = Callable[[str, Callable[["Connection[Any]"], T]], T]

TRIM_CHUNK = 50_000
"""Events deleted per transaction, so a large trim never holds the session's counter long."""


def _table(schema: str, name: str) -> str:
    return f"{quoted(schema)}.{name}"


def trim(transact: Transact[int], schema: str, session_id: str, rule: TrimRule, *, dry_run: bool) -> int:
    """:meth:`RetentionStore.apply_trim`; returns the events removed (or that would be). Each
    transaction holds the counter row, deletes the next chunk below the bound (decided in the
    first) and returns how many went; the trim ends with the first that removes none."""
    events, streams = _table(schema, "events"), _table(schema, "streams")
    bound: int | None = None

    def step(conn: Connection[Any]) -> int:
        nonlocal bound
        locked = conn.execute(
            f"SELECT latest_seq FROM {streams} WHERE session_id = %s FOR UPDATE", (session_id,)
        ).fetchone()
        (lowest,) = conn.execute(
            f"SELECT min(seq) FROM {events} WHERE session_id = %s", (session_id,)
        ).fetchone() or (None,)
        if locked is None or lowest is None:
            return 0
        if bound is None:
            bound = max(
                int(lowest), rule.before(int(locked[0]), _first_recent(conn, events, session_id, rule))
            )
        if dry_run:
            return max(0, bound - int(lowest))
        stop = min(bound, int(lowest) + TRIM_CHUNK)
        if stop <= int(lowest):
            return 0
        deleted = conn.execute(
            f"DELETE FROM {events} WHERE session_id = %s AND seq >= %s AND seq < %s",
            (session_id, int(lowest), stop),
        )
        return deleted.rowcount

    removed = 0
    while done := transact("trim a session", step):
        removed += done
        if dry_run:
            break
    return removed


def _first_recent(conn: Connection[Any], events: str, session_id: str, rule: TrimRule) -> int | None:
    """The sequence of the session's oldest event not older than the rule's cut-off (None: none,
    or no cut-off)."""
    if rule.older_than_micros is None:
        return None
    found = conn.execute(
        f"SELECT seq FROM {events} WHERE session_id = %s AND ts >= %s ORDER BY seq LIMIT 1",
        (session_id, from_micros(rule.older_than_micros)),
    ).fetchone()
    return None if found is None else int(found[0])


def trimmable_sessions(fetch: Fetch, schema: str) -> list[str]:
    return [
        row[0]
        for row in fetch(
            "list the sessions with events", f"SELECT DISTINCT session_id FROM {_table(schema, 'events')}", ()
        )
    ]


def stream_info(fetch: Fetch, schema: str, session_id: str) -> StreamInfo:
    ((latest, count, lowest, size, last_ts),) = fetch(
        "read a session's log facts",
        f"SELECT (SELECT latest_seq FROM {_table(schema, 'streams')} WHERE session_id = %s), count(*), "
        "min(seq), coalesce(sum(octet_length(data) + octet_length(metadata)), 0)::bigint, max(ts) "
        f"FROM {_table(schema, 'events')} WHERE session_id = %s",
        (session_id, session_id),
    )
    return StreamInfo.of(
        session_id,
        latest=int(latest or 0),
        count=int(count),
        lowest=None if lowest is None else int(lowest),
        size=int(size),
        last_event_at=None if last_ts is None else utc(last_ts),
    )
