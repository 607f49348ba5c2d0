"""The asyncio facade (sqlitestream.aio.AsyncStore) on every built-in store: the contract as
coroutines, long-polls that hold no thread while waiting, cancellation and closing."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DelegatingStore, await_until, child_env

from sqlitestream import (
    Event,
    InMemorySessionStore,
    Run,
    Session,
    SessionNotFoundError,
    SessionStore,
    SQLiteSessionStore,
    StoreClosedError,
    ValidationError,
)
from sqlitestream.aio import AsyncStore

KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    opened: SessionStore
    if request.param == "memory":
        opened = InMemorySessionStore()
    elif request.param == "sqlite":
        opened = SQLiteSessionStore(tmp_path / "aio.db")
    else:
        from sqlitestream.postgres import PostgresSessionStore

        dsn = request.getfixturevalue("pg_dsn")
        opened = PostgresSessionStore(dsn, schema=request.getfixturevalue("pg_schema"))
    try:
        yield opened
    finally:
        opened.close()


def test_every_contract_method_is_a_coroutine(store: SessionStore) -> None:
    async def main() -> None:
        async with AsyncStore(store) as astore:
            await astore.create_session(Session(agent_id="a", id="s1"))
            await astore.save_session(Session(agent_id="b", id="s1"))
            assert (await astore.get_session("s1")).agent_id == "b"
            assert [s.id for s in await astore.list_sessions(agent_id="b")] == ["s1"]
            await astore.save_run(Run(session_id="s1", id="r1"))
            assert (await astore.get_run("r1")).session_id == "s1"
            assert [r.id for r in await astore.list_runs("s1")] == ["r1"]
            assert await astore.get_active_run("s1") is None
            await astore.append_event(Event("message_sent", "s1", id="e1"))
            second = await astore.append_event_with_sequence(Event("message_sent", "s1"), expected_sequence=1)
            batch = await astore.append_events(
                [Event("tool_call_started", "s1"), Event("tool_call_started", "s1")]
            )
            assert [second.sequence_number, *(e.sequence_number for e in batch)] == [2, 3, 4]
            assert await astore.get_latest_sequence("s1") == 4
            page = await astore.get_events("s1", after=1, limit=2)
            assert [e.sequence_number for e in page] == [2, 3]
            await astore.delete_session("s1")
            with pytest.raises(SessionNotFoundError):
                await astore.get_session("s1")

    asyncio.run(main())


def test_long_poll_returns_an_append_made_while_waiting(store: SessionStore) -> None:
    async def main() -> None:
        async with AsyncStore(store) as astore:
            waiter = asyncio.create_task(astore.get_events("s1", after=0, wait_timeout_ms=30_000))
            appended = await astore.append_event_with_sequence(Event("message_sent", "s1"))
            assert await waiter == [appended]

    asyncio.run(main())


def test_long_poll_times_out_empty_after_its_timeout(store: SessionStore) -> None:
    async def main() -> None:
        async with AsyncStore(store) as astore:
            started = time.monotonic()
            assert await astore.get_events("s1", wait_timeout_ms=100) == []
            assert time.monotonic() - started >= 0.1

    asyncio.run(main())


def test_cancelling_a_long_poll_ends_it_and_the_store_stays_usable(store: SessionStore) -> None:
    async def main() -> None:
        async with AsyncStore(store, max_threads=1) as astore:
            waiter = asyncio.create_task(astore.get_events("s1", wait_timeout_ms=60_000))
            await asyncio.sleep(0)  # let it start
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiter, 10)
            # The one pool thread is free: the wait held none.
            stored = await asyncio.wait_for(
                astore.append_event_with_sequence(Event("message_sent", "s1")), 10
            )
            assert stored.sequence_number == 1

    asyncio.run(main())


def test_deleting_the_session_releases_async_waiters(store: SessionStore) -> None:
    async def main() -> None:
        async with AsyncStore(store) as astore:
            waiter = asyncio.create_task(astore.get_events("s1", wait_timeout_ms=60_000))
            deadline = time.monotonic() + 30
            while not waiter.done():  # deleting is idempotent: repeat until the waiter is released
                assert time.monotonic() < deadline, "the waiter was never released"
                await astore.delete_session("s1")
                await asyncio.wait([waiter], timeout=0.01)
            assert waiter.result() == []

    asyncio.run(main())


def test_closing_the_store_ends_async_waiters_with_store_closed(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "aio.db")

    async def main() -> None:
        async with AsyncStore(store) as astore:
            waiter = asyncio.create_task(astore.get_events("s1", wait_timeout_ms=60_000))
            deadline = time.monotonic() + 30
            while not waiter.done():
                assert time.monotonic() < deadline, "the waiter never ended"
                store.close()
                await asyncio.wait([waiter], timeout=0.01)
            with pytest.raises(StoreClosedError):
                waiter.result()

    asyncio.run(main())


_APPEND_ONE = """
import sys
from sqlitestream import Event, SQLiteSessionStore
with SQLiteSessionStore(sys.argv[1]) as store:
    store.append_events([Event("message_sent", f"s{n}") for n in range(int(sys.argv[2]))])
