"""Contention stress: several processes x several threads appending to the same store, with
readers and long-poll followers running, and proof that nothing went wrong.

Each worker process runs ``--threads`` appender threads (single appends and small batches,
some with ``expected_sequence`` and retry), ``--readers`` reader threads running filtered
queries, and one long-poll follower per session. Appenders write to shared sessions (every
process) and to their process's private session. Afterwards the parent checks:

* no append raised (in particular no ``StoreBusyError`` within ``--busy-timeout-ms``);
* every session's sequences are exactly 1..N with N the number of events appended to it, every
  acknowledged event is stored at the sequence it was acknowledged with, no id twice;
* in every process, the follower of each session saw every event exactly once, in order;
* every reader result was in sequence order, and latest sequences never went backwards;
* ``PRAGMA integrity_check`` is ``ok``.

It prints the worst and 99th-percentile append latency (a measurement, not a check).

    python tools/stress.py --processes 4 --threads 4 --events 2000 --shared-sessions 2

exits 1 on any violation. ``tests/test_contention.py`` runs a small version.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

if importlib.util.find_spec("sqlitestream") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlitestream import Event, SequenceConflictError, SQLiteSessionStore

if __package__ in (None, ""):  # run as a script: tools/ is then not a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import forked

forked.configure(preload=["tools.stress"])
_CAS_SESSION = "cas"


@dataclass(frozen=True)
class Plan:
    """What every worker does; the parent derives the expected totals from it."""

    path: str
    processes: int
    threads: int
    readers: int
    events_per_thread: int
    shared_sessions: int
    cas_per_thread: int
    busy_timeout_ms: int
    follow_timeout_s: float
    seed: int

    def sessions_of(self, worker: int) -> list[str]:
        return [f"shared-{n}" for n in range(self.shared_sessions)] + [f"private-{worker}"]

    def all_sessions(self) -> list[str]:
        shared = [f"shared-{n}" for n in range(self.shared_sessions)]
        return shared + [f"private-{w}" for w in range(self.processes)] + [_CAS_SESSION]

    def expected_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(self.all_sessions(), 0)
        for worker in range(self.processes):
            sessions = self.sessions_of(worker)
            for thread in range(self.threads):
                for index in range(self.events_per_thread):
                    totals[sessions[(thread + index) % len(sessions)]] += 1
        totals[_CAS_SESSION] = self.processes * self.threads * self.cas_per_thread
        return totals


# The worker process ------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def worker_main(plan: Plan, worker: int) -> dict[str, Any]:
    """Run one process's threads after the parent says go; return its report."""
    totals = plan.expected_totals()
    store = SQLiteSessionStore(plan.path, busy_timeout_ms=plan.busy_timeout_ms)
    errors: list[str] = []
    latencies: list[float] = []
    acked: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    print(json.dumps({"ready": worker}), flush=True)
    sys.stdin.readline()  # the start signal: every process begins at once

    def append(thread: int) -> None:
        rng = random.Random(plan.seed * 1_000_003 + worker * 1009 + thread)
        sessions = plan.sessions_of(worker)
        planned = [sessions[(thread + index) % len(sessions)] for index in range(plan.events_per_thread)]
        done = 0
        mine: list[tuple[str, str, int]] = []
        times: list[float] = []
        try:
            while done < len(planned):
                size = 1 if rng.random() < 0.6 else rng.randint(2, 5)
                chunk = planned[done : done + size]
                events = [
                    Event(
                        "message_sent",
                        session_id,
                        id=f"w{worker}t{thread}e{done + k}",
                        data={"w": worker, "t": thread},
                    )
                    for k, session_id in enumerate(chunk)
                ]
                started = time.monotonic()
                if len(events) == 1:
                    stored = [store.append_event_with_sequence(events[0])]
                else:
                    stored = store.append_events(events)
                times.append(time.monotonic() - started)
                mine += [(e.id, e.session_id, e.sequence_number or 0) for e in stored]
                done += len(events)
            for index in range(plan.cas_per_thread):  # optimistic appends: read, then expect
                event = Event("message_sent", _CAS_SESSION, id=f"w{worker}t{thread}cas{index}")
                while True:
                    expected = store.get_latest_sequence(_CAS_SESSION)
                    started = time.monotonic()
                    try:
                        stored_one = store.append_event_with_sequence(event, expected_sequence=expected)
                    except SequenceConflictError:
                        continue
                    times.append(time.monotonic() - started)
                    mine.append((stored_one.id, stored_one.session_id, stored_one.sequence_number or 0))
                    break
        except Exception as exc:
            with lock:
                errors.append(f"appender {worker}/{thread}: {type(exc).__name__}: {exc}")
        with lock:
            acked.extend(mine)
            latencies.extend(times)

    appenders_done = threading.Event()
    follower_reports: dict[str, dict[str, Any]] = {}

    def follow(session_id: str) -> None:
        cursor, seen, problems = 0, 0, []
        deadline = time.monotonic() + plan.follow_timeout_s
        try:
            while cursor < totals[session_id] and time.monotonic() < deadline:
                for event in store.get_events(session_id, after=cursor, limit=50, wait_timeout_ms=500):
                    if event.sequence_number != cursor + 1:
                        problems.append(f"after {cursor} got {event.sequence_number}")
                    cursor = event.sequence_number or cursor
                    seen += 1
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
        with lock:
            follower_reports[session_id] = {"seen": seen, "cursor": cursor, "problems": problems[:10]}

    reader_problems: list[str] = []
    reads = [0]

    def read(thread: int) -> None:
        rng = random.Random(plan.seed + worker * 31 + thread)
        latest_seen: dict[str, int] = {}
        sessions = plan.all_sessions()
        try:
            while not appenders_done.is_set():
                session_id = rng.choice(sessions)
                latest = store.get_latest_sequence(session_id)
                if latest < latest_seen.get(session_id, 0):
                    reader_problems.append(
                        f"{session_id}: latest went back from {latest_seen[session_id]} to {latest}"
                    )
                latest_seen[session_id] = latest
                after = rng.randint(0, max(latest, 1))
                events = store.get_events(
                    session_id, after=after, before=after + 40, limit=rng.randint(1, 30)
                )
                seqs = [e.sequence_number or 0 for e in events]
                if seqs != list(range(after + 1, after + 1 + len(seqs))):
                    reader_problems.append(f"{session_id}: a page after {after} was {seqs[:10]}")
                if any(e.session_id != session_id for e in events):
                    reader_problems.append(f"{session_id}: an event of another session")
                typed = store.get_events(session_id, type="message_sent", limit=5, after=after)
                if [e.sequence_number for e in typed] != seqs[: len(typed)] and len(seqs) >= len(typed):
                    reader_problems.append(f"{session_id}: a typed page disagrees with the plain page")
                reads[0] += 2
        except Exception as exc:
            reader_problems.append(f"reader: {type(exc).__name__}: {exc}")

    followers = [threading.Thread(target=follow, args=(s,)) for s in plan.all_sessions()]
    readers = [threading.Thread(target=read, args=(n,)) for n in range(plan.readers)]
    appenders = [threading.Thread(target=append, args=(n,)) for n in range(plan.threads)]
    started = time.monotonic()
    for thread in followers + readers + appenders:
        thread.start()
    for thread in appenders:
        thread.join()
    append_seconds = time.monotonic() - started
    appenders_done.set()
    for thread in readers + followers:
        thread.join()
    store.close()
    return {
        "worker": worker,
        "errors": errors,
        "acked": acked,
        "latencies": latencies,
        "append_seconds": append_seconds,
        "followers": follower_reports,
        "reader_problems": reader_problems[:20],
        "reads": reads[0],
    }


