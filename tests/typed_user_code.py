"""User code that .ci/run type-checks with ``mypy --strict``: a ``StoredEvent``'s
``sequence_number`` is an ``int``, so arithmetic on it needs no assertion or cast. Not a test
module: pytest does not collect it."""

from __future__ import annotations

from collections.abc import Iterator

from sqlitestream import Event, InMemorySessionStore, SessionManager, StoredEvent


def next_cursor(store: InMemorySessionStore) -> int:
    n: int = store.get_events("s")[0].sequence_number + 1
    m: int = store.append_event_with_sequence(Event("message_sent", "s")).sequence_number + 1
    batch: list[StoredEvent] = store.append_events([Event("message_sent", "s", data={"k": 1})])
    return n + m + batch[0].sequence_number


def followed(manager: SessionManager) -> Iterator[int]:
    for event in manager.stream_session_events("s", follow=False):
        yield event.sequence_number * 2
