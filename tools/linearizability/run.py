"""Record a history: start the worker processes together, wait for them, collect what they did.

After the workers exit, the parent reads every session in full once more (as client
``final``): those reads come after every acknowledged write, so the check also proves each
acknowledged event is in the log at the sequence it was given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlitestream import open_store
from tools import forked

from . import worker as worker_module
from .history import Kind, Operation, read_history
from .workload import Workload

forked.configure(preload=["tools.linearizability.worker"])

START_MARGIN_NS = 50_000_000
"""How far ahead of "every worker is ready" the common start time is set."""


def record(workload: Workload, directory: Path, *, timeout_s: float = 600.0) -> list[Operation]:
    """Run ``workload.processes`` worker processes on the store; every operation, in invocation order."""
    directory.mkdir(parents=True, exist_ok=True)
    outputs = [directory / f"history-p{n}.jsonl" for n in range(workload.processes)]
    config = json.dumps(workload.to_dict())
    workers = [
        forked.Child(worker_module.main, ([config, str(n), str(out)],), stdin=True)
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
            worker.close()
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
