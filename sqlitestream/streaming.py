"""Following a session's log by cursor: :func:`follow` and :func:`afollow`.

This is the one follower: ``SessionManager.stream_session_events`` /
``astream_session_events`` and ``sqlitestream tail --follow`` are built on it, so they
behave the same. It works with every ``SessionStore``.

What a caller may rely on:

* Events come in sequence order, each at most once per log, starting after ``after``.
* With ``wait_timeout_ms`` > 0 an idle follower long-polls the store (no busy loop);
  otherwise, or when the store answers an empty read early (a store without long-poll), it
  sleeps ``poll_interval_ms`` before asking again.
* **A session deleted (and perhaps written again) while followed** is a new log: the follower
  goes back to its start and delivers the new log from sequence 1, through the same filters,
  calling ``on_restart`` first. A log only grows, so its first event is its identity: the
  follower reads the session's first event after each read and restarts when it changed or
  disappeared. Events of the old log not yet delivered by then are dropped with it. The
  restart is noticed at the next read, which comes at once when the store releases its
  long-poll on delete, and at the latest when the current wait times out.
* ``after`` is taken to belong to the log as it is when :func:`follow` is called (for
  :func:`afollow`, at its first read); an ``after`` past that log's end is kept (the follower
  waits for events past it).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlitestream._core.validate import check_int, describe
from sqlitestream.errors import ValidationError
from sqlitestream.models import EventType, StoredEvent
from sqlitestream.store import EventFilter, SessionStore

__all__ = ["DEFAULT_WAIT_TIMEOUT_MS", "afollow", "follow"]

DEFAULT_WAIT_TIMEOUT_MS = 30_000
"""The long-poll timeout of each read when the caller gives none."""

ASYNC_WAIT_CHUNK_MS = 250
"""Longest single store wait in :func:`afollow`: a cancelled task's worker thread returns
within this, so cancelling never leaves a thread blocked for a full long-poll."""

OnRestart = Callable[[], object]

_HEAD: dict[str, Any] = {"before": 2, "limit": 1}
"""The read of a session's first event: its log's identity."""


def follow(
    store: SessionStore,
    session_id: str,
    *,
    after: int = 0,
    run_id: str | None = None,
    type: EventType | str | None = None,
    since: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
    wait_timeout_ms: int | None = DEFAULT_WAIT_TIMEOUT_MS,
    poll_interval_ms: int = 250,
    stop_when_caught_up: bool = False,
    on_restart: OnRestart | None = None,
) -> Generator[StoredEvent, None, None]:
    """The session's events after sequence ``after`` that pass the filters, as they are stored.

    Reads pages of up to ``limit`` events. ``run_id``, ``type``, ``since`` and ``before`` filter
    like ``get_events``; the follower ends once no event can pass ``before`` any more. With
    ``stop_when_caught_up`` it ends at the first page shorter than ``limit`` instead of
    waiting. ``wait_timeout_ms`` None or 0 polls every ``poll_interval_ms``. See the module
    docstring for a session deleted while followed (``on_restart`` is called, then the new
    log comes from sequence 1).

    Arguments are checked, and the log identified (one read of its first event), when called:
    ``after`` is taken to belong to the log as it is then, so a caller that printed events
    up to ``after`` before iterating still sees a replacement made in between. The iterator
    holds nothing between items, so ``close()`` or dropping it releases everything.
    """
    cursor = _Cursor.build(
        store,
        session_id,
        after=after,
        run_id=run_id,
        type=type,
        since=since,
        before=before,
        limit=limit,
        wait_timeout_ms=wait_timeout_ms,
        poll_interval_ms=poll_interval_ms,
        stop_when_caught_up=stop_when_caught_up,
        on_restart=on_restart,
    )
    cursor.identify()
    return _follow(cursor)


def afollow(
    store: SessionStore | AsyncReader,
    session_id: str,
    *,
    after: int = 0,
    run_id: str | None = None,
    type: EventType | str | None = None,
    since: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
    wait_timeout_ms: int | None = DEFAULT_WAIT_TIMEOUT_MS,
    poll_interval_ms: int = 250,
    stop_when_caught_up: bool = False,
    on_restart: OnRestart | None = None,
) -> AsyncGenerator[StoredEvent, None]:
    """:func:`follow` as an async iterator, with the same arguments and behaviour.

    ``store`` is a :class:`~sqlitestream.aio.AsyncStore` (its long-polls hold no thread, so any
    number of followers share its pool; this is what ``AsyncStore.follow`` does) or a plain
    store. For a plain store, calls run in a worker thread owned by this iterator, never on
    the event loop, and long-polls are made in waits of at most 250 ms, so cancelling the
    consuming task ends the iteration at once and the worker thread within 250 ms. The log is
    identified at the first read (not when called), and ``on_restart`` is called on the event
    loop. Close it with ``contextlib.aclosing`` (or let the task be cancelled) to release the
    thread.
    """
    options: dict[str, Any] = {
        "after": after,
        "run_id": run_id,
        "type": type,
        "since": since,
        "before": before,
        "limit": limit,
        "wait_timeout_ms": wait_timeout_ms,
        "poll_interval_ms": poll_interval_ms,
        "stop_when_caught_up": stop_when_caught_up,
        "on_restart": on_restart,
    }
    if isinstance(store, SessionStore):
        cursor = _Cursor.build(store, session_id, **options)
        return _afollow(cursor, _WorkerReader(store), ASYNC_WAIT_CHUNK_MS)
    readers = ("get_events", "get_latest_sequence")
    if not all(inspect.iscoroutinefunction(getattr(store, name, None)) for name in readers):
        raise ValidationError(f"store must be a SessionStore or an AsyncStore, got {describe(store)}")
    return _afollow(_Cursor.build(None, session_id, **options), store, None)


@dataclass(frozen=True, slots=True)
class _Page:
    events: list[StoredEvent]
    over: bool = False
    restarted: bool = False
    idle: bool = False
    """Nothing came and the store did not wait: sleep before the next read, never spin."""


@dataclass(slots=True)
class _Cursor:
    """A follower's validated query, its position and the identity of the log it follows."""

    store: SessionStore | None
    """The store the blocking :meth:`read` uses (None when read through an async reader)."""
    session_id: str
    after: int
    limit: int
    poll_s: float
    wait_timeout_ms: int | None
    filters: dict[str, Any]
    before: int | None
    stop_when_caught_up: bool
    on_restart: OnRestart | None
    first_id: str | None = None
    """The id of the followed log's first event (None while the log is empty)..."""
    identified: bool = False
    """...once the log was first looked at."""
    checked: bool = False
    """Whether ``first_id`` is still current: cleared whenever events are handed out, since
    the caller may take any time before asking for more."""

    @classmethod
    def build(
        cls,
        store: SessionStore | None,
        session_id: object,
        *,
        after: object,
        run_id: object,
        type: object,
        since: object,
        before: object,
        limit: object,
        wait_timeout_ms: object,
        poll_interval_ms: object,
        stop_when_caught_up: object,
        on_restart: object,
    ) -> _Cursor:
        query = EventFilter.build(
            session_id,
            run_id=run_id,
            type=type,
            since=since,
            after=0 if after is None else after,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
        )
        if query.limit is None:
            raise ValidationError("limit must be an int >= 1, got None")
        poll = check_int(poll_interval_ms, "poll_interval_ms", minimum=1, allow_none=False)
        if not isinstance(stop_when_caught_up, bool):
            raise ValidationError(f"stop_when_caught_up must be a bool, got {describe(stop_when_caught_up)}")
        if on_restart is not None and not callable(on_restart):
            raise ValidationError(f"on_restart must be callable or None, got {describe(on_restart)}")
        filters = {
            name: value
            for name, value in [
                ("run_id", query.run_id),
                ("type", query.type),
                ("since", query.since),
                ("before", query.before),
            ]
            if value is not None
        }
        return cls(
            store=store,
            session_id=query.session_id,
            after=query.after or 0,
            limit=query.limit,
            poll_s=(poll or 1) / 1000.0,
            wait_timeout_ms=query.wait_timeout_ms or None,
            filters=filters,
            before=query.before,
            stop_when_caught_up=stop_when_caught_up,
            on_restart=on_restart,
        )

    @property
    def wait_ms(self) -> int | None:
        """How long the next read may wait: only when following, in long-poll mode."""
        return None if self.stop_when_caught_up else self.wait_timeout_ms

    def identify(self) -> None:
        """Note which log ``after`` belongs to; the next read checks it is still that log."""
        assert self.store is not None
        self._replaced(self.store.get_events(self.session_id, **_HEAD), [])
        self.checked = False

    def read(self, wait_ms: int | None) -> _Page:
        """The next page: the events to hand out, and what to do next (blocking)."""
        store = self.store
        assert store is not None
        if not self.checked and self._replaced(store.get_events(self.session_id, **_HEAD), []):
            return self._restart()
        started = time.monotonic()
        page = store.get_events(self.session_id, **self._page_query(wait_ms))
        elapsed = time.monotonic() - started
        if self._replaced(store.get_events(self.session_id, **_HEAD), page):
            return self._restart()
        latest = store.get_latest_sequence(self.session_id) if self._needs_latest(page) else None
        return self._page(page, latest, wait_ms, elapsed)

    async def aread(self, reader: AsyncReader, wait_ms: int | None) -> _Page:
        """:meth:`read` through an asyncio reader: the same steps, each awaited."""
        if not self.checked and self._replaced(await reader.get_events(self.session_id, **_HEAD), []):
            return self._restart()
        started = time.monotonic()
        page = await reader.get_events(self.session_id, **self._page_query(wait_ms))
        elapsed = time.monotonic() - started
        if self._replaced(await reader.get_events(self.session_id, **_HEAD), page):
            return self._restart()
        latest = await reader.get_latest_sequence(self.session_id) if self._needs_latest(page) else None
        return self._page(page, latest, wait_ms, elapsed)

    def _page_query(self, wait_ms: int | None) -> dict[str, Any]:
        return {"after": self.after, "limit": self.limit, "wait_timeout_ms": wait_ms, **self.filters}

    def _needs_latest(self, page: list[StoredEvent]) -> bool:
        """Whether an empty page may mean the end: with ``before``, once the log reached
        ``before - 1`` nothing more can match (sequences only grow)."""
        return self.before is not None and not page

    def _page(
        self, page: list[StoredEvent], latest: int | None, wait_ms: int | None, elapsed: float
    ) -> _Page:
        events = self._fresh(page)
        self.checked = not events
        if self.stop_when_caught_up and len(page) < self.limit:
            return _Page(events, over=True)
        if latest is not None and self.before is not None and latest >= self.before - 1:
            return _Page(events, over=True)
        # An empty page that came back without the store having waited: polling mode, or a
        # store that ignores wait_timeout_ms.
        idle = not page and (wait_ms is None or elapsed < wait_ms / 2000.0)
        return _Page(events, idle=idle)

    def _replaced(self, head: list[StoredEvent], page: list[StoredEvent]) -> bool:
        """Whether the followed log was replaced (the session deleted, perhaps written again):
        its first event (``head``) is no longer the one we knew, or the page holds another."""
        now = head[0].id if head else None
        witness = next((event.id for event in page if event.sequence_number == 1), None)
        known = self.first_id if self.identified else now
        self.first_id, self.identified, self.checked = now, True, True
        return (known is not None and now != known) or (witness is not None and witness != now)

    def _restart(self) -> _Page:
        self.after = 0
        return _Page([], restarted=True)

    def _fresh(self, page: list[StoredEvent]) -> list[StoredEvent]:
        """The page's events past the cursor, advancing it (so a store that repeats or
        reorders events still cannot make us deliver one twice)."""
        fresh = []
        for event in page:
            seq = event.sequence_number or 0
            if seq > self.after:
                self.after = seq
                fresh.append(event)
        return fresh


