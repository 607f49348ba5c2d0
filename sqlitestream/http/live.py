"""Waiting for a stream to change, as a coroutine: a long-poll or SSE response waits on the
store's wake-ups (an asyncio event set from whichever thread appended or watched), never in a
parked thread, and ends early when the server shuts down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


class LoopSignal:
    """A wake-up set from any thread, delivered to an asyncio event on its loop."""

    __slots__ = ("_loop", "event")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.event = asyncio.Event()
        self._loop = loop

    def set(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


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
        self, watch: Callable[[LoopSignal], AbstractContextManager[Any]], shutdown: Shutdown
    ) -> None:
        self._signal = LoopSignal(asyncio.get_running_loop())
        self._registration = watch(self._signal)
        self._shutdown = shutdown

    async def __aenter__(self) -> Waiter:
        self._registration.__enter__()
        self._shutdown.watch(self._signal.event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._shutdown.unwatch(self._signal.event)
        self._registration.__exit__(None, None, None)

    @property
    def stopping(self) -> bool:
        return self._shutdown.stopping

    async def __call__(self, timeout: float) -> bool:
        event = self._signal.event
        if self._shutdown.stopping:
            return True
        if timeout > 0 and not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass
        woken = event.is_set()
        event.clear()
        return woken
