"""``sqlitestream backup DEST`` through click's CliRunner, plus real processes for the
progress bar on a terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support import stderr_on_a_terminal

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.cli import cli

DEADLINE = 60.0


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events(
            [
                Event(type="message_sent", session_id=f"s{i % 3}", data={"text": "x" * 500})
                for i in range(2000)
            ]
        )
    return path


def test_backup_writes_a_store_that_check_passes(db: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    result = run("--db", str(db), "backup", str(dest))
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"backed up {db} to {dest}\n"
    checked = run("--db", str(dest), "check")
    assert checked.exit_code == 0 and "ok: 3 session(s), 2000 event(s) checked" in checked.stdout


def test_backup_takes_db_after_the_command(db: Path, tmp_path: Path) -> None:
    assert run("backup", str(tmp_path / "copy.db"), "--db", str(db)).exit_code == 0
    assert (tmp_path / "copy.db").exists()


def test_an_existing_dest_is_refused_in_cli_terms_unless_overwrite(db: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    dest.write_text("an older backup")
    refused = run("--db", str(db), "backup", str(dest))
    assert refused.exit_code == 1
    assert "already exists" in refused.stderr and "--overwrite" in refused.stderr
    assert "overwrite=True" not in refused.stderr and dest.read_text() == "an older backup"
    assert run("--db", str(db), "backup", str(dest), "--overwrite").exit_code == 0
    assert run("--db", str(dest), "check").exit_code == 0


def test_a_missing_dest_directory_says_it_does_not_exist(db: Path, tmp_path: Path) -> None:
    result = run("--db", str(db), "backup", str(tmp_path / "nope" / "copy.db"))
    assert result.exit_code == 1
    assert f"the directory '{tmp_path / 'nope'}' does not exist" in result.stderr


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    result = run("--db", str(tmp_path / "absent.db"), "backup", str(tmp_path / "copy.db"))
    assert result.exit_code == 1 and "no store at" in result.stderr
    assert os.listdir(tmp_path) == []


def test_a_postgres_store_is_pointed_to_pg_dump_and_copy(tmp_path: Path) -> None:
    result = run("--db", "postgresql://nobody@127.0.0.1:1/none", "backup", str(tmp_path / "copy.db"))
    assert result.exit_code == 1
    assert "pg_dump" in result.stderr and "sqlitestream copy" in result.stderr
    assert os.listdir(tmp_path) == []


def test_progress_lines_only_when_asked_without_a_terminal(db: Path, tmp_path: Path) -> None:
    quiet = run("--db", str(db), "backup", str(tmp_path / "quiet.db"))
    assert quiet.exit_code == 0 and quiet.stderr == ""
    loud = run("--db", str(db), "backup", str(tmp_path / "loud.db"), "--progress")
    assert loud.exit_code == 0
    assert loud.stderr.splitlines()[-1].startswith("backing up (pages) ")
    assert loud.stderr.splitlines()[-1].endswith("(100%) done")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_a_progress_bar_appears_on_a_terminal(db: Path, tmp_path: Path) -> None:
    backup = [sys.executable, "-m", "sqlitestream", "--db", str(db), "backup"]
    code, printed = stderr_on_a_terminal([*backup, str(tmp_path / "bar.db")])
    assert code == 0
    assert b"backing up (pages)" in printed and b"100%" in printed
    code, printed = stderr_on_a_terminal([*backup, str(tmp_path / "none.db"), "--no-progress"])
    assert (code, printed) == (0, b"")
