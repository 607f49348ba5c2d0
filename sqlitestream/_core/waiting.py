"""Long-poll waiting: per-session wake-ups for threads blocked in ``get_events`` and for
asyncio tasks awaiting in :mod:`sqlitestream.aio`.

A waiter registers for its session *before* it re-runs its query, so an append that commits
between the query and the wait still wakes it. Wake-ups are hints: a woken waiter re-queries
with its cursor, and the query result is the only source of truth.

The built-in stores share their hub with the asyncio facade through one private method,
``_wait_hub()``: it arms whatever brings other processes' appends to the hub (the SQLite
watcher starts with the first waiter; the PostgreSQL listener is started and LISTENing when
it returns, so it may block) and returns the hub.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from sqlitestream.errors import StoreClosedError
from sqlitestream.models import StoredEvent


class Signal(Protocol):
    """What wakes a waiter: ``set()`` is called from whichever thread appended or watched."""

    def set(self) -> None: ...


FEED = ""
"""The hub key of the store-wide feed's waiters: no session id is empty. Every wake-up of a
session also wakes them (anything appended is in the feed)."""

NO_SEED: object = object()
"""What :meth:`WakeHub.seeds` gives for a session whose waiters hold no common seed."""


class Waiter:
    __slots__ = ("key", "released", "seed", "woken")

    def __init__(self, key: str, woken: Signal) -> None:
        self.key = key
        self.woken = woken
        self.released = False
        self.seed: object = NO_SEED
        """What the hub's ``seed`` gave; the watcher may replace it with what it has seen since."""


class WakeHub:
    """Waiters grouped by session id; ``wake`` touches only the named sessions' waiters."""

    def __init__(
        self,
        on_register: Callable[[], None] | None = None,
        seed: Callable[[str], object] | None = None,
    ) -> None:
        """``seed(session_id)`` runs as a waiter registers, before it is added, and what it
        returns is the waiter's seed (the SQLite store returns the session's tip as of that
        moment, read before the waiter re-queries); ``on_register()`` runs after each waiter is
        added (the SQLite store makes sure its watcher runs). Both run in the registering
        thread."""
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        # Registered since the last newcomers() (only with a seed: a watcher drains them).
        self._newcomers: set[Waiter] | None = None if seed is None else set()
        self._closed = False
        self._on_register = on_register
        self._seed = seed

    @property
    def closed(self) -> bool:
        return self._closed

    def sessions(self) -> list[str]:
        """The session ids someone is waiting on right now."""
        with self._lock:
            return list(self._waiters)

    def seeds(self) -> dict[str, object]:
        """The session ids waited on right now, each with the seed all its waiters share, or
        :data:`NO_SEED` (no seed, or different ones)."""
        with self._lock:
            found: dict[str, object] = {}
            for session_id, group in self._waiters.items():
                seeds = {waiter.seed for waiter in group}  # tips: hashable
                found[session_id] = seeds.pop() if len(seeds) == 1 else NO_SEED
            return found

    def has_waiters(self) -> bool:
        return bool(self._waiters)

    def newcomers(self) -> list[Waiter]:
        """The waiters registered since the last call that still wait (with a ``seed`` only:
        otherwise none)."""
        with self._lock:
            if not self._newcomers:
                return []
            found, self._newcomers = list(self._newcomers), set()
            return found

    def waiters(self, session_ids: Iterable[str] | None = None) -> dict[str, list[Waiter]]:
        """The waiters of the named sessions that have any (of every session: None)."""
        with self._lock:
            if session_ids is None:
                return {session_id: list(group) for session_id, group in self._waiters.items()}
            return {
                session_id: list(group)
                for session_id in session_ids
                if (group := self._waiters.get(session_id)) is not None
            }

    @contextmanager
    def waiting(self, session_id: str, woken: Signal | None = None) -> Iterator[Waiter]:
        """Registered for ``session_id`` inside the block: ``woken`` (a new
        ``threading.Event`` by default) is set on each append, delete or close."""
        waiter = Waiter(session_id, threading.Event() if woken is None else woken)
        if self._seed is not None:
            waiter.seed = self._seed(session_id)
        with self._lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            self._waiters.setdefault(session_id, set()).add(waiter)
            if self._newcomers is not None:
                self._newcomers.add(waiter)
        try:
            if self._on_register is not None:
                self._on_register()
            yield waiter
        finally:
            with self._lock:
                if self._newcomers is not None:
                    self._newcomers.discard(waiter)
                group = self._waiters.get(session_id)
                if group is not None:
                    group.discard(waiter)
                    if not group:
                        del self._waiters[session_id]

    def wake(self, session_ids: Iterable[str]) -> None:
        if not self._waiters:  # the common case: nobody waits, no lock taken
            return
        with self._lock:
            for session_id in session_ids:
                for waiter in self._waiters.get(session_id, ()):
                    waiter.woken.set()
            for waiter in self._waiters.get(FEED, ()):
                waiter.woken.set()

    def wake_waiters(self, waiters: Iterable[Waiter]) -> None:
        """Wake these waiters only (not the feed's: a watcher that picks waiters wakes the
        feed's itself)."""
        for waiter in waiters:
            waiter.woken.set()

    def release_waiters(self, waiters: Iterable[Waiter]) -> None:
        """Their session was deleted (or deleted and written again): they return ``[]``."""
        for waiter in waiters:
            waiter.released = True
            waiter.woken.set()

    def release(self, session_id: str) -> None:
        """The session was deleted: its waiters return ``[]``."""
        with self._lock:
            for waiter in self._waiters.get(session_id, ()):
                waiter.released = True
                waiter.woken.set()

    def close(self) -> None:
        """The store is closing: every waiter raises ``StoreClosedError``."""
        with self._lock:
            self._closed = True
            for group in self._waiters.values():
                for waiter in group:
                    waiter.woken.set()


def long_poll(
    hub: WakeHub, session_id: str, query: Callable[[], list[StoredEvent]], wait_seconds: float
) -> list[StoredEvent]:
    """Run ``query``; if empty and ``wait_seconds`` > 0, re-run it on each wake-up until it
    returns events or the deadline passes."""
    events = query()
    if events or wait_seconds <= 0:
        return events
    deadline = time.monotonic() + wait_seconds
    woken = threading.Event()
    with hub.waiting(session_id, woken) as waiter:
        while True:
            events = query()
            if events:
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            woken.wait(remaining)
            woken.clear()
            if hub.closed:
                raise StoreClosedError("the store was closed while waiting for events")
            if waiter.released:
                return []
