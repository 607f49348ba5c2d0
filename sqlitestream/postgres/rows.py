"""How records become PostgreSQL rows and back: the shared row codec of ``_rows`` with
timestamptz timestamps, plus the array form a batch insert takes.

JSON payloads are stored as the exact compact text the records encode to (see
``schema.sql`` for why not jsonb); timestamps as timestamptz, read back in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlitestream._core.rows import (
    EVENT_COLUMNS,
    PAGE_COLUMNS,
    RUN_COLUMNS,
    SESSION_COLUMNS,
    RowCodec,
)
from sqlitestream.models import with_sequence

__all__ = [
    "EVENT_COLUMNS",
    "PAGE_COLUMNS",
    "RUN_COLUMNS",
    "SESSION_COLUMNS",
    "UNNEST_EVENTS",
    "event_columns",
    "event_from_row",
    "event_values",
    "events_from_page",
    "events_from_rows",
    "new_event_values",
    "run_from_row",
    "run_row",
    "session_from_row",
    "session_row",
    "utc",
    "with_sequence",
]

UNNEST_EVENTS = (
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::text[], %s::text[], %s::bigint[])"
)
"""Rows for ``INSERT INTO events (EVENT_COLUMNS)`` from the nine arrays of
:func:`event_columns`: a whole batch in one statement."""


def utc(moment: datetime) -> datetime:
    """The same instant with ``timezone.utc`` (psycopg returns the connection's time zone)."""
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def event_columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Event rows turned into the nine column arrays :data:`UNNEST_EVENTS` takes."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for row in rows:
        for column, value in zip(columns, row):
            column.append(value)
    return columns


_ROWS = RowCodec(lambda moment: moment, utc)
event_values = _ROWS.event_row
new_event_values = _ROWS.new_event_row
event_from_row = _ROWS.event_from_row
events_from_rows = _ROWS.events_from_rows
events_from_page = _ROWS.events_from_page
session_row = _ROWS.session_row
session_from_row = _ROWS.session_from_row
run_row = _ROWS.run_row
run_from_row = _ROWS.run_from_row
