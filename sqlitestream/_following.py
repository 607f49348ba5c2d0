"""The parts of the follower (:mod:`sqlitestream.streaming`) that the feed and consumers add:
the feed's cursor, a consumer's saver, a page's outcome and what an asyncio follower reads
through. Private: use :func:`~sqlitestream.streaming.follow` and
:func:`~sqlitestream.streaming.afollow`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlitestream._core.validate import check_int, describe
from sqlitestream.errors import ValidationError
from sqlitestream.feed import FeedFilter, FeedStore
from sqlitestream.models import EventType, StoredEvent

if TYPE_CHECKING:
    from sqlitestream.streaming import _Cursor

OnRestart = Callable[[], object]


@dataclass(frozen=True, slots=True)
class _Page:
    events: list[StoredEvent]
    over: bool = False
    restarted: bool = False
    idle: bool = False
    """Nothing came and the store did not wait: sleep before the next read, never spin."""


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

    async def read_feed(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        types: Iterable[EventType | str] | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[StoredEvent]: ...

    async def get_cursor(self, name: str) -> int: ...

    async def save_cursor(self, name: str, position: int, *, expected: int | None = None) -> None: ...


@dataclass(slots=True)
class _FeedCursor:
    """A follower of the store-wide feed: its validated query and its position."""

    store: FeedStore | None
    after: int
    limit: int
    types: frozenset[EventType] | None
    poll_s: float
    wait_timeout_ms: int | None
    stop_when_caught_up: bool
    on_restart: OnRestart | None = None  # the feed never restarts

    @classmethod
    def build(
        cls,
        store: FeedStore | None,
        *,
        after: object,
        run_id: object,
        type: object,
        since: object,
        before: object,
        types: object,
        limit: object,
        wait_timeout_ms: object,
        poll_interval_ms: object,
        stop_when_caught_up: object,
        on_restart: object,
    ) -> _FeedCursor:
        for name, value in (
            ("run_id", run_id),
            ("since", since),
            ("before", before),
            ("on_restart", on_restart),
        ):
            if value is not None:
                raise ValidationError(
                    f"{name} applies to one session's log, not to the feed (session_id=None)"
                )
        if type is not None:
            if types is not None:
                raise ValidationError("give type or types, not both")
            types = [type]
        query = FeedFilter.build(
            after=0 if after is None else after, limit=limit, types=types, wait_timeout_ms=wait_timeout_ms
        )
        if query.limit is None:
            raise ValidationError("limit must be an int >= 1, got None")
        poll = check_int(poll_interval_ms, "poll_interval_ms", minimum=1, allow_none=False)
        if not isinstance(stop_when_caught_up, bool):
            raise ValidationError(f"stop_when_caught_up must be a bool, got {describe(stop_when_caught_up)}")
        return cls(
            store=store,
            after=query.after,
            limit=query.limit,
            types=query.types,
            poll_s=(poll or 1) / 1000.0,
            wait_timeout_ms=query.wait_timeout_ms or None,
            stop_when_caught_up=stop_when_caught_up,
        )

    @property
    def wait_ms(self) -> int | None:
        return None if self.stop_when_caught_up else self.wait_timeout_ms

    def identify(self) -> None:
        """The feed has no identity to check: it is never replaced."""

    def read(self, wait_ms: int | None) -> _Page:
        assert self.store is not None
        started = time.monotonic()
        page = self.store.read_feed(**self._query(wait_ms))
        return self._page(page, wait_ms, time.monotonic() - started)

    async def aread(self, reader: AsyncReader, wait_ms: int | None) -> _Page:
        started = time.monotonic()
        page = await reader.read_feed(**self._query(wait_ms))
        return self._page(page, wait_ms, time.monotonic() - started)

    def _query(self, wait_ms: int | None) -> dict[str, Any]:
        return {"after": self.after, "limit": self.limit, "types": self.types, "wait_timeout_ms": wait_ms}

    def _page(self, page: list[StoredEvent], wait_ms: int | None, elapsed: float) -> _Page:
        fresh = []
        for event in page:  # never twice, even from a store that repeats or reorders
            if event.position > self.after:
                self.after = event.position
                fresh.append(event)
        if self.stop_when_caught_up and len(page) < self.limit:
            return _Page(fresh, over=True)
        return _Page(fresh, idle=not page and (wait_ms is None or elapsed < wait_ms / 2000.0))

    @staticmethod
    def key(event: StoredEvent) -> int:
        """What a consumer of the feed saves as its cursor: the position."""
        return event.position


@dataclass(slots=True)
class _Saver:
    """A consumer's cursor: where it resumes, and saving what the caller finished with."""

    name: str
    enabled: bool
    explicit_after: bool
    saved: int = 0
    store: FeedStore | None = None
    """Where a blocking follower saves (an async one saves through its reader)."""

    def start(self, store: FeedStore, cursor: _Cursor | _FeedCursor) -> None:
        self.store = store
        self.began(store.get_cursor(self.name), cursor)

    async def astart(self, reader: AsyncReader, cursor: _Cursor | _FeedCursor) -> None:
        self.began(await reader.get_cursor(self.name), cursor)

    def began(self, saved: int, cursor: _Cursor | _FeedCursor) -> None:
        self.saved = saved
        if not self.explicit_after:
            cursor.after = saved

    def due(self, done: int | None) -> int | None:
        """The value to save now, if any."""
        return done if self.enabled and done is not None and done != self.saved else None

    def save(self, value: int) -> None:
        assert self.store is not None
        self.store.save_cursor(self.name, value, expected=self.saved)
        self.saved = value

    async def asave(self, reader: AsyncReader, value: int) -> None:
        await reader.save_cursor(self.name, value, expected=self.saved)
        self.saved = value
