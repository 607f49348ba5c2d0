"""SQLite-specific behaviour: what a file must be before we touch it, schema versions,
read-only opens, the connection settings, and several processes on one file."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spawned import append_worker, follow_worker, open_and_append
from support import processes

from sqlitestream import (
    Event,
    SchemaVersionError,
    SequenceConflictError,
    Session,
    SQLiteSessionStore,
    StorageError,
    StoredEvent,
    ValidationError,
)
from sqlitestream.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION, schema_sql
from tools.oldstores import downgrade_sqlite_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Appends on a damaged counter --------------------------------------------------------------------


def test_append_on_a_counter_behind_the_log_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    """A counter edited behind the store's back makes the next sequence number one that is
    taken: the append says so and names the fix, and nothing is written."""
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s1", id=f"e{i}") for i in range(3)])
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE streams SET latest_seq = 1 WHERE session_id = 's1'")
    conn.close()
    with SQLiteSessionStore(path) as store:
        with pytest.raises(
            StorageError, match="counter of session 's1' is behind its events.*sqlitestream check"
        ):
            store.append_event_with_sequence(Event("message_sent", "s1", id="new"))
        assert [e.id for e in store.get_events("s1")] == ["e0", "e1", "e2"]
        assert store.get_latest_sequence("s1") == 1


# Pages read back exactly ---------------------------------------------------------------------------

_EDGE_TIMES = [
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    # Either side of the magnitude where page reads switch timestamp conversion (2**32 s).
    datetime(2106, 2, 7, 6, 28, 15, 999_999, tzinfo=UTC),
    datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),
    datetime(1833, 11, 24, 17, 31, 44, 1, tzinfo=UTC),
    datetime(2026, 11, 29, 14, 0, 0, 500_000, tzinfo=UTC),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moments=st.lists(
        st.one_of(
            st.sampled_from(_EDGE_TIMES),
            st.datetimes(timezones=st.just(UTC)),
            st.datetimes(
                min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
            ),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_page_reads_return_every_timestamp_to_the_microsecond(
    tmp_path: Path, moments: list[datetime]
) -> None:
    path = tmp_path / f"times-{len(list(tmp_path.iterdir()))}.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", timestamp=moment) for moment in moments])
        read = store.get_events("s")
        assert [e.timestamp for e in read] == moments
        assert all(e.timestamp.tzinfo is UTC for e in read)
        assert [e.timestamp for e in store.get_events("s", after=len(moments) // 2, limit=3)] == moments[
            len(moments) // 2 : len(moments) // 2 + 3
        ]


def test_payloads_written_by_other_tools_read_back_whatever_their_spacing(tmp_path: Path) -> None:
    """JSON text another SQLite client wrote (spaces, escapes) decodes like our own compact text,
    also when it shares a page with ours."""
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", id=f"e{i}", data={"i": i}) for i in range(4)])
    conn = apsw.Connection(str(path))
    conn.execute(
        """UPDATE events SET data = ' { "i" : 1 , "s": "\\u00e9" } ', metadata = '{ }' WHERE id = 'e1'"""
    )
    conn.execute("""UPDATE events SET data = '{"i":2}  ' WHERE id = 'e2'""")
    conn.close()
    with SQLiteSessionStore(path) as store:
        events = store.get_events("s")
        assert [e.data for e in events] == [{"i": 0}, {"i": 1, "s": "é"}, {"i": 2}, {"i": 3}]
        assert [e.metadata for e in events] == [{}, {}, {}, {}]
        assert store.get_events("s", after=1, limit=1)[0].data == {"i": 1, "s": "é"}


@pytest.mark.parametrize(
    ("column", "value", "part"),
    [
        ("data", "{not json", "data"),
        ("metadata", "[1, 2]", "metadata"),
        ("type", "no_such_type", "type"),
        ("ts", 10**18, "timestamp"),
    ],
)
def test_a_damaged_event_row_is_a_storage_error_naming_it(
    tmp_path: Path, column: str, value: object, part: str
) -> None:
    """A row edited behind the store's back is reported as damaged storage, naming the event
    and what to run, never as a raw decoding error; the other pages still read."""
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s", id=f"e{i}", data={"i": i}) for i in range(4)])
    conn = apsw.Connection(str(path))
    conn.execute(f"UPDATE events SET {column} = ? WHERE id = 'e2'", (value,))
    conn.close()
    with SQLiteSessionStore(path) as store:
        pattern = f"event 'e2' \\(sequence 3 of session 's'\\).*its {part} is damaged.*sqlitestream check"
        with pytest.raises(StorageError, match=pattern):
            store.get_events("s")
        assert [e.id for e in store.get_events("s", limit=2)] == ["e0", "e1"]
        assert [e.id for e in store.get_events("s", after=3)] == ["e3"]


def test_a_damaged_session_row_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.save_session(Session(agent_id="a", id="s1"))
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE sessions SET context = '{oops' WHERE id = 's1'")
    conn.close()
    with (
        SQLiteSessionStore(path) as store,
        pytest.raises(StorageError, match="session 's1' cannot be read.*damaged"),
    ):
        store.get_session("s1")


# Files that are not (or not yet) stores --------------------------------------------------------


def _refused_untouched(path: Path, error: type[Exception], match: str) -> None:
    before = path.read_bytes()
    siblings = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(error, match=match):
        SQLiteSessionStore(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == siblings


def test_text_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 10)
    _refused_untouched(path, StorageError, "not a SQLite database")


def test_other_applications_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('ada')")
    conn.close()
    _refused_untouched(path, StorageError, "another application")


def test_truncated_store_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s1", data={"x": "y" * 1000}) for _ in range(50)])
    data = path.read_bytes()
    path.write_bytes(data[:60])
    _refused_untouched(path, StorageError, "not a SQLite database")


def test_newer_schema_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    conn = apsw.Connection(str(path))
    conn.pragma("user_version", SCHEMA_VERSION + 1)
    conn.close()
    _refused_untouched(path, SchemaVersionError, "newer")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="directory"):
        SQLiteSessionStore(tmp_path)


def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.touch()
    with SQLiteSessionStore(path) as store:
        assert store.upgraded_from == 0
        store.append_event(Event("message_sent", "s1"))
    conn = apsw.Connection(str(path))
    assert conn.pragma("application_id") == APPLICATION_ID
    assert conn.pragma("user_version") == SCHEMA_VERSION
    conn.close()


# Schema versions --------------------------------------------------------------------------------


def _make_version_1(path: Path) -> None:
    """A store as version 1 wrote it (no ``runs_running`` index, no feed positions)."""
    with SQLiteSessionStore(path) as store:
        store.save_session(Session(agent_id="a", id="s1"))
        store.append_events([Event("message_sent", "s1"), Event("message_sent", "s1")])
    downgrade_sqlite_store(path, 1)


def _columns(conn: apsw.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every table's and index's columns as PRAGMA table_xinfo / index_xinfo give them."""
    objects = conn.execute(
        "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    return {
        name: conn.execute(f"PRAGMA {'table' if kind == 'table' else 'index'}_xinfo({name})").fetchall()
        for kind, name in list(objects)
    }