# The parent ---------------------------------------------------------------------------------------


@dataclass
class Report:
    appends: int = 0
    events: int = 0
    reads: int = 0
    seconds: float = 0.0
    worst_latency_ms: float = 0.0
    p99_latency_ms: float = 0.0
    median_latency_ms: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            (
                f"events appended: {self.events} in {self.appends} calls over {self.seconds:.2f} s "
                f"({self.events / self.seconds if self.seconds else 0:.0f} events/s); "
                f"reader queries: {self.reads}"
            ),
            (
                f"append latency: median {self.median_latency_ms:.2f} ms, "
                f"p99 {self.p99_latency_ms:.2f} ms, worst {self.worst_latency_ms:.2f} ms"
            ),
            f"violations: {len(self.violations)}",
            *(f"  {v}" for v in self.violations[:50]),
        ]


def _start_worker(plan: Plan, worker: int) -> forked.Child:
    # By this module's name: run as a script or with -m, this module is __main__, which the
    # server's children (tools.forked) cannot import by that name.
    from tools.stress import worker_process

    return forked.Child(worker_process, (plan.__dict__, worker), stdin=True)


def worker_process(plan: dict[str, Any], worker: int) -> None:
    """What a worker process runs: :func:`worker_main`, its report printed as JSON."""
    print(json.dumps(worker_main(Plan(**plan), worker)))


