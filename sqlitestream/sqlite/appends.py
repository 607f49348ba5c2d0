"""The idempotent producers' stamps on sessions, read and recorded in the same write
transaction as the batch they stamp (see ``SQLiteSessionStore.append_events_as``)."""

from __future__ import annotations

import apsw

from sqlitestream.bytestreams import Producer

_PRODUCER = "SELECT epoch, seq FROM session_producers WHERE session_id = ? AND producer_id = ?"
_SET_PRODUCER = (
    "INSERT INTO session_producers (session_id, producer_id, epoch, seq) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (session_id, producer_id) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq"
)
DELETE_PRODUCERS = "DELETE FROM session_producers WHERE session_id = ?"


def producer_state(conn: apsw.Connection, session_id: str, producer_id: str) -> tuple[int, int] | None:
    rows = conn.execute(_PRODUCER, (session_id, producer_id)).fetchall()
    return None if not rows else (int(rows[0][0]), int(rows[0][1]))  # type: ignore[arg-type]


def record_producer(conn: apsw.Connection, session_id: str, producer: Producer) -> None:
    conn.execute(_SET_PRODUCER, (session_id, producer.id, producer.epoch, producer.seq))
