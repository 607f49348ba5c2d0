"""Following a session by cursor: the loop behind ``SessionManager.stream_session_events``
and ``astream_session_events``.

Both streams share one :class:`Cursor` (the validated query and its position) and one blocking
read step; the async stream runs that step in a worker thread of its own, in bounded waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlitestream._core.validate import check_int, describe
from sqlitestream.errors import ValidationError
from sqlitestream.models import StoredEvent
from sqlitestream.store import EventFilter, SessionStore

ASYNC_WAIT_CHUNK_MS = 250
"""Longest single store wait in the async stream: a cancelled task's worker thread returns
within this, so cancelling never leaves a thread blocked for a full long-poll."""


@dataclass
class Cursor:
    """A stream's validated query and its position, shared by the sync and async streams."""

    session_id: str
    after: int
    limit: int
    poll_s: float
    wait_timeout_ms: int | None
    filters: dict[str, Any]
    before: int | None
    follow: bool
    store: SessionStore

    @classmethod
    def build(
        cls,
        store: SessionStore,
        session_id: object,
        *,
        after: object,
        limit: object,
        poll_interval_ms: object,
        wait_timeout_ms: object,
        run_id: object,
        type: object,
        since: object,
        before: object,
        follow: object,
    ) -> Cursor:
        query = EventFilter.build(
            session_id, run_id=run_id, type=type, since=since, after=0 if after is None else after,
            before=before, limit=limit, wait_timeout_ms=wait_timeout_ms,
        )
        if query.limit is None:
            raise ValidationError("limit must be an int >= 1, got None")
        poll = check_int(poll_interval_ms, "poll_interval_ms", minimum=1, allow_none=False)
        if not isinstance(follow, bool):
            raise ValidationError(f"follow must be a bool, got {describe(follow)}")
        filters: dict[str, Any] = {}
        if query.run_id is not None:
            filters["run_id"] = query.run_id
        if query.type is not None:
            filters["type"] = query.type
        if query.since is not None:
            filters["since"] = query.since
        if query.before is not None:
            filters["before"] = query.before
        return cls(
            session_id=query.session_id,
            after=query.after or 0,
            limit=query.limit,
            poll_s=(poll or 1) / 1000.0,
            wait_timeout_ms=query.wait_timeout_ms or None,
            filters=filters,
            before=query.before,
            follow=follow,
            store=store,
        )

    @property
    def wait_ms(self) -> int | None:
        """How long the next store call may wait: only when following, in long-poll mode."""
        return self.wait_timeout_ms if self.follow else None

    def read(self, wait_ms: int | None) -> tuple[list[StoredEvent], bool]:
        """The next page from the store, and whether the stream ends after it. Blocking: the
        async stream runs it in its worker thread."""
        page = self.store.get_events(
            self.session_id, after=self.after, limit=self.limit, wait_timeout_ms=wait_ms, **self.filters
        )
        if not self.follow and len(page) < self.limit:
            return page, True
        if self.before is not None and not page:
            # Sequences only grow: once the log reached before - 1, nothing more can match.
            return page, self.store.get_latest_sequence(self.session_id) >= self.before - 1
        return page, False

    def fresh(self, page: list[StoredEvent]) -> Iterator[StoredEvent]:
        """The page's events past the cursor, advancing it as each one is handed out (so a
        store that repeats or reorders events still cannot make us deliver one twice)."""
        for event in page:
            seq = event.sequence_number or 0
            if seq > self.after:
                self.after = seq
                yield event

    def returned_early(self, wait_ms: int | None, elapsed_s: float) -> bool:
        """Whether an empty page came back without the store having waited (polling mode, or
        a store that ignores ``wait_timeout_ms``): then the caller sleeps, never spins."""
        return wait_ms is None or elapsed_s < wait_ms / 2000.0


def follow(cursor: Cursor) -> Generator[StoredEvent, None, None]:
    """Events past the cursor, each once, in order; sleeps instead of spinning when idle."""
    while True:
        wait_ms = cursor.wait_ms
        started = time.monotonic()
        page, over = cursor.read(wait_ms)
        yield from cursor.fresh(page)
        if over:
            return
        if not page and cursor.returned_early(wait_ms, time.monotonic() - started):
            time.sleep(cursor.poll_s)


async def afollow(cursor: Cursor) -> AsyncGenerator[StoredEvent, None]:
    """:func:`follow` for asyncio: every store call runs in this stream's own worker thread."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlitestream-astream")
    try:
        loop = asyncio.get_running_loop()
        while True:
            wait_ms = cursor.wait_ms
            if wait_ms is not None:
                wait_ms = min(wait_ms, ASYNC_WAIT_CHUNK_MS)
            started = time.monotonic()
            page, over = await loop.run_in_executor(executor, cursor.read, wait_ms)
            for event in cursor.fresh(page):
                yield event
            if over:
                return
            if not page and cursor.returned_early(wait_ms, time.monotonic() - started):
                await asyncio.sleep(cursor.poll_s)
    finally:
        # Do not wait: a worker still inside a (bounded) store wait finishes on its own.
        executor.shutdown(wait=False, cancel_futures=True)
