"""Cases that need threads or other OS processes: long-poll wake latency (in-process and
cross-process, with simplebroker's watcher and Redis ``XREAD BLOCK`` beside ours), the CPU use
of an idle waiting process, writer contention, memory while following a long session, and
the CLI's start-up time."""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlitestream import Event, EventType, InMemorySessionStore, SQLiteSessionStore

from .bigstore import cached_store
from .measure import CaseResult, Row, Stat, add_rows, percentile
from .peers import REDIS_ADDRESS, Unavailable, _import, _reachable
from .settings import Settings
from .streaming import follow, timed_wakes
from .workloads import RawApsw

_ROOT = Path(__file__).resolve().parents[2]


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")]))
    return env


def _spawn(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.bench.child", *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        cwd=_ROOT,
        env=_python_env(),
    )


def _result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# Wake latency ---------------------------------------------------------------------------------


def _in_process_wakes(store: Any, session: str, count: int) -> list[float]:
    """Milliseconds from just before ``append`` to the waiter thread holding the event."""
    after = store.get_latest_sequence(session)
    latencies: queue.Queue[float] = queue.Queue()
    stream, how = follow(store, session, after=after, wait_timeout_ms=10_000)

    def waiter() -> None:
        for index, event in enumerate(stream):
            latencies.put((time.perf_counter_ns() - event.data["t"]) / 1e6)
            if index + 1 >= count:
                return

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    samples = []
    for _ in range(count):
        time.sleep(0.001)  # let the waiter park in its wait
        store.append_event_with_sequence(
            Event(type=EventType.MESSAGE_SENT, session_id=session, data={"t": time.perf_counter_ns()})
        )
        samples.append(latencies.get(timeout=10))
    thread.join(10)
    _in_process_wakes.how = how  # type: ignore[attr-defined]
    return samples


