"""The ``sqlitestream`` command through click's CliRunner: every command, every format, every
error path and its exit code. Real-process behaviour (console script, tail --follow across
processes, Ctrl-C, closed pipes) is in test_cli_process.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest
from click.testing import CliRunner, Result
from support import records as event_records

from sqlitestream import Event, Run, Session, SQLiteSessionStore, __version__, follow, inspect_schema
from sqlitestream.cli import cli
from tools.oldstores import downgrade_sqlite_store

SCHEMA_VERSION = SQLiteSessionStore.SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COMMANDS = sorted(cli.commands)


def run(
    db: Path | None, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None
) -> Result:
    prefix = [] if db is None else ["--db", str(db)]
    return CliRunner().invoke(cli, [*prefix, *args], input=input, env=env, catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def error(result: Result, code: int, message: str) -> Result:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    if code == 1:
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("Error: ")
    return result


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def store_at(path: Path) -> SQLiteSessionStore:
    return SQLiteSessionStore(path)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with two saved sessions (runs, events) and one log-only session."""
    path = tmp_path / "events.db"
    with store_at(path) as store:
        store.save_session(Session(agent_id="agent-a", id="s1", status="active", created_at=T0))
        store.save_session(
            Session(agent_id="agent-b", id="s2", status="completed", created_at=T0 + timedelta(hours=1))
        )
        store.save_run(
            Run(
                session_id="s1",
                id="r1",
                status="completed",
                started_at=T0,
                ended_at=T0 + timedelta(seconds=3),
                token_usage={"in": 5},
            )
        )
        store.save_run(
            Run(
                session_id="s1",
                id="r2",
                status="failed",
                started_at=T0 + timedelta(minutes=1),
                error={"why": "boom"},
            )
        )
        store.append_events(
            [
                Event(
                    type="message_sent" if index % 2 else "message_streamed",
                    session_id="s1",
                    run_id="r1" if index < 6 else "r2",
                    id=f"e{index}",
                    data={"i": index, "text": "héllo\nworld"},
                    metadata={"provider": "p"},
                    timestamp=T0 + timedelta(seconds=index),
                )
                for index in range(1, 11)
            ]
        )
        store.append_event(Event(type="session_created", session_id="s2", id="s2-e1", timestamp=T0))
        store.append_event(Event(type="error_occurred", session_id="loose", id="loose-1", timestamp=T0))
    return path


# The group -----------------------------------------------------------------------------------


def test_every_command_has_help_with_an_example() -> None:
    for name in COMMANDS:
        for flag in ("--help", "-h"):
            result = ok(run(None, name, flag))
            assert "Example" in result.stdout and "sqlitestream" in result.stdout, name
    assert "Example" in ok(run(None, "--help")).stdout


def test_version() -> None:
    assert ok(run(None, "--version")).stdout.strip() == f"sqlitestream, version {__version__}"


def test_unknown_command_and_option_are_usage_errors(db: Path) -> None:
    error(run(db, "frobnicate"), 2, "No such command")
    error(run(db, "events", "s1", "--frob"), 2, "No such option")
    error(run(db, "events"), 2, "give a SESSION_ID, or --all")


def test_default_store_is_in_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SQLITESTREAM_DB", raising=False)
    ok(run(None, "init"))
    assert (tmp_path / "sqlitestream.db").exists()


