"""The runnable demo, end to end: a real writer process and a long-poll follower."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import pytest
from support import child_env

from sqlitestream import SQLiteSessionStore, ValidationError
from sqlitestream.cli.demo import DemoSummary, demo_script, run_demo


class DemoArguments(TypedDict, total=False):
    events: int
    interval_ms: int


def test_demo_follows_every_event_of_the_writer_process(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    lines: list[str] = []

    summary = run_demo(db, events=6, interval_ms=10, echo=lines.append)

    assert isinstance(summary, DemoSummary)
    assert summary.writer_exit_code == 0
    with SQLiteSessionStore(db) as store:
        stored = store.get_events(summary.session_id)
        session = store.get_session(summary.session_id)
    assert session.status.value == "completed"
    # session_created, session_started, message_sent, the 6 agent events, session_completed
    assert summary.events == len(stored) == 10
    event_lines = [line for line in lines if line.startswith("#")]
    assert [line.split()[0] for line in event_lines] == [f"#{n}" for n in range(1, 11)]
    assert [line.split()[1] for line in event_lines] == [event.type.value for event in stored]
    assert all("ms after append" in line for line in event_lines)
    assert 0 <= summary.p50_ms <= summary.p99_ms <= summary.max_ms
    assert "p50" in lines[-1] and "p99" in lines[-1]


def test_demo_reuses_an_existing_store_with_a_new_session(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    first = run_demo(db, events=5, interval_ms=0, echo=lambda line: None)
    second = run_demo(db, events=5, interval_ms=0, echo=lambda line: None)

    assert first.session_id != second.session_id
    with SQLiteSessionStore(db) as store:
        assert len(store.list_sessions()) == 2


def test_python_dash_m_runs_the_demo(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqlitestream.cli.demo",
            "--db",
            str(tmp_path / "d.db"),
            "--events",
            "5",
            "--interval-ms",
            "5",
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "9 events followed across processes" in done.stdout
    assert "#9" in done.stdout


def test_writer_side_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    SQLiteSessionStore(db).close()
    argv = [
        sys.executable,
        "-m",
        "sqlitestream.cli.demo",
        "--writer",
        "--db",
        str(db),
        "--session-id",
        "s1",
        "--events",
        "5",
    ]
    first = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=120, check=False)
    again = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=120, check=False)

    assert first.returncode == 0, first.stderr
    assert again.returncode == 1
    assert again.stderr.startswith("Error: ") and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize(
    ("kwargs", "named"), [({"events": 4}, "events"), ({"interval_ms": -1}, "interval_ms")]
)
def test_bad_demo_arguments_create_nothing(tmp_path: Path, kwargs: DemoArguments, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        run_demo(tmp_path / "never.db", **kwargs)
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("count", [5, 6, 7, 8, 30])
def test_demo_script_has_exactly_the_requested_events(count: int) -> None:
    events = demo_script(count)
    assert len(events) == count
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "done"