def _follow(cursor: _Cursor) -> Generator[StoredEvent, None, None]:
    while True:
        page = cursor.read(cursor.wait_ms)
        if page.restarted and cursor.on_restart is not None:
            cursor.on_restart()
        yield from page.events
        if page.over:
            return
        if page.idle:
            time.sleep(cursor.poll_s)


async def _afollow(
    cursor: _Cursor, reader: AsyncReader, max_wait_ms: int | None
) -> AsyncGenerator[StoredEvent, None]:
    try:
        while True:
            wait_ms = cursor.wait_ms
            if wait_ms is not None and max_wait_ms is not None:
                wait_ms = min(wait_ms, max_wait_ms)
            page = await cursor.aread(reader, wait_ms)
            if page.restarted and cursor.on_restart is not None:
                cursor.on_restart()
            for event in page.events:
                yield event
            if page.over:
                return
            if page.idle:
                await asyncio.sleep(cursor.poll_s)
    finally:
        if isinstance(reader, _WorkerReader):
            reader.close()


class AsyncReader(Protocol):
    """What :func:`afollow` reads through: :class:`sqlitestream.aio.AsyncStore`, or the
    worker thread it makes for a plain store."""

    async def get_events(
        self,
        session_id: str,
        *,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[StoredEvent]: ...

    async def get_latest_sequence(self, session_id: str) -> int: ...


class _WorkerReader:
    """A plain store's calls on one worker thread of the follower's own; long-polls in waits
    of at most :data:`ASYNC_WAIT_CHUNK_MS`, so a cancelled follower frees its thread soon."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlitestream-astream")

    async def get_events(self, session_id: str, **filters: Any) -> list[StoredEvent]:
        call = functools.partial(self._store.get_events, session_id, **filters)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def get_latest_sequence(self, session_id: str) -> int:
        call = functools.partial(self._store.get_latest_sequence, session_id)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        # Do not wait: a worker still inside a (bounded) store wait finishes on its own.
        self._executor.shutdown(wait=False, cancel_futures=True)