def test_store_from_the_environment(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ok(run(None, "latest", "s1", env={"SQLITESTREAM_DB": str(db)})).stdout == "10\n"
    assert not (tmp_path / "sqlitestream.db").exists()


READ_ONLY = [
    ["info"],
    ["sessions"],
    ["runs", "s1"],
    ["events", "s1"],
    ["latest", "s1"],
    ["tail", "s1"],
    ["check"],
    ["export"],
    ["delete-session", "s1", "--yes"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda args: args[0])
def test_commands_never_create_a_missing_store(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing.db"
    error(run(missing, *args), 1, "no store at .*missing.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", READ_ONLY[:-1], ids=lambda args: args[0])
def test_read_only_commands_leave_the_file_unchanged(db: Path, args: list[str]) -> None:
    with SQLiteSessionStore(db):  # checkpoint the WAL so the main file holds everything
        pass
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = db.read_bytes()
    ok(run(db, *args))
    assert db.read_bytes() == before


@pytest.mark.parametrize("args", READ_ONLY[:-2], ids=lambda args: args[0])
def test_a_foreign_file_is_an_error_not_a_traceback(tmp_path: Path, args: list[str]) -> None:
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"definitely not sqlite" * 20)
    error(run(foreign, *args), 1, "not a sqlitestream store")
    assert foreign.read_bytes() == b"definitely not sqlite" * 20


def make_v1(path: Path) -> None:
    with store_at(path) as store:
        store.append_event(Event(type="message_sent", session_id="s1"))
    downgrade_sqlite_store(path, 1)


def test_read_only_commands_on_an_old_schema_point_to_migrate(tmp_path: Path) -> None:
    make_v1(tmp_path / "old.db")
    error(run(tmp_path / "old.db", "latest", "s1"), 1, "sqlitestream migrate")


# init and migrate -----------------------------------------------------------------------------


def test_init_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    assert "created store" in ok(run(path, "init")).stdout
    assert f"schema version {SCHEMA_VERSION}" in ok(run(path, "init")).stdout
    assert "up to date" in ok(run(path, "init")).stdout


def test_init_upgrades_an_old_store(tmp_path: Path) -> None:
    make_v1(tmp_path / "old.db")
    assert f"from schema version 1 to {SCHEMA_VERSION}" in ok(run(tmp_path / "old.db", "init")).stdout
    assert inspect_schema(tmp_path / "old.db").version == SCHEMA_VERSION


def test_init_refuses_a_foreign_file(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_text("hello")
    error(run(tmp_path / "x.db", "init"), 1, "not a sqlitestream store")


def test_migrate_dry_run_shows_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    make_v1(tmp_path / "old.db")
    result = ok(run(tmp_path / "old.db", "migrate", "--dry-run"))
    assert "schema version 1" in result.stdout and "upgrade 1 -> 2" in result.stdout
    assert "CREATE INDEX runs_running" in result.stdout and "nothing was changed" in result.stdout
    assert "upgrade 2 -> 3" in result.stdout and "CREATE TABLE feed" in result.stdout
    assert inspect_schema(tmp_path / "old.db").version == 1
    assert not list(tmp_path.glob("*.bak"))


def test_migrate_writes_a_backup_then_upgrades(tmp_path: Path) -> None:
    make_v1(tmp_path / "old.db")
    result = ok(run(tmp_path / "old.db", "migrate"))
    backup = tmp_path / "old.db.schema-v1.bak"
    assert f"backup written to {backup}" in result.stdout
    assert f"upgraded to schema version {SCHEMA_VERSION}" in result.stdout
    assert inspect_schema(tmp_path / "old.db").version == SCHEMA_VERSION
    assert inspect_schema(backup).version == 1
    assert "nothing to upgrade" in ok(run(tmp_path / "old.db", "migrate")).stdout


def test_migrate_refuses_to_overwrite_a_backup(tmp_path: Path) -> None:
    make_v1(tmp_path / "old.db")
    (tmp_path / "old.db.schema-v1.bak").write_text("precious")
    error(run(tmp_path / "old.db", "migrate"), 1, "already exists")
    assert inspect_schema(tmp_path / "old.db").version == 1
    assert (tmp_path / "old.db.schema-v1.bak").read_text() == "precious"


def test_migrate_with_a_backup_path_or_without_a_backup(tmp_path: Path) -> None:
    make_v1(tmp_path / "a.db")
    make_v1(tmp_path / "b.db")
    ok(run(tmp_path / "a.db", "migrate", "--backup", str(tmp_path / "a-backup.db")))
    assert inspect_schema(tmp_path / "a-backup.db").version == 1
    result = ok(run(tmp_path / "b.db", "migrate", "--no-backup"))
    assert (
        "backup written" not in result.stdout
        and f"upgraded to schema version {SCHEMA_VERSION}" in result.stdout
    )
    assert not list(tmp_path.glob("b.db.*.bak"))
    error(run(tmp_path / "a.db", "migrate", "--no-backup", "--backup", "x"), 2, "exclude each other")


def test_migrate_refuses_a_newer_store_unchanged(db: Path) -> None:
    conn = apsw.Connection(str(db))
    conn.pragma("user_version", 7)
    conn.close()
    error(run(db, "migrate"), 1, "schema version 7, newer than")
    assert not list(db.parent.glob("*.bak"))


def test_migrate_never_creates_a_store(tmp_path: Path) -> None:
    error(run(tmp_path / "none.db", "migrate"), 1, "no store")
    assert not (tmp_path / "none.db").exists()


# info ---------------------------------------------------------------------------------------


def test_info_in_every_format(db: Path) -> None:
    table = ok(run(db, "info", env={"COLUMNS": "300"})).stdout
    assert re.search(r"^path\s+.*events\.db$", table, re.M)
    assert re.search(r"^events\s+12$", table, re.M) and re.search(r"^streams\s+3$", table, re.M)
    assert re.search(r"^journal_mode\s+wal$", table, re.M)
    facts = json.loads(ok(run(db, "info", "--format", "json")).stdout)
    assert facts["path"] == str(db)
    assert (facts["sessions"], facts["runs"], facts["events"]) == (2, 2, 12)
    assert facts["schema_version"] == SCHEMA_VERSION and facts["synchronous"] == "normal"
    assert jsonl(ok(run(db, "info", "--format", "jsonl")).stdout) == [facts]


def test_format_is_one_choice(db: Path) -> None:
    error(run(db, "info", "--format", "xml"), 2, "'xml' is not one of 'table', 'json', 'jsonl'")


# sessions and runs ---------------------------------------------------------------------------


def test_sessions_lists_saved_then_log_only_with_counts(db: Path) -> None:
    rows = jsonl(ok(run(db, "sessions", "--format", "jsonl")).stdout)
    assert [(r["id"], r["saved"], r["event_count"], r["latest_sequence"]) for r in rows] == [
        ("s1", True, 10, 10),
        ("s2", True, 1, 1),
        ("loose", False, 0 + 1, 1),
    ]
    assert rows[0]["agent_id"] == "agent-a" and rows[2]["agent_id"] is None
    table = ok(run(db, "sessions", env={"COLUMNS": "200"})).stdout.splitlines()
    assert table[0].split()[:5] == ["SESSION", "AGENT", "STATUS", "EVENTS", "LATEST"]
    assert table[1].split()[:5] == ["s1", "agent-a", "active", "10", "10"]
    assert json.loads(ok(run(db, "sessions", "--format", "json")).stdout) == rows


def test_sessions_filters_and_limit(db: Path) -> None:
    rows = jsonl(ok(run(db, "sessions", "--status", "completed", "--format", "jsonl")).stdout)
    assert [r["id"] for r in rows] == ["s2"]
    rows = jsonl(ok(run(db, "sessions", "--agent", "agent-a", "--format", "jsonl")).stdout)
    assert [r["id"] for r in rows] == ["s1"]
    rows = jsonl(ok(run(db, "sessions", "--limit", "2", "--format", "jsonl")).stdout)
    assert [r["id"] for r in rows] == ["s1", "s2"]


def test_sessions_errors(db: Path) -> None:
    error(run(db, "sessions", "--status", "sleepy"), 1, "status must be one of")
    error(run(db, "sessions", "--limit", "0"), 2, "--limit")


def test_sessions_of_an_empty_store(tmp_path: Path) -> None:
    ok(run(tmp_path / "e.db", "init"))
    result = ok(run(tmp_path / "e.db", "sessions"))
    assert result.stdout == "" and "no sessions" in result.stderr
    assert ok(run(tmp_path / "e.db", "sessions", "--format", "json")).stdout == "[]\n"


def test_runs_in_every_format(db: Path) -> None:
    rows = jsonl(ok(run(db, "runs", "s1", "--format", "jsonl")).stdout)
    assert [(r["id"], r["status"]) for r in rows] == [("r1", "completed"), ("r2", "failed")]
    with SQLiteSessionStore(db, readonly=True) as store:
        assert rows == [r.to_dict() for r in store.list_runs("s1")]
    assert json.loads(ok(run(db, "runs", "s1", "--format", "json")).stdout) == rows
    table = ok(run(db, "runs", "s1")).stdout.splitlines()
    assert table[0].split()[:3] == ["RUN", "STATUS", "TURNS"] and table[2].startswith("r2")
    only = jsonl(ok(run(db, "runs", "s1", "--status", "failed", "--format", "jsonl")).stdout)
    assert [r["id"] for r in only] == ["r2"]


def test_runs_errors_and_empty(db: Path) -> None:
    error(run(db, "runs", "s1", "--status", "sleepy"), 1, "status must be one of")
    result = ok(run(db, "runs", "nobody"))
    assert result.stdout == "" and "no runs" in result.stderr


# events and latest -------------------------------------------------------------------------------


def _library_events(db: Path, **filters: Any) -> list[dict[str, Any]]:
    with SQLiteSessionStore(db, readonly=True) as store:
        return [event.to_dict() for event in store.get_events("s1", **filters)]


@pytest.mark.parametrize(
    ("args", "filters"),
    [
        ([], {}),
        (["--after", "3"], {"after": 3}),
        (["--before", "4"], {"before": 4}),
        (["--after", "2", "--before", "9", "--limit", "3"], {"after": 2, "before": 9, "limit": 3}),
        (["--run-id", "r2"], {"run_id": "r2"}),
        (["--type", "message_sent"], {"type": "message_sent"}),
        (["--since", "2026-03-01T12:00:07Z"], {"since": T0 + timedelta(seconds=7)}),
        (["--since", "2026-03-01T14:00:05+02:00"], {"since": T0 + timedelta(seconds=5)}),
        (
            ["--type", "message_streamed", "--run-id", "r1", "--limit", "2"],
            {"type": "message_streamed", "run_id": "r1", "limit": 2},
        ),
    ],
)
def test_events_filters_match_the_library(db: Path, args: list[str], filters: dict[str, Any]) -> None:
    expected = _library_events(db, **filters)
    assert expected  # every case selects something
    assert jsonl(ok(run(db, "events", "s1", *args, "--format", "jsonl")).stdout) == expected
    assert json.loads(ok(run(db, "events", "s1", *args, "--format", "json")).stdout) == expected
    table = ok(run(db, "events", "s1", *args)).stdout.splitlines()
    assert table[0].split()[:3] == ["SEQ", "TIME", "(UTC)"]
    assert [int(line.split()[0]) for line in table[1:]] == [e["sequence_number"] for e in expected]


def test_events_table_keeps_one_line_per_event_and_fits_the_terminal(db: Path) -> None:
    result = ok(run(db, "events", "s1", env={"COLUMNS": "60"}))
    lines = result.stdout.splitlines()
    assert len(lines) == 11
    assert "…" in result.stdout
    wide = ok(run(db, "events", "s1", env={"COLUMNS": "300"})).stdout
    assert '{"i":1,"text":"héllo\\nworld"}' in wide and "…" not in wide


def test_events_pages_through_long_sessions(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with store_at(path) as store:
        store.append_events([Event(type="message_sent", session_id="b") for _ in range(2500)])
    rows = jsonl(ok(run(path, "events", "b", "--format", "jsonl")).stdout)
    assert [row["sequence_number"] for row in rows] == list(range(1, 2501))
    rows = jsonl(ok(run(path, "events", "b", "--after", "10", "--limit", "1500", "--format", "jsonl")).stdout)
    assert [row["sequence_number"] for row in rows] == list(range(11, 1511))
    table = ok(run(path, "events", "b", "--after", "990", "--limit", "20")).stdout.splitlines()
    assert [line.split()[0] for line in table[1:]] == [str(seq) for seq in range(991, 1011)]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--after", "-1"], 2, "'--after': -1 is not in the range x>=0"),
        (["--before", "-2"], 2, "'--before': -2 is not in the range x>=1"),
        (["--limit", "0"], 2, "'--limit': 0 is not in the range x>=1"),
        (["--limit", "-3"], 2, "'--limit': -3 is not in the range x>=1"),
        (["--type", "bogus"], 2, "'bogus' is not one of"),
        (["--run-id", ""], 1, "run_id must be a non-empty string"),
        (["--since", "yesterday"], 2, "not an ISO 8601 time"),
        (["--since", "2026-03-01T12:00:00"], 2, "no UTC offset"),
        (["--after", "abc"], 2, "'abc' is not a valid integer"),
    ],
)
def test_events_validation_errors(db: Path, args: list[str], code: int, message: str) -> None:
    error(run(db, "events", "s1", *args), code, message)


def test_events_of_an_unknown_session_print_nothing(db: Path) -> None:
    result = ok(run(db, "events", "nobody"))
    assert result.stdout == "" and "no events" in result.stderr
    assert ok(run(db, "events", "nobody", "--format", "json")).stdout == "[]\n"
    assert ok(run(db, "events", "nobody", "--format", "jsonl")).stdout == ""


def test_latest(db: Path) -> None:
    assert ok(run(db, "latest", "s1")).stdout == "10\n"
    assert ok(run(db, "latest", "nobody")).stdout == "0\n"
    error(run(db, "latest", ""), 1, "session_id must be a non-empty string")


# tail (without --follow; following is tested with real processes) -------------------------------


def _seqs(result: Result) -> list[int]:
    return [row["sequence_number"] for row in jsonl(result.stdout)]


def test_tail_prints_the_last_events(db: Path) -> None:
    assert _seqs(ok(run(db, "tail", "s1", "--format", "jsonl"))) == list(range(1, 11))
    assert _seqs(ok(run(db, "tail", "s1", "-n", "3", "--format", "jsonl"))) == [8, 9, 10]
    assert _seqs(ok(run(db, "tail", "s1", "--lines", "0", "--format", "jsonl"))) == []
    assert _seqs(ok(run(db, "tail", "s1", "-n", "3", "--after", "8", "--format", "jsonl"))) == [9, 10]
    assert _seqs(ok(run(db, "tail", "s1", "-n", "2", "--type", "message_sent", "--format", "jsonl"))) == [
        7,
        9,
    ]
    assert _seqs(ok(run(db, "tail", "s1", "-n", "9", "--run-id", "r2", "--format", "jsonl"))) == [
        6,
        7,
        8,
        9,
        10,
    ]
    rows = json.loads(ok(run(db, "tail", "s1", "-n", "2", "--format", "json")).stdout)
    assert [row["sequence_number"] for row in rows] == [9, 10]
    table = ok(run(db, "tail", "s1", "-n", "2")).stdout.splitlines()
    assert table[0].startswith("SEQ") and [line.split()[0] for line in table[1:]] == ["9", "10"]


def test_tail_finds_rare_matches_far_back(tmp_path: Path) -> None:
    path = tmp_path / "rare.db"
    with store_at(path) as store:
        store.append_events(
            [
                Event(type="error_occurred" if i % 400 == 0 else "message_streamed", session_id="s")
                for i in range(1, 2001)
            ]
        )
    result = ok(run(path, "tail", "s", "-n", "3", "--type", "error_occurred", "--format", "jsonl"))
    assert _seqs(result) == [1200, 1600, 2000]
    result = ok(run(path, "tail", "s", "-n", "50", "--type", "error_occurred", "--format", "jsonl"))
    assert _seqs(result) == [400, 800, 1200, 1600, 2000]


def test_tail_errors(db: Path) -> None:
    error(run(db, "tail", "s1", "-n", "-1"), 2, "-n")
    error(run(db, "tail", "s1", "--after", "-1"), 2, "--after")
    error(run(db, "tail", "s1", "--type", "bogus"), 2, "'bogus' is not one of")
    error(run(db, "tail", "s1", "--type", "bogus", "-n", "0"), 2, "'bogus' is not one of")
    error(run(db, "tail", "s1", "--wait-ms", "-5"), 2, "--wait-ms")
    error(run(db, "tail", "s1", "--follow", "--format", "json"), 2, "use --format jsonl")


def test_tail_wait_returns_at_once_when_there_are_events(db: Path) -> None:
    assert _seqs(ok(run(db, "tail", "s1", "-n", "1", "--wait-ms", "600000", "--format", "jsonl"))) == [10]


def test_tail_wait_gives_up_after_the_timeout(db: Path) -> None:
    assert ok(run(db, "tail", "s1", "--after", "10", "--wait-ms", "50", "--format", "jsonl")).stdout == ""


# append -----------------------------------------------------------------------------------------


def test_append_prints_the_stored_event(db: Path) -> None:
    result = ok(
        run(
            db,
            "append",
            "s1",
            "--type",
            "message_sent",
            "--data",
            '{"text": "hi"}',
            "--metadata",
            '{"m": 1}',
            "--run-id",
            "r1",
            "--id",
            "new-1",
            "--format",
            "jsonl",
        )
    )
    (row,) = jsonl(result.stdout)
    assert (row["id"], row["sequence_number"], row["data"], row["metadata"], row["run_id"]) == (
        "new-1",
        11,
        {"text": "hi"},
        {"m": 1},
        "r1",
    )
    with SQLiteSessionStore(db, readonly=True) as store:
        assert store.get_events("s1", after=10)[0].to_dict() == row
    table = ok(run(db, "append", "s1", "--type", "message_sent")).stdout.splitlines()
    assert table[0].startswith("SEQ") and table[1].split()[0] == "12"
    rows = json.loads(ok(run(db, "append", "s1", "--type", "message_sent", "--format", "json")).stdout)
    assert rows[0]["sequence_number"] == 13


def test_append_reads_data_from_a_file_or_stdin(db: Path, tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text('{"from": "file", "ü": [1, 2.5]}', encoding="utf-8")
    row = jsonl(
        ok(
            run(
                db,
                "append",
                "s9",
                "--type",
                "message_sent",
                "--data",
                f"@{tmp_path / 'data.json'}",
                "--format",
                "jsonl",
            )
        ).stdout
    )[0]
    assert row["data"] == {"from": "file", "ü": [1, 2.5]} and row["sequence_number"] == 1
    row = jsonl(
        ok(
            run(
                db,
                "append",
                "s9",
                "--type",
                "message_sent",
                "--data",
                "-",
                "--format",
                "jsonl",
                input='{"from": "stdin"}',
            )
        ).stdout
    )[0]
    assert row["data"] == {"from": "stdin"} and row["sequence_number"] == 2
    row = jsonl(
        ok(
            run(
                db,
                "append",
                "s9",
                "--type",
                "message_sent",
                "--metadata",
                "-",
                "--format",
                "jsonl",
                input='{"m": true}',
            )
        ).stdout
    )[0]
    assert row["metadata"] == {"m": True}


def test_append_of_a_duplicate_id_prints_the_original(db: Path) -> None:
    row = jsonl(
        ok(
            run(
                db,
                "append",
                "s1",
                "--type",
                "error_occurred",
                "--id",
                "e3",
                "--data",
                '{"other": 1}',
                "--format",
                "jsonl",
            )
        ).stdout
    )[0]
    assert (row["sequence_number"], row["type"], row["data"]) == (
        3,
        "message_sent",
        {"i": 3, "text": "héllo\nworld"},
    )
    assert ok(run(db, "latest", "s1")).stdout == "10\n"


def test_append_with_expected_sequence(db: Path) -> None:
    row = jsonl(
        ok(
            run(
                db, "append", "s1", "--type", "message_sent", "--expected-sequence", "10", "--format", "jsonl"
            )
        ).stdout
    )[0]
    assert row["sequence_number"] == 11
    error(
        run(db, "append", "s1", "--type", "message_sent", "--expected-sequence", "10"),
        1,
        "expected_sequence=10 but session 's1' is at sequence 11",
    )
    assert ok(run(db, "latest", "s1")).stdout == "11\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--type", "bogus"], 2, "'bogus' is not one of"),
        (["--type", "message_sent", "--data", "{not json"], 2, "--data.*not valid JSON"),
        (["--type", "message_sent", "--data", "[1, 2]"], 2, "--data.*must be a JSON object"),
        (["--type", "message_sent", "--metadata", "NaN"], 2, "--metadata.*must be a JSON object"),
        (["--type", "message_sent", "--data", '{"x": NaN}'], 1, "finite number"),
        (["--type", "message_sent", "--data", "@/nonexistent/file.json"], 2, "cannot read"),
        (["--type", "message_sent", "--data", "-", "--metadata", "-"], 2, "only one of"),
        (["--type", "message_sent", "--id", ""], 1, "id must be a non-empty string"),
        (["--type", "message_sent", "--expected-sequence", "-1"], 2, "--expected-sequence"),
        ([], 2, "Missing option '--type'"),
    ],
)
def test_append_errors_write_nothing(db: Path, args: list[str], code: int, message: str) -> None:
    error(run(db, "append", "s1", *args), code, message)
    assert ok(run(db, "latest", "s1")).stdout == "10\n"


