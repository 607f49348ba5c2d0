"""The SQLite store's administration methods that the CLI is built on (the ``AdminStore``
contract of sqlitestream.admin), through the public API: listing the log, file facts, the
integrity check, schema migration, and lossless, idempotent export/import."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apsw
import pytest
from spawned import append_until_stopped
from support import processes
from support import records as event_records

from sqlitestream import (
    CheckReport,
    ConflictError,
    Event,
    EventIdConflictError,
    Run,
    SchemaVersionError,
    Session,
    SessionNotFoundError,
    SQLiteSessionStore,
    StorageError,
    ValidationError,
    inspect_schema,
    migrate_schema,
)
from tools.oldstores import downgrade_sqlite_store

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def populate(store: SQLiteSessionStore) -> None:
    """Two saved sessions with runs and events, and one log-only session."""
    store.save_session(
        Session(
            agent_id="agent-a",
            id="s1",
            status="active",
            parent_session_id="s0",
            metadata={"title": "héllo ✓", "n": 1.5},
            context={"nested": {"list": [1, 2, {"x": None}]}},
            tags=["a", "b"],
            created_at=T0,
            updated_at=T0 + timedelta(seconds=1),
        )
    )
    store.save_session(Session(agent_id="agent-b", id="s2", created_at=T0 + timedelta(minutes=1)))
    store.save_run(
        Run(
            session_id="s1",
            id="r1",
            status="completed",
            input={"prompt": "hi"},
            output={"text": "bye"},
            error=None,
            metadata={"m": True},
            turn_count=3,
            token_usage={"in": 10, "out": 20},
            started_at=T0,
            ended_at=T0 + timedelta(seconds=5),
        )
    )
    store.save_run(Run(session_id="s1", id="r2", status="failed", error={"reason": "x"}, started_at=T0))
    for index in range(5):
        store.append_event(
            Event(
                type="message_streamed",
                session_id="s1",
                run_id="r1",
                data={"i": index, "text": "ünïcode \u2028 line", "f": 0.1 + index},
                metadata={"provider": "p"},
                timestamp=T0 + timedelta(microseconds=index),
                id=f"e1-{index}",
            )
        )
    store.append_event(Event(type="session_created", session_id="s2", id="e2-0", timestamp=T0))
    store.append_event(
        Event(
            type="error_occurred",
            session_id="log-only",
            id="e3-0",
            timestamp=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        )
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with SQLiteSessionStore(tmp_path / "store.db") as opened:
        populate(opened)
        yield opened


def raw(path: Path, *statements: str) -> None:
    """Change a store file behind the store's back (to build broken or old files)."""
    conn = apsw.Connection(str(path))
    try:
        conn.pragma("foreign_keys", False)
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def snapshot(store: SQLiteSessionStore) -> list[dict[str, Any]]:
    return list(store.export_records())[1:]


# list_streams ---------------------------------------------------------------------------------


def test_list_streams_counts_every_session_in_the_log(store: SQLiteSessionStore) -> None:
    streams = store.list_streams()
    assert [(s.session_id, s.event_count, s.latest_sequence) for s in streams] == [
        ("log-only", 1, 1),
        ("s1", 5, 5),
        ("s2", 1, 1),
    ]
    assert streams[1].last_event_at == T0 + timedelta(microseconds=4)


def test_list_streams_restricted_to_ids_leaves_out_ids_without_events(store: SQLiteSessionStore) -> None:
    streams = store.list_streams(["s2", "nope", "s1", "s2"])
    assert [s.session_id for s in streams] == ["s1", "s2"]


def test_list_streams_refuses_a_single_string(store: SQLiteSessionStore) -> None:
    with pytest.raises(ValidationError, match="session_ids"):
        store.list_streams("s1")


def test_list_streams_of_an_empty_store_is_empty(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "empty.db") as empty:
        assert empty.list_streams() == []


# store_info ------------------------------------------------------------------------------------


def test_store_info_reports_file_facts_and_counts(store: SQLiteSessionStore, tmp_path: Path) -> None:
    info = store.store_info()
    assert info.path == str(tmp_path / "store.db")
    assert info.file_bytes is not None and info.file_bytes > 0
    assert info.wal_bytes is not None and info.wal_bytes >= 0
    assert info.schema_version == SQLiteSessionStore.SCHEMA_VERSION
    assert info.journal_mode == "wal"
    assert info.synchronous == "normal"
    assert (info.sessions, info.runs, info.events, info.streams) == (2, 2, 7, 3)


