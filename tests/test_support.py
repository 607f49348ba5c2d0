"""What the suite's own helpers promise, where the suite's speed rests on it."""

from __future__ import annotations

from support import run_in_another_process


def test_a_child_of_processes_is_a_fork_of_the_server_that_imported_spawned() -> None:
    """Each child would otherwise import ``spawned`` and the package again (~0.15 s of CPU)."""
    printed = run_in_another_process(
        "import os, spawned\nprint(spawned.IMPORTED_BY, os.getpid(), os.getppid())"
    )
    imported_by, child, parent = (int(word) for word in printed.split())
    assert imported_by != child
    assert imported_by == parent  # the forkserver, which forked this child
