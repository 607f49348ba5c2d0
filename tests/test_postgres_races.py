"""Races on PostgreSQL made deterministic: a test connection holds a session's counter row
while appends queue behind it in a known order, then lets go."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import ThreadCall, wait_until

from sqlitestream import Event, SequenceConflictError
from sqlitestream.postgres import PostgresSessionStore


@pytest.fixture
def store(pg_dsn: str, pg_schema: str) -> Iterator[PostgresSessionStore]:
    opened = PostgresSessionStore(pg_dsn, schema=pg_schema)
    try:
        yield opened
    finally:
        opened.close()


def _lock_waiters(dsn: str) -> int:
    """Backends of this database waiting for a lock right now."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
        return int(row[0]) if row else 0


def test_expected_sequence_append_racing_a_plain_append_of_its_id_returns_the_stored_event(
    store: PostgresSessionStore, pg_dsn: str, pg_schema: str
) -> None:
    """The contract: a duplicate id returns the stored event whatever expected_sequence says.
    The plain append of x commits first; the expected-sequence append of x, from another store
    object (one store's own appends queue in its group commit instead) and queued behind it on
    the server, must then find x, not count it and raise SequenceConflictError."""
    import psycopg

    other = PostgresSessionStore(pg_dsn, schema=pg_schema)
    store.append_event_with_sequence(Event("message_sent", "s", id="first"))
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(f'SELECT 1 FROM "{pg_schema}".streams WHERE session_id = %s FOR UPDATE', ("s",))
        plain = ThreadCall(lambda: store.append_event_with_sequence(Event("message_sent", "s", id="x")))
        wait_until(lambda: _lock_waiters(pg_dsn) >= 1, what="the plain append to queue on the counter")
        expecting = ThreadCall(
            lambda: other.append_event_with_sequence(Event("message_sent", "s", id="x"), expected_sequence=1)
        )
        wait_until(lambda: _lock_waiters(pg_dsn) >= 2, what="the expected-sequence append to queue")
        holder.commit()
    other.close()

    stored, answered = plain.result(), expecting.result()
    assert not isinstance(stored, BaseException), stored
    assert not isinstance(answered, SequenceConflictError), answered
    assert (stored.id, stored.sequence_number) == ("x", 2)
    assert answered.to_dict() == stored.to_dict()
    assert [e.id for e in store.get_events("s")] == ["first", "x"]
