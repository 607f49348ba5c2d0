"""Many threads of one process appending single events to their own sessions on one store
object (group commit), against one thread alone on the same kind of store, at
``synchronous=normal`` and ``full``; and the same on the PostgreSQL store (its pool)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlitestream import Event, EventType, SQLiteSessionStore

from .measure import CaseResult, add_rows, interleave, ratio_stat
from .peers import Unavailable
from .postgres import PostgresOurs, RawPsycopgSharedCommits
from .settings import Settings
from .workloads import RawApsw, RawSharedCommits, payload


class _Appenders:
    """``threads`` threads, each appending ``per_thread`` single events to its own session
    on ``store``, all started together; records the worst single append seen."""

    def __init__(self, store: Any, threads: int, prefix: str) -> None:
        self.store = store
        self.threads = threads
        self.prefix = prefix
        self.worst_ms = 0.0
        self.counter = 0

    def run(self, per_thread: int) -> float:
        """One repetition: the aggregate rate in events/s."""
        start = threading.Barrier(self.threads + 1)
        worst = [0.0] * self.threads
        base = self.counter

        def appender(index: int) -> None:
            append, session = self.store.append_event_with_sequence, f"{self.prefix}{index}"
            clock = time.perf_counter
            start.wait()
            slowest = 0.0
            for n in range(base, base + per_thread):
                began = clock()
                append(Event(type=EventType.MESSAGE_SENT, session_id=session, data=payload(n)))
                slowest = max(slowest, clock() - began)
            worst[index] = slowest

        workers = [threading.Thread(target=appender, args=(index,)) for index in range(self.threads)]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - began
        self.counter += per_thread
        self.worst_ms = max(self.worst_ms, 1000 * max(worst))
        return self.threads * per_thread / elapsed


class _Writer(Protocol):
    def append(self, n: int) -> None: ...


def _timed_appends(writer: _Writer, count: int) -> float:
    """One repetition of a raw baseline: ``count`` appends, in events/s."""
    began = time.perf_counter()
    writer.append(count)
    return count / (time.perf_counter() - began)


def _warm_up(
    runners: dict[str, _Appenders], sizes: dict[str, int], raws: dict[str, _Writer], raw_sizes: dict[str, int]
) -> None:
    """A tenth of a repetition of every variant, so that none is timed cold."""
    for label, runner in runners.items():
        runner.run(max(1, sizes[label] // 10))
        runner.worst_ms = 0.0
    for label, raw in raws.items():
        raw.append(max(1, raw_sizes[label] // 10))


def _variants(
    runners: dict[str, _Appenders], sizes: dict[str, int], raws: dict[str, _Writer], raw_sizes: dict[str, int]
) -> dict[str, Callable[[], float]]:
    """One repetition of each variant, as a callable giving its rate."""
    variants: dict[str, Callable[[], float]] = {
        label: functools.partial(runner.run, sizes[label]) for label, runner in runners.items()
    }
    variants.update(
        {label: functools.partial(_timed_appends, raw, raw_sizes[label]) for label, raw in raws.items()}
    )
    return variants


def _sqlite_case(settings: Settings, synchronous: str, total: int) -> CaseResult:
    threads = settings.thread_count
    case = CaseResult(
        f"threads-{synchronous}",
        f"{threads} threads appending single events to their own sessions on one store object, "
        f"synchronous={synchronous} (events/s, aggregate)",
        baseline="1 thread",
    )
    directory = settings.workdir / case.name
    directory.mkdir(parents=True, exist_ok=True)
    stores = {
        label: SQLiteSessionStore(
            directory / f"{count}.db", synchronous=synchronous, **settings.store_options()
        )
        for label, count in (("1 thread", 1), (f"{threads} threads", threads))
    }
    runners = {
        "1 thread": _Appenders(stores["1 thread"], 1, "one"),
        f"{threads} threads": _Appenders(stores[f"{threads} threads"], threads, "t"),
    }
    alone, shared = "raw apsw, 1 append a commit", f"raw apsw, {threads} appends a commit"
    raws: dict[str, RawApsw] = {
        alone: RawApsw(directory / "raw-1.db", synchronous),
        shared: RawSharedCommits(directory / f"raw-{threads}.db", synchronous, threads),
    }
    try:
        per_thread = max(1, total // threads)
        sizes = {"1 thread": total, f"{threads} threads": per_thread}
        raw_sizes = dict.fromkeys(raws, threads * per_thread)
        _warm_up(runners, sizes, dict(raws), raw_sizes)
        before = {label: store.group_commit_stats() for label, store in stores.items()}
        samples = interleave(_variants(runners, sizes, dict(raws), raw_sizes), settings.reps)
        notes = {}
        for label, store in stores.items():
            stats, start = store.group_commit_stats(), before[label]
            group = (stats.appends - start.appends) / max(1, stats.transactions - start.transactions)
            notes[label] = f"worst append {runners[label].worst_ms:.1f} ms, {group:.1f} appends per commit"
        notes[shared] = "the limit of shared commits: one thread, no hand-off"
        add_rows(case, samples, "events/s", baseline="1 thread", notes=notes)
    finally:
        for store in stores.values():
            store.close()
        for raw in raws.values():
            raw.close()
    limit = ratio_stat(samples[shared], samples[alone]).median
    case.notes.append(
        f"raw apsw committing {threads} appends a transaction is {limit:.2f}x raw apsw committing "
        f"each alone (same run): no group commit of {threads} threads can gain more on this "
        "schema and machine"
    )
    many = case.row(f"{threads} threads")
    if many is not None and many.ratio is not None:
        want = 4.0 if synchronous == "full" else 1.5
        case.target(
            f"{threads} threads at {synchronous}: >= {want}x one thread",
            many.ratio.median,
            many.ratio.median >= want,
            "x",
        )
        worst = runners[f"{threads} threads"].worst_ms
        case.target(f"{threads} threads at {synchronous}: worst append <= 50 ms", worst, worst <= 50, "ms")
    return case


def _postgres_case(settings: Settings) -> CaseResult:
    threads = settings.pg_writers
    case = CaseResult(
        "threads-postgres",
        f"{threads} threads appending single events to their own sessions on one PostgreSQL store "
        "object (its connection pool) (events/s, aggregate)",
        baseline="1 thread",
    )
    try:
        opened = PostgresOurs(settings.workdir, "normal")
    except Unavailable as exc:
        case.skip("sqlitestream postgres", str(exc))
        return case
    alone, shared = "raw psycopg, 1 append a commit", f"raw psycopg, {threads} appends a commit"
    raws: dict[str, RawPsycopgSharedCommits] = {}
    try:
        raws = {alone: RawPsycopgSharedCommits(1), shared: RawPsycopgSharedCommits(threads)}
        runners: dict[str, _Appenders] = {
            "1 thread": _Appenders(opened.store, 1, "one"),
            f"{threads} threads": _Appenders(opened.store, threads, "t"),
        }
        total = settings.pg_thread_events
        sizes = {"1 thread": total // 4, f"{threads} threads": max(1, total // threads)}
        raw_sizes = {alone: total // 4, shared: threads * max(1, total // threads)}
        _warm_up(runners, sizes, dict(raws), raw_sizes)
        samples = interleave(_variants(runners, sizes, dict(raws), raw_sizes), settings.reps)
        notes = {label: f"worst append {runner.worst_ms:.1f} ms" for label, runner in runners.items()}
        notes["1 thread"] += f"; {opened.durability()}"
        notes[shared] = "the limit of shared commits: one thread, one connection, no hand-off"
        add_rows(case, samples, "events/s", baseline="1 thread", notes=notes)
    finally:
        opened.close()
        for raw in raws.values():
            raw.close()
    limit = ratio_stat(samples[shared], samples[alone]).median
    case.notes.append(
        f"raw psycopg committing {threads} appends a transaction (one pipeline) is {limit:.2f}x raw "
        f"psycopg committing each alone (same run, same server): the most sharing commits can gain "
        "here, with the server on the same cores as its clients"
    )
    many = case.row(f"{threads} threads")
    if many is not None and many.ratio is not None:
        case.target(
            f"{threads} writers on PostgreSQL: >= 6x one writer",
            many.ratio.median,
            many.ratio.median >= 6,
            "x",
        )
    return case


def thread_cases(settings: Settings) -> list[CaseResult]:
    return [
        _sqlite_case(settings, "normal", settings.thread_events),
        _sqlite_case(settings, "full", settings.thread_full_events),
        _postgres_case(settings),
    ]
