"""Following a session: through ``SessionManager.stream_session_events`` when the package has
it, else a long-poll loop on the store's ``get_events`` (the same wait underneath)."""

from __future__ import annotations

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
        return _long_poll(store, session, after, wait_timeout_ms), "store.get_events long-poll (no SessionManager yet)"
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