def test_append_to_an_event_id_of_another_session(db: Path) -> None:
    error(
        run(db, "append", "s2", "--type", "message_sent", "--id", "e1"), 1, "already stored in session 's1'"
    )


def test_append_creates_a_missing_store(tmp_path: Path) -> None:
    row = jsonl(
        ok(run(tmp_path / "fresh.db", "append", "s", "--type", "message_sent", "--format", "jsonl")).stdout
    )[0]
    assert row["sequence_number"] == 1


# delete-session -------------------------------------------------------------------------------


def test_delete_session_with_yes(db: Path) -> None:
    result = ok(run(db, "delete-session", "s1", "--yes"))
    assert "deleted session s1: its saved record, 2 run(s) and 10 event(s)" in result.stdout
    assert ok(run(db, "latest", "s1")).stdout == "0\n"
    assert [row["id"] for row in jsonl(ok(run(db, "sessions", "--format", "jsonl")).stdout)] == [
        "s2",
        "loose",
    ]


def test_delete_session_asks_first(db: Path) -> None:
    result = error(run(db, "delete-session", "loose", input="n\n"), 1, "not confirmed; nothing was deleted")
    assert "Delete session loose: 0 run(s) and 1 event(s)?" in result.stderr
    assert ok(run(db, "latest", "loose")).stdout == "1\n"
    ok(run(db, "delete-session", "loose", input="y\n"))
    assert ok(run(db, "latest", "loose")).stdout == "0\n"


