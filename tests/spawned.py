"""What the child processes of some tests run, started with ``support.processes()``.

A child unpickles its function, and so imports the module the function is defined in. In a test
module that means pytest too (and hypothesis for some), about 0.2-0.5 s of CPU in every child,
more than the work many of them do; here a child imports only the package, which the context's
server process has imported already.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from sqlitestream import ConflictError, Event, FeedStore, ScriptedAdapter, SessionManager, SQLiteSessionStore

IMPORTED_BY = os.getpid()
"""The process that imported this module: the server of ``support.processes()``, not a child."""


def run_code(code: str, argv: list[str], report: Any) -> None:
    """Run ``code`` as ``python -c code *argv`` runs it; send ``report`` (a pipe's end) what it
    printed, or its traceback, as ``(ok, text)``."""
    sys.argv = ["-c", *argv]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "<code>", "exec"), {"__name__": "__main__"})
    except BaseException as exc:
        if not (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            # The end of a long traceback is the part that says what failed; the pipe stays short.
            report.send((False, traceback.format_exc()[-4000:]))
            raise SystemExit(1) from None
    report.send((True, printed.getvalue()))


def echo_upper(environment_variable: str) -> int:
    """Print ``environment_variable``'s value, then each line of stdin in capitals; exit with the
    number of lines read."""
    print(os.environ.get(environment_variable, ""), flush=True)
    count = 0
    for line in sys.stdin:
        print(line.upper(), end="")
        count += 1
    return count


def fail(message: str) -> None:
    raise RuntimeError(message)


def start_shared_session(path: str, agent: str, ready: Any, go: Any, outcomes: Any) -> None:
    """Open the store, release ``ready``, and once ``go`` is set start the session
    ``ses-shared`` for ``agent``; put ``"created"`` or ``"conflict"`` in ``outcomes``."""
    with SQLiteSessionStore(path) as store:
        manager = SessionManager(store, ScriptedAdapter([], name="fake"))
        ready.release()
        go.wait()
        try:
            manager.start_session(agent_id=agent, session_id="ses-shared")
            outcomes.put("created")
        except ConflictError:
            outcomes.put("conflict")


def append_until_stopped(
    path: str, sessions: list[str], per_batch: int, payload: int, stop: Any, started: Any
) -> None:
    """Append batches of ``per_batch`` events (about ``payload`` bytes each, round-robin over
    ``sessions``) until ``stop`` is set; ``started`` once three batches are committed."""
    with SQLiteSessionStore(path) as store:
        batches = 0
        while not stop.is_set():
            store.append_events(
                [
                    Event("message_sent", sessions[n % len(sessions)], data={"text": "x" * payload})
                    for n in range(per_batch)
                ]
            )
            batches += 1
            if batches == 3:
                started.set()


def append_one_by_one(path: str, session_id: str, count: int) -> None:
    with SQLiteSessionStore(path) as store:
        for _ in range(count):
            store.append_event(Event("message_sent", session_id))


# test_sqlite_store.py -------------------------------------------------------------------------


def append_worker(path: str, session_ids: list[str], count: int, start: Any) -> None:
    start.wait()
    with SQLiteSessionStore(path) as store:
        for index in range(count):
            for session_id in session_ids:
                store.append_event(Event("message_sent", session_id, data={"pid": os.getpid(), "i": index}))


def follow_worker(path: str, session_id: str, expected: int, ready: Any, out: Any) -> None:
    seen: list[int] = []
    with SQLiteSessionStore(path) as store:
        ready.set()
        cursor = 0
        deadline = time.monotonic() + 60
        while len(seen) < expected and time.monotonic() < deadline:
            for event in store.get_events(session_id, after=cursor, wait_timeout_ms=5000):
                seen.append(event.sequence_number or 0)
                cursor = event.sequence_number or 0
    out.put(seen)


def open_and_append(path: str, start: Any, out: Any) -> None:
    start.wait()
    try:
        with SQLiteSessionStore(path) as store:
            store.append_event(Event("message_sent", "s1"))
        out.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        out.put(f"{type(exc).__name__}: {exc}")


# test_feed_processes.py -----------------------------------------------------------------------

FEED_DEADLINE_S = 120.0


def open_feed_store(where: dict[str, str]) -> FeedStore:
    if "path" in where:
        return SQLiteSessionStore(where["path"], busy_timeout_ms=30_000)
    from sqlitestream.postgres import PostgresSessionStore

    return PostgresSessionStore(where["dsn"], schema=where["schema"], pool_size=2)


def write_feed(where: dict[str, str], writer: int, rounds: int, start: Any, out: str) -> None:
    """Each round: one single append to the writer's own session, one to a shared one, and a
    batch of 3 across the shared ones; the (id, position) of each, acknowledged, into ``out``."""
    acknowledged: list[tuple[str, int]] = []
    with open_feed_store(where) as store:
        assert start.wait(FEED_DEADLINE_S)
        for n in range(rounds):
            for session in (f"own-{writer}", f"shared-{n % 3}"):
                stored = store.append_event(Event("message_sent", session, id=f"w{writer}-{n}-{session}"))
                acknowledged.append((stored.id, stored.position))
            batch = [
                Event("message_streamed", f"shared-{(n + k) % 3}", id=f"w{writer}-{n}-b{k}") for k in range(3)
            ]
            acknowledged.extend((e.id, e.position) for e in store.append_events(batch))
    Path(out).write_text(json.dumps(acknowledged), encoding="utf-8")


def follow_feed(where: dict[str, str], expected: int, ready: Any, out: str) -> None:
    """Read the feed by long-poll from position 0 until ``expected`` events were seen."""
    seen: list[tuple[int, str]] = []
    with open_feed_store(where) as store:
        ready.set()
        deadline = time.monotonic() + FEED_DEADLINE_S
        after = 0
        while len(seen) < expected and time.monotonic() < deadline:
            for event in store.read_feed(after=after, limit=13, wait_timeout_ms=2_000):
                seen.append((event.position, event.id))
                after = event.position
    Path(out).write_text(json.dumps(seen), encoding="utf-8")


def wait_for_one_feed_event(where: dict[str, str], after: int, ready: Any, out: str) -> None:
    with open_feed_store(where) as store:
        ready.set()
        # 60 s: without a cross-process wake-up this returns long after the test's deadline.
        page = store.read_feed(after=after, wait_timeout_ms=60_000)
    Path(out).write_text(json.dumps([event.id for event in page]), encoding="utf-8")
