"""Stores by location (``open_store``, ``inspect_schema``, ``migrate_schema``), the SQLite
store's ``create=False``, and copying between every pair of backends through the admin
contract (``import_records(export_records())``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sqlitestream import (
    AdminStore,
    Event,
    InMemorySessionStore,
    PostgresSessionStore,
    Run,
    Session,
    SQLiteSessionStore,
    StorageError,
    ValidationError,
    inspect_schema,
    migrate_schema,
    open_store,
)


def _fill(store: AdminStore) -> None:
    store.save_session(Session(agent_id="agent", id="s1"))
    store.save_run(Run(session_id="s1", id="r1"))
    store.append_events([Event("message_sent", "s1", {"n": n}) for n in range(3)])
    store.append_event(Event("message_sent", "log-only", {"n": 0}))


def _contents(store: AdminStore) -> list[dict[str, object]]:
    return [record for record in store.export_records() if record["kind"] != "header"]


def test_open_store_opens_a_sqlite_file_for_a_path(tmp_path: Path) -> None:
    with open_store(tmp_path / "events.db") as store:
        assert isinstance(store, SQLiteSessionStore)
        assert store.path == str(tmp_path / "events.db")
        assert store.upgraded_from == 0


def test_open_store_passes_backend_options_on(tmp_path: Path) -> None:
    with open_store(tmp_path / "events.db", synchronous="full", poll_interval_ms=5) as store:
        assert store.store_info().synchronous == "full"


def test_open_store_refuses_an_option_the_backend_does_not_take(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="pool_size"):
        open_store(tmp_path / "events.db", pool_size=3)
    assert not (tmp_path / "events.db").exists()


def test_open_store_refuses_a_location_that_is_not_text() -> None:
    with pytest.raises(ValidationError, match="location"):
        open_store(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "prepare", [lambda path: None, lambda path: path.write_bytes(b"")], ids=["missing", "empty"]
)
def test_sqlite_create_false_refuses_to_create_a_store(
    tmp_path: Path, prepare: Callable[[Path], object]
) -> None:
    path = tmp_path / "events.db"
    prepare(path)
    with pytest.raises(StorageError, match="nothing was created"):
        SQLiteSessionStore(path, create=False)
    assert not path.exists() or path.stat().st_size == 0
    assert not (tmp_path / "events.db-wal").exists()


def test_sqlite_create_false_opens_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1"))
    with SQLiteSessionStore(path, create=False) as store:
        assert store.get_latest_sequence("s1") == 1


def test_sqlite_create_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="create"):
        SQLiteSessionStore(tmp_path / "events.db", create="no")  # type: ignore[arg-type]


def test_inspect_and_migrate_a_current_file_by_location(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    status = inspect_schema(path)
    assert status.up_to_date and status.version == SQLiteSessionStore.SCHEMA_VERSION
    result = migrate_schema(path)
    assert not result.upgraded and result.backup_path is None


def test_memory_store_reports_its_facts() -> None:
    with InMemorySessionStore() as store:
        _fill(store)
        info = store.store_info()
        assert (info.backend, info.schema_version, info.sessions, info.runs, info.events, info.streams) == (
            "memory",
            None,
            1,
            1,
            4,
            2,
        )
        assert list(info.to_dict()) == [
            "backend",
            "path",
            "schema_version",
            "sessions",
            "runs",
            "events",
            "streams",
        ]
        assert [(s.session_id, s.event_count) for s in store.list_streams()] == [("log-only", 1), ("s1", 3)]
        assert [s.session_id for s in store.list_streams(["s1", "nope"])] == ["s1"]
        report = store.check_integrity()
        assert report.ok and (report.sessions_checked, report.events_checked) == (2, 4)


def _open(kind: str, tmp_path: Path, name: str, pg: Callable[[], str]) -> AdminStore:
    if kind == "memory":
        return InMemorySessionStore()
    if kind == "sqlite":
        return open_store(tmp_path / f"{name}.db")
    return open_store(pg())


@pytest.fixture
def pg_location(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A factory of fresh PostgreSQL locations (skips when no server is configured)."""

    def make() -> str:
        dsn = request.getfixturevalue("pg_dsn")
        schema = request.getfixturevalue("pg_schema")
        separator = "&" if "?" in dsn else "?"
        return f"{dsn}{separator}schema={schema}"

    return make


PAIRS = [
    ("memory", "sqlite"),
    ("sqlite", "memory"),
    ("memory", "memory"),
    ("memory", "postgres"),
    ("postgres", "memory"),
]


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_copy_round_trips_between_backends(
    source: str, target: str, tmp_path: Path, pg_location: Callable[[], str]
) -> None:
    with (
        _open(source, tmp_path, "src", pg_location) as src,
        _open(target, tmp_path, "dst", pg_location) as dst,
    ):
        _fill(src)
        report = dst.import_records(src.export_records())
        assert (report.sessions_added, report.runs_added, report.events_added) == (1, 1, 4)
        assert _contents(dst) == _contents(src)
        again = dst.import_records(src.export_records())
        assert (again.events_added, again.events_skipped, again.sessions_unchanged) == (0, 4, 1)
        assert dst.check_integrity().ok


def test_memory_import_refuses_a_diverged_log_and_writes_nothing() -> None:
    from sqlitestream import ConflictError

    with InMemorySessionStore() as src, InMemorySessionStore() as dst:
        src.append_events([Event("message_sent", "s1", {"n": n}) for n in range(2)])
        dst.append_event(Event("message_sent", "s1", {"other": True}))
        dst.save_session(Session(agent_id="x", id="s2"))
        records = [*src.export_records(), {"kind": "session", **Session(agent_id="y", id="s1").to_dict()}]
        with pytest.raises(ConflictError):
            dst.import_records(records)
        assert dst.get_latest_sequence("s1") == 1
        assert [s.id for s in dst.list_sessions()] == ["s2"]


def test_postgres_migrate_refuses_a_backup_path_before_touching_anything(
    pg_location: Callable[[], str], tmp_path: Path
) -> None:
    location = pg_location()
    with open_store(location) as store:
        assert isinstance(store, PostgresSessionStore)
    with pytest.raises(ValidationError, match="pg_dump"):
        migrate_schema(location, backup_path=tmp_path / "backup")
    assert not (tmp_path / "backup").exists()
    assert inspect_schema(location).up_to_date
