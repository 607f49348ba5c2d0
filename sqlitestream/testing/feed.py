"""The contract for the store-wide feed and consumer cursors (:class:`~sqlitestream.feed.FeedStore`).

A store that is not a ``FeedStore`` skips these tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from sqlitestream.aio import AsyncStore
from sqlitestream.errors import CursorConflictError, StoreClosedError, ValidationError
from sqlitestream.feed import FeedStore
from sqlitestream.models import Event, Session, StoredEvent
from sqlitestream.store import SessionStore
from sqlitestream.streaming import afollow, follow
from sqlitestream.testing._base import DEADLINE_S, Background, ContractBase, new_event


def feed_of(store: SessionStore) -> FeedStore:
    if not isinstance(store, FeedStore):
        pytest.skip("this store is not a FeedStore")
    return store


def where(events: list[StoredEvent]) -> list[tuple[str, int | None]]:
    return [(event.session_id, event.sequence_number) for event in events]


class FeedContract(ContractBase):
    """The feed and consumer cursors: one behaviour per test."""

    # Positions -------------------------------------------------------------------------------

    def test_an_empty_store_has_last_position_0_and_an_empty_feed(self, store: SessionStore) -> None:
        feed = feed_of(store)
        assert feed.get_last_position() == 0
        assert feed.read_feed() == []

    def test_positions_increase_across_sessions_in_append_order(self, store: SessionStore) -> None:
        feed = feed_of(store)
        first = feed.append_event(new_event("s1"))
        second = feed.append_event(new_event("s2"))
        third = feed.append_event(new_event("s1"))
        assert first.position < second.position < third.position
        assert feed.get_last_position() == third.position

    def test_a_batch_takes_positions_in_input_order(self, store: SessionStore) -> None:
        feed = feed_of(store)
        before = feed.append_event(new_event("s0")).position
        stored = feed.append_events([new_event("s2"), new_event("s1"), new_event("s2")])
        positions = [event.position for event in stored]
        assert positions == sorted(positions) and positions[0] > before
        assert len(set(positions)) == 3

    def test_a_duplicate_id_returns_the_original_position(self, store: SessionStore) -> None:
        feed = feed_of(store)
        original = feed.append_event(new_event(id="e1"))
        feed.append_event(new_event("s2"))
        assert feed.append_event(new_event(id="e1")).position == original.position
        assert feed.append_events([new_event(id="e1")])[0].position == original.position
        assert [event.id for event in feed.read_feed()].count("e1") == 1

    def test_reads_return_the_position_appends_returned(self, store: SessionStore) -> None:
        feed = feed_of(store)
        stored = [feed.append_event(new_event("s1")), *feed.append_events([new_event("s2"), new_event("s1")])]
        assert [event.position for event in feed.get_events("s1")] == [stored[0].position, stored[2].position]
        assert feed.read_feed() == stored

    def test_positions_are_never_reused_after_a_delete(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.append_event(new_event("s1"))
        last = feed.append_event(new_event("s2")).position
        feed.delete_session("s2")
        assert feed.get_last_position() == last
        assert feed.append_event(new_event("s3")).position > last

    def test_an_imported_session_takes_new_positions(self, store: SessionStore) -> None:
        feed = feed_of(store)
        import_session = getattr(feed, "import_session", None)
        if import_session is None:
            pytest.skip("this store does not import sessions")
        last = feed.append_event(new_event("s1")).position
        imported = [Event("message_sent", "s9", id=f"i{n}", sequence_number=n) for n in (1, 2)]
        import_session("s9", events=imported)
        assert [(event.id, event.position) for event in feed.read_feed(after=last)] == [
            ("i1", last + 1),
            ("i2", last + 2),
        ]

    def test_positions_survive_reopen(self, store: SessionStore, tmp_path: Path) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event("s1"), new_event("s2")])
        again = feed_of(self.reopened(store, tmp_path))
        assert again.read_feed() == stored
        assert again.append_event(new_event("s3")).position > stored[-1].position

    # Reading the feed ------------------------------------------------------------------------

    def test_read_feed_pages_by_after_and_limit(self, store: SessionStore) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event(f"s{n % 3}") for n in range(7)])
        first = feed.read_feed(limit=3)
        rest = feed.read_feed(after=first[-1].position)
        assert first + rest == stored
        assert feed.read_feed(after=stored[-1].position) == []

    def test_read_feed_keeps_only_the_given_types(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.append_events(
            [
                new_event("s1"),
                new_event("s2", "tool_call_started", id="t1"),
                new_event("s1", "run_started", id="r1"),
            ]
        )
        assert [e.id for e in feed.read_feed(types=["tool_call_started", "run_started"])] == ["t1", "r1"]
        assert feed.read_feed(types=["session_failed"]) == []

    def test_read_feed_leaves_out_deleted_sessions(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.append_events([new_event("s1"), new_event("s2"), new_event("s1")])
        feed.delete_session("s1")
        assert where(feed.read_feed()) == [("s2", 1)]

    @pytest.mark.parametrize(
        ("arguments", "named"),
        [
            ({"after": -1}, "after"),
            ({"after": "3"}, "after"),
            ({"limit": 0}, "limit"),
            ({"types": "message_sent"}, "types"),
            ({"types": []}, "types"),
            ({"types": ["no_such_type"]}, "types"),
            ({"wait_timeout_ms": -5}, "wait_timeout_ms"),
        ],
    )
    def test_read_feed_refuses_bad_arguments(
        self, store: SessionStore, arguments: dict[str, object], named: str
    ) -> None:
        feed = feed_of(store)
        with pytest.raises(ValidationError, match=named):
            feed.read_feed(**arguments)  # type: ignore[arg-type]

    def test_read_feed_after_close_raises(self, tmp_path: Path) -> None:
        feed = feed_of(self.make_store(tmp_path))
        feed.close()
        with pytest.raises(StoreClosedError):
            feed.read_feed()
        with pytest.raises(StoreClosedError):
            feed.get_last_position()

    # Long-polling the feed -------------------------------------------------------------------

    def test_read_feed_long_poll_wakes_on_an_append_to_any_session(self, store: SessionStore) -> None:
        self._require_long_poll()
        feed = feed_of(store)
        last = feed.append_event(new_event("s1")).position
        waiter = Background(feed.read_feed, after=last, wait_timeout_ms=60_000)
        feed.append_event(new_event("other", id="wake"))
        assert [event.id for event in waiter.result()] == ["wake"]

    def test_read_feed_long_poll_waits_for_a_matching_type(self, store: SessionStore) -> None:
        self._require_long_poll()
        feed = feed_of(store)
        waiter = Background(feed.read_feed, types=["run_started"], wait_timeout_ms=60_000)
        feed.append_event(new_event("s1"))
        feed.append_event(new_event("s2", "run_started", id="match"))
        assert [event.id for event in waiter.result()] == ["match"]

    def test_read_feed_long_poll_times_out_with_empty_list(self, store: SessionStore) -> None:
        self._require_long_poll()
        assert feed_of(store).read_feed(wait_timeout_ms=50) == []

    def test_read_feed_long_poll_raises_closed_when_store_closes(self, tmp_path: Path) -> None:
        self._require_long_poll()
        feed = feed_of(self.make_store(tmp_path))
        waiter = Background(feed.read_feed, wait_timeout_ms=60_000)
        feed.close()
        with pytest.raises(StoreClosedError):
            waiter.result()

    # No skips, no repeats --------------------------------------------------------------------

    def test_a_feed_follower_sees_every_event_of_concurrent_writers_once(self, store: SessionStore) -> None:
        feed = feed_of(store)
        writers, per_writer = 4, 40
        done = threading.Event()
        appended: list[list[StoredEvent]] = [[] for _ in range(writers)]

        def write(slot: int) -> None:
            for n in range(per_writer):
                if n % 4 == 3:
                    appended[slot].extend(feed.append_events([new_event(f"w{slot}"), new_event("shared")]))
                else:
                    appended[slot].append(feed.append_event(new_event(f"w{slot}" if n % 2 else "shared")))

        seen: list[StoredEvent] = []

        def follow() -> None:
            after = 0
            while True:
                finished = done.is_set()
                page = feed.read_feed(
                    after=after, limit=7, wait_timeout_ms=50 if self.supports_long_poll else None
                )
                seen.extend(page)
                if page:
                    after = page[-1].position
                elif finished:
                    return

        follower = Background(follow)
        threads = [threading.Thread(target=write, args=(slot,)) for slot in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_S)
        done.set()
        follower.result()
        expected = {event.id: event.position for events in appended for event in events}
        assert [event.position for event in seen] == sorted(expected.values())
        assert {event.id: event.position for event in seen} == expected

    # Consumer cursors ------------------------------------------------------------------------

    def test_an_unknown_cursor_is_0(self, store: SessionStore) -> None:
        assert feed_of(store).get_cursor("nobody") == 0

    def test_a_saved_cursor_is_read_back_and_listed(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.save_cursor("b-consumer", 7)
        feed.save_cursor("a-consumer", 3)
        feed.save_cursor("b-consumer", 9)
        assert feed.get_cursor("b-consumer") == 9
        assert [(c.name, c.position) for c in feed.list_cursors()] == [("a-consumer", 3), ("b-consumer", 9)]

    def test_save_cursor_with_the_expected_value_stores_it(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.save_cursor("c", 5, expected=0)
        feed.save_cursor("c", 8, expected=5)
        feed.save_cursor("c", 0, expected=8)
        feed.save_cursor("c", 2, expected=0)
        assert feed.get_cursor("c") == 2

    def test_save_cursor_with_another_expected_value_raises_and_writes_nothing(
        self, store: SessionStore
    ) -> None:
        feed = feed_of(store)
        feed.save_cursor("c", 5)
        with pytest.raises(CursorConflictError) as caught:
            feed.save_cursor("c", 9, expected=4)
        assert (caught.value.name, caught.value.expected, caught.value.actual) == ("c", 4, 5)
        with pytest.raises(CursorConflictError) as absent:
            feed.save_cursor("new", 9, expected=1)
        assert absent.value.actual == 0
        assert (feed.get_cursor("c"), feed.get_cursor("new")) == (5, 0)
        assert [c.name for c in feed.list_cursors()] == ["c"]

    def test_of_concurrent_compare_and_sets_exactly_one_wins(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.save_cursor("c", 1)
        outcomes: list[str] = []
        lock = threading.Lock()

        def advance(value: int) -> None:
            try:
                feed.save_cursor("c", value, expected=1)
                result = "won"
            except CursorConflictError:
                result = "lost"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=advance, args=(10 + n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_S)
        assert sorted(outcomes) == ["lost"] * 5 + ["won"]
        assert feed.get_cursor("c") in range(10, 16)

    def test_delete_cursor_forgets_it_and_is_idempotent(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.save_cursor("c", 5)
        feed.delete_cursor("c")
        feed.delete_cursor("c")
        assert feed.get_cursor("c") == 0
        assert feed.list_cursors() == []

    def test_cursors_survive_reopen(self, store: SessionStore, tmp_path: Path) -> None:
        feed_of(store).save_cursor("c", 5)
        assert feed_of(self.reopened(store, tmp_path)).get_cursor("c") == 5

    def test_cursors_are_not_session_records(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.save_session(Session(agent_id="a", id="s1"))
        feed.save_cursor("s1", 4)
        feed.delete_session("s1")
        assert feed.get_cursor("s1") == 4

    @pytest.mark.parametrize(
        ("call", "named"),
        [
            (lambda f: f.save_cursor("", 1), "name"),
            (lambda f: f.save_cursor(5, 1), "name"),
            (lambda f: f.save_cursor("c", -1), "position"),
            (lambda f: f.save_cursor("c", True), "position"),
            (lambda f: f.save_cursor("c", 1, expected=-1), "expected"),
            (lambda f: f.get_cursor(None), "name"),
            (lambda f: f.delete_cursor(""), "name"),
        ],
    )
    def test_cursor_calls_refuse_bad_arguments(self, store: SessionStore, call: object, named: str) -> None:
        feed = feed_of(store)
        with pytest.raises(ValidationError, match=named):
            call(feed)  # type: ignore[operator]
        assert feed.list_cursors() == []

    # Following the feed, and consumers ------------------------------------------------------

    def test_follow_the_feed_catches_up_in_position_order_and_stops(self, store: SessionStore) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event(f"s{n % 3}", id=f"e{n}") for n in range(8)])
        assert list(follow(feed, None, limit=3, stop_when_caught_up=True)) == stored
        assert [e.id for e in follow(feed, after=stored[5].position, stop_when_caught_up=True)] == [
            "e6",
            "e7",
        ]
        only = follow(feed, types=["run_started"], stop_when_caught_up=True)
        assert list(only) == []

    def test_follow_the_feed_delivers_an_event_appended_while_it_waits(self, store: SessionStore) -> None:
        feed = feed_of(store)
        events = follow(feed, None, wait_timeout_ms=60_000, poll_interval_ms=5)
        waiter = Background(next, events)
        feed.append_event(new_event("anywhere", id="wake"))
        assert waiter.result().id == "wake"
        events.close()

    def test_afollow_follows_the_feed_through_a_plain_store_and_an_async_store(
        self, store: SessionStore
    ) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event(f"s{n % 2}") for n in range(5)])

        async def both() -> tuple[list[StoredEvent], list[StoredEvent]]:
            plain = [event async for event in afollow(feed, None, limit=2, stop_when_caught_up=True)]
            async with AsyncStore(feed) as facade:
                wrapped = [event async for event in facade.follow(limit=2, stop_when_caught_up=True)]
            return plain, wrapped

        assert asyncio.run(both()) == (stored, stored)

    def test_async_read_feed_long_poll_wakes_on_an_append(self, store: SessionStore) -> None:
        self._require_long_poll()
        feed = feed_of(store)

        async def wait_and_append() -> list[StoredEvent]:
            async with AsyncStore(feed) as facade:
                waiting = asyncio.ensure_future(facade.read_feed(wait_timeout_ms=60_000))
                await asyncio.sleep(0)
                await facade.append_event(new_event("s7", id="wake"))
                return await asyncio.wait_for(waiting, DEADLINE_S)

        assert [event.id for event in asyncio.run(wait_and_append())] == ["wake"]

    def test_a_consumer_resumes_after_what_it_finished_with(self, store: SessionStore) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event(f"s{n % 2}", id=f"e{n}") for n in range(6)])
        first = follow(feed, None, consumer="proj", limit=2, stop_when_caught_up=True)
        assert [next(first).id for _ in range(3)] == ["e0", "e1", "e2"]
        first.close()  # e2 was being handled: not finished, so delivered again
        assert feed.get_cursor("proj") == stored[1].position
        rest = list(follow(feed, None, consumer="proj", stop_when_caught_up=True))
        assert [event.id for event in rest] == ["e2", "e3", "e4", "e5"]
        assert feed.get_cursor("proj") == stored[-1].position
        assert list(follow(feed, None, consumer="proj", stop_when_caught_up=True)) == []

    def test_a_consumer_saves_before_it_waits(self, store: SessionStore) -> None:
        self._require_long_poll()
        feed = feed_of(store)
        stored = feed.append_events([new_event(id="e0"), new_event(id="e1")])
        events = follow(feed, None, consumer="live", wait_timeout_ms=60_000, poll_interval_ms=5)
        assert [next(events).id for _ in range(2)] == ["e0", "e1"]
        waiter = Background(next, events)  # asks past e1, then waits for more
        deadline = time.monotonic() + DEADLINE_S
        while feed.get_cursor("live") != stored[1].position:
            assert time.monotonic() < deadline, "the consumer did not save its cursor before waiting"
            time.sleep(0.005)
        feed.append_event(new_event(id="e2"))
        assert waiter.result().id == "e2"
        events.close()

    def test_a_consumer_of_one_session_saves_sequence_numbers(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.append_events([new_event("s1"), new_event("s2"), new_event("s1")])
        assert len(list(follow(feed, "s1", consumer="ui:s1", stop_when_caught_up=True))) == 2
        assert feed.get_cursor("ui:s1") == 2
        feed.append_event(new_event("s1", id="third"))
        assert [e.id for e in follow(feed, "s1", consumer="ui:s1", stop_when_caught_up=True)] == ["third"]

    def test_two_followers_of_one_consumer_conflict(self, store: SessionStore) -> None:
        feed = feed_of(store)
        feed.append_events([new_event(id=f"e{n}") for n in range(4)])
        one = follow(feed, None, consumer="dup", limit=1, stop_when_caught_up=True)
        two = follow(feed, None, consumer="dup", limit=1, stop_when_caught_up=True)
        next(one), next(one)  # saves e0
        next(two)
        with pytest.raises(CursorConflictError):
            next(two)  # would save e0 expecting 0, but one saved it already
        one.close()

    def test_a_consumer_with_save_cursor_false_only_resumes(self, store: SessionStore) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event(id=f"e{n}") for n in range(3)])
        feed.save_cursor("manual", stored[0].position)
        seen = list(follow(feed, None, consumer="manual", save_cursor=False, stop_when_caught_up=True))
        assert [e.id for e in seen] == ["e1", "e2"]
        assert feed.get_cursor("manual") == stored[0].position

    def test_an_async_consumer_saves_its_cursor(self, store: SessionStore) -> None:
        feed = feed_of(store)
        stored = feed.append_events([new_event(id=f"e{n}") for n in range(3)])

        async def consume() -> list[str]:
            async with AsyncStore(feed) as facade:
                return [e.id async for e in facade.follow(consumer="async", stop_when_caught_up=True)]

        assert asyncio.run(consume()) == ["e0", "e1", "e2"]
        assert feed.get_cursor("async") == stored[-1].position

    @pytest.mark.parametrize(
        "arguments",
        [
            {"run_id": "r"},
            {"before": 3},
            {"type": "message_sent", "types": ["run_started"]},
            {"consumer": ""},
        ],
    )
    def test_follow_the_feed_refuses_session_filters_and_bad_consumers(
        self, store: SessionStore, arguments: dict[str, object]
    ) -> None:
        with pytest.raises(ValidationError):
            follow(feed_of(store), None, **arguments)  # type: ignore[arg-type]
