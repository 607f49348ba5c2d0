"""Moving a store between SQLite and PostgreSQL, and the command line on a postgresql:// URL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sqlitestream import Event, Run, Session, SQLiteSessionStore, StorageError
from sqlitestream.cli import cli
from sqlitestream.postgres import PostgresSessionStore
from sqlitestream.postgres.schema import SCHEMA_VERSION

pytestmark = pytest.mark.usefixtures("pg_dsn")

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _url(dsn: str, schema: str) -> str:
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}schema={schema}"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.stderr if result.stderr_bytes else "")
    return result


def _fill(store: Any) -> None:
    """Sessions with records, runs, log-only sessions, payloads that must survive exactly."""
    store.save_session(
        Session(
            agent_id="agent",
            id="s1",
            status="active",
            metadata={"k": [1, 2.5, None]},
            context={"deep": {"x": "ü"}},
            tags=["a"],
            created_at=T0,
            updated_at=T0,
        )
    )
    store.save_run(
        Run(
            session_id="s1",
            id="r1",
            status="completed",
            input={"p": "hi"},
            output={"t": "x"},
            turn_count=2,
            token_usage={"in": 3},
            started_at=T0,
            ended_at=T0 + timedelta(seconds=2),
        )
    )
    store.append_events(
        [
            Event(
                "message_sent",
                "s1",
                id=f"e{i}",
                run_id="r1",
                data={
                    "i": i,
                    "f": 0.1 * i,
                    "big": 2**60,
                    "tiny": 1e-300,
                    "huge": 1e300,
                    "nul": "a\x00b",
                    "emoji": "☃",
                },
                metadata={"provider": "p"},
                timestamp=T0 + timedelta(microseconds=i * 1001),
            )
            for i in range(40)
        ]
    )
    store.append_event(Event("error_occurred", "log-only", id="lone", timestamp=T0))
    store.save_session(Session(agent_id="agent", id="empty", created_at=T0, updated_at=T0))


def _export(location: str) -> list[str]:
    lines = ok(run("--db", location, "export")).output.splitlines()
    assert json.loads(lines[0])["kind"] == "header"
    return lines[1:]


def test_copy_sqlite_to_postgres_and_back_reproduces_the_log(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    original, restored = tmp_path / "original.db", tmp_path / "restored.db"
    with SQLiteSessionStore(original) as store:
        _fill(store)
    url = _url(pg_dsn, pg_schema)
    first = ok(run("copy", "--from", str(original), "--to", url)).output
    assert "events 41 added, 0 skipped" in first
    ok(run("copy", "--from", url, "--to", str(restored)))
    exported = _export(str(original))
    assert _export(url) == exported
    assert _export(str(restored)) == exported
    assert len([line for line in exported if '"kind":"event"' in line]) == 41


def test_copy_again_copies_nothing_twice(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    with SQLiteSessionStore(source) as store:
        _fill(store)
    url = _url(pg_dsn, pg_schema)
    ok(run("copy", "--from", str(source), "--to", url))
    again = ok(run("copy", "--from", str(source), "--to", url)).output
    assert "events 0 added, 41 skipped" in again
    assert "session records 0 added, 0 updated, 2 unchanged" in again
    assert "runs 0 added, 0 updated, 1 unchanged" in again
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        assert [e.sequence_number for e in store.get_events("s1")] == list(range(1, 41))
        assert store.check_integrity().ok


def test_copy_continues_a_log_that_grew_since_the_last_copy(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.db"
    url = _url(pg_dsn, pg_schema)
    with SQLiteSessionStore(source) as store:
        store.append_events([Event("message_sent", "s1", id=f"a{i}") for i in range(3)])
        ok(run("copy", "--from", str(source), "--to", url))
        store.append_events([Event("message_sent", "s1", id=f"b{i}") for i in range(2)])
    assert "events 2 added, 3 skipped" in ok(run("copy", "--from", str(source), "--to", url)).output
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        assert [e.id for e in store.get_events("s1")] == ["a0", "a1", "a2", "b0", "b1"]


def test_copy_into_a_diverged_log_fails_and_names_the_session(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.db"
    with SQLiteSessionStore(source) as store:
        store.append_event(Event("message_sent", "s1", id="from-sqlite"))
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        store.append_event(Event("message_sent", "s1", id="already-in-postgres"))
    result = run("copy", "--from", str(source), "--to", _url(pg_dsn, pg_schema))
    assert result.exit_code == 1
    assert "s1" in result.output and "Traceback" not in result.output
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        assert [e.id for e in store.get_events("s1")] == ["already-in-postgres"]


def test_copy_shows_progress_when_asked(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    with SQLiteSessionStore(source) as store:
        _fill(store)
    result = CliRunner().invoke(
        cli, ["copy", "--from", str(source), "--to", _url(pg_dsn, pg_schema), "--progress"]
    )
    assert result.exit_code == 0
    assert "copying events" in result.stderr


def test_copy_from_a_missing_source_creates_nothing(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    result = run("copy", "--from", _url(pg_dsn, pg_schema), "--to", str(tmp_path / "dst.db"))
    assert result.exit_code == 1
    assert f"no sqlitestream store in schema '{pg_schema}'" in result.output
    assert not (tmp_path / "dst.db").exists()


def test_every_command_works_on_a_postgresql_url(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    url = _url(pg_dsn, pg_schema)
    assert "created store" in ok(run("--db", url, "init")).output
    assert "up to date" in ok(run("--db", url, "init")).output
    assert "nothing to upgrade" in ok(run("--db", url, "migrate")).output
    stored = json.loads(
        ok(
            run(
                "--db",
                url,
                "append",
                "s1",
                "--type",
                "message_sent",
                "--data",
                '{"a": 1}',
                "--id",
                "e1",
                "--format",
                "jsonl",
            )
        ).output
    )
    assert stored["sequence_number"] == 1
    ok(run("--db", url, "append", "s1", "--type", "tool_call_started", "--expected-sequence", "1"))
    failed = run("--db", url, "append", "s1", "--type", "message_sent", "--expected-sequence", "0")
    assert failed.exit_code == 1 and "expected_sequence=0" in failed.output
    assert ok(run("--db", url, "latest", "s1")).output.strip() == "2"
    events = ok(run("--db", url, "events", "s1", "--after", "1", "--format", "jsonl")).output
    assert [json.loads(line)["type"] for line in events.splitlines()] == ["tool_call_started"]
    tail = ok(run("--db", url, "tail", "s1", "-n", "1", "--format", "jsonl")).output
    assert json.loads(tail)["sequence_number"] == 2
    info = json.loads(ok(run("--db", url, "info", "--format", "json")).output)
    assert (info["schema"], info["events"], info["schema_version"]) == (pg_schema, 2, SCHEMA_VERSION)
    sessions = ok(run("--db", url, "sessions", "--format", "jsonl")).output
    assert json.loads(sessions)["latest_sequence"] == 2
    assert ok(run("--db", url, "runs", "s1")).exit_code == 0
    assert "ok: 1 session(s), 2 event(s) checked" in ok(run("--db", url, "check")).output
    backup = tmp_path / "backup.jsonl"
    ok(run("--db", url, "export", "-o", str(backup)))
    assert "deleted session s1" in ok(run("--db", url, "delete-session", "s1", "--yes")).output
    assert "events 2 added" in ok(run("--db", url, "import", str(backup))).output
    assert ok(run("--db", url, "latest", "s1")).output.strip() == "2"


def test_read_commands_never_create_a_postgresql_store(pg_dsn: str, pg_schema: str) -> None:
    url = _url(pg_dsn, pg_schema)
    for command in (["info"], ["events", "s1"], ["latest", "s1"], ["check"], ["export"], ["migrate"]):
        result = run("--db", url, *command)
        assert result.exit_code == 1, command
        assert "no sqlitestream store" in result.output
    with pytest.raises(StorageError, match="no sqlitestream store"):
        PostgresSessionStore(pg_dsn, schema=pg_schema, create=False)


def test_copy_runs_as_a_real_process(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    with SQLiteSessionStore(source) as store:
        _fill(store)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqlitestream",
            "copy",
            "--from",
            str(source),
            "--to",
            _url(pg_dsn, pg_schema),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "events 41 added" in result.stdout


def test_demo_runs_on_a_postgresql_url(pg_dsn: str, pg_schema: str) -> None:
    output = ok(run("--db", _url(pg_dsn, pg_schema), "demo", "--events", "5", "--interval-ms", "0")).output
    assert "events followed across processes" in output
    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        (stream,) = store.list_streams()
        assert stream.event_count == stream.latest_sequence >= 5
