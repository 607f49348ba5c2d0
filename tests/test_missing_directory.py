"""A store path in a directory that does not exist: the error says so (not "read-only"),
through the Python API and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlitestream import Event, SQLiteSessionStore, StorageError
from sqlitestream.cli import cli


def test_opening_a_store_in_a_missing_directory_says_the_directory_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StorageError, match=r"the directory '.*/no/such' does not exist") as caught:
        SQLiteSessionStore(missing / "x.db")
    assert "read-only" not in str(caught.value) and "readonly=True" not in str(caught.value)
    assert not (tmp_path / "no").exists()


def test_a_path_under_a_file_says_the_parent_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(StorageError, match=r"the directory '.*/plain' is not a directory"):
        SQLiteSessionStore(tmp_path / "plain" / "x.db")


def test_init_in_a_missing_directory_says_the_directory_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "no" / "such" / "x.db"), "init"])
    assert result.exit_code == 1, result.output
    assert "does not exist" in result.stderr
    assert "read-only" not in result.stderr and "only read" not in result.stderr


def test_copy_into_a_missing_directory_says_the_directory_does_not_exist(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    with SQLiteSessionStore(source) as store:
        store.append_event_with_sequence(Event(type="message_sent", session_id="s1"))
    target = tmp_path / "nonexistent_dir" / "x.db"
    result = CliRunner().invoke(cli, ["copy", "--from", str(source), "--to", str(target)])
    assert result.exit_code == 1, result.output
    assert f"the directory '{target.parent}' does not exist" in result.stderr
    assert "read-only" not in result.stderr and "only read" not in result.stderr
