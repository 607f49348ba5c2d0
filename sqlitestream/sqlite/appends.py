"""What an append writes inside its write transaction: one event (:func:`append_one`), a
batch (:func:`insert_batch`) and the idempotent producers' stamps on sessions, read and
recorded in the same transaction as the batch they stamp (see
``SQLiteSessionStore.append_events_as``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import apsw

from sqlitestream._core.batch import BatchPlan, plan_batch
from sqlitestream._core.rows import EVENT_COLUMNS, RowCodec
from sqlitestream._core.sql import insert
from sqlitestream.bytestreams import Producer
from sqlitestream.errors import EventIdConflictError, SequenceConflictError, StorageError
from sqlitestream.models import Event, StoredEvent, from_micros, from_micros_many, to_micros, with_sequence
from sqlitestream.sqlite.feed import PositionCache
from sqlitestream.sqlite.transaction import Writer
from sqlitestream.store import EncodedBatch

__all__ = ["DELETE_PRODUCERS", "append_one", "insert_batch", "producer_state", "record_producer"]

_ROWS = RowCodec(to_micros, from_micros, from_micros_many)

_SELECT_EVENT_BY_ID = f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?"
_SELECT_EVENTS_BY_IDS = f"SELECT {EVENT_COLUMNS} FROM events WHERE id IN (SELECT value FROM json_each(?))"
_INSERT_EVENT = insert("events", EVENT_COLUMNS, "?")
_INSERT_NEW_EVENT = _INSERT_EVENT + " ON CONFLICT DO NOTHING"
# Only a taken id is skipped: a taken (session_id, seq) still raises, the counter being behind.
_INSERT_NEW_IDS = _INSERT_EVENT + " ON CONFLICT (id) DO NOTHING"
_COUNT_AFTER = "SELECT count(*) FROM events WHERE session_id = ? AND seq > ?"
_BUMP_SEQUENCE = (
    "INSERT INTO streams (session_id, latest_seq) VALUES (?, ?) "
    "ON CONFLICT (session_id) DO UPDATE SET latest_seq = latest_seq + excluded.latest_seq "
    "RETURNING latest_seq"
)
_UNBUMP_SEQUENCE = "UPDATE streams SET latest_seq = latest_seq - 1 WHERE session_id = ?"
_PRODUCER = "SELECT epoch, seq FROM session_producers WHERE session_id = ? AND producer_id = ?"
_SET_PRODUCER = (
    "INSERT INTO session_producers (session_id, producer_id, epoch, seq) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (session_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq"
)
DELETE_PRODUCERS = "DELETE FROM session_producers WHERE session_id = ?"


def append_one(
    writer: Writer,
    positions: PositionCache,
    event: Event,
    data: str,
    metadata: str,
    expected_sequence: int | None,
    conn: apsw.Connection,
) -> tuple[StoredEvent, bool]:
    """One append's writes (inside a write transaction of ``writer``, whose connection is
    ``conn``): the stored event, and whether it is new. ``data`` and ``metadata`` are the
    event's encoded payload."""
    # Optimistic: the id is almost always new, so the insert itself is the duplicate
    # check (one statement fewer than probing first); a taken id undoes the bump.
    # The writer's cursor, as the transaction's own statements: Connection.execute and
    # Connection.cursor make a new cursor each call (2,562 instructions, callgrind).
    cursor = writer.cursor
    assert cursor is not None  # the transaction began: the store is writable
    latest: int = cursor.execute(_BUMP_SEQUENCE, (event.session_id, 1)).get
    position = positions.take(conn, 1)
    try:
        cursor.execute(_INSERT_NEW_EVENT, _ROWS.encoded_event_row(event, latest, position, data, metadata))
        if not conn.changes():
            conn.execute(_UNBUMP_SEQUENCE, (event.session_id,))
            positions.forget()
            return _stored_as(conn, event, writer.path), False
        if expected_sequence is not None and latest - 1 != expected_sequence:
            raise SequenceConflictError(event.session_id, expected_sequence, latest - 1)
    except BaseException:
        positions.forget()
        raise
    return with_sequence(event, latest, position), True


