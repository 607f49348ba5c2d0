"""asyncio access to any store: :class:`AsyncStore`.

``AsyncStore(store)`` offers every method of the store contract as a coroutine. Blocking store
calls run on the facade's own small thread pool (``max_threads``, default 8), so the event loop
never blocks on the disk or the database. A long-poll (``wait_timeout_ms``) on a built-in store
holds no thread while it waits: the waiting task is woken through the store's wake-up hub by
appends in this process and, through the store's watcher (SQLite) or listener (PostgreSQL), by
appends in other processes, with the same latency as a blocking long-poll. Any number of
concurrent waits therefore uses at most ``max_threads`` pool threads plus the store's one
watcher or listener thread. On a store of your own, a long-poll runs the store's blocking
``get_events`` on a pool thread (so at most ``max_threads`` such waits proceed at once).

Cancelling a task that awaits a long-poll ends its wait at once; a store call already running
on a pool thread finishes there and its result is dropped.

The facade does not own the store: :meth:`AsyncStore.aclose` (or leaving ``async with``) stops
the facade's threads and leaves the store open for its owner to close.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlitestream._core.validate import check_int, describe
from sqlitestream._core.waiting import FEED, WakeHub
from sqlitestream._following import OnRestart
from sqlitestream.admin import StreamInfo
from sqlitestream.bytestreams import Producer
from sqlitestream.errors import StoreClosedError, ValidationError
from sqlitestream.feed import ConsumerCursor, FeedFilter, FeedStore
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
)
from sqlitestream.producers import ProducerAppend, SessionProducers
from sqlitestream.retention import RetentionStore
from sqlitestream.store import EventFilter, SessionStore
from sqlitestream.streaming import DEFAULT_WAIT_TIMEOUT_MS, afollow

__all__ = ["AsyncStore"]

T = TypeVar("T")

DEFAULT_MAX_THREADS = 8


class _LoopSignal:
    """A waiter's wake-up, set from any thread, delivered to an asyncio event on its loop."""

    __slots__ = ("_loop", "event")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.event = asyncio.Event()
        self._loop = loop

    def set(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            pass


class AsyncStore:
    """Every :class:`~sqlitestream.SessionStore` method as a coroutine (see the module docs).

    Args:
        store: any store; it stays open when the facade is closed.
        max_threads: the most threads the facade runs store calls on at once.
    """

    def __init__(self, store: SessionStore, *, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if not isinstance(store, SessionStore):
            raise ValidationError(f"store must be a SessionStore, got {describe(store)}")
        threads = check_int(max_threads, "max_threads", minimum=1, allow_none=False)
        assert threads is not None
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sqlitestream-aio")
        self._closed = False

    @property
    def store(self) -> SessionStore:
        """The store this facade calls."""
        return self._store

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise StoreClosedError("the AsyncStore is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    # Sessions -------------------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        """See :meth:`SessionStore.create_session`."""
        await self._call(self._store.create_session, session)

    async def save_session(self, session: Session) -> None:
        """See :meth:`SessionStore.save_session`."""
        await self._call(self._store.save_session, session)

    async def get_session(self, session_id: str) -> Session:
        """See :meth:`SessionStore.get_session`."""
        return await self._call(self._store.get_session, session_id)

    async def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        """See :meth:`SessionStore.list_sessions`."""
        return await self._call(
            self._store.list_sessions, status=status, agent_id=agent_id, limit=limit, offset=offset
        )

    async def delete_session(self, session_id: str) -> None:
        """See :meth:`SessionStore.delete_session`."""
        await self._call(self._store.delete_session, session_id)

    # Runs -----------------------------------------------------------------------------------

    async def save_run(self, run: Run) -> None:
        """See :meth:`SessionStore.save_run`."""
        await self._call(self._store.save_run, run)

    async def get_run(self, run_id: str) -> Run:
        """See :meth:`SessionStore.get_run`."""
        return await self._call(self._store.get_run, run_id)

    async def list_runs(
        self, session_id: str, *, status: RunStatus | str | None = None, limit: int | None = None
    ) -> list[Run]:
        """See :meth:`SessionStore.list_runs`."""
        return await self._call(self._store.list_runs, session_id, status=status, limit=limit)

    async def get_active_run(self, session_id: str) -> Run | None:
        """See :meth:`SessionStore.get_active_run`."""
        return await self._call(self._store.get_active_run, session_id)

    # Events ---------------------------------------------------------------------------------

    async def append_event(self, event: Event) -> StoredEvent:
        """See :meth:`SessionStore.append_event`."""
        return await self._call(self._store.append_event, event)

    async def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        """See :meth:`SessionStore.append_event_with_sequence`."""
        return await self._call(
            self._store.append_event_with_sequence, event, expected_sequence=expected_sequence
        )

    async def append_events(self, events: Iterable[Event]) -> list[StoredEvent]:
        """See :meth:`SessionStore.append_events`."""
        return await self._call(self._store.append_events, events)

    async def append_events_as(self, producer: Producer, events: Sequence[Event]) -> ProducerAppend:
        """See :meth:`SessionProducers.append_events_as <sqlitestream.producers.SessionProducers.append_events_as>`
        (a :class:`~sqlitestream.errors.ValidationError` on a store without producers)."""
        store = self._store
        if not isinstance(store, SessionProducers):
            raise ValidationError(f"{type(store).__name__} does not take idempotent producers on sessions")
        return await self._call(store.append_events_as, producer, events)

    async def get_latest_sequence(self, session_id: str) -> int:
        """See :meth:`SessionStore.get_latest_sequence`."""
        return await self._call(self._store.get_latest_sequence, session_id)

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
    ) -> list[StoredEvent]:
        """See :meth:`SessionStore.get_events`; a long-poll on a built-in store holds no
        thread while it waits."""
        query = EventFilter.build(
            session_id,
            run_id=run_id,
            type=type,
            since=since,
            after=after,
            before=before,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
        )
        read = functools.partial(self._store.read_events, dataclasses.replace(query, wait_timeout_ms=None))
        page = await self._call(read)
        if page or query.wait_seconds <= 0:
            return page
        wait_hub: Callable[[], WakeHub] | None = getattr(self._store, "_wait_hub", None)
        if wait_hub is None:
            return await self._call(self._store.read_events, query)
        return await self._long_poll(await self._call(wait_hub), query.session_id, query.wait_seconds, read)

    async def _long_poll(
        self, hub: WakeHub, key: str, wait_seconds: float, read: Callable[[], list[StoredEvent]]
    ) -> list[StoredEvent]:
        """:func:`sqlitestream._core.waiting.long_poll` with the wait as an awaited event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        woken = _LoopSignal(loop)
        with hub.waiting(key, woken) as waiter:
            while True:
                page = await self._call(read)
                if page:
                    return page
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(woken.event.wait(), remaining)
                except TimeoutError:
                    pass
                woken.event.clear()
                if hub.closed:
                    raise StoreClosedError("the store was closed while waiting for events")
                if waiter.released:
                    return []

    # The feed and consumer cursors (a FeedStore's) ------------------------------------------

    def _feed_store(self) -> FeedStore:
        if not isinstance(self._store, FeedStore):
            raise ValidationError(f"the store has no feed (it is not a FeedStore): {self._store!r}")
        return self._store

    async def read_feed(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        types: Iterable[EventType | str] | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[StoredEvent]:
        """See :meth:`FeedStore.read_feed`; a long-poll on a built-in store holds no thread
        while it waits."""
        store = self._feed_store()
        query = FeedFilter.build(after=after, limit=limit, types=types, wait_timeout_ms=wait_timeout_ms)
        read = functools.partial(store.query_feed, dataclasses.replace(query, wait_timeout_ms=None))
        page = await self._call(read)
        if page or query.wait_seconds <= 0:
            return page
        wait_hub: Callable[[], WakeHub] | None = getattr(store, "_wait_hub", None)
        if wait_hub is None:
            return await self._call(store.query_feed, query)
        return await self._long_poll(await self._call(wait_hub), FEED, query.wait_seconds, read)

    async def get_last_position(self) -> int:
        """See :meth:`FeedStore.get_last_position`."""
        return await self._call(self._feed_store().get_last_position)

    async def save_cursor(self, name: str, position: int, *, expected: int | None = None) -> None:
        """See :meth:`FeedStore.save_cursor`."""
        await self._call(self._feed_store().save_cursor, name, position, expected=expected)

    async def get_cursor(self, name: str) -> int:
        """See :meth:`FeedStore.get_cursor`."""
        return await self._call(self._feed_store().get_cursor, name)

    async def list_cursors(self) -> list[ConsumerCursor]:
        """See :meth:`FeedStore.list_cursors`."""
        return await self._call(self._feed_store().list_cursors)

    async def delete_cursor(self, name: str) -> None:
        """See :meth:`FeedStore.delete_cursor`."""
        await self._call(self._feed_store().delete_cursor, name)

    # Retention (a RetentionStore's) ----------------------------------------------------------

    def _retention_store(self) -> RetentionStore:
        if not isinstance(self._store, RetentionStore):
            raise ValidationError(f"the store cannot trim (it is not a RetentionStore): {self._store!r}")
        return self._store

    async def trim_session(
        self,
        session_id: str,
        *,
        before_sequence: int | None = None,
        keep_last: int | None = None,
        older_than: timedelta | datetime | None = None,
        dry_run: bool = False,
    ) -> int:
        """See :meth:`RetentionStore.trim_session`."""
        return await self._call(
            self._retention_store().trim_session,
            session_id,
            before_sequence=before_sequence,
            keep_last=keep_last,
            older_than=older_than,
            dry_run=dry_run,
        )

    async def trim_store(
        self,
        *,
        keep_last: int | None = None,
        older_than: timedelta | datetime | None = None,
        dry_run: bool = False,
    ) -> int:
        """See :meth:`RetentionStore.trim_store` (progress is the sync API's: this awaits the whole run)."""
        return await self._call(
            self._retention_store().trim_store, keep_last=keep_last, older_than=older_than, dry_run=dry_run
        )

    async def get_stream_info(self, session_id: str) -> StreamInfo:
        """See :meth:`RetentionStore.get_stream_info`."""
        return await self._call(self._retention_store().get_stream_info, session_id)

    def follow(
        self,
        session_id: str | None = None,
        *,
        after: int | None = None,
        run_id: str | None = None,
        type: EventType | str | None = None,
        since: datetime | None = None,
        before: int | None = None,
        types: Iterable[EventType | str] | None = None,
        limit: int = 100,
        wait_timeout_ms: int | None = DEFAULT_WAIT_TIMEOUT_MS,
        poll_interval_ms: int = 250,
        stop_when_caught_up: bool = False,
        on_restart: OnRestart | None = None,
        consumer: str | None = None,
        save_cursor: bool = True,
    ) -> AsyncGenerator[StoredEvent, None]:
        """The session's events (or, with ``session_id=None``, the store-wide feed) as they are
        stored, as an async iterator: the one follower, :func:`sqlitestream.streaming.afollow`,
        reading through this facade, so its waits hold no thread and any number of followers
        share the pool. Same arguments and behaviour (a session deleted and written again is
        followed from sequence 1; a ``consumer`` resumes from and saves its cursor)."""
        if session_id is None or consumer is not None:
            self._feed_store()
        return afollow(
            self,
            session_id,
            after=after,
            run_id=run_id,
            type=type,
            since=since,
            before=before,
            types=types,
            limit=limit,
            wait_timeout_ms=wait_timeout_ms,
            poll_interval_ms=poll_interval_ms,
            stop_when_caught_up=stop_when_caught_up,
            on_restart=on_restart,
            consumer=consumer,
            save_cursor=save_cursor,
        )

    # Lifecycle ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the facade's threads (waiting for calls in progress); the store stays open.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"AsyncStore({self._store!r}, {state})"
