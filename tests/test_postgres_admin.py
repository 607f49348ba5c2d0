"""The PostgreSQL store's administration methods (the ones the command line uses) and its
read-only mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from sqlitestream import Event, Run, SchemaVersionError, Session, StorageError
from sqlitestream.postgres import PostgresSessionStore
from sqlitestream.postgres.schema import SCHEMA_VERSION

pytestmark = pytest.mark.usefixtures("pg_dsn")


def _sql(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.fixture
def store(pg_dsn: str, pg_schema: str) -> Iterator[PostgresSessionStore]:
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as opened:
        yield opened


@pytest.fixture
def raw(pg_dsn: str, pg_schema: str) -> Callable[..., None]:
    """Run SQL on the store's schema directly, as another program (or a bug) might."""

    def execute(statement: str, params: tuple[Any, ...] = ()) -> None:
        _sql(pg_dsn, statement.replace("{s}", f'"{pg_schema}"'), params)

    return execute


def test_list_streams_counts_every_session_in_the_log(store: PostgresSessionStore) -> None:
    store.append_events([Event("message_sent", "b"), Event("message_sent", "a"), Event("message_sent", "b")])
    store.save_session(Session(agent_id="x", id="saved-only"))
    streams = store.list_streams()
    assert [(s.session_id, s.event_count, s.latest_sequence) for s in streams] == [("a", 1, 1), ("b", 2, 2)]
    assert [s.session_id for s in store.list_streams(["b", "nope", "b"])] == ["b"]


def test_store_info_reports_counts_and_versions(store: PostgresSessionStore, pg_schema: str) -> None:
    store.save_session(Session(agent_id="x", id="s1"))
    store.save_run(Run(session_id="s1"))
    store.append_events([Event("message_sent", "s1"), Event("message_sent", "s2")])
    info = store.store_info()
    assert (info.schema, info.schema_version, info.sessions, info.runs, info.events, info.streams) == (
        pg_schema,
        SCHEMA_VERSION,
        1,
        1,
        2,
        2,
    )
    assert info.table_bytes is not None and info.table_bytes > 0 and info.synchronous_commit
    assert set(info.to_dict()) >= {"dsn", "schema", "server_version", "events"}


def test_check_integrity_passes_a_healthy_store(store: PostgresSessionStore) -> None:
    store.save_session(Session(agent_id="x", id="s1"))
    store.save_run(Run(session_id="s1"))
    store.append_events([Event("message_sent", "s1") for _ in range(5)])
    progress: list[tuple[int, int]] = []
    report = store.check_integrity(on_progress=lambda done, total: progress.append((done, total)))
    assert report.ok and (report.sessions_checked, report.events_checked) == (1, 5)
    assert progress == [(1, 1)]


def test_check_integrity_finds_what_other_writers_broke(
    store: PostgresSessionStore, raw: Callable[..., None]
) -> None:
    store.append_events([Event("message_sent", "gap") for _ in range(3)])
    store.append_events([Event("message_sent", "latest") for _ in range(2)])
    store.append_event(Event("message_sent", "types"))
    store.save_session(Session(agent_id="x", id="doomed"))
    store.save_run(Run(session_id="doomed", id="orphan"))
    raw("DELETE FROM {s}.events WHERE session_id = 'gap' AND seq = 2")
    raw("UPDATE {s}.streams SET latest_seq = 7 WHERE session_id = 'latest'")
    raw("UPDATE {s}.events SET type = 'made_up', data = '[1]' WHERE session_id = 'types'")
    raw(
        "INSERT INTO {s}.events (session_id, seq, id, type, ts, data, metadata, position) "
        "VALUES ('nocounter', 1, 'nc', 'message_sent', now(), '{}', 'not json', 1000)"
    )
    raw("ALTER TABLE {s}.runs DROP CONSTRAINT runs_session_id_fkey")
    raw("DELETE FROM {s}.sessions WHERE id = 'doomed'")
    kinds = {(f.kind, f.session_id) for f in store.check_integrity().findings}
    assert kinds == {
        ("sequence_gap", "gap"),
        ("latest_mismatch", "latest"),
        ("bad_type", "types"),
        ("bad_json", "types"),
        ("bad_json", "nocounter"),
        ("missing_counter", "nocounter"),
        ("foreign_key", "doomed"),
    }


def test_import_session_keeps_sequences_and_is_idempotent(store: PostgresSessionStore) -> None:
    events = [Event("message_sent", "s1", id=f"e{n}", sequence_number=n) for n in range(1, 4)]
    session = Session(agent_id="x", id="s1")
    first = store.import_session("s1", session=session, runs=[Run(session_id="s1", id="r1")], events=events)
    assert (first.session, first.runs_added, first.events_added) == ("added", 1, 3)
    again = store.import_session("s1", session=session, events=events)
    assert (again.session, again.events_added, again.events_skipped) == ("unchanged", 0, 3)
    assert [(e.id, e.sequence_number) for e in store.get_events("s1")] == [("e1", 1), ("e2", 2), ("e3", 3)]
    assert store.append_event_with_sequence(Event("message_sent", "s1")).sequence_number == 4


# Read-only ---------------------------------------------------------------------------------


def test_readonly_store_reads_and_refuses_every_write(
    pg_dsn: str, pg_schema: str, store: PostgresSessionStore
) -> None:
    store.append_event(Event("message_sent", "s1", id="e1"))
    with PostgresSessionStore(pg_dsn, schema=pg_schema, readonly=True) as reader:
        assert reader.readonly and "read-only" in repr(reader)
        assert [e.id for e in reader.get_events("s1")] == ["e1"]
        writes: list[Callable[[], object]] = [
            lambda: reader.append_event(Event("message_sent", "s1")),
            lambda: reader.append_events([Event("message_sent", "s1")]),
            lambda: reader.save_session(Session(agent_id="x")),
            lambda: reader.delete_session("s1"),
        ]
        for write in writes:
            with pytest.raises(StorageError, match="read-only") as caught:
                write()
            assert caught.value.sqlstate == "25006"  # read_only_sql_transaction, from the server
            assert caught.value.sqlite_code is None
    assert store.get_latest_sequence("s1") == 1


def test_readonly_open_creates_nothing(pg_dsn: str, pg_schema: str) -> None:
    with pytest.raises(StorageError, match="no sqlitestream store"):
        PostgresSessionStore(pg_dsn, schema=pg_schema, readonly=True)
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (pg_schema,)).fetchall()
    assert found == []


def test_readonly_open_refuses_a_newer_schema(
    pg_dsn: str, pg_schema: str, store: PostgresSessionStore, raw: Callable[..., None]
) -> None:
    raw("UPDATE {s}.schema_version SET version = 5")
    with pytest.raises(SchemaVersionError):
        PostgresSessionStore(pg_dsn, schema=pg_schema, readonly=True)
