"""The PostgreSQL half of the feed contract (:class:`sqlitestream.feed.FeedStore`): positions,
the feed page query and consumer cursors.

**Why positions are commit-ordered here.** A position taken from a sequence is not: one
transaction can take 10, another take 11 and commit first, and a reader that saw 11 has skipped
10 for good. So an append (or a group of them: see ``groupcommit.py``) takes its positions by
updating the one row of the ``feed`` table (in the statements of ``statements.py``),
as the last step before its commit; the row stays locked until that commit, so the next
append's update waits for it and then reads the committed value. PostgreSQL makes a commit
visible before it lets go of the transaction's locks, so every snapshot holds a prefix of the
positions: a reader never sees a position while a lower one can still commit.

**The cost.** Appends (to any session) take their positions one transaction at a time: from
the update of the feed row to the end of the commit (its WAL flush), nothing else appends. The
store's transaction rate is then bound by the commit latency (about 1/latency transactions a
second), where before only appends to the same session waited for each other; batches and
group commit amortise it, since a transaction takes all its positions at once. Reads never
wait.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlitestream.errors import CursorConflictError
from sqlitestream.feed import ConsumerCursor, FeedFilter
from sqlitestream.models import StoredEvent
from sqlitestream.postgres.rows import EVENT_COLUMNS, events_from_rows, utc
from sqlitestream.postgres.schema import quoted

if TYPE_CHECKING:
    from sqlitestream.postgres.connection import Connection

__all__ = [
    "FeedSql",
    "delete_cursor",
    "feed_page",
    "get_cursor",
    "last_position",
    "list_cursors",
    "write_cursor",
]

Fetch = Callable[[str, str, Sequence[Any]], list[Any]]
Transact = Callable[[str, Callable[["Connection"], Any]], Any]


class FeedSql:
    """The feed's statements for one schema."""

    def __init__(self, schema: str) -> None:
        s = quoted(schema)
        self.last = f"SELECT last_position FROM {s}.feed"
        self.page = (
            f"SELECT {EVENT_COLUMNS} FROM {s}.events WHERE position > %s "
            "AND (%s::text[] IS NULL OR type = ANY(%s::text[])) ORDER BY position LIMIT %s"
        )
        self.cursor = f"SELECT position FROM {s}.cursors WHERE name = %s"
        self.list_cursors = f"SELECT name, position, updated_at FROM {s}.cursors ORDER BY name"
        self.save_cursor = (
            f"INSERT INTO {s}.cursors AS c (name, position, updated_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
        )
        # Compare-and-set in one statement each: an absent cursor counts as 0.
        self.save_cursor_if_zero = self.save_cursor + " WHERE c.position = 0"
        self.save_cursor_if = (
            f"UPDATE {s}.cursors SET position = %s, updated_at = now() WHERE name = %s AND position = %s"
        )
        self.delete_cursor = f"DELETE FROM {s}.cursors WHERE name = %s"


def last_position(fetch: Fetch, sql: FeedSql) -> int:
    return int(fetch("read the last position", sql.last, ())[0][0])


def feed_page(fetch: Fetch, sql: FeedSql, query: FeedFilter) -> list[StoredEvent]:
    types = query.type_values
    return events_from_rows(fetch("read the feed", sql.page, (query.after, types, types, query.limit)))


def write_cursor(transact: Transact, sql: FeedSql, name: str, position: int, expected: int | None) -> None:
    def save(conn: Connection) -> None:
        if expected is None:
            conn.execute(sql.save_cursor, (name, position))
            return
        if expected == 0:
            done = conn.execute(sql.save_cursor_if_zero, (name, position)).rowcount
        else:
            done = conn.execute(sql.save_cursor_if, (position, name, expected)).rowcount
        if not done:
            row = conn.execute(sql.cursor, (name,)).fetchone()
            raise CursorConflictError(name, expected, 0 if row is None else int(row[0]))

    transact("save a cursor", save)


def get_cursor(fetch: Fetch, sql: FeedSql, name: str) -> int:
    rows = fetch("read a cursor", sql.cursor, (name,))
    return int(rows[0][0]) if rows else 0


def list_cursors(fetch: Fetch, sql: FeedSql) -> list[ConsumerCursor]:
    return [
        ConsumerCursor(str(name), int(position), utc(updated))
        for name, position, updated in fetch("list cursors", sql.list_cursors, ())
    ]


def delete_cursor(transact: Transact, sql: FeedSql, name: str) -> None:
    transact("delete a cursor", lambda conn: conn.execute(sql.delete_cursor, (name,)))
