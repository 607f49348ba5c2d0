"""The PostgreSQL store's listener in a process with many open files: a ``serve`` node with
2,000 SSE followers holds over 1,024 sockets, so the descriptors of a listener started then
are past what ``select()`` can watch."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from sqlitestream import Event
from sqlitestream.postgres import PostgresSessionStore

pytestmark = [
    pytest.mark.usefixtures("pg_dsn"),
    pytest.mark.skipif(sys.platform == "win32", reason="file descriptor numbers are POSIX"),
]

HELD = 1100  # descriptors opened first, so the listener's pipe and socket come after 1,024


@pytest.fixture
def many_open_files() -> Iterator[None]:
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(HELD)]
    try:
        yield
    finally:
        for descriptor in held:
            os.close(descriptor)


def _listening(dsn: str, application_name: str) -> bool:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            (application_name,),
        ).fetchone()
    return row is not None and row[0] > 0


def _wait_for_the_next(store: PostgresSessionStore, after: int, got: list[list[str]]) -> None:
    got.append([event.id for event in store.get_events("s", after=after, wait_timeout_ms=20_000)])


@pytest.mark.usefixtures("many_open_files")
def test_a_listener_past_descriptor_1024_still_wakes_its_followers(pg_dsn: str, pg_store_schema: str) -> None:
    # The fallback poll is slower than the test: only the listener's NOTIFY can wake the follower.
    name = f"listener-fds-{os.getpid()}"
    with (
        PostgresSessionStore(
            pg_dsn, schema=pg_store_schema, poll_interval_ms=600_000, application_name=name
        ) as follower,
        PostgresSessionStore(pg_dsn, schema=pg_store_schema) as writer,
    ):
        for round_ in range(1, 4):
            got: list[list[str]] = []
            waiting = threading.Thread(target=_wait_for_the_next, args=(follower, round_ - 1, got))
            waiting.start()
            deadline = time.monotonic() + 20
            pause = threading.Event()
            while not _listening(pg_dsn, name) and time.monotonic() < deadline:
                pause.wait(0.01)
            writer.append_event(Event("message_sent", "s", id=f"e{round_}"))
            waiting.join(30)
            assert got == [[f"e{round_}"]], f"round {round_}"