def test_version_2_store_is_upgraded_with_positions_in_commit_order(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.save_cursor("gone-with-the-downgrade", 1)
        for n in range(30):
            store.append_event(
                Event("message_sent", f"s{n % 4}", id=f"e{n}", timestamp=T0 + timedelta(seconds=n))
            )
        # Appended later but dated earlier than its session's previous event: it still comes after it.
        store.append_event(Event("message_sent", "s1", id="late", timestamp=T0))
    downgrade_sqlite_store(path, 2)
    with SQLiteSessionStore(path) as store:
        assert store.upgraded_from == 2
        feed = store.read_feed()
        assert [event.position for event in feed] == list(range(1, 32))
        assert [event.id for event in feed] == [f"e{n}" for n in range(30)] + ["late"]
        assert [e.sequence_number for e in store.get_events("s1")] == list(range(1, 10))
        assert store.get_last_position() == 31 and store.list_cursors() == []
        assert store.append_event(Event("message_sent", "s9")).position == 32
        assert store.check_integrity().ok


def test_an_upgraded_store_has_the_schema_of_a_new_one(tmp_path: Path) -> None:
    SQLiteSessionStore(tmp_path / "new.db").close()
    with SQLiteSessionStore(tmp_path / "old.db") as store:
        store.append_event(Event("message_sent", "s1"))
    downgrade_sqlite_store(tmp_path / "old.db", 1)
    SQLiteSessionStore(tmp_path / "old.db").close()
    new, old = (apsw.Connection(str(tmp_path / name)) for name in ("new.db", "old.db"))
    try:
        assert _columns(old) == _columns(new)
    finally:
        new.close()
        old.close()


def test_a_failed_upgrade_leaves_version_2_untouched(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("message_sent", "s1", id=f"e{n}") for n in range(5)])
    downgrade_sqlite_store(path, 2)
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE cursors (x)")  # makes the upgrade's CREATE TABLE cursors fail
    conn.close()
    with pytest.raises(StorageError, match="cursors"):
        SQLiteSessionStore(path)
    conn = apsw.Connection(str(path))
    try:
        assert conn.pragma("user_version") == 2
        assert [row[1] for row in conn.execute("PRAGMA table_info(events)")][-1] == "metadata"
        assert conn.execute("SELECT count(*) FROM events").fetchall() == [(5,)]
    finally:
        conn.close()