class _Writer:
    """A wake-writer child process driven line by line."""

    def __init__(self, kind: str, db: str, session: str, seed: int) -> None:
        self.proc = _spawn("wake-writer", kind, db, session, "--seed", str(seed), stdin=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {kind} writer process failed to start")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def _cross_ours(db: Path, session: str, count: int, seed: int, options: dict[str, Any]) -> list[float]:
    store = SQLiteSessionStore(db, **options)
    writer = _Writer("sqlitestream", str(db), session, seed)
    try:
        samples, how = timed_wakes(store, session, writer, count)
        _cross_ours.how = how  # type: ignore[attr-defined]
        return samples
    finally:
        writer.close()
        store.close()


def _cross_simplebroker(db: Path, session: str, count: int, seed: int) -> list[float]:
    simplebroker = _import("simplebroker", "simplebroker")
    arrived: queue.Queue[float] = queue.Queue()

    def handler(body: str, timestamp: int) -> None:
        arrived.put((time.time_ns() - json.loads(body)["t"]) / 1e6)

    simplebroker.Queue(session, db_path=str(db), persistent=False).write(json.dumps({"t": time.time_ns()}))
    watcher = simplebroker.QueueWatcher(session, handler, db=str(db), peek=False)
    thread = watcher.run_in_thread()
    writer = _Writer("simplebroker", str(db), session, seed)
    try:
        arrived.get(timeout=10)  # the priming message: the watcher is up
        samples = []
        for _ in range(count):
            writer.go()
            samples.append(arrived.get(timeout=10))
        return samples
    finally:
        writer.close()
        watcher.stop()
        thread.join(5)


def _cross_redis(key: str, count: int, seed: int) -> list[float]:
    redis = _import("redis", "redis")
    _reachable(REDIS_ADDRESS)
    client = redis.Redis(host=REDIS_ADDRESS[0], port=REDIS_ADDRESS[1], socket_timeout=60)
    client.delete(key)
    writer = _Writer("redis", "-", key, seed)
    try:
        # From the last id seen, never "$": the writer may add before XREAD reaches the server.
        last = "0-0"
        samples = []
        for _ in range(count):
            writer.go()
            reply = client.xread({key: last}, block=10_000, count=1)
            ((_, entries),) = reply
            entry_id, fields = entries[0]
            samples.append((time.time_ns() - int(fields[b"t"])) / 1e6)
            last = entry_id.decode()
        return samples
    finally:
        writer.close()
        client.delete(key)
        client.close()


def wake_cases(settings: Settings) -> list[CaseResult]:
    case = CaseResult("wake", "long-poll wake latency, append to the waiter holding the event (ms)")
    directory = settings.workdir / case.name
    directory.mkdir(parents=True, exist_ok=True)
    per_rep = max(10, settings.wake_count // settings.reps)
    options = settings.store_options()
    p50: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    worst: dict[str, float] = {}

    def record(label: str, samples: list[float]) -> None:
        p50.setdefault(label, []).append(percentile(samples, 0.5))
        p99.setdefault(label, []).append(percentile(samples, 0.99))
        worst[label] = max(worst.get(label, 0.0), max(samples))

    file_store = SQLiteSessionStore(directory / "in-process.db", **options)
    memory_store = InMemorySessionStore()
    runs: dict[str, Any] = {
        "sqlitestream in-process": lambda rep: _in_process_wakes(file_store, "inproc", per_rep),
        "sqlitestream memory in-process": lambda rep: _in_process_wakes(memory_store, "inproc", per_rep),
        "sqlitestream cross-process": lambda rep: _cross_ours(
            directory / "cross.db", "cross", per_rep, rep, options
        ),
    }
    if settings.peers:
        try:
            _import("simplebroker", "simplebroker")
            runs["simplebroker watcher cross-process"] = lambda rep: _cross_simplebroker(
                directory / f"simplebroker-{rep}.db", "wake", per_rep, rep
            )
        except Unavailable as exc:
            case.skip("simplebroker", str(exc))
        try:
            _import("redis", "redis")
            _reachable(REDIS_ADDRESS)
            runs["redis XREAD BLOCK cross-process"] = lambda rep: _cross_redis(
                f"sqlitestream-bench-wake-{os.getpid()}", per_rep, rep
            )
        except Unavailable as exc:
            case.skip("redis", str(exc))
    try:
        from .postgres import check_available, cross_postgres

        check_available()
        runs["sqlitestream postgres cross-process"] = lambda rep: cross_postgres(
            "cross", per_rep, rep, _Writer
        )
    except Unavailable as exc:
        case.skip("sqlitestream postgres", str(exc))
    try:
        names = list(runs)
        for rep in range(settings.reps):
            shift = rep % len(names)
            for label in names[shift:] + names[:shift]:
                record(label, runs[label](rep))
    finally:
        file_store.close()
        memory_store.close()
    for label in runs:
        case.rows.append(Row(f"{label} p50", Stat.of(p50[label]), "ms"))
        case.rows.append(Row(f"{label} p99", Stat.of(p99[label]), "ms", note=f"worst {worst[label]:.2f} ms"))
    how = getattr(_cross_ours, "how", None)
    if how:
        case.notes.append(f"sqlitestream follows with {how}")
    case.notes.append(
        f"{per_rep} wakes per repetition; the writer waits a random 0.5-3 ms after the waiter "
        "is parked, then stamps time.time_ns() into the event and appends"
    )

    def median_of(label: str, which: dict[str, list[float]]) -> float | None:
        return statistics.median(which[label]) if label in which else None

    value = median_of("sqlitestream in-process", p99)
    if value is not None:
        case.target("in-process wake p99 <= 1 ms", value, value <= 1.0, "ms")
    cross50 = median_of("sqlitestream cross-process", p50)
    cross99 = median_of("sqlitestream cross-process", p99)
    if cross50 is not None and cross99 is not None:
        case.target("cross-process wake p50 <= 3 ms", cross50, cross50 <= 3.0, "ms")
        case.target("cross-process wake p99 <= 6 ms", cross99, cross99 <= 6.0, "ms")
        case.target("stretch: cross-process wake p99 <= 1 ms", cross99, cross99 <= 1.0, "ms")
        redis99 = median_of("redis XREAD BLOCK cross-process", p99)
        if redis99 is not None:
            case.target(
                "cross-process p99 within 2x of Redis XREAD BLOCK",
                cross99 / redis99,
                cross99 <= 2 * redis99,
                "x",
            )
    return [case]


def idle_cases(settings: Settings) -> list[CaseResult]:
    case = CaseResult("idle", "CPU of a process parked in a long-poll with nothing arriving (% of one core)")
    directory = settings.workdir / case.name
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "idle.db"
    with SQLiteSessionStore(db) as store:
        store.append_event_with_sequence(Event(type=EventType.MESSAGE_SENT, session_id="idle"))
    kinds = ["sqlitestream"]
    if settings.peers:
        try:
            _import("simplebroker", "simplebroker")
            kinds.append("simplebroker")
        except Unavailable as exc:
            case.skip("simplebroker", str(exc))
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    reps = 1 if settings.quick else 3
    for _ in range(reps):
        for kind in kinds:
            target = db if kind == "sqlitestream" else directory / "simplebroker.db"
            args = ["idle-waiter", kind, str(target), "idle", str(settings.idle_window_s)]
            if settings.poll_interval_ms is not None and kind == "sqlitestream":
                args += ["--poll-interval-ms", str(settings.poll_interval_ms)]
            samples[kind].append(_result(_spawn(*args), settings.idle_window_s + 60)["cpu_pct"])
    labels = {"sqlitestream": "sqlitestream long-poll", "simplebroker": "simplebroker watcher"}
    add_rows(case, {labels[kind]: values for kind, values in samples.items()}, "%")
    ours = case.row("sqlitestream long-poll")
    if ours is not None:
        case.target("idle waiting process <= 3% of a core", ours.stat.median, ours.stat.median <= 3.0, "%")
    poll = settings.poll_interval_ms
    case.notes.append(
        f"poll_interval_ms={'default' if poll is None else poll}; window {settings.idle_window_s} s"
    )
    return [case]


# Contention -------------------------------------------------------------------------------------


def _contend(kind: str, db: Path, processes: int, threads: int, duration: float) -> dict[str, Any]:
    start_at = time.time() + 1.5  # every process has imported and opened before the start
    procs = [
        _spawn("contention", kind, str(db), f"p{p}", str(threads), str(duration), str(start_at))
        for p in range(processes)
    ]
    results = [_result(proc, duration + 120) for proc in procs]
    return {
        "rate": sum(r["count"] for r in results) / duration,
        "max_ms": max(r["max_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "errors": sum(r["errors"] for r in results),
    }


def contention_cases(settings: Settings) -> list[CaseResult]:
    case = CaseResult(
        "contention",
        "4 processes x 2 threads appending single events (own session per thread), synchronous=normal",
        baseline="sqlitestream 1 writer",
    )
    directory = settings.workdir / case.name
    directory.mkdir(parents=True, exist_ok=True)
    variants = {
        "sqlitestream 1 writer": ("sqlitestream", 1, 1),
        "sqlitestream 4x2": ("sqlitestream", 4, 2),
        "raw apsw 1 writer": ("raw", 1, 1),
        "raw apsw 4x2 (SQLite busy handler)": ("raw", 4, 2),
    }
    rates: dict[str, list[float]] = {label: [] for label in variants}
    worst: dict[str, float] = {label: 0.0 for label in variants}
    p99: dict[str, float] = {label: 0.0 for label in variants}
    errors: dict[str, int] = {label: 0 for label in variants}
    for rep in range(settings.contention_reps):
        for label, (kind, processes, threads) in variants.items():
            db = directory / f"{kind}-{processes}x{threads}-{rep}.db"
            if kind == "sqlitestream":
                SQLiteSessionStore(db).close()
            else:
                RawApsw(db, "normal").close()
            result = _contend(kind, db, processes, threads, settings.contention_s)
            rates[label].append(result["rate"])
            worst[label] = max(worst[label], result["max_ms"])
            p99[label] = max(p99[label], result["p99_ms"])
            errors[label] += result["errors"]
    notes = {
        label: f"worst append {worst[label]:.1f} ms, p99 {p99[label]:.2f} ms"
        + (f", {errors[label]} busy errors" if errors[label] else "")
        for label in variants
    }
    add_rows(case, rates, "events/s", baseline="sqlitestream 1 writer", notes=notes)
    row = case.row("sqlitestream 4x2")
    if row is not None and row.ratio is not None:
        case.target("4x2 aggregate >= 0.8x one writer", row.ratio.median, row.ratio.median >= 0.8, "x")
        case.target(
            "4x2 worst single append <= 100 ms",
            worst["sqlitestream 4x2"],
            worst["sqlitestream 4x2"] <= 100,
            "ms",
        )
    case.notes.append(f"{settings.contention_s} s per run, {settings.contention_reps} run(s) each")
    return [case]


# Memory ---------------------------------------------------------------------------------------


def memory_cases(settings: Settings) -> list[CaseResult]:
    count = settings.memory_events
    case = CaseResult(
        "memory", f"following one {count:,}-event session from 0 with the stream, in a child process"
    )
    path = cached_store(settings.cache_dir, 1, count)
    result = _result(_spawn("memory-follower", str(path), "s00000", str(count)), 3600)
    case.rows.append(Row("peak RSS growth", Stat.of([result["peak_growth_mb"]]), "MB"))
    case.rows.append(Row("current RSS growth", Stat.of([result["rss_growth_mb"]]), "MB"))
    case.rows.append(Row("follow rate", Stat.of([result["rate"]]), "events/s"))
    case.notes.append(f"followed with {result['how']}; baseline taken after the first 1,000 events")
    growth = result["peak_growth_mb"]
    case.target("memory growth while following <= 50 MB", growth, growth <= 50, "MB")
    return [case]


# CLI start-up -----------------------------------------------------------------------------------


def _wall(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, cwd=_ROOT, env=_python_env())
        times.append(1000 * (time.perf_counter() - started))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[:200]}")
    return times


def cli_cases(settings: Settings) -> list[CaseResult]:
    case = CaseResult(
        "cli", "`python -m sqlitestream --db FILE latest SESSION`, wall time of a whole process (ms)"
    )
    directory = settings.workdir / case.name
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "cli.db"
    with SQLiteSessionStore(db) as store:
        store.append_event_with_sequence(Event(type=EventType.MESSAGE_SENT, session_id="s1"))
    if not (_ROOT / "sqlitestream" / "cli.py").exists():
        case.skip("sqlitestream CLI", "sqlitestream/cli.py does not exist yet")
        return [case]
    variants = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import sqlitestream'": [sys.executable, "-c", "import sqlitestream"],
        "sqlitestream latest": [sys.executable, "-m", "sqlitestream", "--db", str(db), "latest", "s1"],
    }
    try:
        _wall(variants["sqlitestream latest"], 1)
    except RuntimeError as exc:
        case.skip("sqlitestream CLI", str(exc))
        return [case]
    samples: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(settings.cli_runs):  # interleaved, one process each
        for label, args in variants.items():
            samples[label].extend(_wall(args, 1))
    add_rows(case, samples, "ms")
    row = case.row("sqlitestream latest")
    if row is not None:
        case.target("CLI `latest` median <= 120 ms wall", row.stat.median, row.stat.median <= 120, "ms")
    return [case]