def test_store_info_on_a_readonly_store(store: SQLiteSessionStore, tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "store.db", readonly=True, synchronous="full") as reader:
        info = reader.store_info()
    assert info.events == 7 and info.synchronous == "full"


def test_store_info_of_a_memory_store_has_no_sizes() -> None:
    with SQLiteSessionStore(":memory:") as memory:
        info = memory.store_info()
    assert info.file_bytes is None and info.wal_bytes is None and info.events == 0


# check_integrity -------------------------------------------------------------------------------


def test_check_of_a_healthy_store_finds_nothing(store: SQLiteSessionStore) -> None:
    progress: list[tuple[int, int]] = []
    report = store.check_integrity(on_progress=lambda done, total: progress.append((done, total)))
    assert report.ok and report.findings == ()
    assert (report.sessions_checked, report.events_checked) == (3, 7)
    assert progress == [(1, 3), (2, 3), (3, 3)]


def _check(path: Path) -> CheckReport:
    with SQLiteSessionStore(path, readonly=True) as reader:
        return reader.check_integrity()


def _kinds(report: CheckReport) -> list[tuple[str, str | None]]:
    return [(finding.kind, finding.session_id) for finding in report.findings]


def test_check_finds_a_sequence_gap(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(tmp_path / "store.db", "DELETE FROM events WHERE session_id = 's1' AND seq = 3")
    report = _check(tmp_path / "store.db")
    assert not report.ok
    assert _kinds(report) == [("sequence_gap", "s1")]
    assert "sequence 3 is missing" in report.findings[0].message


def test_check_accepts_a_trimmed_log_but_not_a_gap_inside_it(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    store.trim_session("s1", before_sequence=2)
    assert _check(tmp_path / "store.db").ok
    raw(tmp_path / "store.db", "DELETE FROM events WHERE session_id = 's1' AND seq = 3")
    report = _check(tmp_path / "store.db")
    assert _kinds(report) == [("sequence_gap", "s1")]
    assert "sequence 3 is missing" in report.findings[0].message


def test_check_finds_a_latest_sequence_mismatch(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(tmp_path / "store.db", "UPDATE streams SET latest_seq = 9 WHERE session_id = 's2'")
    report = _check(tmp_path / "store.db")
    assert _kinds(report) == [("latest_mismatch", "s2")]
    assert "9" in report.findings[0].message and "1" in report.findings[0].message


def test_check_finds_events_without_a_counter(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(tmp_path / "store.db", "DELETE FROM streams WHERE session_id = 's2'")
    assert _kinds(_check(tmp_path / "store.db")) == [("missing_counter", "s2")]


def test_check_accepts_a_counter_whose_events_were_all_trimmed(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    assert store.trim_session("s2", keep_last=0) == 1
    assert _check(tmp_path / "store.db").ok


def test_check_finds_unknown_types_and_bad_payloads(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(
        tmp_path / "store.db",
        "UPDATE events SET type = 'martian' WHERE session_id = 's1' AND seq = 2",
        "UPDATE events SET data = '[1, 2]' WHERE session_id = 's1' AND seq = 4",
        "UPDATE events SET metadata = 'not json' WHERE session_id = 's2' AND seq = 1",
    )
    kinds = _kinds(_check(tmp_path / "store.db"))
    assert ("bad_type", "s1") in kinds
    assert kinds.count(("bad_json", "s1")) == 1 and ("bad_json", "s2") in kinds


def test_check_finds_duplicate_event_ids(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(
        tmp_path / "store.db",
        "DROP INDEX events_by_id",
        "UPDATE events SET id = 'e1-0' WHERE session_id = 's1' AND seq = 2",
    )
    report = _check(tmp_path / "store.db")
    assert _kinds(report) == [("duplicate_id", None)]
    assert "'e1-0'" in report.findings[0].message


def test_check_finds_runs_of_missing_sessions(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(tmp_path / "store.db", "DELETE FROM sessions WHERE id = 's1'")
    report = _check(tmp_path / "store.db")
    assert [kind for kind, _ in _kinds(report)] == ["foreign_key", "foreign_key"]


def test_check_reports_sqlite_integrity_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    with SQLiteSessionStore(path) as writer:
        writer.append_events([Event(type="message_sent", session_id="s") for _ in range(20)])
    # Make the id index disagree with the table: its definition now names another column.
    conn = apsw.Connection(str(path))
    conn.pragma("writable_schema", True)
    conn.execute(
        "UPDATE sqlite_schema SET sql = 'CREATE INDEX events_by_id ON events (type)' "
        "WHERE name = 'events_by_id'"
    )
    conn.close()
    report = _check(path)
    assert not report.ok
    assert any(finding.kind == "integrity" for finding in report.findings)


def test_check_is_correct_while_another_process_appends(store: SQLiteSessionStore, tmp_path: Path) -> None:
    context = processes()
    stop, started = context.Event(), context.Event()
    sessions = ["w0", "w1", "w2"]
    writer = context.Process(
        target=append_until_stopped, args=(str(tmp_path / "store.db"), sessions, 5, 0, stop, started)
    )
    writer.start()
    try:
        assert started.wait(30), "the writer process did not start appending"
        with SQLiteSessionStore(tmp_path / "store.db", readonly=True) as reader:
            reports = [reader.check_integrity() for _ in range(20)]
    finally:
        stop.set()
        writer.join(30)
    assert writer.exitcode == 0
    assert all(report.ok for report in reports), [r.findings for r in reports if not r.ok]
    assert reports[-1].events_checked > 7  # the writer's events were there and checked


# Schema inspection and migration ---------------------------------------------------------------


def make_v1(path: Path) -> None:
    """A store file as schema version 1 left it."""
    with SQLiteSessionStore(path) as writer:
        populate(writer)
    downgrade_sqlite_store(path, 1)


def test_inspect_schema_of_a_current_store(store: SQLiteSessionStore, tmp_path: Path) -> None:
    version = SQLiteSessionStore.SCHEMA_VERSION
    status = inspect_schema(tmp_path / "store.db")
    assert (status.version, status.code_version, status.pending, status.up_to_date) == (
        version,
        version,
        (),
        True,
    )


def test_inspect_schema_of_an_old_store_lists_steps_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1(path)
    status = inspect_schema(path)
    assert status.version == 1 and not status.up_to_date
    assert [(step.from_version, step.to_version) for step in status.pending] == [
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
    ]
    assert "runs_running" in status.pending[0].statements[0]
    assert "CREATE TABLE ds_streams" in status.pending[1].statements[0]
    assert any("CREATE TABLE feed" in statement for statement in status.pending[2].statements)
    assert status.pending[3].statements[0].startswith("CREATE TABLE session_producers")
    assert inspect_schema(path).version == 1


def test_inspect_schema_refuses_a_newer_file(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(tmp_path / "store.db", "PRAGMA user_version = 99")
    with pytest.raises(SchemaVersionError, match="newer"):
        inspect_schema(tmp_path / "store.db")


@pytest.mark.parametrize("content", [None, b"", b"hello, not a database" * 10])
def test_inspect_schema_refuses_what_is_not_a_store_and_creates_nothing(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "x.db"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StorageError):
        inspect_schema(path)
    assert path.exists() == (content is not None)
    if content is not None:
        assert path.read_bytes() == content


def test_migrate_schema_writes_a_backup_then_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1(path)
    result = migrate_schema(path, backup_path=tmp_path / "backup.db")
    assert (result.from_version, result.to_version, result.upgraded) == (
        1,
        SQLiteSessionStore.SCHEMA_VERSION,
        True,
    )
    assert result.backup_path == str(tmp_path / "backup.db")
    assert inspect_schema(path).up_to_date
    assert inspect_schema(tmp_path / "backup.db").version == 1
    with SQLiteSessionStore(path, readonly=True) as reader:
        assert reader.get_active_run("s1") is None
        assert reader.get_latest_sequence("s1") == 5
    migrate_schema(tmp_path / "backup.db")
    with SQLiteSessionStore(tmp_path / "backup.db", readonly=True) as backup:
        assert snapshot(backup) == _snapshot_of(path)


def _snapshot_of(path: Path) -> list[dict[str, Any]]:
    with SQLiteSessionStore(path, readonly=True) as reader:
        return snapshot(reader)


def test_migrate_schema_refuses_an_existing_backup_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1(path)
    (tmp_path / "backup.db").write_text("keep me")
    with pytest.raises(ValidationError, match="already exists"):
        migrate_schema(path, backup_path=tmp_path / "backup.db")
    assert inspect_schema(path).version == 1
    assert (tmp_path / "backup.db").read_text() == "keep me"


def test_migrate_schema_of_a_current_store_does_nothing(store: SQLiteSessionStore, tmp_path: Path) -> None:
    result = migrate_schema(tmp_path / "store.db", backup_path=tmp_path / "b.db")
    assert not result.upgraded and result.backup_path is None
    assert not (tmp_path / "b.db").exists()


def test_migrate_schema_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no store"):
        migrate_schema(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_migrate_schema_refuses_a_newer_file_unchanged(store: SQLiteSessionStore, tmp_path: Path) -> None:
    raw(tmp_path / "store.db", f"PRAGMA user_version = {SQLiteSessionStore.SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError):
        migrate_schema(tmp_path / "store.db", backup_path=tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()


# Export and import ------------------------------------------------------------------------------


def test_export_starts_with_a_header_and_groups_each_session(store: SQLiteSessionStore) -> None:
    records = list(store.export_records())
    assert records[0] == {
        "kind": "header",
        "format": "sqlitestream-export",
        "version": 2,
        "sqlitestream": records[0]["sqlitestream"],
    }
    kinds = [(record["kind"], record.get("session_id", record.get("id"))) for record in records[1:]]
    assert kinds == [
        ("event", "log-only"),
        ("session", "s1"), ("run", "s1"), ("run", "s1"),
        ("event", "s1"), ("event", "s1"), ("event", "s1"), ("event", "s1"), ("event", "s1"),
        ("session", "s2"), ("event", "s2"),
    ]  # fmt: skip
    assert [record["sequence_number"] for record in records if record["kind"] == "event"] == [
        1,
        1,
        2,
        3,
        4,
        5,
        1,
    ]


def test_export_then_import_into_an_empty_store_reproduces_everything(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        report = copy.import_records(store.export_records())
        assert (report.sessions_added, report.runs_added, report.events_added, report.events_skipped) == (
            2,
            2,
            7,
            0,
        )
        for session_id in ("s1", "s2", "log-only"):
            # Equal but for the positions: the copy assigned its own, in import order.
            assert event_records(copy.get_events(session_id)) == event_records(store.get_events(session_id))
            assert copy.get_latest_sequence(session_id) == store.get_latest_sequence(session_id)
            assert copy.list_runs(session_id) == store.list_runs(session_id)
        assert copy.list_sessions() == store.list_sessions()
        assert copy.get_run("r1") == store.get_run("r1")
        assert snapshot(copy) == snapshot(store)
        assert copy.check_integrity().ok
        # The copy's log continues where the original's did.
        appended = copy.append_event_with_sequence(Event(type="message_sent", session_id="s1"))
        assert appended.sequence_number == 6


def test_import_is_idempotent_and_counts_what_it_skipped(store: SQLiteSessionStore, tmp_path: Path) -> None:
    records = list(store.export_records())
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        copy.import_records(records)
        again = copy.import_records(records)
        assert (again.sessions_added, again.sessions_unchanged, again.runs_unchanged) == (0, 2, 2)
        assert (again.events_added, again.events_skipped) == (0, 7)
        assert snapshot(copy) == snapshot(store)


def test_import_of_a_later_export_adds_only_the_new_events_and_updates_records(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        copy.import_records(store.export_records())
        store.append_events([Event(type="message_sent", session_id="s1", id=f"new{i}") for i in range(3)])
        store.save_session(
            Session(agent_id="agent-b", id="s2", status="completed", created_at=T0 + timedelta(minutes=1))
        )
        report = copy.import_records(store.export_records())
        by_session = {item.session_id: item for item in report.sessions}
        assert (by_session["s1"].events_added, by_session["s1"].events_skipped) == (3, 5)
        assert by_session["s2"].session == "updated" and by_session["s1"].session == "unchanged"
        assert copy.get_latest_sequence("s1") == 8
        assert snapshot(copy) == snapshot(store)


def test_import_of_a_diverged_log_is_refused_and_writes_nothing_of_that_session(
    store: SQLiteSessionStore, tmp_path: Path
) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        copy.append_event(Event(type="message_sent", session_id="s1", id="other"))
        with pytest.raises(ConflictError, match="diverged") as caught:
            copy.import_records(store.export_records())
        assert "1 session(s) before it were imported" in " ".join(caught.value.__notes__)
        assert "'s1'" in " ".join(caught.value.__notes__)
        assert copy.get_latest_sequence("log-only") == 1  # the session before s1 was imported
        with pytest.raises(SessionNotFoundError):
            copy.get_session("s1")  # nothing of s1: not its record, runs or events
        assert copy.list_runs("s1") == []
        assert [event.id for event in copy.get_events("s1")] == ["other"]
        assert copy.get_latest_sequence("s2") == 0


def _long_session(count: int, *, missing: int | None = None) -> Iterator[dict[str, Any]]:
    for seq in range(1, count + 1):
        if seq != missing:
            event = Event(type="message_sent", session_id="long", id=f"e{seq}", sequence_number=seq)
            yield {"kind": "event", **event.to_dict()}


def test_a_long_session_is_imported_in_batches_as_its_records_are_read(tmp_path: Path) -> None:
    """Bounded memory: the import commits each IMPORT_BATCH (1,000) events of a session
    before it reads further, instead of gathering the whole session first."""
    with SQLiteSessionStore(tmp_path / "copy.db") as copy, SQLiteSessionStore(tmp_path / "copy.db") as look:
        seen_while_reading: dict[int, int] = {}

        def records() -> Iterator[dict[str, Any]]:
            for record in _long_session(2_500):
                if record["sequence_number"] in (1_001, 2_001):
                    seen_while_reading[record["sequence_number"]] = look.get_latest_sequence("long")
                yield record

        report = copy.import_records(records())
        assert seen_while_reading == {1_001: 0, 2_001: 1_000}
        assert [(item.session_id, item.events_added) for item in report.sessions] == [("long", 2_500)]
        assert [event.sequence_number for event in copy.get_events("long")] == list(range(1, 2_501))


def test_a_failure_in_a_later_batch_keeps_the_earlier_ones_and_a_rerun_completes_it(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        with pytest.raises(ValidationError, match="jump from sequence 2300 to 2302") as caught:
            copy.import_records(_long_session(2_500, missing=2_301))
        note = " ".join(caught.value.__notes__)
        assert "its records before record 2001 were imported (2000 events), nothing from there on" in note
        assert copy.get_latest_sequence("long") == 2_000
        report = copy.import_records(_long_session(2_500))
        assert (report.events_added, report.events_skipped) == (500, 2_000)
        assert copy.check_integrity().ok


def test_import_refuses_an_event_that_would_leave_a_gap(store: SQLiteSessionStore, tmp_path: Path) -> None:
    records = [
        record
        for record in store.export_records()
        if record.get("sequence_number") != 1 or record.get("session_id") != "s1"
    ]
    with SQLiteSessionStore(tmp_path / "copy.db") as copy, pytest.raises(ConflictError, match="gap"):
        copy.import_records(records)


def test_import_refuses_a_hole_inside_the_import(store: SQLiteSessionStore, tmp_path: Path) -> None:
    records = [record for record in store.export_records() if record.get("id") != "e1-2"]
    with (
        SQLiteSessionStore(tmp_path / "copy.db") as copy,
        pytest.raises(ValidationError, match="jump from sequence 2 to 4"),
    ):
        copy.import_records(records)


def test_import_refuses_an_id_stored_in_another_session(store: SQLiteSessionStore, tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        copy.append_event(Event(type="message_sent", session_id="elsewhere", id="e2-0"))
        with pytest.raises(EventIdConflictError):
            copy.import_records(store.export_records())


def test_import_refuses_an_id_stored_at_another_sequence(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        copy.append_events([Event(type="message_sent", session_id="s", id=name) for name in ("a", "b")])
        records = [
            {
                "kind": "event",
                **Event(type="message_sent", session_id="s", id="b", sequence_number=1).to_dict(),
            },
        ]
        with pytest.raises(ConflictError, match="sequence 2 .* sequence 1"):
            copy.import_records(records)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"kind": "event", "type": "message_sent", "session_id": "s", "id": "x"},
            "record 1 .*sequence_number",
        ),
        ({"kind": "event", "session_id": "s", "id": "x", "sequence_number": 1}, "record 1"),
        ({"kind": "event", "type": "nope", "session_id": "s", "sequence_number": 1}, "record 1 .*type"),
        ({"kind": "comment"}, "kind must be one of"),
        ({"kind": "header", "format": "sqlitestream-export", "version": 3}, "version 3"),
        ({"kind": "header", "format": "other", "version": 1}, "format"),
        (["not", "an", "object"], "JSON object"),
        ({"kind": "session", "id": "s"}, "record 1 \\(session\\)"),
    ],
)
def test_import_refuses_bad_records_naming_them(tmp_path: Path, record: Any, message: str) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        with pytest.raises(ValidationError, match=message):
            copy.import_records([record])
        assert copy.store_info().events == 0


def test_import_of_runs_without_their_session_is_refused(tmp_path: Path) -> None:
    run = {"kind": "run", **Run(session_id="s", id="r").to_dict()}
    with SQLiteSessionStore(tmp_path / "copy.db") as copy, pytest.raises(SessionNotFoundError):
        copy.import_records([run])


def test_import_wakes_a_long_poll_waiter(store: SQLiteSessionStore, tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        waiting = threading.Event()
        seen: list[Event] = []

        def follow() -> None:
            waiting.set()
            seen.extend(copy.get_events("s2", after=0, wait_timeout_ms=20_000))

        follower = threading.Thread(target=follow)
        follower.start()
        assert waiting.wait(10)
        copy.import_records(store.export_records(["s2"]))
        follower.join(20)
        assert [event.id for event in seen] == ["e2-0"]


def test_export_of_named_sessions(store: SQLiteSessionStore) -> None:
    records = list(store.export_records(["s2", "log-only"]))
    assert {record.get("session_id", record.get("id")) for record in records[1:]} == {"s2", "log-only"}
    assert records[1]["kind"] == "session" and records[1]["id"] == "s2"


def test_export_of_an_unknown_session_raises_before_any_record(store: SQLiteSessionStore) -> None:
    with pytest.raises(SessionNotFoundError, match="ghost"):
        store.export_records(["s1", "ghost"])


def test_export_pages_through_a_long_session(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "big.db") as big:
        big.append_events([Event(type="message_sent", session_id="s", data={"i": i}) for i in range(2500)])
        events = [record for record in big.export_records() if record["kind"] == "event"]
    assert [record["sequence_number"] for record in events] == list(range(1, 2501))


def test_import_session_is_all_or_nothing(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        copy.append_event(Event(type="message_sent", session_id="s", id="taken"))
        with pytest.raises(ConflictError):
            copy.import_session(
                "s",
                session=Session(agent_id="a", id="s"),
                runs=[Run(session_id="s", id="r")],
                events=[Event(type="message_sent", session_id="s", id="fresh", sequence_number=1)],
            )
        assert copy.list_sessions() == [] and copy.list_runs("s") == []
        assert [event.id for event in copy.get_events("s")] == ["taken"]


def test_import_session_validates_its_arguments(tmp_path: Path) -> None:
    with SQLiteSessionStore(tmp_path / "copy.db") as copy:
        with pytest.raises(ValidationError, match="not session_id"):
            copy.import_session("s", session=Session(agent_id="a", id="t"))
        with pytest.raises(ValidationError, match="belongs to session"):
            copy.import_session("s", runs=[Run(session_id="t")])
        with pytest.raises(ValidationError, match="belongs to session"):
            copy.import_session("s", events=[Event(type="message_sent", session_id="t", sequence_number=1)])
        with pytest.raises(ValidationError, match="no sequence_number"):
            copy.import_session("s", events=[Event(type="message_sent", session_id="s")])
        with pytest.raises(ValidationError, match="appears twice"):
            copy.import_session(
                "s",
                events=[
                    Event(type="message_sent", session_id="s", id="x", sequence_number=1),
                    Event(type="message_sent", session_id="s", id="x", sequence_number=2),
                ],
            )
        with pytest.raises(ValidationError, match="both have"):
            copy.import_session(
                "s",
                events=[
                    Event(type="message_sent", session_id="s", sequence_number=1),
                    Event(type="message_sent", session_id="s", sequence_number=1),
                ],
            )
        assert copy.store_info().events == 0