def run(plan: Plan) -> Report:
    """Run the workers, then check everything they and the file say."""
    SQLiteSessionStore(plan.path).close()  # create the schema once, before the race
    report = Report(totals=plan.expected_totals())
    workers = [_start_worker(plan, n) for n in range(plan.processes)]
    for proc in workers:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith('{"ready"'):
            report.violations.append(
                f"a worker did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
            )
    started = time.monotonic()
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in workers:
        out, err = proc.communicate()
        if proc.returncode != 0:
            report.violations.append(f"a worker exited with {proc.returncode}: {err[-2000:]}")
            continue
        results.append(json.loads(out))
    report.seconds = time.monotonic() - started

    latencies: list[float] = []
    acked: dict[str, tuple[str, int]] = {}
    positions: dict[tuple[str, int], str] = {}
    for result in results:
        report.violations += result["errors"] + result["reader_problems"]
        latencies += result["latencies"]
        report.reads += result["reads"]
        for event_id, session_id, seq in result["acked"]:
            if event_id in acked:
                report.violations.append(f"event {event_id} acknowledged twice")
            acked[event_id] = (session_id, seq)
            other = positions.setdefault((session_id, seq), event_id)
            if other != event_id:
                report.violations.append(f"{session_id} sequence {seq} given to {other} and {event_id}")
        for session_id, follower in result["followers"].items():
            expected = report.totals[session_id]
            if follower["seen"] != expected or follower["cursor"] != expected or follower["problems"]:
                report.violations.append(
                    f"worker {result['worker']} follower of {session_id}: saw {follower['seen']} of "
                    f"{expected} (cursor {follower['cursor']}) {follower['problems']}"
                )
    report.appends = len(latencies)
    report.events = len(acked)
    report.worst_latency_ms = max(latencies, default=0.0) * 1000
    report.p99_latency_ms = _percentile(latencies, 0.99) * 1000
    report.median_latency_ms = _percentile(latencies, 0.5) * 1000
    report.violations += check_file(plan, acked, report.totals)
    return report


def check_file(plan: Plan, acked: dict[str, tuple[str, int]], totals: dict[str, int]) -> list[str]:
    violations = []
    if sum(totals.values()) != len(acked):
        violations.append(f"{len(acked)} events acknowledged, {sum(totals.values())} planned")
    with SQLiteSessionStore(plan.path) as store:
        for session_id, total in totals.items():
            events = store.get_events(session_id)
            seqs = [e.sequence_number for e in events]
            if seqs != list(range(1, total + 1)):
                violations.append(f"{session_id}: stored sequences are not 1..{total} (got {len(seqs)})")
            if store.get_latest_sequence(session_id) != total:
                violations.append(
                    f"{session_id}: latest sequence {store.get_latest_sequence(session_id)} != {total}"
                )
            for event in events:
                if acked.get(event.id) != (session_id, event.sequence_number):
                    violations.append(
                        f"{event.id} stored at {session_id}/{event.sequence_number}, acknowledged {acked.get(event.id)}"
                    )
    conn = apsw.Connection(plan.path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    if rows != ["ok"]:
        violations.append(f"integrity_check: {rows[:5]}")
    return violations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="appender threads per process")
    parser.add_argument("--readers", type=int, default=2, help="reader threads per process")
    parser.add_argument("--events", type=int, default=500, help="events per appender thread")
    parser.add_argument("--cas", type=int, default=20, help="expected_sequence appends per appender thread")
    parser.add_argument("--shared-sessions", type=int, default=2)
    parser.add_argument("--busy-timeout-ms", type=int, default=5000)
    parser.add_argument("--follow-timeout-s", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="sqlitestream-stress-"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        path=str(workdir / "stress.db"),
        processes=args.processes,
        threads=args.threads,
        readers=args.readers,
        events_per_thread=args.events,
        shared_sessions=args.shared_sessions,
        cas_per_thread=args.cas,
        busy_timeout_ms=args.busy_timeout_ms,
        follow_timeout_s=args.follow_timeout_s,
        seed=args.seed,
    )
    report = run(plan)
    print(
        f"stress: {plan.processes} processes x {plan.threads} appender threads + {plan.readers} readers "
        f"+ {len(plan.all_sessions())} followers each, busy timeout {plan.busy_timeout_ms} ms"
    )
    for line in report.lines():
        print(line)
    if not report.violations and args.dir is None:
        shutil.rmtree(workdir)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
