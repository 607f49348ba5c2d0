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
* **The feed** (``session_id=None``) is followed by position: events of every session in
  commit order, each once. It has no restarts: a deleted session's events just leave it.
* **A consumer** (``consumer="name"``) starts after its saved cursor and saves, with
  compare-and-set against the value it read or last saved, the position (for a session: the
  sequence) of the last event the caller has *finished with*, i.e. asked past. That is saved
  before each read of a new page (so before any wait) and when the iteration ends or is
  closed; an event being handled when the process dies, or when the iterator is closed, is
  delivered again next time: at-least-once. A second follower of the same consumer makes the
  slower one's save raise ``CursorConflictError``. For exactly-once, pass
  ``save_cursor=False`` and save the cursor in the same transaction as the results (see the
  Guarantees page).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncGenerator, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlitestream._core.validate import check_id, check_int, describe
from sqlitestream._following import AsyncReader, OnRestart, _FeedCursor, _Page, _Saver
from sqlitestream.errors import StoreClosedError, ValidationError
from sqlitestream.feed import FeedStore
from sqlitestream.models import EventType, StoredEvent
from sqlitestream.store import EventFilter, SessionStore

__all__ = ["DEFAULT_WAIT_TIMEOUT_MS", "afollow", "follow"]

DEFAULT_WAIT_TIMEOUT_MS = 30_000
"""The long-poll timeout of each read when the caller gives none."""

ASYNC_WAIT_CHUNK_MS = 250
"""Longest single store wait in :func:`afollow`: a cancelled task's worker thread returns
within this, so cancelling never leaves a thread blocked for a full long-poll."""


_HEAD: dict[str, Any] = {"before": 2, "limit": 1}
"""The read of a session's first event: its log's identity."""


