"""The contract for cursor reads: ``after`` and ``before`` are strict, ``limit`` takes the first
matches, filters combine, ``since`` is inclusive and timezone-aware."""

from __future__ import annotations

from datetime import timedelta, timezone

from sqlitestream.models import EventType, StoredEvent
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import T0, ContractBase, new_event, seqs


class ReadsContract(ContractBase):
    """Reading events by cursor: one behaviour per test."""

    # Cursor reads ----------------------------------------------------------------------------

    def _fill(self, store: SessionStore, count: int = 10) -> list[StoredEvent]:
        events = []
        for index in range(count):
            events.append(
                new_event(
                    "s1",
                    "message_streamed" if index % 2 else "message_sent",
                    run_id="r1" if index < count // 2 else "r2",
                    timestamp=T0 + timedelta(seconds=index),
                    data={"i": index},
                )
            )
        return store.append_events(events)

    def test_after_is_strict(self, store: SessionStore) -> None:
        self._fill(store)
        assert seqs(store.get_events("s1", after=7)) == [8, 9, 10]
        assert store.get_events("s1", after=10) == []
        assert seqs(store.get_events("s1", after=0)) == list(range(1, 11))

    def test_before_is_strict(self, store: SessionStore) -> None:
        self._fill(store)
        assert seqs(store.get_events("s1", before=3)) == [1, 2]
        assert store.get_events("s1", before=1) == []
        assert store.get_events("s1", before=0) == []

    def test_after_and_before_give_a_window(self, store: SessionStore) -> None:
        self._fill(store)
        assert seqs(store.get_events("s1", after=3, before=7)) == [4, 5, 6]
        assert store.get_events("s1", after=5, before=6) == []
        assert store.get_events("s1", after=8, before=2) == []

    def test_limit_takes_the_first_matches(self, store: SessionStore) -> None:
        self._fill(store)
        assert seqs(store.get_events("s1", limit=3)) == [1, 2, 3]
        assert seqs(store.get_events("s1", after=8, limit=5)) == [9, 10]

    def test_paging_by_cursor_visits_every_event_once(self, store: SessionStore) -> None:
        self._fill(store, 23)
        seen: list[int | None] = []
        cursor = 0
        while page := store.get_events("s1", after=cursor, limit=5):
            seen.extend(seqs(page))
            cursor = page[-1].sequence_number or 0
        assert seen == list(range(1, 24))

    def test_run_id_and_type_filters_combine(self, store: SessionStore) -> None:
        self._fill(store)
        assert seqs(store.get_events("s1", run_id="r1")) == [1, 2, 3, 4, 5]
        assert seqs(store.get_events("s1", type="message_streamed")) == [2, 4, 6, 8, 10]
        assert seqs(store.get_events("s1", run_id="r2", type=EventType.MESSAGE_SENT)) == [7, 9]
        assert seqs(
            store.get_events("s1", run_id="r2", type="message_streamed", after=6, before=10, limit=1)
        ) == [8]

    def test_since_is_inclusive_and_timezone_aware(self, store: SessionStore) -> None:
        self._fill(store)
        cutoff = (T0 + timedelta(seconds=7)).astimezone(timezone(timedelta(hours=-8)))
        assert seqs(store.get_events("s1", since=cutoff)) == [8, 9, 10]
        micro_later = T0 + timedelta(seconds=7, microseconds=1)
        assert seqs(store.get_events("s1", since=micro_later)) == [9, 10]

    def test_events_of_other_sessions_are_not_returned(self, store: SessionStore) -> None:
        store.append_events([new_event("a"), new_event("b"), new_event("a")])
        assert {e.session_id for e in store.get_events("a")} == {"a"}
        assert store.get_events("unknown") == []

    def test_events_come_in_sequence_order_not_time_order(self, store: SessionStore) -> None:
        store.append_event(new_event(timestamp=T0 + timedelta(hours=1)))
        store.append_event(new_event(timestamp=T0))
        assert seqs(store.get_events("s1")) == [1, 2]
