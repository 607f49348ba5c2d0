"""Running out of file descriptors (``ulimit -n``) is named as such, by the library and the
command line, in real processes under a low ``RLIMIT_NOFILE``: SQLite itself only says
"unable to open database file" or "disk I/O error"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import python_output

from sqlitestream import Event, SQLiteSessionStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")

_OPEN_STORES_UNTIL_IT_FAILS = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from sqlitestream import Event, SQLiteSessionStore, StorageError
opened = []
try:
    for n in range(64):
        store = SQLiteSessionStore(Path(sys.argv[1]) / f"s{n}.db")
        store.append_event(Event("message_sent", "s", id="e"))
        store.get_events("s")
        opened.append(store)
    print("never ran out")
except StorageError as exc:
    print(len(opened), exc)
    assert [e.id for e in opened[0].get_events("s")] == ["e"]  # the stores already open still work
"""


def test_opening_stores_past_the_limit_says_file_descriptors_ran_out(tmp_path: Path) -> None:
    output = python_output(_OPEN_STORES_UNTIL_IT_FAILS, str(tmp_path))
    opened, _, message = output.partition(" ")
    assert int(opened) > 0, output
    assert "file descriptors ran out" in message and "(its limit: 64)" in message, message
    assert "ulimit -n" in message and "unable to open database file" not in message


# The child scripts' way to run short of descriptors: take every one left but ``free``.
_TAKE_ALL_BUT = """
import os
def take_all_but(free):
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for fd in held[:free]:
        os.close(fd)
    return held[free:]
"""

# Takes every descriptor but N (0, 1, 2, ...), then opens a PostgreSQL store and long-polls.
_POSTGRES_WITH_FEW_DESCRIPTORS = (
    _TAKE_ALL_BUT
    + """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from sqlitestream import Event, SqliteStreamError
from sqlitestream.postgres import PostgresSessionStore
dsn, schema = sys.argv[1], sys.argv[2]
with PostgresSessionStore(dsn, schema=schema) as store:
    store.append_event(Event("message_sent", "s", id="e"))
for free in range(0, 8):
    held = take_all_but(free)
    store = None
    try:
        store = PostgresSessionStore(dsn, schema=schema)
        store.get_events("s", after=1, wait_timeout_ms=10)
        outcome = "ok"
    except SqliteStreamError as exc:
        outcome = "ran out" if "file descriptors ran out" in str(exc) else f"other: {exc}"
    finally:
        for fd in held:
            os.close(fd)
        if store is not None:
            store.close()
    print(outcome, flush=True)
"""
)


def test_a_postgres_store_says_file_descriptors_ran_out(pg_dsn: str, pg_schema: str) -> None:
    """psycopg's selector raised a raw OSError, and libpq said "connection is bad"."""
    outcomes = python_output(_POSTGRES_WITH_FEW_DESCRIPTORS, pg_dsn, pg_schema, timeout=120).splitlines()
    assert set(outcomes) <= {"ok", "ran out"}, outcomes
    assert outcomes[0] == "ran out" and outcomes[-1] == "ok", outcomes


# Imports the CLI once, then forks one process per number of descriptors left (0, 1, 2, ...):
# each takes every descriptor but that many under a limit of 32, runs the CLI on the rest with
# its stderr in a file, and exits with the CLI's status. Prints "status<TAB>stderr file" each.
_CLI_WITH_FEW_DESCRIPTORS = (
    _TAKE_ALL_BUT
    + """
import resource, sys, traceback
from sqlitestream.cli import main
directory, points, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
children = {}
for free in range(points):
    pid = os.fork()
    if pid:
        children[free] = pid
        continue
    status = 70
    try:
        err = os.open(os.path.join(directory, f"stderr{free}"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(err, 2)
        os.close(err)
        out = os.open(os.devnull, os.O_WRONLY)  # the report below is this process's stdout
        os.dup2(out, 1)
        os.close(out)
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        take_all_but(free)
        try:
            main([arg.replace("{free}", str(free)) for arg in argv])
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(status)
for free, pid in children.items():
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), os.path.join(directory, f"stderr{free}"), sep="\t")
"""
)


def test_the_cli_says_file_descriptors_ran_out_wherever_they_run_out(tmp_path: Path) -> None:
    """``copy`` into a new store with 0, 1, 2, ... descriptors left: each run either works or
    fails with the one clear message, never a traceback or SQLite's "unable to open"."""
    source = tmp_path / "source.db"
    with SQLiteSessionStore(source) as store:
        store.append_events([Event("message_sent", "s1", id=f"e{n}") for n in range(3)])
    points = 14
    argv = ["copy", "--from", str(source), "--to", str(tmp_path / "copy{free}.db")]
    output = python_output(_CLI_WITH_FEW_DESCRIPTORS, str(tmp_path), str(points), *argv, timeout=120)
    runs = [line.split("\t") for line in output.splitlines()]
    assert len(runs) == points, output

    outcomes = []
    for free, (status, stderr_file) in enumerate(runs):
        stderr = Path(stderr_file).read_text(encoding="utf-8")
        assert "Traceback" not in stderr and "unable to open" not in stderr, stderr
        if status == "0":
            outcomes.append("copied")
            continue
        assert status == "1", stderr
        assert stderr.startswith("Error: ") and "file descriptors ran out" in stderr
        assert "raise the limit (ulimit -n)" in stderr, stderr
        assert not (tmp_path / f"copy{free}.db").exists()  # a failed copy leaves no file behind
        outcomes.append("ran out")
    assert outcomes[0] == "ran out" and outcomes[-1] == "copied", outcomes