def test_delete_session_without_an_answer_deletes_nothing(db: Path) -> None:
    error(run(db, "delete-session", "s1", input=""), 1, "not confirmed; nothing was deleted")
    assert ok(run(db, "latest", "s1")).stdout == "10\n"


def test_delete_unknown_session(db: Path) -> None:
    error(
        run(db, "delete-session", "ghost", "--yes"), 1, "no session ghost in the store; nothing was deleted"
    )


# export and import ---------------------------------------------------------------------------------


def _contents(path: Path) -> list[dict[str, Any]]:
    with SQLiteSessionStore(path, readonly=True) as store:
        return list(store.export_records())[1:]


def test_export_import_round_trip_through_files(db: Path, tmp_path: Path) -> None:
    ok(run(db, "export", "-o", str(tmp_path / "dump.jsonl")))
    records = jsonl((tmp_path / "dump.jsonl").read_text(encoding="utf-8"))
    assert records[0]["kind"] == "header"
    result = ok(run(tmp_path / "copy.db", "import", str(tmp_path / "dump.jsonl")))
    assert "imported 3 session(s)" in result.stdout and "events 12 added, 0 skipped" in result.stdout
    assert "session records 2 added" in result.stdout and "runs 2 added" in result.stdout
    assert _contents(tmp_path / "copy.db") == _contents(db) == records[1:]
    with (
        SQLiteSessionStore(db, readonly=True) as a,
        SQLiteSessionStore(tmp_path / "copy.db", readonly=True) as b,
    ):
        for session_id in ("s1", "s2", "loose"):
            # Equal but for the positions: the copy assigned its own, in import order.
            assert event_records(a.get_events(session_id)) == event_records(b.get_events(session_id))
        assert a.list_sessions() == b.list_sessions()
        assert a.list_runs("s1") == b.list_runs("s1")
    again = ok(run(tmp_path / "copy.db", "import", str(tmp_path / "dump.jsonl")))
    assert "events 0 added, 12 skipped (already present)" in again.stdout
    assert "session records 0 added, 0 updated, 2 unchanged" in again.stdout
    assert _contents(tmp_path / "copy.db") == _contents(db)


