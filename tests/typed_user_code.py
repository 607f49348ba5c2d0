"""User code that .ci/run type-checks with ``mypy --strict``: a ``StoredEvent``'s
``sequence_number`` is an ``int``, so arithmetic on it needs no assertion or cast, and the
records take an enum's string value where they take its member. Not a test module: pytest
does not collect it."""

from __future__ import annotations

from collections.abc import Iterator

from sqlitestream import (
    Event,
    EventType,
    FeedStore,
    InMemorySessionStore,
    Run,
    RunStatus,
    Session,
    SessionManager,
    SessionStatus,
    StoredEvent,
    follow,
)


def next_cursor(store: InMemorySessionStore) -> int:
    n: int = store.get_events("s")[0].sequence_number + 1
    m: int = store.append_event_with_sequence(Event("message_sent", "s")).sequence_number + 1
    batch: list[StoredEvent] = store.append_events([Event("message_sent", "s", data={"k": 1})])
    return n + m + batch[0].sequence_number


def followed(manager: SessionManager) -> Iterator[int]:
    for event in manager.stream_session_events("s", follow=False):
        yield event.sequence_number * 2


def feed_lag(store: FeedStore) -> int:
    positions: list[int] = [event.position + 1 for event in store.read_feed(limit=10)]
    resumed: int = sum(
        event.position for event in follow(store, None, consumer="c", stop_when_caught_up=True)
    )
    return store.get_last_position() - store.get_cursor("c") + sum(positions) + resumed


def records_from_strings() -> list[str]:
    """The string value of an enum is accepted wherever its member is, as at run time."""
    session = Session(agent_id="a", status="active")
    run = Run(session_id=session.id, status="completed")
    stored = StoredEvent("message_sent", session.id, sequence_number=1, position=1)
    statuses: list[SessionStatus | RunStatus | EventType] = [session.status, run.status, stored.type]
    return [status.value for status in statuses]
