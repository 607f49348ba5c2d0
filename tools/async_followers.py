"""``python -m tools.async_followers [--followers N] [--sessions M] [--rate R] [--seconds S]``:
many asyncio long-poll followers on one event loop (sqlitestream.aio.AsyncStore on a SQLite
file), spread evenly over M sessions, woken by appends from another OS process.

A writer process appends R events a second, each to a random session, for S seconds, stamping
each with the system-wide monotonic clock, once every follower has read its session and the
process has gone quiet (its waits registered). Every follower long-polls its session, re-arming
after each page. Reported: the wake latency (append committed -> its follower has it) as
p50/p99/max over all deliveries, and the most threads this process ran.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.aio import AsyncStore
from tools.quiet import QUIET_WINDOW_S, FullCollections, is_quiet

_WRITER = """
import random, sys, time
from sqlitestream import Event, SQLiteSessionStore
path, sessions, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rng = random.Random(1)
with SQLiteSessionStore(path) as store:
    sys.stdin.readline()  # the followers are armed
    start = time.monotonic()
    count = int(rate * seconds)
    for n in range(count):
        pause = start + n / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        store.append_event_with_sequence(
            Event("message_sent", f"s{rng.randrange(sessions)}", data={"sent": time.monotonic()})
        )
    print(count, flush=True)
"""


async def run(
    path: str, followers: int, sessions: int, rate: float, seconds: float, max_threads: int
) -> None:
    latencies: list[float] = []
    pauses = FullCollections()
    peak_threads = threading.active_count()
    with SQLiteSessionStore(path) as store:
        store.append_events([Event("session_created", f"s{n}") for n in range(sessions)])
        async with AsyncStore(store, max_threads=max_threads) as astore:
            armed = 0

            async def follow(session_id: str) -> None:
                nonlocal armed
                after = 1
                await astore.get_events(session_id, after=after)
                armed += 1
                while True:
                    page = await astore.get_events(session_id, after=after, wait_timeout_ms=60_000)
                    now = time.monotonic()
                    for event in page:
                        latencies.append(now - event.data["sent"])
                        after = event.sequence_number or after

            async def sample_threads() -> None:
                nonlocal peak_threads
                while True:
                    peak_threads = max(peak_threads, threading.active_count())
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample_threads())
            tasks = [asyncio.create_task(follow(f"s{n % sessions}")) for n in range(followers)]
            while armed < followers:
                await asyncio.sleep(0.05)
            await _until_quiet()
            pauses.start()
            writer = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _WRITER,
                path,
                str(sessions),
                str(rate),
                str(seconds),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert writer.stdin is not None and writer.stdout is not None
            writer.stdin.write(b"go\n")
            await writer.stdin.drain()
            total = int((await writer.stdout.readline()).decode()) * followers // sessions
            await writer.wait()
            deadline = time.monotonic() + 60
            while len(latencies) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            pauses.stop()
            for task in [*tasks, sampler]:
                task.cancel()
            await asyncio.gather(*tasks, sampler, return_exceptions=True)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"followers={followers} sessions={sessions} rate={rate}/s seconds={seconds} max_threads={max_threads}"
    )
    print(
        f"wake latency ms: p50 {statistics.median(ordered) * 1000:.2f}  p99 {p99 * 1000:.2f}  "
        f"max {ordered[-1] * 1000:.2f}  ({len(ordered)} of {total} delivered); {pauses.summary()}"
    )
    print(
        f"threads at most: {peak_threads} (pool {max_threads} + the watcher + main, and asyncio's "
        "child watcher for the writer process)"
    )


async def _until_quiet(limit_s: float = 120.0) -> None:
    """:func:`tools.quiet.until_quiet` without blocking the event loop."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        cpu = time.process_time()
        await asyncio.sleep(QUIET_WINDOW_S)
        if is_quiet(cpu):
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=5000, help="followers are spread over these")
    parser.add_argument("--rate", type=float, default=100.0, help="appends per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-threads", type=int, default=8, help="the AsyncStore pool")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "followers.db")
        asyncio.run(run(path, args.followers, args.sessions, args.rate, args.seconds, args.max_threads))


if __name__ == "__main__":
    main()
