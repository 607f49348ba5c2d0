"""The SQLite half of the feed contract (:class:`sqlitestream.feed.FeedStore`): positions, the
feed page query and consumer cursors.

One writer at a time holds SQLite's write lock, and a reader's snapshot holds every commit
before it and none after, so positions taken as "highest so far plus one" inside the write
transaction are in commit order and a feed reader can never skip one. The ``feed`` table's
floor keeps positions from being reused once the events holding the highest ones are deleted.

Like :mod:`sqlitestream.sqlite.admin`, the functions take the store's accessors explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import apsw

from sqlitestream._core.rows import EVENT_COLUMNS, RowCodec
from sqlitestream.errors import CursorConflictError
from sqlitestream.feed import ConsumerCursor, FeedFilter
from sqlitestream.models import StoredEvent, from_micros, from_micros_many, to_micros, utc_now

__all__ = [
    "LAST_POSITION",
    "NEXT_POSITION",
    "RAISE_FLOOR",
    "delete_cursor",
    "feed_page",
    "get_cursor",
    "last_position",
    "list_cursors",
    "write_cursor",
]

Fetch = Callable[[str, str, tuple[Any, ...]], list[Any]]
Write = Callable[[str], AbstractContextManager[apsw.Connection]]

_ROWS = RowCodec(to_micros, from_micros, from_micros_many)

_HIGHEST = "max(ifnull((SELECT max(position) FROM events), 0), (SELECT last_position FROM feed))"
LAST_POSITION = f"SELECT {_HIGHEST}"
"""The highest position ever assigned: the next event takes this plus one."""
RAISE_FLOOR = f"UPDATE feed SET last_position = {_HIGHEST}"
"""Run before deleting events, so that their positions are never handed out again."""
NEXT_POSITION = f"({_HIGHEST} + 1)"
"""The next position, as an SQL expression an insert can hold (no statement of its own)."""

_PAGE = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
_PAGE_OF_TYPES = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? "
    "AND type IN (SELECT value FROM json_each(?)) ORDER BY position LIMIT ?"
)
_CURSOR = "SELECT position FROM cursors WHERE name = ?"
_SAVE_CURSOR = (
    "INSERT INTO cursors (name, position, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
)


def last_position(fetch: Fetch) -> int:
    return int(fetch("read the last position", LAST_POSITION, ())[0][0])


def feed_page(fetch: Fetch, query: FeedFilter) -> list[StoredEvent]:
    limit = -1 if query.limit is None else query.limit
    types = query.type_values
    if types is None:
        rows = fetch("read the feed", _PAGE, (query.after, limit))
    else:
        rows = fetch("read the feed", _PAGE_OF_TYPES, (query.after, json.dumps(types), limit))
    return _ROWS.events_from_rows(rows)


def write_cursor(write: Write, name: str, position: int, expected: int | None) -> None:
    with write("save a cursor") as conn:
        if expected is not None:
            rows = conn.execute(_CURSOR, (name,)).fetchall()
            actual = int(rows[0][0]) if rows else 0  # type: ignore[arg-type]
            if actual != expected:
                raise CursorConflictError(name, expected, actual)
        conn.execute(_SAVE_CURSOR, (name, position, to_micros(utc_now())))


def get_cursor(fetch: Fetch, name: str) -> int:
    rows = fetch("read a cursor", _CURSOR, (name,))
    return int(rows[0][0]) if rows else 0


def list_cursors(fetch: Fetch) -> list[ConsumerCursor]:
    rows = fetch("list cursors", "SELECT name, position, updated_at FROM cursors ORDER BY name", ())
    return [
        ConsumerCursor(str(name), int(position), from_micros(updated)) for name, position, updated in rows
    ]


def delete_cursor(write: Write, name: str) -> None:
    with write("delete a cursor") as conn:
        conn.execute("DELETE FROM cursors WHERE name = ?", (name,))
