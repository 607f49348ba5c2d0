"""The contract for the one cursor follower, :func:`sqlitestream.streaming.follow` and
:func:`~sqlitestream.streaming.afollow`, on the store under test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pytest

from sqlitestream.aio import AsyncStore
from sqlitestream.models import Event, StoredEvent
from sqlitestream.store import SessionStore
from sqlitestream.streaming import afollow, follow
from sqlitestream.testing._base import DEADLINE_S, Background, ContractBase


def _events(session_id: str, ids: list[str], **fields: Any) -> list[Event]:
    return [Event(type="message_sent", session_id=session_id, id=id, **fields) for id in ids]


def _stored(events: Sequence[Event]) -> list[tuple[str, int | None]]:
    return [(event.id, event.sequence_number) for event in events]


class FollowContract(ContractBase):
    """The one cursor follower on this store: in order, each event once, and a session
    deleted and written again followed from sequence 1."""

    def test_follow_catches_up_in_order_and_stops(self, store: SessionStore) -> None:
        stored = store.append_events(
            _events("s1", [f"e{i}" for i in range(7)]) + _events("s1", ["r1", "r2"], run_id="r")
        )

        caught_up = list(follow(store, "s1", limit=3, stop_when_caught_up=True))
        of_run = list(follow(store, "s1", after=8, run_id="r", stop_when_caught_up=True))

        assert _stored(caught_up) == _stored(stored)
        assert _stored(of_run) == [("r2", 9)]

    def test_follow_delivers_an_event_appended_while_it_waits(self, store: SessionStore) -> None:
        events = follow(store, "s1", wait_timeout_ms=60_000, poll_interval_ms=5)
        waiter = Background(next, events)
        store.append_event(Event(type="message_sent", session_id="s1", id="wake"))
        assert waiter.result().id == "wake"
        events.close()

    @pytest.mark.parametrize("rewritten", [1, 3, 5])
    def test_follow_starts_again_at_sequence_1_when_the_session_is_written_again(
        self, store: SessionStore, rewritten: int
    ) -> None:
        store.append_events(_events("s1", ["old1", "old2", "old3"]))
        events = follow(store, "s1", wait_timeout_ms=60_000, poll_interval_ms=5)
        assert [next(events).id for _ in range(3)] == ["old1", "old2", "old3"]
        store.delete_session("s1")
        new = store.append_events(_events("s1", [f"new{i}" for i in range(1, rewritten + 1)]))

        again = Background(lambda: [next(events) for _ in range(rewritten)]).result()

        assert _stored(again) == _stored(new)
        events.close()

    def test_follow_waiting_when_the_session_is_deleted_follows_the_new_log(
        self, store: SessionStore
    ) -> None:
        store.append_event(Event(type="message_sent", session_id="s1", id="old"))
        restarts: list[str] = []
        # A short wait: a delete that lands just before the follower's wait begins is seen
        # when that wait ends.
        events = follow(
            store, "s1", wait_timeout_ms=100, poll_interval_ms=5, on_restart=lambda: restarts.append("s1")
        )
        assert next(events).id == "old"
        waiter = Background(next, events)
        store.delete_session("s1")
        store.append_event(Event(type="message_sent", session_id="s1", id="new"))

        assert _stored([waiter.result()]) == [("new", 1)]
        assert restarts == ["s1"]
        events.close()

    @pytest.mark.parametrize("through", ["store", "AsyncStore"])
    def test_afollow_starts_again_at_sequence_1_when_the_session_is_written_again(
        self, store: SessionStore, through: str
    ) -> None:
        store.append_events(_events("s1", ["old1", "old2"]))

        async def scenario() -> list[StoredEvent]:
            async with AsyncStore(store) as astore:
                reader: AsyncStore | SessionStore = astore if through == "AsyncStore" else store
                events = afollow(reader, "s1", wait_timeout_ms=60_000, poll_interval_ms=5)
                async with contextlib.aclosing(events):
                    seen = [await anext(events) for _ in range(2)]
                    store.delete_session("s1")
                    store.append_events(_events("s1", ["new1", "new2", "new3"]))
                    for _ in range(3):
                        seen.append(await asyncio.wait_for(anext(events), DEADLINE_S))
            return seen

        assert [event.id for event in asyncio.run(scenario())] == ["old1", "old2", "new1", "new2", "new3"]
