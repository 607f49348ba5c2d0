"""Reading a session's log past rows the store cannot read (a damaged or hand-edited file).

A read of a page that holds such a row raises ``StorageError`` naming it. :func:`read_page`
turns that into the healthy events before the row and a :class:`DamagedRow`, so a caller can
report the row and go on after it: the CLI's ``events`` and ``tail`` do, and
:meth:`~sqlitestream.admin.AdminStore.export_records` with ``on_damaged``. ``sqlitestream
check`` lists every damaged row of a store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlitestream.errors import SchemaVersionError, StorageError, StoreBusyError
from sqlitestream.models import StoredEvent
from sqlitestream.store import SessionStore

__all__ = ["DamageCallback", "DamagedRow", "read_page"]


@dataclass(frozen=True, slots=True)
class DamagedRow:
    """An event row the store cannot read: its session, its sequence number and the store's
    message about it."""

    session_id: str
    sequence: int
    message: str


DamageCallback = Callable[[DamagedRow], None]
"""``on_damaged(row)``: told of each damaged row a read went past."""


def read_page(
    store: SessionStore,
    session_id: str,
    *,
    after: int | None,
    before: int | None,
    limit: int,
    filters: dict[str, Any] | None = None,
) -> tuple[list[StoredEvent], DamagedRow | None]:
    """Up to ``limit`` events after ``after`` (``get_events`` with ``filters``); when the page
    holds a row the store cannot read, the healthy events before that row and the damaged
    row, from which the caller goes on (``after=row.sequence``).

    The damaged row is found by halving the sequence range the page covers, each probe a
    bounded read; so a store with damage costs a few more reads, a healthy one none. Errors
    that are not about a row (busy, schema version, a closed store) are raised as they are.
    """
    options = filters or {}

    def read(upper: int | None) -> list[StoredEvent]:
        return store.get_events(session_id, after=after, before=upper, limit=limit, **options)

    try:
        return read(before), None
    except StorageError as exc:
        if isinstance(exc, (StoreBusyError, SchemaVersionError)):
            raise
        failure = exc
    low = (after or 0) + 1
    high = before - 1 if before is not None else store.get_latest_sequence(session_id)
    # The first damaged row is the smallest ``s`` in [low, high] for which reading up to and
    # including ``s`` fails.
    while low < high:
        middle = (low + high) // 2
        try:
            read(middle + 1)
            low = middle + 1
        except StorageError:
            high = middle
    try:
        read(low + 1)
    except StorageError as exc:
        return read(low), DamagedRow(session_id, low, str(exc))
    raise failure  # not a damaged row after all: the store's error as it was
