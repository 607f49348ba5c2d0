"""Following a session: through ``SessionManager.stream_session_events`` when the package has
it, else a long-poll loop on the store's ``get_events`` (the same wait underneath)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from sqlitestream import Event


def _long_poll(store: Any, session: str, after: int, wait_timeout_ms: int) -> Iterator[Event]:
    cursor = after
    while True:
        for event in store.get_events(session, after=cursor, limit=100, wait_timeout_ms=wait_timeout_ms):
            cursor = event.sequence_number
            yield event


def follow(store: Any, session: str, *, after: int, wait_timeout_ms: int) -> tuple[Iterator[Event], str]:
    """An endless iterator of the session's events after ``after``, and how it is done."""
    try:
        from sqlitestream.manager import SessionManager
    except ImportError:
        return _long_poll(
            store, session, after, wait_timeout_ms
        ), "store.get_events long-poll (no SessionManager yet)"
    try:
        manager = SessionManager(store)
        stream = manager.stream_session_events(
            session, after=after, limit=100, wait_timeout_ms=wait_timeout_ms
        )
    except Exception as exc:  # the manager is being written in parallel; say why we fell back
        return _long_poll(store, session, after, wait_timeout_ms), (
            f"store.get_events long-poll (SessionManager unusable: {type(exc).__name__}: {exc})"
        )
    return iter(stream), "SessionManager.stream_session_events"


def timed_wakes(store: Any, session: str, writer: Any, count: int) -> tuple[list[float], str]:
    """Milliseconds from each append a writer process makes on ``writer.go()`` (its
    ``time.time_ns()`` stamped in the event as ``t``) to this process's follower holding it;
    and how the follower follows."""
    stream, how = follow(store, session, after=store.get_latest_sequence(session), wait_timeout_ms=10_000)
    samples = []
    for _ in range(count):
        writer.go()
        event = next(stream)
        samples.append((time.time_ns() - event.data["t"]) / 1e6)
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    return samples, how