def test_version_1_store_is_upgraded_on_open(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _make_version_1(path)
    with SQLiteSessionStore(path) as store:
        assert store.upgraded_from == 1
        assert store.get_latest_sequence("s1") == 2
        assert store.get_session("s1").agent_id == "a"
    conn = apsw.Connection(str(path))
    assert conn.pragma("user_version") == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'runs_running'").fetchall() == [(1,)]
    conn.close()


def test_current_store_is_not_rewritten_on_open(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    with SQLiteSessionStore(path) as store:
        assert store.upgraded_from is None


def test_readonly_open_of_old_version_asks_for_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    _make_version_1(path)
    with pytest.raises(SchemaVersionError, match="migrate"):
        SQLiteSessionStore(path, readonly=True)


def test_schema_sql_is_stamped_with_the_code_version() -> None:
    assert f"schema-version: {SCHEMA_VERSION}" in schema_sql()


# Read-only opens --------------------------------------------------------------------------------


def test_readonly_open_never_creates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no store"):
        SQLiteSessionStore(path, readonly=True)
    assert not path.exists()


def test_readonly_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
    with SQLiteSessionStore(path, readonly=True) as reader:
        assert [e.sequence_number for e in reader.get_events("s1")] == [1]
        with pytest.raises(StorageError, match="read-only"):
            reader.append_event(Event("message_sent", "s1"))
    with SQLiteSessionStore(path) as store:
        assert store.get_latest_sequence("s1") == 1


def test_readonly_store_sees_a_live_writer(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as writer, SQLiteSessionStore(path, readonly=True) as reader:
        writer.append_event(Event("message_sent", "s1"))
        assert reader.get_latest_sequence("s1") == 1
        waiter = threading.Thread(
            target=lambda: results.append(reader.get_events("s1", after=1, wait_timeout_ms=10_000))
        )
        results: list[list[StoredEvent]] = []
        waiter.start()
        writer.append_event(Event("message_sent", "s1", id="second"))
        waiter.join(15)
        assert [e.id for e in results[0]] == ["second"]


# Constructor arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"synchronous": "off"}, "synchronous"),
        ({"synchronous": "NORMAL; DROP TABLE events"}, "synchronous"),
        ({"busy_timeout_ms": -1}, "busy_timeout_ms"),
        ({"busy_timeout_ms": "5"}, "busy_timeout_ms"),
        ({"readonly": "yes"}, "readonly"),
        ({"max_event_bytes": 0}, "max_event_bytes"),
        ({"poll_interval_ms": 0}, "poll_interval_ms"),
    ],
)
def test_bad_constructor_argument_raises_and_creates_nothing(
    tmp_path: Path, kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValidationError, match=argument):
        SQLiteSessionStore(tmp_path / "events.db", **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [None, 3, "", b"events.db"])
def test_bad_path_raises(path: object) -> None:
    with pytest.raises(ValidationError, match="path"):
        SQLiteSessionStore(path)  # type: ignore[arg-type]


def test_memory_store_cannot_be_readonly() -> None:
    with pytest.raises(ValidationError, match="readonly"):
        SQLiteSessionStore(":memory:", readonly=True)


def test_oversized_event_is_refused(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "events.db", max_event_bytes=100) as store:
        with pytest.raises(ValidationError, match="max_event_bytes"):
            store.append_event(Event("message_sent", "s1", data={"text": "x" * 200}))
        assert store.get_latest_sequence("s1") == 0
        store.append_event(Event("message_sent", "s1", data={"text": "x" * 50}))


# Connection settings ----------------------------------------------------------------------------


def _writer_pragma(store: SQLiteSessionStore, name: str) -> object:
    # Per-connection settings are only visible on the store's own connection.
    conn = store._writer.conn
    assert conn is not None
    return conn.pragma(name)


@pytest.mark.parametrize(("level", "value"), [("normal", 1), ("full", 2)])
def test_synchronous_level_is_applied(tmp_path: Path, level: str, value: int) -> None:
    with SQLiteSessionStore(tmp_path / "events.db", synchronous=level) as store:
        assert _writer_pragma(store, "synchronous") == value


def test_connection_settings_are_applied(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "events.db") as store:
        assert _writer_pragma(store, "journal_mode") == "wal"
        assert _writer_pragma(store, "foreign_keys") == 1
        assert _writer_pragma(store, "trusted_schema") == 0
        assert _writer_pragma(store, "journal_size_limit") == 64 * 1024 * 1024
        assert _writer_pragma(store, "cache_size") == -8 * 1024
        with store._read("check the read connection's settings") as reader:  # a pool connection
            assert (reader.pragma("cache_size"), reader.pragma("synchronous")) == (-8 * 1024, 1)


def test_wal_mode_persists_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    conn = apsw.Connection(str(path))
    assert conn.pragma("journal_mode") == "wal"
    conn.close()


def test_settings_do_not_touch_other_connections(tmp_path: Path) -> None:
    other = apsw.Connection(str(tmp_path / "other.db"))
    before = (other.pragma("foreign_keys"), other.pragma("synchronous"))
    with SQLiteSessionStore(tmp_path / "events.db", synchronous="full"):
        pass
    fresh = apsw.Connection(str(tmp_path / "fresh.db"))
    assert (other.pragma("foreign_keys"), other.pragma("synchronous")) == before
    assert fresh.pragma("foreign_keys") == 0
    other.close()
    fresh.close()


def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with SQLiteSessionStore(tmp_path / "events.db") as store:
            store.append_event(Event("message_sent", "s1"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes and all(mode & 0o077 == 0 for mode in modes.values()), modes


# Several processes on one file ------------------------------------------------------------------


def test_processes_appending_get_gap_free_sequences(tmp_path: Path) -> None:
    path = str(tmp_path / "events.db")
    SQLiteSessionStore(path).close()
    ctx = processes()
    start = ctx.Event()
    workers = [
        ctx.Process(target=append_worker, args=(path, ["shared", f"own{n}"], 40, start)) for n in range(3)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with SQLiteSessionStore(path) as store:
        assert [e.sequence_number for e in store.get_events("shared")] == list(range(1, 121))
        assert store.get_latest_sequence("shared") == 120
        for n in range(3):
            own = store.get_events(f"own{n}")
            assert [e.sequence_number for e in own] == list(range(1, 41))
            assert [e.data["i"] for e in own] == list(range(40))


def test_long_poll_wakes_on_another_process_append(tmp_path: Path) -> None:
    path = str(tmp_path / "events.db")
    SQLiteSessionStore(path).close()
    ctx = processes()
    ready, out = ctx.Event(), ctx.Queue()
    follower = ctx.Process(target=follow_worker, args=(path, "s1", 30, ready, out))
    follower.start()
    assert ready.wait(60)
    with SQLiteSessionStore(path) as store:
        for _ in range(30):
            store.append_event(Event("message_sent", "s1"))
    seen = out.get(timeout=90)
    follower.join(30)
    assert seen == list(range(1, 31))


def test_installed_package_creates_a_store_outside_the_source_tree(tmp_path: Path) -> None:
    """From another directory the import resolves to the installed package (in CI, the wheel
    built by ``pip install .``), which must carry ``schema.sql``."""
    import subprocess
    import sys

    code = (
        "import sqlitestream\n"
        "from sqlitestream import SQLiteSessionStore, Event\n"
        "with SQLiteSessionStore('events.db') as store:\n"
        "    print(store.append_event_with_sequence(Event('message_sent', 's1')).sequence_number)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_processes_creating_the_same_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Several processes opening one brand-new file together: one creates the schema and
    switches to WAL, the others wait for it (no StoreBusyError within the busy timeout)."""
    path = str(tmp_path / "events.db")
    ctx = processes()
    start, out = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=open_and_append, args=(path, start, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    results = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert results == ["ok"] * 4
    with SQLiteSessionStore(path) as store:
        assert [e.sequence_number for e in store.get_events("s1")] == [1, 2, 3, 4]


# Feed positions on one file ---------------------------------------------------------------------


def test_positions_stay_contiguous_across_store_objects_rollbacks_and_duplicates(tmp_path: Path) -> None:
    """Each writer keeps its last position between its transactions; another connection's
    commit, a rolled-back append and a duplicate must each leave it right."""
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as one, SQLiteSessionStore(path) as two:
        for n in range(30):
            writer = one if n % 3 else two
            if n % 5 == 0:
                writer.append_events([Event("message_sent", f"s{n % 4}"), Event("message_sent", "s9")])
            else:
                writer.append_event(Event("message_sent", f"s{n % 4}", id=f"e{n}"))
            if n % 7 == 0:
                with pytest.raises(SequenceConflictError):
                    writer.append_event_with_sequence(Event("message_sent", "s0"), expected_sequence=999)
                writer.append_event(Event("message_sent", "s1", id="dup"))  # new the first time only
            if n % 11 == 0:
                writer.save_cursor("c", n)
                other = two if writer is one else one
                other.import_session(
                    f"imported-{n}",
                    events=[Event("message_sent", f"imported-{n}", id=f"i{n}", sequence_number=1)],
                )
        positions = [event.position for event in one.read_feed()]
        assert positions == list(range(1, len(positions) + 1))
        assert one.get_last_position() == two.get_last_position() == len(positions)
