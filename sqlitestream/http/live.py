"""Waiting for a stream to change, as a coroutine: a long-poll or SSE response waits on the
store's wake-ups (an asyncio event set from whichever thread appended or watched), never in a
parked thread, and ends early when the server shuts down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

T = TypeVar("T")


class SharedReads:
    """One store read for many waiters: when 2,000 SSE followers of one stream wake for one
    append, the first starts the read and the others share it, instead of 2,000 identical reads
    queueing for the thread pool. A caller shares only a read that began after its wake-up was
    delivered (``since``: the :attr:`tick` then), so it never gets a snapshot older than the
    change that woke it."""

    def __init__(self) -> None:
        self.tick = 0
        self._pending: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}

    async def read(self, key: Hashable, since: int, start: Callable[[], Awaitable[T]]) -> T:
        entry = self._pending.get(key)
        if entry is None or entry[0] <= since:
            self.tick += 1
            entry = (self.tick, asyncio.ensure_future(start()))
            self._pending[key] = entry
            mine = entry

            def forget(_: object) -> None:
                if self._pending.get(key) is mine:
                    del self._pending[key]

            entry[1].add_done_callback(forget)
        # Shielded: a follower that goes away does not cancel the read the others wait for.
        result: T = await asyncio.shield(entry[1])
        return result


class LoopSignal:
    """A wake-up set from any thread, delivered to an asyncio event on its loop; ``woken_at``
    is the :class:`SharedReads` tick when it was delivered."""

    __slots__ = ("_loop", "_reads", "event", "woken", "woken_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, reads: SharedReads | None = None) -> None:
        self.event = asyncio.Event()
        self._loop = loop
        self._reads = reads
        self.woken = False
        self.woken_at = 0 if reads is None else reads.tick

    def set(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _deliver(self) -> None:
        if self._reads is not None:
            self.woken_at = self._reads.tick
        self.woken = True
        self.event.set()


class Shutdown:
    """Set once when the server stops: every live response then ends."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()
        self.stopping = False

    def watch(self, event: asyncio.Event) -> None:
        self._events.add(event)

    def unwatch(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def stop(self) -> None:
        """Call in the loop's thread (or through ``call_soon_threadsafe``)."""
        self.stopping = True
        for event in list(self._events):
            event.set()


class Waiter:
    """``async with Waiter(watch, shutdown) as wait:`` registered for a stream's changes in the
    block; ``await wait(timeout)`` returns True when woken (by a change or by shutdown), False
    when the time ran out."""

    def __init__(
        self,
        watch: Callable[[LoopSignal], AbstractContextManager[Any]],
        shutdown: Shutdown,
        reads: SharedReads | None = None,
    ) -> None:
        self._signal = LoopSignal(asyncio.get_running_loop(), reads)
        self._registration = watch(self._signal)
        self._shutdown = shutdown

    async def __aenter__(self) -> Waiter:
        # On a worker thread: registering reads the stream's tip from the store (the watcher's
        # seed, a query of about 0.3 ms) that would otherwise stall every response on the loop.
        entered = asyncio.get_running_loop().run_in_executor(None, self._registration.__enter__)
        try:
            await asyncio.shield(entered)
        except asyncio.CancelledError:
            # The response was dropped while registering: undo the registration once it is done.
            entered.add_done_callback(self._undo)
            raise
        self._shutdown.watch(self._signal.event)
        return self

    def _undo(self, entered: asyncio.Future[Any]) -> None:
        if not entered.cancelled() and entered.exception() is None:
            self._registration.__exit__(None, None, None)

    async def __aexit__(self, *exc: object) -> None:
        self._shutdown.unwatch(self._signal.event)
        self._registration.__exit__(None, None, None)

    @property
    def woken_at(self) -> int:
        return self._signal.woken_at

    @property
    def stopping(self) -> bool:
        return self._shutdown.stopping

    async def __call__(self, timeout: float) -> bool:
        signal = self._signal
        if self._shutdown.stopping:
            return True
        if timeout > 0 and not signal.woken:
            # A timer that only sets the event, not asyncio.wait_for: that makes a task for every
            # wait, which with thousands of followers woken at once was most of their cost.
            timer = asyncio.get_running_loop().call_later(timeout, signal.event.set)
            try:
                await signal.event.wait()
            finally:
                timer.cancel()
        woken = signal.woken or self._shutdown.stopping
        signal.woken = False
        signal.event.clear()
        return woken