"""


def test_many_async_followers_wake_on_another_process_with_bounded_threads(tmp_path: Path) -> None:
    """500 concurrent long-polls on one loop use at most the pool's threads plus the store's
    watcher, and each wakes with the event another OS process appended to its session."""
    path = tmp_path / "aio.db"
    followers = 500
    max_threads = 4
    store = SQLiteSessionStore(path)
    before = threading.active_count()

    async def main() -> None:
        async with AsyncStore(store, max_threads=max_threads) as astore:
            waiters = [
                asyncio.create_task(astore.get_events(f"s{n % 50}", wait_timeout_ms=60_000))
                for n in range(followers)
            ]
            # The pool fills as the waits start; it never grows past its size (+1: the watcher).
            await await_until(lambda: threading.active_count() >= before + max_threads, "the waits to start")
            assert threading.active_count() <= before + max_threads + 1
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _APPEND_ONE, str(path), "50", env=child_env()
            )
            assert await child.wait() == 0
            pages = await asyncio.wait_for(asyncio.gather(*waiters), 60)
            assert threading.active_count() <= before + max_threads + 1
            for n, page in enumerate(pages):
                assert [(e.session_id, e.sequence_number) for e in page] == [(f"s{n % 50}", 1)]

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_a_store_without_a_hub_long_polls_on_a_pool_thread(tmp_path: Path) -> None:
    inner = SQLiteSessionStore(tmp_path / "aio.db")
    custom = DelegatingStore(inner)

    async def main() -> None:
        async with AsyncStore(custom) as astore:
            waiter = asyncio.create_task(astore.get_events("s1", wait_timeout_ms=30_000))
            appended = await astore.append_event_with_sequence(Event("message_sent", "s1"))
            assert await waiter == [appended]

    try:
        asyncio.run(main())
    finally:
        inner.close()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"after": -1}, "after"),
        ({"limit": 0}, "limit"),
        ({"wait_timeout_ms": "soon"}, "wait_timeout_ms"),
        ({"type": "no_such_type"}, "type"),
    ],
)
def test_bad_arguments_raise_before_anything_runs(arguments: dict[str, object], named: str) -> None:
    async def main() -> None:
        async with AsyncStore(InMemorySessionStore()) as astore:
            with pytest.raises(ValidationError, match=named):
                await astore.get_events("s1", **arguments)  # type: ignore[arg-type]

    asyncio.run(main())


def test_the_facade_refuses_what_is_not_a_store_and_calls_after_close() -> None:
    with pytest.raises(ValidationError, match="store"):
        AsyncStore("app.db")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="max_threads"):
        AsyncStore(InMemorySessionStore(), max_threads=0)

    async def main() -> None:
        astore = AsyncStore(InMemorySessionStore())
        await astore.aclose()
        await astore.aclose()
        with pytest.raises(StoreClosedError):
            await astore.get_latest_sequence("s1")

    asyncio.run(main())


def test_many_async_follows_share_the_pool_and_see_another_process_append(tmp_path: Path) -> None:
    """AsyncStore.follow: 300 followers over 30 sessions, each delivered the events another OS
    process appends, in order, while the process runs at most the pool's threads + 1."""
    path = tmp_path / "aio.db"
    store = SQLiteSessionStore(path)
    before = threading.active_count()

    async def main() -> None:
        async with AsyncStore(store, max_threads=4) as astore:

            async def first_two(session_id: str) -> list[int]:
                events = astore.follow(session_id, wait_timeout_ms=60_000)
                seen = [(await anext(events)).sequence_number for _ in range(2)]
                await events.aclose()
                return seen

            followers = [asyncio.create_task(first_two(f"s{n % 30}")) for n in range(300)]
            await await_until(lambda: threading.active_count() >= before + 4, "the follows to start")
            assert threading.active_count() <= before + 4 + 1
            for _ in range(2):
                child = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _APPEND_ONE, str(path), "30", env=child_env()
                )
                assert await child.wait() == 0
            assert await asyncio.wait_for(asyncio.gather(*followers), 60) == [[1, 2]] * 300
            assert threading.active_count() <= before + 4 + 1

    try:
        asyncio.run(main())
    finally:
        store.close()