def follow(
    store: SessionStore,
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
) -> Generator[StoredEvent, None, None]:
    """The session's events after sequence ``after`` that pass the filters, as they are stored;
    with ``session_id=None``, the store-wide feed: every session's events after position
    ``after``, in position order (the store must be a :class:`~sqlitestream.feed.FeedStore`).

    Reads pages of up to ``limit`` events. For a session, ``run_id``, ``type``, ``since`` and
    ``before`` filter like ``get_events``, and the follower ends once no event can pass
    ``before`` any more. For the feed, ``types`` (or ``type``) filter like ``read_feed``. With
    ``stop_when_caught_up`` it ends at the first page shorter than ``limit`` instead of
    waiting. ``wait_timeout_ms`` None or 0 polls every ``poll_interval_ms``. See the module
    docstring for a session deleted while followed (``on_restart`` is called, then the new
    log comes from sequence 1).

    ``consumer="name"`` resumes from that consumer's saved cursor (``after``, if given,
    overrides it) and, with ``save_cursor`` (default), saves it as it goes; see the module
    docstring for exactly when (at-least-once). ``save_cursor=False`` only resumes: the caller
    saves the cursor itself, for instance in the same transaction as its results.

    Arguments are checked, and the log identified (one read of its first event), when called:
    ``after`` is taken to belong to the log as it is then, so a caller that printed events
    up to ``after`` before iterating still sees a replacement made in between. The iterator
    holds nothing between items, so ``close()`` or dropping it releases everything.
    """
    cursor, saver = _build(
        store,
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
    if saver is not None:
        saver.start(_as_feed_store(store, "consumer"), cursor)
    cursor.identify()
    return _follow(cursor, saver)


def afollow(
    store: SessionStore | AsyncReader,
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
    """:func:`follow` as an async iterator, with the same arguments and behaviour.

    ``store`` is a :class:`~sqlitestream.aio.AsyncStore` (its long-polls hold no thread, so any
    number of followers share its pool; this is what ``AsyncStore.follow`` does) or a plain
    store. For a plain store, calls run in a worker thread owned by this iterator, never on
    the event loop, and long-polls are made in waits of at most 250 ms, so cancelling the
    consuming task ends the iteration at once and the worker thread within 250 ms. The log is
    identified (and a consumer's cursor read) at the first read, not when called, and
    ``on_restart`` is called on the event loop. Close it with ``contextlib.aclosing`` (or let
    the task be cancelled) to release the thread.
    """
    options: dict[str, Any] = {
        "after": after,
        "run_id": run_id,
        "type": type,
        "since": since,
        "before": before,
        "types": types,
        "limit": limit,
        "wait_timeout_ms": wait_timeout_ms,
        "poll_interval_ms": poll_interval_ms,
        "stop_when_caught_up": stop_when_caught_up,
        "on_restart": on_restart,
        "consumer": consumer,
        "save_cursor": save_cursor,
    }
    if isinstance(store, SessionStore):
        if session_id is None or consumer is not None:
            _as_feed_store(store, "session_id=None" if session_id is None else "consumer")
        cursor, saver = _build(store, session_id, **options)
        return _afollow(cursor, saver, _WorkerReader(store), ASYNC_WAIT_CHUNK_MS)
    readers = ["get_events", "get_latest_sequence"]
    if session_id is None or consumer is not None:
        readers += ["read_feed", "get_cursor", "save_cursor"]
    if not all(inspect.iscoroutinefunction(getattr(store, name, None)) for name in readers):
        raise ValidationError(
            f"store must be a SessionStore or an AsyncStore (a FeedStore's to follow the feed or "
            f"a consumer), got {describe(store)}"
        )
    cursor, saver = _build(None, session_id, **options)
    return _afollow(cursor, saver, store, None)


def _as_feed_store(store: object, what: str) -> FeedStore:
    if not isinstance(store, FeedStore):
        raise ValidationError(f"{what} needs a store with a feed (a FeedStore), got {describe(store)}")
    return store


def _build(
    store: SessionStore | None, session_id: object, **options: Any
) -> tuple[_Cursor | _FeedCursor, _Saver | None]:
    """The follower's cursor (of a session, or of the feed when ``session_id`` is None) and
    its consumer's saver, every argument checked."""
    consumer, save = options.pop("consumer"), options.pop("save_cursor")
    if consumer is not None:
        consumer = check_id(consumer, "consumer")
    if not isinstance(save, bool):
        raise ValidationError(f"save_cursor must be a bool, got {describe(save)}")
    explicit_after = options["after"]
    if consumer is not None and explicit_after is None:
        options["after"] = 0  # replaced by the saved cursor when the saver starts
    cursor: _Cursor | _FeedCursor
    if session_id is None:
        cursor = _FeedCursor.build(
            None if store is None else _as_feed_store(store, "session_id=None"), **options
        )
    else:
        if options.pop("types") is not None:
            raise ValidationError("types filters the feed; for one session's events use type")
        cursor = _Cursor.build(store, session_id, **options)
    saver = None if consumer is None else _Saver(consumer, save, explicit_after is not None)
    return cursor, saver


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

    @staticmethod
    def key(event: StoredEvent) -> int:
        """What a consumer of this log saves as its cursor: the sequence number."""
        return event.sequence_number or 0


def _follow(cursor: _Cursor | _FeedCursor, saver: _Saver | None) -> Generator[StoredEvent, None, None]:
    done: int | None = None  # the cursor of the last event the caller asked past
    try:
        while True:
            if saver is not None and (value := saver.due(done)) is not None:
                saver.save(value)
            page = cursor.read(cursor.wait_ms)
            if page.restarted and cursor.on_restart is not None:
                cursor.on_restart()
            for event in page.events:
                yield event
                done = cursor.key(event)
            if page.over:
                return
            if page.idle:
                time.sleep(cursor.poll_s)
    finally:
        if saver is not None and (value := saver.due(done)) is not None:
            try:
                saver.save(value)
            except StoreClosedError:
                pass  # closed under us: the events since the last save come again (at-least-once)


async def _afollow(
    cursor: _Cursor | _FeedCursor, saver: _Saver | None, reader: AsyncReader, max_wait_ms: int | None
) -> AsyncGenerator[StoredEvent, None]:
    done: int | None = None
    try:
        if saver is not None:
            await saver.astart(reader, cursor)
        while True:
            if saver is not None and (value := saver.due(done)) is not None:
                await saver.asave(reader, value)
            wait_ms = cursor.wait_ms
            if wait_ms is not None and max_wait_ms is not None:
                wait_ms = min(wait_ms, max_wait_ms)
            page = await cursor.aread(reader, wait_ms)
            if page.restarted and cursor.on_restart is not None:
                cursor.on_restart()
            for event in page.events:
                yield event
                done = cursor.key(event)
            if page.over:
                return
            if page.idle:
                await asyncio.sleep(cursor.poll_s)
    finally:
        try:
            if saver is not None and (value := saver.due(done)) is not None:
                try:
                    await saver.asave(reader, value)
                except StoreClosedError:
                    pass
        finally:
            if isinstance(reader, _WorkerReader):
                reader.close()


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

    async def read_feed(self, **query: Any) -> list[StoredEvent]:
        call = functools.partial(_as_feed_store(self._store, "the feed").read_feed, **query)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def get_cursor(self, name: str) -> int:
        call = functools.partial(_as_feed_store(self._store, "consumer").get_cursor, name)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def save_cursor(self, name: str, position: int, *, expected: int | None = None) -> None:
        store = _as_feed_store(self._store, "consumer")
        call = functools.partial(store.save_cursor, name, position, expected=expected)
        await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        # Do not wait: a worker still inside a (bounded) store wait finishes on its own.
        self._executor.shutdown(wait=False, cancel_futures=True)
