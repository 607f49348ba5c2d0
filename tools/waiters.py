"""``python -m tools.waiters [--waiters N] [--rate R] [--seconds S]``: wake latency of many
long-polling threads, one per session, woken by appends from another OS process.

A writer process appends R events a second, each to a random one of the N sessions, stamping
each with the system-wide monotonic clock. Each waiter thread long-polls its session
(``get_events(..., wait_timeout_ms=...)``), re-arming after each page. Reported: the wake
latency (append committed -> its waiter has it) as p50/p99/max, and the most threads running.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from sqlitestream import SQLiteSessionStore, StoreClosedError

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
    args = parser.parse_args()
    threading.stack_size(256 * 1024)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "waiters.db")
        with SQLiteSessionStore(path) as store:

            def wait_on(session_id: str) -> None:
                after = 0
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
            time.sleep(2.0 + args.waiters / 2000)  # let them all arm (a tool, not a test)
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
            time.sleep(1.0)  # the last wake-ups
            stop.set()
        # closing the store wakes every waiter (StoreClosedError ends its thread)
    ordered = sorted(latencies)
    if not ordered:
        print("no events delivered")
        return
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{args.waiters:,} waiters, {args.rate:g} appends/s for {args.seconds:g} s: "
        f"{len(ordered):,} delivered; wake p50 {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms; threads {most_threads:,}"
    )


if __name__ == "__main__":
    main()
