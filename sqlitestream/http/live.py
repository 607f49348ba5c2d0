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


async def until_shutdown(shutdown: Shutdown, call: Awaitable[T], instead: T) -> T:
    """``call``'s result, or ``instead`` once the server shuts down first (``call`` is then
    cancelled: a long-poll ends at once instead of holding the shutdown up)."""
    task = asyncio.ensure_future(call)
    stop = asyncio.Event()
    shutdown.watch(stop)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        if shutdown.stopping:
            task.cancel()
            return instead
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        return instead
    finally:
        shutdown.unwatch(stop)
        stopper.cancel()
        if not task.done():
            task.cancel()


class _Group:
    """The waiters of one stream on one loop, and the one store registration they share."""

    __slots__ = ("entered", "loop", "members", "registration")

    def __init__(self, watch: Callable[[_Group], AbstractContextManager[Any]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.members: set[LoopSignal] = set()
        self.registration = watch(self)
        # On a worker thread: registering reads the stream's tip from the store (the watcher's
        # seed, a query of about 0.3 ms) that would otherwise stall every response on the loop.
        self.entered = self.loop.run_in_executor(None, self.registration.__enter__)

    def set(self) -> None:
        """The store's wake-up, from any thread: one hop to the loop for all the members."""
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _deliver(self) -> None:
        for member in list(self.members):
            member._deliver()

    def leave(self) -> None:
        if self.entered.done():
            self._exit(self.entered)
        else:  # dropped while registering: undo the registration once it is done
            self.entered.add_done_callback(self._exit)

    def _exit(self, entered: asyncio.Future[Any]) -> None:
        if not entered.cancelled() and entered.exception() is None:
            self.registration.__exit__(None, None, None)


class Registrations:
    """The waiters of one stream share one registration with the store (the first registers,
    the last one out unregisters), and a change reaches all of them in one call from the
    store's thread to the loop. With 2,000 SSE followers of a stream the store keeps one waiter
    instead of 2,000: its watcher no longer walks 2,000 seeds at every look, and an append
    makes one cross-thread call instead of 2,000."""

    def __init__(self) -> None:
        self._groups: dict[Hashable, _Group] = {}

    async def join(
        self, key: Hashable, watch: Callable[[_Group], AbstractContextManager[Any]], signal: LoopSignal
    ) -> None:
        group = self._groups.get(key)
        if group is None or (group.entered.done() and group.entered.exception() is not None):
            group = self._groups[key] = _Group(watch)
        group.members.add(signal)
        try:
            await asyncio.shield(group.entered)
        except BaseException:
            self.leave(key, signal)
            raise

    def leave(self, key: Hashable, signal: LoopSignal) -> None:
        group = self._groups.get(key)
        if group is None or signal not in group.members:
            return
        group.members.discard(signal)
        if not group.members:
            del self._groups[key]
            group.leave()


class Waiter:
    """``async with Waiter(registrations, key, watch, shutdown) as wait:`` registered for a
    stream's changes in the block (``watch(signal)``: the store's registration, shared through
    ``registrations`` by every waiter on ``key``); ``await wait(timeout)`` returns True when
    woken (by a change or by shutdown), False when the time ran out."""

    def __init__(
        self,
        registrations: Registrations,
        key: Hashable,
        watch: Callable[[Any], AbstractContextManager[Any]],
        shutdown: Shutdown,
        reads: SharedReads | None = None,
    ) -> None:
        self._signal = LoopSignal(asyncio.get_running_loop(), reads)
        self._registrations = registrations
        self._key = key
        self._watch = watch
        self._shutdown = shutdown

    async def __aenter__(self) -> Waiter:
        await self._registrations.join(self._key, self._watch, self._signal)
        self._shutdown.watch(self._signal.event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._shutdown.unwatch(self._signal.event)
        self._registrations.leave(self._key, self._signal)

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
