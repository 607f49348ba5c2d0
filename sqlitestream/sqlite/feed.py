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
    "RAISE_FLOOR",
    "PositionCache",
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


class PositionCache:
    """The writer's last position, kept from one of its transactions to the next while no
    other connection commits, which saves the read of the highest position: a statement of its
    own, about 5% of a single append (measured against taking it from Python, same run).

    ``Connection.data_version()`` (no statement: a file control) tells: SQLite adds one to it
    on each commit of this connection, and adds to it again whenever it finds that another
    connection changed the file. So a value one above the one seen inside our last committed
    transaction means nobody else committed since. Anything else (another process's commit,
    our own rollback, a checkpoint) only makes :meth:`take` read the position again.

    The prediction is kept by the connection's commit hook, which runs inside the COMMIT and so
    under the writer's lock, before any other transaction of this store can begin (a thread
    keeping it after its ``with`` block could overwrite a later transaction's). Only the last
    take of a transaction is pending: appends sharing a transaction (group commit) take in
    turn, each reading what the ones before it wrote, and an append whose positions are not
    used after all (a repeated id, a refusal, an error) calls :meth:`forget`.
    """

    __slots__ = ("_last", "_pending", "_valid_at")

    def __init__(self) -> None:
        self._valid_at: int | None = None
        self._last = 0
        self._pending: tuple[int, int] | None = None  # (data_version after commit, last position)

    def keep_on_commit(self, conn: apsw.Connection) -> None:
        """Install the commit hook on the writer's connection ``conn``."""
        conn.set_commit_hook(self._on_commit)

    def take(self, conn: apsw.Connection, count: int) -> int:
        """Inside the write transaction: the first of ``count`` new positions."""
        version = conn.data_version()
        last = self._last if version == self._valid_at else int(conn.execute(LAST_POSITION).get)
        self._valid_at = None  # until this transaction's outcome is known
        self._pending = (version + 1, last + count)
        return last + 1

    def forget(self) -> None:
        """The positions of the last take will not be stored: keep no prediction from it."""
        self._pending = None

    def _on_commit(self) -> bool:
        if self._pending is not None:
            self._valid_at, self._last = self._pending
            self._pending = None
        return False  # let the commit go ahead


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