def test_export_to_stdout_and_import_from_stdin(db: Path, tmp_path: Path) -> None:
    dump = ok(run(db, "export")).stdout
    assert ok(run(db, "export", "-o", "-")).stdout == dump
    ok(run(tmp_path / "copy.db", "import", "-", input=dump.encode("utf-8")))
    assert _contents(tmp_path / "copy.db") == _contents(db)


def test_export_named_sessions(db: Path) -> None:
    records = jsonl(ok(run(db, "export", "s2", "loose")).stdout)
    assert [(r["kind"], r.get("session_id", r.get("id"))) for r in records[1:]] == [
        ("session", "s2"),
        ("event", "s2"),
        ("event", "loose"),
    ]


def test_export_of_an_unknown_session_writes_nothing(db: Path, tmp_path: Path) -> None:
    error(
        run(db, "export", "s1", "ghost", "-o", str(tmp_path / "out.jsonl")), 1, "session not found: 'ghost'"
    )
    assert not (tmp_path / "out.jsonl").exists()
    assert not list(tmp_path.glob(".export-*"))
    error(run(db, "export", "ghost"), 1, "ghost")


def test_export_to_an_unwritable_place(db: Path, tmp_path: Path) -> None:
    error(
        run(db, "export", "-o", str(tmp_path / "no" / "such" / "dir.jsonl")), 1, "No such file or directory"
    )


