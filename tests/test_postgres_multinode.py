"""Several OS processes ("app nodes"), each with its own PostgresSessionStore and connections,
append to the same sessions while other processes follow them by long-poll.

Checks: every session's log is exactly 1..N; every follower saw every event once, in order;
each writer's own appends got increasing sequence numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from support import processes, run_followers_then_writers

from sqlitestream import Event
from sqlitestream.postgres import PostgresSessionStore

SESSIONS = ("node-a", "node-b", "node-c")
WRITERS = 3
FOLLOWERS = 2
PER_WRITER = 30  # events each writer appends to each session
EXPECTED = WRITERS * PER_WRITER
DEADLINE_S = 90.0


def _write(dsn: str, schema: str, writer: int, start: Any, out: str) -> None:
    """A writer node: single appends and small batches, all sessions interleaved."""
    appended: list[tuple[str, str, int]] = []
    with PostgresSessionStore(dsn, schema=schema, pool_size=2) as store:
        assert start.wait(DEADLINE_S)
        index = 0
        while index < PER_WRITER:
            if index % 4 == 3 and index + 2 <= PER_WRITER:
                batch = [
                    Event(
                        "message_streamed",
                        session,
                        id=f"w{writer}-{session}-{index + k}",
                        data={"writer": writer, "i": index + k},
                    )
                    for k in range(2)
                    for session in SESSIONS
                ]
                stored = store.append_events(batch)
                appended.extend((e.session_id, e.id, e.sequence_number or 0) for e in stored)
                index += 2
                continue
            for session in SESSIONS:
                event = store.append_event_with_sequence(
                    Event(
                        "message_sent",
                        session,
                        id=f"w{writer}-{session}-{index}",
                        data={"writer": writer, "i": index},
                    )
                )
                appended.append((event.session_id, event.id, event.sequence_number or 0))
            index += 1
    Path(out).write_text(json.dumps(appended), encoding="utf-8")


def _follow(dsn: str, schema: str, ready: Any, out: str) -> None:
    """A follower node: one thread per session long-polls from cursor 0 to the expected end."""
    import threading

    seen: dict[str, list[tuple[int, str]]] = {session: [] for session in SESSIONS}
    with PostgresSessionStore(dsn, schema=schema, pool_size=len(SESSIONS)) as store:
        deadline = time.monotonic() + DEADLINE_S

        def follow(session: str) -> None:
            cursor = 0
            while len(seen[session]) < EXPECTED and time.monotonic() < deadline:
                for event in store.get_events(session, after=cursor, limit=7, wait_timeout_ms=5_000):
                    seen[session].append((event.sequence_number or 0, event.id))
                    cursor = event.sequence_number or cursor

        threads = [threading.Thread(target=follow, args=(session,)) for session in SESSIONS]
        for thread in threads:
            thread.start()
        ready.set()
        for thread in threads:
            thread.join()
    Path(out).write_text(json.dumps(seen), encoding="utf-8")


def test_nodes_append_and_follow_the_same_sessions(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    PostgresSessionStore(pg_dsn, schema=pg_schema).close()  # create the schema once up front
    context = processes()
    start = context.Event()
    readies = [context.Event() for _ in range(FOLLOWERS)]
    followers = [
        context.Process(target=_follow, args=(pg_dsn, pg_schema, readies[n], str(tmp_path / f"f{n}.json")))
        for n in range(FOLLOWERS)
    ]
    writers = [
        context.Process(target=_write, args=(pg_dsn, pg_schema, n, start, str(tmp_path / f"w{n}.json")))
        for n in range(WRITERS)
    ]
    run_followers_then_writers(followers, writers, readies, start, DEADLINE_S)

    with PostgresSessionStore(pg_dsn, schema=pg_schema) as store:
        log = {
            session: [(e.sequence_number, e.id) for e in store.get_events(session)] for session in SESSIONS
        }
        assert store.check_integrity().ok
    for session, entries in log.items():
        assert [seq for seq, _ in entries] == list(range(1, EXPECTED + 1)), session
        assert len({event_id for _, event_id in entries}) == EXPECTED
        assert {event_id for _, event_id in entries} == {
            f"w{w}-{session}-{i}" for w in range(WRITERS) for i in range(PER_WRITER)
        }
    for n in range(FOLLOWERS):
        seen = json.loads((tmp_path / f"f{n}.json").read_text(encoding="utf-8"))
        for session in SESSIONS:
            assert [tuple(item) for item in seen[session]] == log[session], (n, session)
    for n in range(WRITERS):
        appended = json.loads((tmp_path / f"w{n}.json").read_text(encoding="utf-8"))
        for session in SESSIONS:
            mine = [(event_id, seq) for s, event_id, seq in appended if s == session]
            assert len(mine) == PER_WRITER
            assert [seq for _, seq in mine] == sorted(seq for _, seq in mine)
            assert all(log[session][seq - 1] == (seq, event_id) for event_id, seq in mine)
