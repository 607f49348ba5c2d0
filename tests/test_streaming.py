"""stream_session_events and astream_session_events: exactly once, in order, resumable;
polling, long-poll, the no-long-poll fallback, asyncio, and a follower in another process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, TypedDict

import pytest
from support import (
    STORE_KINDS,
    RecordingStore,
    await_until,
    child_env,
    open_store,
    script,
    wait_until,
)

from sqlitestream import (
    Event,
    InMemorySessionStore,
    SessionManager,
    SessionStore,
    SQLiteSessionStore,
    StoredEvent,
    ValidationError,
)
from sqlitestream.testing import Background


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    yield from open_store(request.param, tmp_path)


class FollowMode(TypedDict, total=False):
    """How a follower waits for new events: the stream_session_events arguments of a mode."""

    poll_interval_ms: int
    wait_timeout_ms: int


def append(
    store: SessionStore, session_id: str, count: int, type: str = "message_streamed", **fields: Any
) -> list[StoredEvent]:
    return [
        store.append_event_with_sequence(Event(type=type, session_id=session_id, **fields))
        for _ in range(count)
    ]


def seqs(events: Sequence[Event]) -> list[int | None]:
    return [event.sequence_number for event in events]


def page_reads(recording: RecordingStore) -> list[tuple[float, dict[str, Any], int]]:
    """The follower's reads by cursor, leaving out its look-ups of the session's first event."""
    return [call for call in list(recording.calls) if "after" in call[1]]


# Catching up (follow=False) ------------------------------------------------------------------


def test_catch_up_returns_every_event_once_in_order_across_pages(store: SessionStore) -> None:
    append(store, "s", 23)

    events = list(SessionManager(store).stream_session_events("s", limit=5, follow=False))

    assert seqs(events) == list(range(1, 24))


def test_resuming_after_a_cursor_skips_what_was_seen(store: SessionStore) -> None:
    append(store, "s", 10)
    manager = SessionManager(store)
    first = []
    for event in manager.stream_session_events("s", limit=3, follow=False):
        first.append(event)
        if len(first) == 4:
            break

    rest = list(manager.stream_session_events("s", after=first[-1].sequence_number or 0, follow=False))

    assert seqs(first + rest) == list(range(1, 11))


def test_filters_are_forwarded(store: SessionStore) -> None:
    append(store, "s", 3, run_id="r1")
    append(store, "s", 2, type="tool_call_started", run_id="r2")
    append(store, "s", 3, run_id="r1")
    manager = SessionManager(store)

    by_run = list(manager.stream_session_events("s", run_id="r1", limit=2, follow=False))
    by_type = list(manager.stream_session_events("s", type="tool_call_started", follow=False))

    assert seqs(by_run) == [1, 2, 3, 6, 7, 8]
    assert seqs(by_type) == [4, 5]


def test_following_a_before_window_stops_when_it_is_complete(store: SessionStore) -> None:
    append(store, "s", 8)

    window = list(SessionManager(store).stream_session_events("s", after=2, before=6, poll_interval_ms=1))

    assert seqs(window) == [3, 4, 5]


def test_empty_session_catch_up_is_empty(store: SessionStore) -> None:
    assert list(SessionManager(store).stream_session_events("nothing-here", follow=False)) == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"after": -1}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": None}, "limit"),
        ({"poll_interval_ms": 0}, "poll_interval_ms"),
        ({"wait_timeout_ms": -5}, "wait_timeout_ms"),
        ({"follow": "yes"}, "follow"),
        ({"type": "no_such_type"}, "type"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_bad_stream_arguments_are_refused_when_called(kwargs: dict[str, Any], named: str) -> None:
    manager = SessionManager(InMemorySessionStore())
    with pytest.raises(ValidationError, match=named):
        manager.stream_session_events("s", **kwargs)
    with pytest.raises(ValidationError, match=named):
        manager.astream_session_events("s", **kwargs)


# Following live -----------------------------------------------------------------------------


def _follow_in_thread(stream: Any, count: int) -> tuple[threading.Thread, list[Event]]:
    received: list[Event] = []

    def consume() -> None:
        for event in stream:
            received.append(event)
            if len(received) == count:
                stream.close()
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread, received


@pytest.mark.parametrize(
    "mode", [{"poll_interval_ms": 5}, {"wait_timeout_ms": 5000}], ids=["poll", "longpoll"]
)
def test_follower_sees_events_appended_by_other_threads_exactly_once(
    store: SessionStore, mode: FollowMode
) -> None:
    writers = 3
    per_writer = 40
    stream = SessionManager(store).stream_session_events("s", limit=7, **mode)
    thread, received = _follow_in_thread(stream, writers * per_writer)
    threads = [threading.Thread(target=append, args=(store, "s", per_writer)) for _ in range(writers)]
    for writer in threads:
        writer.start()
    for writer in threads:
        writer.join(30)
    thread.join(30)

    assert not thread.is_alive()
    assert seqs(received) == list(range(1, writers * per_writer + 1))
    assert [event.id for event in received] == [event.id for event in store.get_events("s")]


def test_long_poll_forwards_wait_timeout_ms(store: SessionStore) -> None:
    recording = RecordingStore(store)
    stream = SessionManager(recording).stream_session_events("s", wait_timeout_ms=4321)
    thread, received = _follow_in_thread(stream, 1)
    assert recording.entered.wait(10)

    append(store, "s", 1)
    thread.join(30)

    assert seqs(received) == [1]
    assert {call[1]["wait_timeout_ms"] for call in page_reads(recording)} == {4321}


@pytest.mark.parametrize(
    "mode",
    [{"poll_interval_ms": 40}, {"poll_interval_ms": 40, "wait_timeout_ms": 60_000}],
    ids=["polling", "store-ignores-long-poll"],
)
def test_empty_pages_are_followed_by_a_sleep_never_a_spin(mode: FollowMode) -> None:
    inner = InMemorySessionStore()
    recording = RecordingStore(inner, ignore_wait=True)
    stream = SessionManager(recording).stream_session_events("s", **mode)
    thread, received = _follow_in_thread(stream, 1)
    wait_until(lambda: len(page_reads(recording)) >= 5, what="five empty polls")

    append(inner, "s", 1)
    thread.join(30)

    assert seqs(received) == [1]
    starts = [call[0] for call in page_reads(recording)]
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    # Each empty answer is followed by a sleep of poll_interval_ms before the next call.
    assert min(gaps) >= 0.040 * 0.9, gaps


def test_closing_the_stream_stops_it_and_leaves_the_store_usable(store: SessionStore) -> None:
    append(store, "s", 5)
    stream = SessionManager(store).stream_session_events("s", wait_timeout_ms=1000)
    assert next(stream).sequence_number == 1

    stream.close()

    with pytest.raises(StopIteration):
        next(stream)
    append(store, "s", 1)
    assert store.get_latest_sequence("s") == 6


@pytest.mark.parametrize("rewritten", [1, 5, 8])
def test_stream_of_a_deleted_and_rewritten_session_delivers_the_new_log(
    store: SessionStore, rewritten: int
) -> None:
    append(store, "s", 5)
    stream = SessionManager(store).stream_session_events("s", wait_timeout_ms=60_000)
    assert seqs([next(stream) for _ in range(5)]) == [1, 2, 3, 4, 5]
    store.delete_session("s")
    new = append(store, "s", rewritten)

    # In a thread, with a deadline: a follower stuck waiting past the old cursor fails the
    # test instead of hanging it (closing the store at teardown ends the thread).
    again = Background(lambda: [next(stream) for _ in range(rewritten)]).result()

    assert [event.id for event in again] == [event.id for event in new]
    stream.close()


def test_stream_waiting_when_the_session_is_deleted_delivers_the_new_log(store: SessionStore) -> None:
    append(store, "s", 3)
    # A short wait: a delete landing just before the wait begins is seen when it ends.
    stream = SessionManager(store).stream_session_events("s", wait_timeout_ms=100, poll_interval_ms=5)
    assert seqs([next(stream) for _ in range(3)]) == [1, 2, 3]
    waiter = Background(lambda: [next(stream) for _ in range(2)])
    store.delete_session("s")
    new = append(store, "s", 2)

    assert [event.id for event in waiter.result()] == [event.id for event in new]
    stream.close()


def test_async_stream_of_a_deleted_and_rewritten_session_delivers_the_new_log(store: SessionStore) -> None:
    append(store, "s", 4)

    async def scenario() -> list[Event]:
        stream = SessionManager(store).astream_session_events("s", wait_timeout_ms=60_000)
        async with contextlib.aclosing(stream):
            assert seqs([await anext(stream) for _ in range(4)]) == [1, 2, 3, 4]
            store.delete_session("s")
            append(store, "s", 4, type="message_sent")
            return [await asyncio.wait_for(anext(stream), timeout=10) for _ in range(4)]

    again = asyncio.run(scenario())
    assert seqs(again) == [1, 2, 3, 4] and {event.type.value for event in again} == {"message_sent"}


# asyncio ------------------------------------------------------------------------------------


def test_async_catch_up_in_order(store: SessionStore) -> None:
    append(store, "s", 12)

    async def collect() -> list[Event]:
        return [
            event async for event in SessionManager(store).astream_session_events("s", limit=5, follow=False)
        ]

    assert seqs(asyncio.run(collect())) == list(range(1, 13))


def test_async_follow_does_not_block_the_event_loop(store: SessionStore) -> None:
    """While the stream waits in a long-poll, another coroutine on the same loop runs and
    appends the event the stream is waiting for; a blocked loop would never get there."""
    recording = RecordingStore(store)

    async def scenario() -> list[Event]:
        received: list[Event] = []

        async def follow() -> None:
            async with contextlib.aclosing(
                SessionManager(recording).astream_session_events("s", wait_timeout_ms=60_000)
            ) as stream:
                async for event in stream:
                    received.append(event)
                    if len(received) == 3:
                        return

        async def write() -> None:
            for _ in range(3):
                await await_until(recording.entered.is_set, "the stream to call the store")
                recording.entered.clear()
                append(store, "s", 1)

        await asyncio.wait_for(asyncio.gather(follow(), write()), timeout=30)
        return received

    assert seqs(asyncio.run(scenario())) == [1, 2, 3]


def test_cancelling_an_async_follower_ends_it_and_its_thread(store: SessionStore) -> None:
    recording = RecordingStore(store)
    before = threading.active_count()

    async def scenario() -> bool:
        async def follow() -> None:
            async for _ in SessionManager(recording).astream_session_events("s", wait_timeout_ms=600_000):
                pass

        task = asyncio.create_task(follow())
        await await_until(lambda: recording.entered.is_set() or task.done(), "the stream to call the store")
        task.cancel()
        try:
            await asyncio.wait_for(task, timeout=10)
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())
    # Each store wait is bounded, so the worker thread returns and exits soon after.
    wait_until(lambda: threading.active_count() <= before, what="the astream worker to exit")


def test_async_fallback_sleeps_when_the_store_ignores_long_poll() -> None:
    inner = InMemorySessionStore()
    recording = RecordingStore(inner, ignore_wait=True)

    async def scenario() -> list[Event]:
        stream = SessionManager(recording).astream_session_events(
            "s", poll_interval_ms=40, wait_timeout_ms=60_000
        )
        async with contextlib.aclosing(stream):
            next_event = asyncio.ensure_future(stream.__anext__())
            await await_until(
                lambda: len(page_reads(recording)) >= 5 or next_event.done(), "five empty polls"
            )
            append(inner, "s", 1)
            return [await asyncio.wait_for(next_event, timeout=30)]

    received = asyncio.run(scenario())
    assert seqs(received) == [1]
    starts = [call[0] for call in page_reads(recording)]
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    assert gaps and min(gaps) >= 0.040 * 0.9, gaps


# Across processes ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["poll", "longpoll"])
def test_follower_process_sees_every_event_once_in_order_while_another_process_writes(
    tmp_path: Path, mode: str
) -> None:
    db = tmp_path / "shared.db"
    SQLiteSessionStore(db).close()  # create the file before two processes open it
    follower = subprocess.Popen(
        [*script("follow_session.py"), str(db), "ses-x", mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().strip() == "ready"
        writer = subprocess.run(
            [*script("run_session.py"), str(db), "ses-x", "60", "2"],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=120,
            check=False,
        )
        assert writer.returncode == 0, writer.stderr
        out, err = follower.communicate(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err

    seen = [json.loads(line) for line in out.splitlines()]
    with SQLiteSessionStore(db) as reopened:
        stored = reopened.get_events("ses-x")
    assert [item["id"] for item in seen] == [event.id for event in stored]
    assert [item["seq"] for item in seen] == list(range(1, len(stored) + 1))
    assert len(stored) == 60 + 6  # lifecycle (3) + message_sent + run_started/done + deltas
