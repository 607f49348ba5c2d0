"""The other OS processes of the cross-process cases: ``python -m tools.bench.child ROLE ...``.

Each role prints one JSON line with its results on stdout (the wake writer prints ``ready``
and then acts on each ``go`` line read from stdin). Times shared with the parent are
``time.time_ns()`` stamps, one clock for every process on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import threading
import time
from typing import Any

from sqlitestream import (
    Event,
    EventType,
    SQLiteSessionStore,
    StoreBusyError,
    StoreClosedError,
)


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# Wake latency: the writer side ------------------------------------------------------------------


def wake_writer(kind: str, db: str, session: str, seed: int) -> None:
    """On each ``go`` from the parent: wait 0.5-3 ms (so the parent is parked in its wait, at
    a random phase of any poll), stamp the time, append one event carrying the stamp."""
    rng = random.Random(seed)
    if kind == "sqlitestream":
        store = SQLiteSessionStore(db)

        def append(stamp: int) -> None:
            store.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id=session, data={"t": stamp})
            )

        close = store.close
    elif kind == "simplebroker":
        import simplebroker

        queue = simplebroker.Queue(session, db_path=db, persistent=True)

        def append(stamp: int) -> None:
            queue.write(json.dumps({"t": stamp}))

        close = queue.close
    elif kind == "redis":
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)

        def append(stamp: int) -> None:
            client.xadd(session, {"t": str(stamp)})

        close = client.close
    elif kind == "postgres":
        from sqlitestream import open_store

        pg_store = open_store(db)  # db: a postgresql:// location with its schema

        def append(stamp: int) -> None:
            pg_store.append_event_with_sequence(
                Event(type=EventType.MESSAGE_SENT, session_id=session, data={"t": stamp})
            )

        close = pg_store.close
    else:
        raise SystemExit(f"unknown writer kind {kind!r}")
    _emit({"ready": True})
    for line in sys.stdin:
        if line.strip() != "go":
            break
        time.sleep(rng.uniform(0.0005, 0.003))
        append(time.time_ns())
    close()


# Idle CPU of a waiting process ----------------------------------------------------------------


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def idle_waiter(kind: str, db: str, session: str, window_s: float, poll_interval_ms: int | None) -> None:
    """Park a long-poll (or a peer's watcher) with nothing arriving; report this process's
    CPU use over ``window_s`` as a percentage of one core."""
    if kind == "sqlitestream":
        options: dict[str, Any] = {} if poll_interval_ms is None else {"poll_interval_ms": poll_interval_ms}
        store = SQLiteSessionStore(db, **options)
        after = store.get_latest_sequence(session)

        def wait() -> None:
            try:
                store.get_events(session, after=after, wait_timeout_ms=int((window_s + 30) * 1000))
            except StoreClosedError:
                pass

        stop = store.close
    elif kind == "simplebroker":
        import simplebroker

        watcher = simplebroker.QueueWatcher(session, lambda body, ts: None, db=db, peek=True)

        def wait() -> None:
            watcher.run_forever()

        def stop() -> None:
            watcher.stop()
    else:
        raise SystemExit(f"unknown waiter kind {kind!r}")
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.5)  # past start-up work: only the steady wait is measured
    cpu, wall = _cpu_seconds(), time.monotonic()
    time.sleep(window_s)
    cpu, wall = _cpu_seconds() - cpu, time.monotonic() - wall
    stop()
    thread.join(5)
    _emit({"cpu_pct": 100.0 * cpu / wall, "window_s": wall})


# Contention -------------------------------------------------------------------------------------


def contention_writer(
    kind: str, db: str, prefix: str, threads: int, duration_s: float, start_at: float
) -> None:
    """``threads`` threads sharing this process's store, each appending single events to its
    own session from ``start_at`` (a shared wall-clock time) for ``duration_s``."""
    if kind == "sqlitestream":
        store = SQLiteSessionStore(db, busy_timeout_ms=30_000)

        def make_append(session: str) -> Any:
            def append(index: int) -> None:
                store.append_event_with_sequence(
                    Event(type=EventType.MESSAGE_SENT, session_id=session, data={"i": index})
                )

            return append

        close = store.close
    elif kind == "raw":
        from .workloads import RawApsw

        lock = threading.Lock()  # one connection per process, like the store's writer
        raw = RawApsw(__import__("pathlib").Path(db), "normal")
        raw.conn.set_busy_timeout(30_000)  # SQLite's own busy handler and back-off

        def make_append(session: str) -> Any:
            writer = RawApsw.__new__(RawApsw)
            writer.conn, writer.session, writer.counter = raw.conn, session, 0

            def append(index: int) -> None:
                with lock:
                    writer.append(1)

            return append

        close = raw.close
    else:
        raise SystemExit(f"unknown contention kind {kind!r}")
    results: list[tuple[int, list[float], int]] = []

    def run(session: str) -> None:
        append = make_append(session)
        latencies: list[float] = []
        errors = 0
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        deadline = time.monotonic() + duration_s
        index = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                append(index)
            except StoreBusyError:
                errors += 1
            latencies.append(time.perf_counter() - started)
            index += 1
        results.append((index, latencies, errors))

    workers = [threading.Thread(target=run, args=(f"{prefix}t{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    close()
    latencies = sorted(value for _, values, _ in results for value in values)
    _emit(
        {
            "count": sum(count for count, _, _ in results),
            "errors": sum(errors for _, _, errors in results),
            "max_ms": 1000 * latencies[-1] if latencies else 0.0,
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        }
    )


# Memory while following a long session ------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_follower(db: str, session: str, expected: int) -> None:
    """Follow a session from 0 with the stream until ``expected`` events were seen; report how
    much the process's memory grew on the way (peak RSS and current RSS)."""
    from .streaming import follow

    store = SQLiteSessionStore(db, readonly=True)
    stream, how = follow(store, session, after=0, wait_timeout_ms=1000)
    seen = 0
    last = 0
    started = time.monotonic()
    for event in stream:  # the first pages warm up allocators and caches before the baseline
        seen += 1
        last = event.sequence_number or last
        if seen == 1000:
            break
    base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base_rss = _rss_mb()
    for event in stream:
        seen += 1
        if event.sequence_number != last + 1:
            raise SystemExit(f"out of order: {event.sequence_number} after {last}")
        last = event.sequence_number
        if seen >= expected:
            break
    elapsed = time.monotonic() - started
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    _emit(
        {
            "seen": seen,
            "peak_growth_mb": peak - base_peak,
            "rss_growth_mb": _rss_mb() - base_rss,
            "rate": seen / elapsed,
            "how": how,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.child")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("wake-writer")
    p.add_argument("kind")
    p.add_argument("db")
    p.add_argument("session")
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("idle-waiter")
    p.add_argument("kind")
    p.add_argument("db")
    p.add_argument("session")
    p.add_argument("window", type=float)
    p.add_argument("--poll-interval-ms", type=int, default=None)
    p = sub.add_parser("contention")
    p.add_argument("kind")
    p.add_argument("db")
    p.add_argument("prefix")
    p.add_argument("threads", type=int)
    p.add_argument("duration", type=float)
    p.add_argument("start_at", type=float)
    p = sub.add_parser("memory-follower")
    p.add_argument("db")
    p.add_argument("session")
    p.add_argument("expected", type=int)
    args = parser.parse_args()
    if args.role == "wake-writer":
        wake_writer(args.kind, args.db, args.session, args.seed)
    elif args.role == "idle-waiter":
        idle_waiter(args.kind, args.db, args.session, args.window, args.poll_interval_ms)
    elif args.role == "contention":
        contention_writer(args.kind, args.db, args.prefix, args.threads, args.duration, args.start_at)
    else:
        memory_follower(args.db, args.session, args.expected)


if __name__ == "__main__":
    main()
