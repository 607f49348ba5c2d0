"""How records become PostgreSQL rows and back: column lists, JSON text, timestamps.

JSON payloads are stored as the exact compact text the records encode to (see
``postgres_schema.sql`` for why not jsonb); timestamps as timestamptz, read back in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .models import Event, EventType, Run, Session

EVENT_COLUMNS = "session_id, seq, id, type, run_id, ts, data, metadata"
SESSION_COLUMNS = (
    "id, agent_id, status, parent_session_id, metadata, context, tags, created_at, updated_at"
)
RUN_COLUMNS = (
    "id, session_id, status, input, output, error, metadata, turn_count, token_usage, "
    "started_at, ended_at"
)
UNNEST_EVENTS = (
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::text[], %s::text[])"
)
"""Rows for ``INSERT INTO events (EVENT_COLUMNS)`` from the eight arrays of
:func:`event_columns`: a whole batch in one statement."""

_EVENT_TYPES = {member.value: member for member in EventType}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


def optional_dumps(value: Any) -> str | None:
    return None if value is None else dumps(value)


def optional_loads(text: str | None) -> Any:
    return None if text is None else loads(text)


def utc(moment: datetime) -> datetime:
    """The same instant with ``timezone.utc`` (psycopg returns the connection's time zone)."""
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def event_from_row(row: Sequence[Any]) -> Event:
    session_id, seq, event_id, type_, run_id, ts, data, metadata = row
    return Event._stored(
        type=_EVENT_TYPES[type_],
        session_id=session_id,
        data=loads(data),
        metadata=loads(metadata),
        run_id=run_id,
        id=event_id,
        timestamp=utc(ts),
        sequence_number=seq,
        json_text=(data, metadata),
    )


def with_sequence(event: Event, seq: int) -> Event:
    """``event`` as stored with sequence number ``seq`` (no re-validation)."""
    return Event._stored(
        type=event.type,
        session_id=event.session_id,
        data=event.data,
        metadata=event.metadata,
        run_id=event.run_id,
        id=event.id,
        timestamp=event.timestamp,
        sequence_number=seq,
        json_text=event._json,
    )


def event_values(event: Event, seq: int) -> tuple[Any, ...]:
    """The event's row, in ``EVENT_COLUMNS`` order."""
    return (
        event.session_id,
        seq,
        event.id,
        event.type.value,
        event.run_id,
        event.timestamp,
        event._json[0],
        event._json[1],
    )


def event_columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Event rows turned into the eight column arrays :data:`UNNEST_EVENTS` takes."""
    columns: list[list[Any]] = [[] for _ in range(8)]
    for row in rows:
        for column, value in zip(columns, row):
            column.append(value)
    return columns


def session_row(session: Session) -> tuple[Any, ...]:
    """The session's row, in ``SESSION_COLUMNS`` order."""
    return (
        session.id,
        session.agent_id,
        session.status.value,
        session.parent_session_id,
        dumps(session.metadata),
        dumps(session.context),
        dumps(session.tags),
        session.created_at,
        session.updated_at,
    )


def session_from_row(row: Sequence[Any]) -> Session:
    return Session(
        id=row[0],
        agent_id=row[1],
        status=row[2],
        parent_session_id=row[3],
        metadata=loads(row[4]),
        context=loads(row[5]),
        tags=json.loads(row[6]),
        created_at=utc(row[7]),
        updated_at=utc(row[8]),
    )


def run_row(run: Run) -> tuple[Any, ...]:
    """The run's row, in ``RUN_COLUMNS`` order."""
    return (
        run.id,
        run.session_id,
        run.status.value,
        optional_dumps(run.input),
        optional_dumps(run.output),
        optional_dumps(run.error),
        dumps(run.metadata),
        run.turn_count,
        dumps(run.token_usage),
        run.started_at,
        run.ended_at,
    )


def run_from_row(row: Sequence[Any]) -> Run:
    return Run(
        id=row[0],
        session_id=row[1],
        status=row[2],
        input=optional_loads(row[3]),
        output=optional_loads(row[4]),
        error=optional_loads(row[5]),
        metadata=loads(row[6]),
        turn_count=row[7],
        token_usage=loads(row[8]),
        started_at=utc(row[9]),
        ended_at=None if row[10] is None else utc(row[10]),
    )