def test_export_and_import_show_progress_only_when_asked(db: Path, tmp_path: Path) -> None:
    quiet = ok(run(db, "export", "-o", str(tmp_path / "d.jsonl")))
    assert quiet.stderr == ""
    loud = ok(run(db, "export", "-o", str(tmp_path / "d.jsonl"), "--progress"))
    assert "exporting events" in loud.stderr and "12/12 (100%) done" in loud.stderr
    quiet = ok(run(tmp_path / "c.db", "import", str(tmp_path / "d.jsonl")))
    assert quiet.stderr == ""
    loud = ok(run(tmp_path / "c2.db", "import", str(tmp_path / "d.jsonl"), "--progress"))
    assert "importing (bytes)" in loud.stderr and "(100%) done" in loud.stderr


def test_import_of_a_bad_line_names_it(db: Path, tmp_path: Path) -> None:
    dump = ok(run(db, "export")).stdout.splitlines()
    dump.insert(5, "{oops")
    (tmp_path / "bad.jsonl").write_text("\n".join(dump) + "\n", encoding="utf-8")
    result = error(
        run(tmp_path / "copy.db", "import", str(tmp_path / "bad.jsonl")), 1, "record 6 is not JSON"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_import_of_a_bad_record_names_it(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(
        '{"kind": "event", "session_id": "s", "type": "nope", "sequence_number": 1}\n'
    )
    error(
        run(tmp_path / "copy.db", "import", str(tmp_path / "bad.jsonl")),
        1,
        r"record 1 \(event\): type must be one of",
    )


def test_import_conflict_stops_and_says_what_was_imported(db: Path, tmp_path: Path) -> None:
    ok(run(db, "export", "-o", str(tmp_path / "dump.jsonl")))
    ok(run(tmp_path / "copy.db", "append", "s1", "--type", "message_sent", "--id", "mine"))
    result = error(run(tmp_path / "copy.db", "import", str(tmp_path / "dump.jsonl")), 1, "diverged")
    assert "import stopped at session 's1'" in result.stderr
    assert "1 session(s) before it were imported" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert ok(run(tmp_path / "copy.db", "latest", "loose")).stdout == "1\n"
    assert ok(run(tmp_path / "copy.db", "latest", "s1")).stdout == "1\n"


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    error(run(tmp_path / "copy.db", "import", str(tmp_path / "nope.jsonl")), 2, "cannot read")
    assert not (tmp_path / "copy.db").exists()


# check ------------------------------------------------------------------------------------------------


def test_check_of_a_healthy_store(db: Path) -> None:
    result = ok(run(db, "check"))
    assert result.stdout == "ok: 3 session(s), 12 event(s) checked\n"
    report = json.loads(ok(run(db, "check", "--format", "json")).stdout)
    assert report == {"ok": True, "sessions_checked": 3, "events_checked": 12, "findings": []}
    assert jsonl(ok(run(db, "check", "--format", "jsonl")).stdout) == [report]


def test_check_of_a_broken_store_exits_1(db: Path) -> None:
    conn = apsw.Connection(str(db))
    conn.execute("DELETE FROM events WHERE session_id = 's1' AND seq = 4")
    conn.execute("UPDATE streams SET latest_seq = 5 WHERE session_id = 's2'")
    conn.close()
    result = error(run(db, "check", env={"COLUMNS": "200"}), 1, "the store has 2 problem")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "SESSION", "PROBLEM"]
    assert lines[1].split()[:2] == ["sequence_gap", "s1"] and "sequence 4 is missing" in lines[1]
    assert lines[2].split()[:2] == ["latest_mismatch", "s2"]
    assert lines[-1] == "2 problem(s): 3 session(s), 11 event(s) checked"
    report = json.loads(error(run(db, "check", "--format", "json"), 1, "problem").stdout)
    assert report["ok"] is False
    assert [(f["kind"], f["session_id"]) for f in report["findings"]] == [
        ("sequence_gap", "s1"),
        ("latest_mismatch", "s2"),
    ]


def test_reading_a_damaged_event_is_one_line_pointing_at_check(db: Path) -> None:
    conn = apsw.Connection(str(db))
    conn.execute("UPDATE events SET data = '{oops' WHERE session_id = 's1' AND seq = 2")
    conn.close()
    error(
        run(db, "events", "s1"),
        1,
        r"event .* \(sequence 2 of session 's1'\).*data is damaged.*sqlitestream check",
    )
    result = error(run(db, "check"), 1, "problem")
    assert "s1" in result.stdout


def test_check_progress_only_when_asked(db: Path) -> None:
    assert ok(run(db, "check")).stderr == ""
    assert "checking sessions 3/3 (100%) done" in ok(run(db, "check", "--progress")).stderr


# demo ---------------------------------------------------------------------------------------------------


def test_demo_runs_the_main_job(tmp_path: Path) -> None:
    result = ok(run(tmp_path / "demo.db", "demo", "--events", "5", "--interval-ms", "0"))
    assert "events followed across processes" in result.stdout and "p50" in result.stdout
    assert re.search(r"^#1 ", result.stdout, re.M)
    assert "ok:" in ok(run(tmp_path / "demo.db", "check")).stdout


def test_demo_errors(tmp_path: Path) -> None:
    error(run(tmp_path / "demo.db", "demo", "--events", "1"), 2, "'--events': 1 is not in the range x>=5")


# Docs ------------------------------------------------------------------------------------------------


def test_every_command_is_in_the_cli_guide_and_its_reference_is_generated() -> None:
    guide = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in COMMANDS:
        assert re.search(rf"`sqlitestream[^`]* {re.escape(name)}\b", guide), f"{name} is not in docs/cli.md"
    # The reference part is generated from the click group by mkdocs-click, never typed by hand.
    assert re.search(
        r"^::: mkdocs-click\n    :module: sqlitestream\.cli\.main\n    :command: cli\n", guide, re.M
    )


# The store-wide feed and consumers ---------------------------------------------------------------


def test_events_all_lists_the_feed_in_position_order(db: Path) -> None:
    feed = jsonl(ok(run(db, "events", "--all", "--format", "jsonl")).stdout)
    assert [e["position"] for e in feed] == list(range(1, 13))
    assert [e["id"] for e in feed][-3:] == ["e10", "s2-e1", "loose-1"]
    later = jsonl(ok(run(db, "events", "--all", "--after-position", "9", "--format", "jsonl")).stdout)
    assert [e["id"] for e in later] == ["e10", "s2-e1", "loose-1"]
    typed = jsonl(ok(run(db, "events", "--all", "--type", "session_created", "--nl")).stdout)
    assert [e["id"] for e in typed] == ["s2-e1"]
    limited = jsonl(ok(run(db, "events", "--all", "--limit", "3", "--nl")).stdout)
    assert [e["position"] for e in limited] == [1, 2, 3]
    table = ok(run(db, "events", "--all", "--after-position", "10", env={"COLUMNS": "200"})).stdout
    assert re.search(r"^11\s+s2\s+1\s", table.splitlines()[1]) and len(table.splitlines()) == 3


def test_tail_all_prints_the_last_events_of_every_session(db: Path) -> None:
    last = jsonl(ok(run(db, "tail", "--all", "-n", "2", "--format", "jsonl")).stdout)
    assert [(e["session_id"], e["position"]) for e in last] == [("s2", 11), ("loose", 12)]
    assert jsonl(ok(run(db, "tail", "--all", "--after-position", "12", "--nl")).stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events"], "give a SESSION_ID, or --all"),
        (["events", "s1", "--all"], "not both"),
        (["events", "--all", "--after", "3"], "--after: for one session only"),
        (["events", "--all", "--run-id", "r1"], "--run-id: for one session only"),
        (["events", "s1", "--after-position", "3"], "--after-position goes with --all"),
        (["tail", "--all", "--after", "3"], "--after: for one session only"),
    ],
)
def test_feed_options_and_session_options_do_not_mix(db: Path, args: list[str], message: str) -> None:
    error(run(db, *args), 2, message)


