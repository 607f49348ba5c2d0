"""Record a history: start the worker processes together, wait for them, collect what they did.

After the workers exit, the parent reads every session in full once more (as client
``final``): those reads come after every acknowledged write, so the check also proves each
acknowledged event is in the log at the sequence it was given.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from sqlitestream import open_store

from .history import Kind, Operation, read_history
from .workload import Workload

ROOT = Path(__file__).resolve().parent.parent.parent
"""The checkout holding ``tools/``: the workers run from it so they import the same code."""

START_MARGIN_NS = 50_000_000
"""How far ahead of "every worker is ready" the common start time is set."""


def record(workload: Workload, directory: Path, *, timeout_s: float = 600.0) -> list[Operation]:
    """Run ``workload.processes`` worker processes on the store; every operation, in invocation order."""
    directory.mkdir(parents=True, exist_ok=True)
    outputs = [directory / f"history-p{n}.jsonl" for n in range(workload.processes)]
    config = json.dumps(workload.to_dict())
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tools.linearizability.worker", config, str(n), str(out)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n, out in enumerate(outputs)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdin is not None
            line = worker.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a worker did not start (exit code {worker.wait()})")
        start_ns = time.monotonic_ns() + START_MARGIN_NS
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{start_ns}\n")
            worker.stdin.close()
        deadline = time.monotonic() + timeout_s
        for worker in workers:
            code = worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            if code != 0:
                raise RuntimeError(f"a worker exited with code {code}")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()
    return read_history(outputs) + final_reads(workload)


def final_reads(workload: Workload) -> list[Operation]:
    """Each session read in full, after every worker has finished."""
    found = []
    with open_store(workload.location) as store:
        for session in workload.session_ids():
            start = time.monotonic_ns()
            events = store.get_events(session)
            end = time.monotonic_ns()
            pairs = tuple((event.id, event.sequence_number) for event in events)
            found.append(Operation("final", Kind.READ, session, start, end, events=pairs))
    return found
