"""What the suite's own helpers promise, where the suite's speed rests on it."""

from __future__ import annotations

import signal
from pathlib import Path

import spawned
from support import run_in_another_process

from tools import forked


def test_a_child_of_processes_is_a_fork_of_the_server_that_imported_spawned() -> None:
    """Each child would otherwise import ``spawned`` and the package again (~0.15 s of CPU)."""
    printed = run_in_another_process(
        "import os, spawned\nprint(spawned.IMPORTED_BY, os.getpid(), os.getppid())"
    )
    imported_by, child, parent = (int(word) for word in printed.split())
    assert imported_by != child
    assert imported_by == parent  # the forkserver, which forked this child


def test_a_forked_child_has_its_own_pipes_environment_and_exit_code_as_a_process_does(tmp_path: Path) -> None:
    """What the tools' children (crash writers, stress and linearizability workers) and the
    tests' serve nodes rely on in ``tools.forked.Child``."""
    with forked.Child(spawned.echo_upper, ("GREETING",), environment={"GREETING": "hi"}, stdin=True) as child:
        assert child.stdin is not None
        child.stdin.write("one\ntwo\n")
        out, err = child.communicate(timeout=60)
        assert (out, err, child.returncode) == ("hi\nONE\nTWO\n", "", 2)  # what target returned
    log = tmp_path / "errors.log"
    with forked.Child(spawned.fail, ("it broke",), stderr_path=log) as child:
        assert child.wait(timeout=60) == 1
        assert child.stderr is None
    assert "RuntimeError: it broke" in log.read_text()
    with forked.Child(spawned.echo_upper, ("GREETING",), stdin=True) as child:
        assert child.stdout.readline() == "\n"  # running, waiting on its stdin
        child.kill()
        assert child.wait(timeout=60) == -signal.SIGKILL
