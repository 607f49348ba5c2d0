"""Waiting for a stream to change, as a coroutine: a long-poll or SSE response waits on the
store's wake-ups (an asyncio event set from whichever thread appended or watched), never in a
parked thread, and ends early when the server shuts down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from sqlitestream.errors import SqliteStreamError

T = TypeVar("T")


class _Settable(Protocol):
    def set(self) -> None: ...


class _Member(Protocol):
    """What a :class:`Registrations` group wakes: called on the loop's thread."""

    def deliver(self) -> None: ...


class SharedReads:
    """One store read for many waiters: when many long-polls of one stream wake for one
    append, the first starts the read and the others share it, instead of identical reads
    queueing for the thread pool (SSE followers share theirs through a :class:`Feed`). A caller shares only a read that began after its wake-up was
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
            self._loop.call_soon_threadsafe(self.deliver)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def deliver(self) -> None:
        if self._reads is not None:
            self.woken_at = self._reads.tick
        self.woken = True
        self.event.set()


class Shutdown:
    """Set once when the server stops: every live response then ends."""

    def __init__(self) -> None:
        self._events: set[_Settable] = set()
        self.stopping = False

    def watch(self, event: _Settable) -> None:
        self._events.add(event)

    def unwatch(self, event: _Settable) -> None:
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
        self.members: set[_Member] = set()
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
            member.deliver()

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
        self, key: Hashable, watch: Callable[[_Group], AbstractContextManager[Any]], signal: _Member
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

    def leave(self, key: Hashable, signal: _Member) -> None:
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


class Page(Protocol):
    """A read of a stream from an offset, as a :class:`Feed` needs it."""

    @property
    def next_offset(self) -> str: ...
    @property
    def has_data(self) -> bool: ...
    @property
    def up_to_date(self) -> bool: ...
    @property
    def closed(self) -> bool: ...


P = TypeVar("P", bound=Page)

BACKLOG_BYTES = 1 << 22
"""The frames a follower may have waiting to be sent (4 MiB, a page of a read) before its
feed lets it go to read for itself: a client that stops reading holds no more than that."""


class Follower:
    """One SSE response at its stream's tip: the frames its :class:`Feed` formatted for it,
    waiting to be sent, and why it ends (``ended``: the stream closed, the client went away,
    the server stops, or the response's time is up). ``cursor`` is the client's
    ``cursor`` parameter; ``offset`` the offset after the frames given to it so far."""

    __slots__ = ("_frames", "_size", "_wake", "_write_now", "cursor", "ended", "lagging", "offset")

    def __init__(self, cursor: str | None, write_now: Callable[[bytes], bool] | None = None) -> None:
        self.cursor = cursor
        self.offset = ""
        self.ended = False
        self.lagging = False
        self._frames: list[bytes] = []
        self._size = 0
        self._wake: asyncio.Future[None] | None = None
        self._write_now = write_now

    def push(self, frame: bytes, next_offset: str) -> bool:
        """Send ``frame`` at once through ``write_now`` when the follower's task waits for
        frames (``write_now(frame)`` True: sent, or on its way), or else queue it for the task;
        False when that makes the backlog too large (the follower then reads for itself from
        :attr:`offset`, after the frames it has)."""
        if (
            self._write_now is not None
            and not self._frames
            and self._wake is not None
            and not self._wake.done()
            and self._write_now(frame)
        ):
            self.offset = next_offset
            return True
        self._frames.append(frame)
        self._size += len(frame)
        self.offset = next_offset
        self._wake_up()
        if self._size > BACKLOG_BYTES:
            self.lagging = True
        return not self.lagging

    def set(self) -> None:
        """End the response (after the frames already queued)."""
        self.ended = True
        self._wake_up()

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def frames(self) -> list[bytes]:
        """The frames queued, once there are some; none once the follower has ended or lags
        and every frame queued before was taken."""
        while not self._frames and not self.ended and not self.lagging:
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        frames, self._frames, self._size = self._frames, [], 0
        return frames


class Feed(Generic[P]):
    """The SSE followers of one stream on one loop, and one reader for all of them: on each
    change it reads once from the offset they are at and formats the frame once
    (``frame(page, cursor)``, shared by the followers with the same ``cursor``), then hands
    it to each. With 2,000 followers of a stream, a broadcast is one read, one frame and one
    wake-up of each follower's task to send it, instead of each follower waking to share a
    read, waking again for its result and formatting its own copy of the frame.

    A member of the stream's :class:`Registrations` group (``deliver`` on each change).
    Followers usually share one offset; a follower that attaches at another (it caught up
    to a newer tip on its own) gets its own read at that offset."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[P]],
        frame: Callable[[P, str | None], bytes],
    ) -> None:
        self._read = read
        self._frame = frame
        self.changes = 0
        self._at: dict[str, set[Follower]] = {}
        self._due: set[str] = set()
        self._reader: asyncio.Future[None] | None = None

    def deliver(self) -> None:
        self.changes += 1
        self._due.update(self._at)
        self._start()

    def attach(self, follower: Follower, offset: str, changes_seen: int) -> None:
        """``follower`` has everything up to ``offset``, as read when :attr:`changes` was
        ``changes_seen``: a change since then is read for it now."""
        follower.offset = offset
        follower.lagging = False
        self._at.setdefault(offset, set()).add(follower)
        if self.changes != changes_seen:
            self._due.add(offset)
            self._start()

    def detach(self, follower: Follower) -> None:
        followers = self._at.get(follower.offset)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._at[follower.offset]

    def _start(self) -> None:
        if self._due and (self._reader is None or self._reader.done()):
            self._reader = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self._due:
            offset = self._due.pop()
            if offset not in self._at:
                continue
            seen = self.changes
            try:
                page = await self._read(offset)
            except SqliteStreamError:  # deleted, or the store closed: each client reconnects
                for follower in self._at.pop(offset, ()):
                    follower.set()
                continue
            if not (page.has_data or page.closed):
                if self.changes != seen:
                    self._due.add(offset)
                continue
            followers = self._at.pop(offset, set())
            frames: dict[str | None, bytes] = {}
            staying = set()
            for follower in followers:
                frame = frames.get(follower.cursor)
                if frame is None:
                    frame = frames[follower.cursor] = self._frame(page, follower.cursor)
                if follower.push(frame, page.next_offset) and not page.closed:
                    staying.add(follower)
                elif page.closed:
                    follower.set()
            if staying:
                self._at.setdefault(page.next_offset, set()).update(staying)
                if self.changes != seen or not page.up_to_date:
                    self._due.add(page.next_offset)