def test_consumers_lists_resets_and_deletes_cursors(db: Path) -> None:
    assert "no consumers" in ok(run(db, "consumers")).stderr
    assert (
        "consumer billing: cursor 0 -> 4" in ok(run(db, "consumers", "reset", "billing", "--to", "4")).stdout
    )
    ok(run(db, "consumers", "reset", "audit", "--to", "11"))
    listed = jsonl(ok(run(db, "consumers", "--format", "jsonl")).stdout)
    assert [(c["name"], c["position"], c["lag"]) for c in listed] == [("audit", 11, 1), ("billing", 4, 8)]
    assert "billing" in ok(run(db, "consumers")).stdout
    ok(run(db, "consumers", "delete", "billing"))
    assert [c["name"] for c in jsonl(ok(run(db, "consumers", "--nl")).stdout)] == ["audit"]
    error(run(db, "consumers", "reset", "audit", "--to", "-1"), 2, "-1")
    error(run(db, "consumers", "reset", "audit"), 2, "--to")


def test_a_reset_consumer_resumes_from_its_new_cursor(db: Path) -> None:
    ok(run(db, "consumers", "reset", "proj", "--to", "9"))
    with SQLiteSessionStore(db) as store:
        consumed = [e.id for e in follow(store, None, consumer="proj", stop_when_caught_up=True)]
        assert consumed == ["e10", "s2-e1", "loose-1"]
    listed = jsonl(ok(run(db, "consumers", "--nl")).stdout)
    assert (listed[0]["position"], listed[0]["lag"]) == (12, 0)
