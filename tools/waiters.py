"""``python -m tools.waiters [--waiters N] [--rate R] [--seconds S] [--gc-freeze]``: wake
latency of many long-polling threads, one per session, woken by appends from another OS process.

A writer process appends R events a second, each to a random one of the N sessions, stamping
each with the system-wide monotonic clock. Each waiter thread long-polls its session
(``get_events(..., wait_timeout_ms=...)``), re-arming after each page. The writer starts once
every waiter has made its first read and the process has gone quiet (its CPU time grows by
less than 5% of the wall clock over half a second), and the deliveries are awaited (up to 60 s
after the writer ends). Reported: the wake latency (append committed -> its waiter has it) as
p50/p99/max, the most threads running, and the garbage collector's full collections during
the run with their longest pause: every thread's frames are objects a full collection walks,
so with thousands of threads a pause of a few hundred milliseconds lands in the tail.
``--gc-freeze`` calls ``gc.freeze()`` once the waiters are armed (as a server does after its
start-up), which keeps those frames out of the collections.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from sqlitestream import SQLiteSessionStore, StoreClosedError
from tools.quiet import FullCollections, until_quiet

_WRITER = """
import random, sys, time
from sqlitestream import Event, SQLiteSessionStore
path, sessions, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rng = random.Random(1)
with SQLiteSessionStore(path) as store:
    sys.stdin.readline()  # the waiters are armed
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        store.append_event_with_sequence(
            Event("message_sent", f"s{rng.randrange(sessions)}", data={"sent": time.monotonic()})
        )
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="appends per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once the waiters are armed")
    args = parser.parse_args()
    threading.stack_size(256 * 1024)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    armed = threading.Semaphore(0)
    pauses = FullCollections()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "waiters.db")
        with SQLiteSessionStore(path) as store:

            def wait_on(session_id: str) -> None:
                after = 0
                store.get_events(session_id)
                armed.release()
                while not stop.is_set():
                    try:
                        page = store.get_events(session_id, after=after, wait_timeout_ms=30_000)
                    except StoreClosedError:
                        return
                    now = time.monotonic()
                    if page:
                        after = page[-1].sequence_number
                        with lock:
                            latencies.extend(now - float(event.data["sent"]) for event in page)

            threads = [
                threading.Thread(target=wait_on, args=(f"s{n}",), daemon=True) for n in range(args.waiters)
            ]
            for thread in threads:
                thread.start()
            for _ in threads:
                armed.acquire()
            until_quiet()
            if args.gc_freeze:
                gc.freeze()
            pauses.start()
            writer = subprocess.Popen(
                [sys.executable, "-c", _WRITER, path, str(args.waiters), str(args.rate), str(args.seconds)],
                stdin=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
            assert writer.stdin is not None
            writer.stdin.write("\n")
            writer.stdin.flush()
            most_threads = 0
            while writer.poll() is None:
                most_threads = max(most_threads, threading.active_count())
                time.sleep(0.1)
            expected = int(args.rate * args.seconds)
            deadline = time.monotonic() + 60
            while len(latencies) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            pauses.stop()
            stop.set()
        # closing the store wakes every waiter (StoreClosedError ends its thread)
    ordered = sorted(latencies)
    if not ordered:
        print("no events delivered")
        return
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{args.waiters:,} waiters, {args.rate:g} appends/s for {args.seconds:g} s: "
        f"{len(ordered):,} of {expected:,} delivered; wake p50 {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms; threads {most_threads:,}; "
        f"{pauses.summary()}" + (" (gc.freeze)" if args.gc_freeze else "")
    )


if __name__ == "__main__":
    main()
