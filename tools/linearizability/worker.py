"""One worker process: :func:`main` with ``[WORKLOAD_JSON, PROCESS, OUT]``, which ``run.record``
forks (``tools.forked``) and ``python -m tools.linearizability.worker WORKLOAD_JSON PROCESS OUT``
runs.

Opens the store, prints ``ready``, reads a start time (``time.monotonic_ns()``, shared by every
process on the machine) from stdin, starts its client threads at that instant, and writes
every operation they recorded to ``OUT`` as JSON lines.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from sqlitestream import open_store

from .history import Operation, write_history
from .workload import Client, Issued, Workload


def main(argv: list[str]) -> int:
    workload = Workload(**json.loads(argv[0]))
    process = int(argv[1])
    out = Path(argv[2])
    with open_store(workload.location) as store:
        print("ready", flush=True)
        start_ns = int(sys.stdin.readline())
        issued = Issued()
        clients = [Client(store, workload, process, n, issued) for n in range(workload.threads)]
        results: list[list[Operation]] = [[] for _ in clients]

        def run(index: int) -> None:
            delay = start_ns - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)  # a start time, not a wait for something to happen
            results[index] = clients[index].run()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    write_history(out, [op for ops in results for op in ops])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
