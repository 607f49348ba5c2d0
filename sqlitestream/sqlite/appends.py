"""The SQL of a batch append, inside the writer's transaction: numbering the batch against the
stored ids and counters, inserting it, and the idempotent producers' stamps on sessions (read
and recorded in the same transaction as the batch they stamp)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import apsw

from sqlitestream._core.batch import plan_batch
from sqlitestream._core.rows import EVENT_COLUMNS, RowCodec
from sqlitestream._core.sql import insert
from sqlitestream.bytestreams import Producer
from sqlitestream.models import Event, StoredEvent, from_micros, from_micros_many, to_micros

ROWS = RowCodec(to_micros, from_micros, from_micros_many)
INSERT_EVENT = insert("events", EVENT_COLUMNS, "?")
BUMP_SEQUENCE = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET latest_seq = latest_seq + excluded.latest_seq "
    "RETURNING latest_seq"
)
_SELECT_EVENTS_BY_IDS = f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?))"
_PRODUCER = "SELECT epoch, seq FROM session_producers WHERE session_id = ? AND producer_id = ?"
_SET_PRODUCER = (
    "INSERT INTO session_producers (session_id, producer_id, epoch, seq) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (session_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq"
)
DELETE_PRODUCERS = "DELETE FROM session_producers WHERE session_id = ?"


def insert_batch(conn: apsw.Connection, batch: Sequence[Event]) -> tuple[list[StoredEvent], set[str]]:
    """Store ``batch`` (checked events): the results in order (stored events, or those already
    stored under their ids) and the sessions that got new events."""
    plan = plan_batch(batch, _stored_with_ids(conn, batch))
    latest = {session: _bump(conn, session, count) for session, count in plan.counts.items()}
    numbered = plan.numbered(latest)
    if numbered:
        conn.executemany(INSERT_EVENT, [ROWS.event_row(event, event.sequence_number) for event in numbered])
    return plan.results(numbered), set(plan.counts)


def producer_state(conn: apsw.Connection, session_id: str, producer_id: str) -> tuple[int, int] | None:
    rows = conn.execute(_PRODUCER, (session_id, producer_id)).fetchall()
    return None if not rows else (int(rows[0][0]), int(rows[0][1]))  # type: ignore[arg-type]


def record_producer(conn: apsw.Connection, session_id: str, producer: Producer) -> None:
    conn.execute(_SET_PRODUCER, (session_id, producer.id, producer.epoch, producer.seq))


def _stored_with_ids(conn: apsw.Connection, batch: Sequence[Event]) -> dict[str, StoredEvent]:
    """The stored events holding any of the batch's ids, by id (one query)."""
    ids = json.dumps(list({event.id for event in batch}))
    return {row[2]: ROWS.event_from_row(row) for row in conn.execute(_SELECT_EVENTS_BY_IDS, (ids,))}


def _bump(conn: apsw.Connection, session_id: str, count: int) -> int:
    """Add ``count`` to the session's counter (creating it at 0) and return the new latest."""
    return int(conn.execute(BUMP_SEQUENCE, (session_id, count)).fetchall()[0][0])  # type: ignore[arg-type]
