"""The command line as a new user meets it: one test per problem such a user reported (wrong
names and numbers in messages, Python terms, exit codes, formats, tables, damaged rows, large
events, copy and export files, completion, the demo). Through click's CliRunner, and real
processes where a terminal, the umask or a second process matters."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support import child_env

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def fill(db: Path, session_id: str = "s2", count: int = 20, **options: object) -> list[str]:
    with SQLiteSessionStore(db, **options) as store:  # type: ignore[arg-type]
        return [
            store.append_event_with_sequence(
                Event(type="message_sent", session_id=session_id, data={"i": i})
            ).id
            for i in range(count)
        ]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    fill(path)
    return path


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


# 5, 10: export files -----------------------------------------------------------------------------


def test_export_to_a_missing_directory_names_the_path_given(db: Path) -> None:
    result = run("--db", str(db), "export", "-o", "/nonexistent_dir/x.jsonl")
    assert result.exit_code == 1
    assert "/nonexistent_dir/x.jsonl" in result.stderr and ".export-" not in result.stderr


def test_export_file_follows_the_umask(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "shared.jsonl"
    code = "import os, sys; os.umask(0o022); from sqlitestream.cli import main; main(sys.argv[1:])"
    subprocess.run(
        [sys.executable, "-c", code, "--db", str(db), "export", "-o", str(out)],
        check=True,
        cwd=ROOT,
        env=child_env(),
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_export_over_a_file_keeps_its_mode(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    out.write_text("old")
    out.chmod(0o640)
    assert run("--db", str(db), "export", "-o", str(out)).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and out.read_text().startswith('{"kind"')


# 6: import messages --------------------------------------------------------------------------------


def test_import_of_garbage_numbers_line_and_record_alike(tmp_path: Path) -> None:
    (tmp_path / "garbage.jsonl").write_text("this is not json\n")
    result = run("--db", str(tmp_path / "new.db"), "import", str(tmp_path / "garbage.jsonl"))
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "record 1 is not JSON" in message and "record 0" not in message
    assert "; import stopped at record 1: nothing of it was written" in message
    assert "(char 0)" not in message


def test_import_names_the_line_where_blank_lines_make_it_differ(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text(
        '\n{"kind": "header", "format": "sqlitestream-export", "version": 1}\n\n{oops\n'
    )
    result = run("--db", str(tmp_path / "new.db"), "import", str(tmp_path / "x.jsonl"))
    assert result.exit_code == 1
    assert "record 2 (line 4) is not JSON" in result.stderr
    assert "import stopped at record 2" in result.stderr


def test_import_of_a_record_nested_100000_levels_deep_names_its_record(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    good = Event(type="message_sent", session_id="s1", id="e1").to_dict() | {"sequence_number": 1}
    (tmp_path / "deep.jsonl").write_text(
        json.dumps({"kind": "event", **good})
        + "\n\n"
        + '{"kind": "event", "session_id": "s1", "type": "message_sent", "data": {"x": '
        + deep
        + "}}\n"
    )
    result = run("--db", str(tmp_path / "new.db"), "import", str(tmp_path / "deep.jsonl"))
    assert result.exit_code == 1
    assert "record 2 (line 3) is nested too deeply to read" in result.stderr
    assert "RecursionError" not in result.stderr and "unexpected" not in result.stderr
    with SQLiteSessionStore(tmp_path / "new.db") as store:
        assert store.get_events("s1") == []  # the session's records go together or not at all


# 7: command-line terms -----------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_message_speaks_cli(db: Path) -> None:
    db.parent.chmod(0o555)
    try:
        result = run("--db", str(db), "append", "s2", "--type", "message_sent")
    finally:
        db.parent.chmod(0o755)
    assert result.exit_code == 1 and "readonly=True" not in result.stderr
    assert "only read" in result.stderr


def test_cli_terms_replace_python_arguments() -> None:
    from sqlitestream.cli.common import in_cli_terms

    text = in_cli_terms(
        "cannot open '/x.db' for writing: its directory is read-only (a store creates its -wal "
        "and -shm files beside it); open it with readonly=True to read it"
    )
    assert "readonly=True" not in text and "info, sessions, events" in text
    assert "=" not in in_cli_terms(
        "event 'e' has 5 bytes of data and metadata, over the store's max_event_bytes=4"
    )
    assert "--max-event-bytes" in in_cli_terms("over the store's max_event_bytes=4")


def test_too_large_event_message_names_the_option(db: Path) -> None:
    big = json.dumps({"text": "x" * 2_000_000})
    result = run("--db", str(db), "append", "s2", "--type", "message_sent", "--data", big)
    assert result.exit_code == 1
    assert "max_event_bytes=" not in result.stderr and "--max-event-bytes" in result.stderr
    assert (
        run(
            "--db",
            str(db),
            "append",
            "s2",
            "--type",
            "message_sent",
            "--data",
            big,
            "--max-event-bytes",
            "3000000",
            "--nl",
        ).exit_code
        == 0
    )


# 8: damaged rows -------------------------------------------------------------------------------------


def damage(db: Path, session_id: str, sequence: int) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE events SET data = '{oops' WHERE session_id = ? AND seq = ?", (session_id, sequence)
        )
    conn.close()


def test_events_print_the_healthy_rows_around_a_damaged_one(db: Path) -> None:
    damage(db, "s2", 12)
    result = run("--db", str(db), "events", "s2", "--after", "9", "--limit", "5", "--nl")
    assert result.exit_code == 1
    assert [row["sequence_number"] for row in jsonl(result.stdout)] == [10, 11, 13, 14]
    assert "sequence 12 of session 's2'" in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: 1 event(s) of session s2 could not be read (sequence 12)")
    )


def test_events_without_limit_read_past_several_damaged_rows(db: Path) -> None:
    damage(db, "s2", 1)
    damage(db, "s2", 20)
    result = run("--db", str(db), "events", "s2", "--nl")
    assert result.exit_code == 1
    assert [row["sequence_number"] for row in jsonl(result.stdout)] == list(range(2, 20))
    assert "(sequence 1, 20)" in result.stderr


def test_tail_prints_the_healthy_last_rows_and_reports_a_damaged_one(db: Path) -> None:
    damage(db, "s2", 18)
    result = run("--db", str(db), "tail", "s2", "-n", "5", "--nl")
    assert result.exit_code == 1
    # The damaged row counts as one of the five, as it does towards --limit of events.
    assert [row["sequence_number"] for row in jsonl(result.stdout)] == [16, 17, 19, 20]
    assert "sequence 18 of session 's2'" in result.stderr and "damaged" in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "Error: 1 event(s) of session s2 could not be read (sequence 18); the others were printed"
        )
    )


def test_tail_before_a_damaged_row_reports_nothing(db: Path) -> None:
    damage(db, "s2", 10)
    result = run("--db", str(db), "tail", "s2", "-n", "5", "--nl")
    assert result.exit_code == 0, result.stderr
    assert [row["sequence_number"] for row in jsonl(result.stdout)] == [16, 17, 18, 19, 20]


def test_export_to_stdout_writes_every_readable_record_and_reports_the_damaged_ones(
    db: Path, tmp_path: Path
) -> None:
    fill(db, "s3", count=3)
    damage(db, "s2", 5)
    damage(db, "s3", 2)
    result = run("--db", str(db), "export")
    assert result.exit_code == 1
    events = [
        (row["session_id"], row["sequence_number"]) for row in jsonl(result.stdout) if row["kind"] == "event"
    ]
    assert events == [("s2", n) for n in range(1, 21) if n != 5] + [("s3", 1), ("s3", 3)]
    assert "sequence 5 of session 's2'" in result.stderr and "sequence 2 of session 's3'" in result.stderr
    assert "2 event(s) could not be read (session s2 sequence 5; session s3 sequence 2)" in result.stderr


def test_export_to_a_file_leaves_it_as_it_was_when_a_row_is_damaged(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "backup.jsonl"
    out.write_text("the last good export\n")
    damage(db, "s2", 5)
    result = run("--db", str(db), "export", "-o", str(out))
    assert result.exit_code == 1
    assert f"{out} was left as it was" in result.stderr and "sequence 5 of session 's2'" in result.stderr
    assert out.read_text() == "the last good export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")] == []


def test_export_records_goes_past_damaged_rows_only_when_asked(db: Path) -> None:
    from sqlitestream import StorageError
    from sqlitestream.damage import DamagedRow

    damage(db, "s2", 10)
    with SQLiteSessionStore(db, readonly=True) as store:
        with pytest.raises(StorageError, match="sequence 10 of session 's2'"):
            list(store.export_records())
        seen: list[DamagedRow] = []
        records = list(store.export_records(on_damaged=seen.append))
    assert [record["sequence_number"] for record in records[1:]] == [n for n in range(1, 21) if n != 10]
    assert [(row.session_id, row.sequence) for row in seen] == [("s2", 10)]


# 9: large events, copy cleanup -------------------------------------------------------------------------


@pytest.fixture
def big_export(tmp_path: Path) -> Path:
    source = tmp_path / "big.db"
    with SQLiteSessionStore(source, max_event_bytes=20_000_000) as store:
        store.append_event(Event(type="message_sent", session_id="s", data={"blob": "x" * 10_000_000}))
    out = tmp_path / "big.jsonl"
    assert run("--db", str(source), "export", "-o", str(out)).exit_code == 0
    return out


def test_import_of_large_events_takes_max_event_bytes(big_export: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    refused = run("--db", str(target), "import", str(big_export))
    assert refused.exit_code == 1 and "--max-event-bytes" in refused.stderr
    done = run("--db", str(target), "import", str(big_export), "--max-event-bytes", "20000000")
    assert done.exit_code == 0, done.stderr
    assert "events 1 added" in done.stdout


def test_failed_copy_leaves_no_destination_and_max_event_bytes_copies(
    big_export: Path, tmp_path: Path
) -> None:
    source = tmp_path / "big.db"
    target = tmp_path / "copy.db"
    failed = run("copy", "--from", str(source), "--to", str(target))
    assert failed.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy.db")) == []
    done = run("copy", "--from", str(source), "--to", str(target), "--max-event-bytes", "20000000")
    assert done.exit_code == 0, done.stderr
    assert target.exists()


def test_failed_copy_into_an_existing_store_keeps_it(big_export: Path, tmp_path: Path) -> None:
    target = tmp_path / "existing.db"
    fill(target, "other", 3)
    assert run("copy", "--from", str(tmp_path / "big.db"), "--to", str(target)).exit_code == 1
    with SQLiteSessionStore(target, readonly=True) as store:
        assert store.get_latest_sequence("other") == 3


# 11: --db after the command ---------------------------------------------------------------------------------


def test_db_is_accepted_after_the_command(db: Path) -> None:
    result = run("events", "s2", "--db", str(db), "--limit", "2", "--nl")
    assert result.exit_code == 0, result.stderr
    assert len(jsonl(result.stdout)) == 2
    assert run("latest", "s2", "--db", str(db)).stdout == "20\n"
    env_result = run("latest", "s2", env={"SQLITESTREAM_DB": str(db)})
    assert env_result.stdout == "20\n"


def test_db_after_the_command_overrides_the_environment(db: Path, tmp_path: Path) -> None:
    result = run("latest", "s2", "--db", str(db), env={"SQLITESTREAM_DB": str(tmp_path / "none.db")})
    assert result.stdout == "20\n"


def test_two_different_dbs_are_a_usage_error(db: Path, tmp_path: Path) -> None:
    result = run("--db", str(db), "latest", "s2", "--db", str(tmp_path / "other.db"))
    assert result.exit_code == 2 and "--db is given twice" in result.stderr
    assert run("--db", str(db), "latest", "s2", "--db", str(db)).exit_code == 0


# 12: output formats -----------------------------------------------------------------------------------------


def test_format_shortcuts_match_format(db: Path) -> None:
    base = ["--db", str(db), "events", "s2", "--limit", "3"]
    assert run(*base, "--nl").stdout == run(*base, "--format", "jsonl").stdout
    assert run(*base, "--json").stdout == run(*base, "--format", "json").stdout
    assert run(*base, "--table").stdout == run(*base).stdout


def test_csv_has_a_header_and_every_field(db: Path) -> None:
    import csv
    import io

    rows = list(
        csv.DictReader(io.StringIO(run("--db", str(db), "events", "s2", "--limit", "2", "--csv").stdout))
    )
    assert [row["sequence_number"] for row in rows] == ["1", "2"]
    assert json.loads(rows[1]["data"]) == {"i": 1} and rows[0]["run_id"] == ""


def test_conflicting_formats_are_a_usage_error(db: Path) -> None:
    result = run("--db", str(db), "events", "s2", "--json", "--csv")
    assert result.exit_code == 2 and "exclude each other" in result.stderr
    result = run("--db", str(db), "info", "--format", "table", "--nl")
    assert result.exit_code == 2
    assert run("--db", str(db), "info", "--format", "json", "--json").exit_code == 0


def test_latest_takes_a_format(db: Path) -> None:
    assert json.loads(run("--db", str(db), "latest", "s2", "--json").stdout) == {
        "session_id": "s2",
        "latest_sequence": 20,
    }
    assert run("--db", str(db), "latest", "s2", "--csv").stdout == "session_id,latest_sequence\ns2,20\n"


def test_info_and_check_json_print_one_object(db: Path) -> None:
    assert isinstance(json.loads(run("--db", str(db), "info", "--json").stdout), dict)
    report = json.loads(run("--db", str(db), "check", "--format", "json").stdout)
    assert report["ok"] is True


# 13: usage errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["events", "s2", "--limit", "0"],
        ["sessions", "--limit", "0"],
        ["events", "s2", "--after", "-1"],
        ["events", "s2", "--after", "abc"],
        ["events", "s2", "--type", "bogus"],
        ["tail", "s2", "--after", "-1"],
        ["append", "s2", "--type", "bogus"],
        ["append", "s2", "--type", "message_sent", "--expected-sequence", "-1"],
        ["demo", "--events", "0"],
        ["import", "-", "--max-event-bytes", "0"],
    ],
)
def test_every_bad_option_value_exits_2(db: Path, args: list[str]) -> None:
    result = run("--db", str(db), *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Usage:" in result.stderr


def test_event_types_appear_in_help() -> None:
    assert "workspace_diff_computed" in run("events", "--help").stdout


def test_type_is_repeatable(db: Path) -> None:
    with SQLiteSessionStore(db) as store:
        store.append_event(Event(type="message_received", session_id="s2"))
        store.append_event(Event(type="error_occurred", session_id="s2"))
    base = ["--db", str(db), "events", "s2", "--after", "19", "--nl"]
    both = jsonl(run(*base, "--type", "message_sent", "--type", "message_received").stdout)
    assert [row["type"] for row in both] == ["message_sent", "message_received"]
    limited = jsonl(
        run(*base, "--type", "message_received", "--type", "error_occurred", "--limit", "1").stdout
    )
    assert [row["type"] for row in limited] == ["message_received"]
    tail = jsonl(
        run(
            "--db",
            str(db),
            "tail",
            "s2",
            "-n",
            "2",
            "--nl",
            "--type",
            "message_sent",
            "--type",
            "error_occurred",
        ).stdout
    )
    assert [(row["sequence_number"], row["type"]) for row in tail] == [
        (20, "message_sent"),
        (22, "error_occurred"),
    ]


# 14: tables ----------------------------------------------------------------------------------------------


@pytest.fixture
def sessions_db(tmp_path: Path) -> tuple[Path, list[str]]:
    from sqlitestream import Session

    path = tmp_path / "s.db"
    ids = []
    with SQLiteSessionStore(path) as store:
        for n in range(3):
            session = Session(agent_id=f"agent-{n}")
            store.create_session(session)
            store.append_event(
                Event(type="message_sent", session_id=session.id, data={"text": "日本語のテキスト😀" * 5})
            )
            ids.append(session.id)
    return path, ids


def test_tables_never_cut_ids_even_in_80_columns(sessions_db: tuple[Path, list[str]]) -> None:
    path, ids = sessions_db
    table = run("--db", str(path), "sessions", env={"COLUMNS": "80"}).stdout
    for session_id in ids:
        assert session_id in table
    events = run("--db", str(path), "events", ids[0], env={"COLUMNS": "80"}).stdout
    assert "…" in events  # the payload was cut, the id was not
    assert json.loads(run("--db", str(path), "events", ids[0], "--nl").stdout)["id"] in events


def test_pipes_are_not_cut(sessions_db: tuple[Path, list[str]]) -> None:
    path, ids = sessions_db
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run(
        [sys.executable, "-m", "sqlitestream", "--db", str(path), "events", ids[0]],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    ).stdout
    assert "…" not in out and "日本語のテキスト😀" * 5 in out


def test_wide_characters_keep_columns_aligned() -> None:
    import io

    from sqlitestream.cli.output import EVENT_COLUMNS, TableWriter, display_width

    out = io.StringIO()
    writer = TableWriter(EVENT_COLUMNS[2:5], out, width=None)
    writer.write([{"type": "日本語", "run_id": "r1", "data": {}}, {"type": "ab", "run_id": "r2", "data": {}}])
    lines = out.getvalue().splitlines()
    starts = {display_width(line[: line.index(run_id)]) for line, run_id in zip(lines[1:], ("r1", "r2"))}
    assert len(starts) == 1


def test_tables_escape_every_non_printable_character(db: Path) -> None:
    from sqlitestream import Session

    with SQLiteSessionStore(db) as store:
        store.create_session(Session(id="s3", agent_id="a\x1b[31mb\x07c\x9bd\u202ee"))
    out = run("--db", str(db), "sessions", env={"COLUMNS": ""}).stdout
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out)
    assert "a\\x1b[31mb\\x07c\\x9bd\\u202ee" in out


def test_sessions_on_a_real_terminal(sessions_db: tuple[Path, list[str]]) -> None:
    import pty

    path, ids = sessions_db
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    leader, follower = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlitestream", "--db", str(path), "events", ids[0]],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    screen = b"".join(chunks).decode()
    assert "…" in screen
    event_id = json.loads(run("--db", str(path), "events", ids[0], "--nl").stdout)["id"]
    assert event_id in screen


# 15: stats, completion ---------------------------------------------------------------------------------------


def test_stats_counts_sessions_bytes_and_types(db: Path) -> None:
    fill(db, "big", 2)
    with SQLiteSessionStore(db) as store:
        store.append_event(Event(type="error_occurred", session_id="big", data={"x": "y" * 1000}))
    report = json.loads(run("--db", str(db), "stats", "--json", "--top", "1").stdout)
    assert (
        report["store"]["events"] == 23
        and report["store"]["file_bytes"] > 0
        and "wal_bytes" in report["store"]
    )
    assert [s["session_id"] for s in report["busiest"]] == ["s2"]
    assert [s["session_id"] for s in report["largest"]] == ["big"]
    assert report["event_types"] == {"message_sent": 22, "error_occurred": 1}
    rows = jsonl(run("--db", str(db), "stats", "--nl").stdout)
    assert {row["session_id"]: row["events"] for row in rows} == {"big": 3, "s2": 20}
    table = run("--db", str(db), "stats").stdout
    assert "busiest sessions" in table and "error_occurred" in table


def complete(args: str, env: dict[str, str]) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != "SQLITESTREAM_DB"}
    environ.update(
        {
            "_SQLITESTREAM_COMPLETE": "bash_complete",
            "COMP_WORDS": f"sqlitestream {args}",
            "COMP_CWORD": str(len(args.split(" "))),
            **env,
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "sqlitestream"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
    )
    assert proc.stderr == ""
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if line]


def test_session_ids_complete_from_the_store(db: Path) -> None:
    fill(db, "s3", 1)
    assert complete(f"--db {db} events s", {}) == ["s2", "s3"]
    assert complete("events s", {"SQLITESTREAM_DB": str(db)}) == ["s2", "s3"]
    assert complete("events s3", {"SQLITESTREAM_DB": str(db)}) == ["s3"]


def test_completion_is_silent_without_a_store(tmp_path: Path) -> None:
    assert complete(f"--db {tmp_path / 'none.db'} events s", {}) == []
    assert not (tmp_path / "none.db").exists()


# 16: demo, copy onto itself ----------------------------------------------------------------------------------


def test_demo_help_shows_defaults_and_the_minimum() -> None:
    text = run("demo", "--help").stdout
    assert "default: 30" in text and "default: 100" in text and "at least 5" in text


def test_demo_run_record_agrees_with_its_usage_event_and_says_what_next(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = run("--db", str(db), "demo", "--events", "8", "--interval-ms", "0")
    assert result.exit_code == 0, result.stderr
    session_id = re.search(r"session (ses_\w+)", result.stdout).group(1)  # type: ignore[union-attr]
    assert f"events {session_id}" in result.stdout and f"tail -f {session_id}" in result.stdout
    with SQLiteSessionStore(db, readonly=True) as store:
        usage = store.get_events(session_id, type="token_usage_updated")[-1].data
        assert [run.token_usage for run in store.list_runs(session_id)] == [usage]


def test_copy_onto_itself_is_refused(db: Path, tmp_path: Path) -> None:
    result = run("copy", "--from", str(db), "--to", str(db))
    assert result.exit_code == 2 and "same store" in result.stderr
    os.symlink(db, tmp_path / "alias.db")
    assert run("copy", "--from", str(db), "--to", str(tmp_path / "alias.db")).exit_code == 2