def _stored_as(conn: apsw.Connection, event: Event, path: str) -> StoredEvent:
    """The event stored under ``event.id``, which an insert just found taken;
    ``EventIdConflictError`` if another session's."""
    rows = conn.execute(_SELECT_EVENT_BY_ID, (event.id,)).fetchall()
    if not rows:  # the insert met another constraint: the counter is behind the log
        raise StorageError(
            f"append an event: the sequence counter of session {event.session_id!r} is "
            f"behind its events; run 'sqlitestream check {path}'"
        )
    stored = _ROWS.event_from_row(rows[0])
    if stored.session_id != event.session_id:
        raise EventIdConflictError(event.id, event.session_id, stored.session_id)
    return stored


def _stored_with_ids(conn: apsw.Connection, batch: Sequence[Event]) -> dict[str, StoredEvent]:
    """The stored events holding any of the batch's ids, by id (one query)."""
    ids = json.dumps(list({event.id for event in batch}))
    return {row[2]: _ROWS.event_from_row(row) for row in conn.execute(_SELECT_EVENTS_BY_IDS, (ids,))}


def insert_batch(
    conn: apsw.Connection, *, batch: EncodedBatch, positions: PositionCache
) -> tuple[BatchPlan, list[StoredEvent]]:
    """Store a batch's new events, returning its plan and the events it numbered.

    Optimistic, as a single append is: the ids are almost always new, so the unique index does
    the duplicate check inside the one ``executemany`` (``ON CONFLICT (id) DO NOTHING``) instead
    of a probe per id, and a count per session confirms every row went in. When one did not,
    the attempt is rolled back to its savepoint and the batch planned against the stored
    originals (the batch-100 figures are in the commit that made this change).
    """
    try:
        return _insert_batch_once(conn, batch, positions)
    except BaseException:
        positions.forget()
        raise


def _insert_batch_once(
    conn: apsw.Connection, batch: EncodedBatch, positions: PositionCache
) -> tuple[BatchPlan, list[StoredEvent]]:
    plan = plan_batch(batch.events, {})  # refuses an id repeated under two sessions inside the batch
    conn.execute("SAVEPOINT batch")
    latest, numbered = _insert_numbered(conn, plan, batch, _INSERT_NEW_IDS, positions)
    if all(
        conn.execute(_COUNT_AFTER, (session, latest[session] - count)).get == count
        for session, count in plan.counts.items()
    ):
        conn.execute("RELEASE batch")
        return plan, numbered
    conn.execute("ROLLBACK TO batch")
    conn.execute("RELEASE batch")
    positions.forget()  # those positions were rolled back with the rows
    plan = plan_batch(batch.events, _stored_with_ids(conn, batch.events))
    return plan, _insert_numbered(conn, plan, batch, _INSERT_EVENT, positions)[1]


def _insert_numbered(
    conn: apsw.Connection,
    plan: BatchPlan,
    batch: EncodedBatch,
    sql: str,
    positions: PositionCache,
) -> tuple[dict[str, int], list[StoredEvent]]:
    """Raise the plan's counters and insert its new events with ``sql``: each session's new
    latest sequence, and the numbered events."""
    latest = {session: _bump(conn, session, count) for session, count in plan.counts.items()}
    if not plan.new:
        return latest, []
    numbered = plan.numbered(latest, positions.take(conn, len(plan.new)) - 1)
    if len(plan.new) == len(batch.events):  # every event is new: the payloads are in its order
        rows = [
            _ROWS.encoded_event_row(event, event.sequence_number, event.position, data, metadata)
            for event, (data, metadata) in zip(numbered, batch.payloads, strict=True)
        ]
    else:
        rows = [_ROWS.event_row(event, event.sequence_number, event.position) for event in numbered]
    conn.executemany(sql, rows)
    return latest, numbered


def _bump(conn: apsw.Connection, session_id: str, count: int) -> int:
    """Add ``count`` to the session's counter (creating it at 0) and return the new latest."""
    return int(conn.execute(_BUMP_SEQUENCE, (session_id, count)).fetchall()[0][0])  # type: ignore[arg-type]


def producer_state(conn: apsw.Connection, session_id: str, producer_id: str) -> tuple[int, int] | None:
    rows = conn.execute(_PRODUCER, (session_id, producer_id)).fetchall()
    return None if not rows else (int(rows[0][0]), int(rows[0][1]))  # type: ignore[arg-type]


def record_producer(conn: apsw.Connection, session_id: str, producer: Producer) -> None:
    conn.execute(_SET_PRODUCER, (session_id, producer.id, producer.epoch, producer.seq))
