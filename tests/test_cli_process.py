"""The ``sqlitestream`` command as real OS processes: ``python -m sqlitestream`` (and the
installed ``sqlitestream`` console script when one is on PATH), ``tail --follow`` seeing an
append made by another process, Ctrl-C, a closed output pipe, and reads while another process
writes."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from spawned import append_until_stopped
from support import child_env, processes, stderr_on_a_terminal, wait_until

from sqlitestream import Event, SQLiteSessionStore

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60.0

LAUNCHERS = [pytest.param([sys.executable, "-m", "sqlitestream"], id="python-m")]
if shutil.which("sqlitestream"):
    LAUNCHERS.append(pytest.param([shutil.which("sqlitestream")], id="console-script"))


def environment() -> dict[str, str]:
    env = child_env()
    env.pop("SQLITESTREAM_DB", None)
    return env


def command(launcher: list[str], db: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*launcher, "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=DEADLINE,
        **kwargs,
    )


class Lines:
    """Lines of a process's output, read by a thread so the test can wait with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self) -> str | None:
        return self._queue.get(timeout=DEADLINE)


class Finished:
    """A process waited for with a deadline: its return code and output."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.stdout, self.stderr = process.communicate(timeout=DEADLINE)
        self.returncode = process.returncode


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event(type="message_sent", session_id="s1", id=f"e{i}") for i in (1, 2)])
    return path


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_the_command_runs_as_a_process(launcher: list[str], db: Path) -> None:
    result = command(launcher, db, "--version")
    assert result.returncode == 0 and "sqlitestream, version" in result.stdout
    result = command(launcher, db, "latest", "s1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "2\n", "")
    result = command(launcher, db, "tail", "--help")
    assert result.returncode == 0 and "Example" in result.stdout


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_errors_are_one_line_without_a_traceback(launcher: list[str], tmp_path: Path) -> None:
    result = command(launcher, tmp_path / "missing.db", "latest", "s1")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: no store at") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "missing.db").exists()
    result = command(launcher, tmp_path / "missing.db", "events", "s1", "--after", "x")
    assert result.returncode == 2 and "Traceback" not in result.stderr


# Each format once and each launcher once: the launcher does not change what tail prints.
FOLLOW_CASES = [
    pytest.param(
        LAUNCHERS[index % len(LAUNCHERS)].values[0], fmt, id=f"{fmt}-{LAUNCHERS[index % len(LAUNCHERS)].id}"
    )
    for index, fmt in enumerate(["jsonl", "table"])
]


@pytest.mark.parametrize(("launcher", "fmt"), FOLLOW_CASES)
def test_tail_follow_sees_another_process_append_and_ends_cleanly_on_sigint(
    launcher: list[str], db: Path, fmt: str
) -> None:
    follower = subprocess.Popen(
        [*launcher, "--db", str(db), "tail", "s1", "--follow", "--format", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        lines = Lines(follower.stdout)  # type: ignore[arg-type]
        first = [lines.next() for _ in range(3 if fmt == "table" else 2)]
        assert all(line is not None for line in first), first
        appended = command(
            [sys.executable, "-m", "sqlitestream"],
            db,
            "append",
            "s1",
            "--type",
            "message_received",
            "--id",
            "from-elsewhere",
            "--data",
            '{"n": 3}',
        )
        assert appended.returncode == 0, appended.stderr
        line = lines.next()
        assert line is not None
        if fmt == "jsonl":
            event = json.loads(line)
            assert (event["id"], event["sequence_number"], event["data"]) == ("from-elsewhere", 3, {"n": 3})
        else:
            assert line.split()[0] == "3" and "message_received" in line
        follower.send_signal(signal.SIGINT)
        follower.wait(DEADLINE)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    stderr = follower.stderr.read()  # type: ignore[union-attr]
    assert follower.returncode == 130
    assert "Traceback" not in stderr and stderr == ""


def test_tail_wait_without_follow_prints_the_first_event_from_another_process(db: Path) -> None:
    waiter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqlitestream",
            "--db",
            str(db),
            "tail",
            "s1",
            "--after",
            "2",
            "--wait-ms",
            str(int(DEADLINE * 1000)),
            "--format",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        with SQLiteSessionStore(db) as store:
            store.append_event(Event(type="message_sent", session_id="s1", id="late"))
        out, err = waiter.communicate(timeout=DEADLINE)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["late"]


@pytest.mark.parametrize("args", [["events", "big", "--format", "jsonl"], ["events", "big"], ["export"]])
def test_a_closed_output_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "big.db"
    with SQLiteSessionStore(path) as store:
        # Far more output than a pipe buffers, so the writer must meet the closed pipe.
        store.append_events(
            [Event(type="message_sent", session_id="big", data={"pad": "x" * 300}) for _ in range(3000)]
        )
    reader = subprocess.Popen(
        [sys.executable, "-m", "sqlitestream", "--db", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    assert reader.stdout is not None and reader.stderr is not None
    assert reader.stdout.readline()
    reader.stdout.close()  # like `| head -1`
    stderr = reader.stderr.read()
    reader.wait(DEADLINE)
    assert reader.returncode == 141
    assert stderr == b""


def test_read_commands_work_while_another_process_writes(db: Path, tmp_path: Path) -> None:
    context = processes()
    stop, started = context.Event(), context.Event()
    sessions = ["w0", "w1", "w2", "w3"]
    writer = context.Process(target=append_until_stopped, args=(str(db), sessions, 10, 0, stop, started))
    writer.start()
    try:
        assert started.wait(DEADLINE)
        launcher = [sys.executable, "-m", "sqlitestream"]
        # All at once, so the writer's appends land while each of them reads.
        running = {
            name: subprocess.Popen(
                [*launcher, "--db", str(db), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment(),
            )
            for name, args in {
                "info": ["info", "--format", "json"],
                "sessions": ["sessions", "--format", "jsonl"],
                "events": ["events", "w0", "--format", "jsonl"],
                "tail": ["tail", "w1", "-n", "5", "--format", "jsonl"],
                "check": ["check"],
                "export": ["export", "-o", str(tmp_path / "live.jsonl")],
            }.items()
        }
        results = {name: Finished(process) for name, process in running.items()}
    finally:
        stop.set()
        writer.join(DEADLINE)
    assert writer.exitcode == 0
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert result.stderr == "", (name, result.stderr)
    seqs = [json.loads(line)["sequence_number"] for line in results["events"].stdout.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs
    exported: dict[str, list[int]] = {}
    for line in (tmp_path / "live.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "event":
            exported.setdefault(record["session_id"], []).append(record["sequence_number"])
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in exported.values())


def test_export_import_round_trip_between_processes(db: Path, tmp_path: Path) -> None:
    launcher = [sys.executable, "-m", "sqlitestream"]
    dump = command(launcher, db, "export")
    assert dump.returncode == 0
    loaded = command(launcher, tmp_path / "copy.db", "import", "-", input=dump.stdout)
    assert loaded.returncode == 0 and "events 2 added" in loaded.stdout
    again = command(launcher, tmp_path / "copy.db", "export")
    assert again.stdout == dump.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_progress_bar_appears_only_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with SQLiteSessionStore(path) as store:
        store.append_events([Event(type="message_sent", session_id=f"s{i % 7}") for i in range(2000)])
    export = [
        sys.executable,
        "-m",
        "sqlitestream",
        "--db",
        str(path),
        "export",
        "-o",
        str(tmp_path / "out.jsonl"),
    ]
    code, printed = stderr_on_a_terminal(export)
    assert code == 0
    assert b"exporting events" in printed and b"100%" in printed
    code, printed = stderr_on_a_terminal([*export, "--no-progress"])
    assert (code, printed) == (0, b"")
    check = [sys.executable, "-m", "sqlitestream", "--db", str(path), "check"]
    code, printed = stderr_on_a_terminal(check)
    assert code == 0 and b"checking sessions" in printed
    # Without a terminal (a pipe), nothing unless asked.
    quiet = subprocess.run(export, capture_output=True, env=environment(), timeout=DEADLINE)
    assert (quiet.returncode, quiet.stderr) == (0, b"")


def test_tail_follow_starts_again_from_sequence_1_when_the_session_is_written_again(db: Path) -> None:
    """The follower is stopped (SIGSTOP) while the session is deleted and written again
    longer than before, so it cannot see the moment the log was empty: it must still print
    the whole new log, not only the events numbered past where it was."""
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqlitestream",
            "--db",
            str(db),
            "tail",
            "s1",
            "--follow",
            "--format",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        lines = Lines(follower.stdout)  # type: ignore[arg-type]
        with SQLiteSessionStore(db) as store:
            assert [json.loads(lines.next() or "null")["id"] for _ in range(2)] == ["e1", "e2"]
            follower.send_signal(signal.SIGSTOP)
            try:
                store.delete_session("s1")
                store.append_events(
                    [Event(type="message_sent", session_id="s1", id=f"n{i}") for i in range(1, 5)]
                )
            finally:
                follower.send_signal(signal.SIGCONT)
        again = [json.loads(lines.next() or "null") for _ in range(4)]
        assert [(event["id"], event["sequence_number"]) for event in again] == [
            ("n1", 1),
            ("n2", 2),
            ("n3", 3),
            ("n4", 4),
        ]
        follower.send_signal(signal.SIGINT)
        follower.wait(DEADLINE)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    stderr = follower.stderr.read()  # type: ignore[union-attr]
    assert follower.returncode == 130, stderr
    assert "following it from sequence 1" in stderr and "Traceback" not in stderr


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP has taken effect, not merely been sent)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tail_follow_reports_a_damaged_row_and_follows_on_after_it(db: Path) -> None:
    """The follower is stopped while three events are appended and the middle one is damaged,
    so its next page holds the damaged row: it prints the healthy ones, reports the damaged
    one on stderr, and keeps following."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "sqlitestream", "--db", str(db), "tail", "s1", "-n", "1", "-f", "--nl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        lines = Lines(follower.stdout)  # type: ignore[arg-type]
        assert json.loads(lines.next() or "null")["id"] == "e2"  # the last one, so it is following
        with SQLiteSessionStore(db) as store:
            store.append_event(Event(type="message_sent", session_id="s1", id="e3"))
            assert json.loads(lines.next() or "null")["id"] == "e3"
            follower.send_signal(signal.SIGSTOP)
            try:
                wait_until(lambda: _stopped(follower.pid), timeout=DEADLINE, what="the follower stopped")
                store.append_events(
                    [Event(type="message_sent", session_id="s1", id=f"e{n}") for n in (4, 5, 6)]
                )
                conn = sqlite3.connect(db)
                with conn:
                    conn.execute("UPDATE events SET data = '{oops' WHERE id = 'e5'")
                conn.close()
            finally:
                follower.send_signal(signal.SIGCONT)
            assert [json.loads(lines.next() or "null")["id"] for _ in range(2)] == ["e4", "e6"]
            store.append_event(Event(type="message_sent", session_id="s1", id="e7"))
            assert json.loads(lines.next() or "null")["id"] == "e7"  # and follows on
        follower.send_signal(signal.SIGINT)
        follower.wait(DEADLINE)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    stderr = follower.stderr.read()  # type: ignore[union-attr]
    assert follower.returncode == 130, stderr
    assert "sequence 5 of session 's1'" in stderr and "damaged" in stderr and "Traceback" not in stderr


def test_tail_all_follow_sees_another_process_append_to_any_session(db: Path) -> None:
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqlitestream",
            "--db",
            str(db),
            "tail",
            "--all",
            "--follow",
            "--format",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        lines = Lines(follower.stdout)  # type: ignore[arg-type]
        before = [lines.next() for _ in range(2)]
        assert all(line is not None for line in before), before
        last = json.loads(before[-1])["position"]  # type: ignore[arg-type]
        for session_id, event_id in (("brand-new", "n1"), ("s1", "n2")):
            appended = command(
                [sys.executable, "-m", "sqlitestream"],
                db,
                "append",
                session_id,
                "--type",
                "message_sent",
                "--id",
                event_id,
            )
            assert appended.returncode == 0, appended.stderr
        arrived = [json.loads(lines.next() or "null") for _ in range(2)]
        assert [(e["id"], e["session_id"], e["position"]) for e in arrived] == [
            ("n1", "brand-new", last + 1),
            ("n2", "s1", last + 2),
        ]
        follower.send_signal(signal.SIGINT)
        follower.wait(DEADLINE)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 130
