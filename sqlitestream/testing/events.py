"""The contract for appending: gap-free per-session sequences, idempotent ids, optimistic
concurrency with ``expected_sequence``, all-or-nothing batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sqlitestream.errors import EventIdConflictError, SequenceConflictError, ValidationError
from sqlitestream.models import Event
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import T0, ContractBase, new_event, seqs


class EventsContract(ContractBase):
    """Appending events: one behaviour per test."""

    # Sequencing ------------------------------------------------------------------------------

    def test_sequences_start_at_one_and_increase_by_one(self, store: SessionStore) -> None:
        stored = [store.append_event_with_sequence(new_event()) for _ in range(5)]
        assert seqs(stored) == [1, 2, 3, 4, 5]
        assert store.get_latest_sequence("s1") == 5

    def test_sequences_are_per_session(self, store: SessionStore) -> None:
        store.append_event(new_event("a"))
        store.append_event(new_event("a"))
        assert store.append_event_with_sequence(new_event("b")).sequence_number == 1
        assert store.get_latest_sequence("a") == 2

    def test_latest_sequence_of_unknown_session_is_zero(self, store: SessionStore) -> None:
        assert store.get_latest_sequence("nothing") == 0

    def test_append_event_returns_the_stored_event(self, store: SessionStore) -> None:
        first = store.append_event(new_event("s1", id="e1", data={"n": 1}))
        second = store.append_event(new_event("s1", id="e2"))
        again = store.append_event(new_event("s1", id="e1", data={"n": 2}))
        assert (first.id, first.sequence_number, second.sequence_number) == ("e1", 1, 2)
        assert again.to_dict() == first.to_dict()  # a duplicate: the original
        assert store.get_events("s1") == [first, second]

    def test_stored_event_reads_back_equal(self, store: SessionStore, tmp_path: Path) -> None:
        event = new_event(
            "s1",
            "tool_call_completed",
            data={"text": "héllo ☃", "n": 2**53, "f": 0.1, "list": [1, {"a": None}], "t": True},
            metadata={"provider": "p"},
            run_id="r1",
            id="e1",
            timestamp=datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=timezone(timedelta(hours=5))),
        )
        stored = store.append_event_with_sequence(event)
        store = self.reopened(store, tmp_path)
        (read,) = store.get_events("s1")
        assert read == stored
        assert read.timestamp == event.timestamp
        assert read.timestamp.utcoffset() == timedelta(0)
        assert (read.data, read.metadata, read.run_id, read.id) == (event.data, event.metadata, "r1", "e1")

    def test_tuples_come_back_as_lists(self, store: SessionStore) -> None:
        store.append_event(new_event(data={"pair": (1, 2)}))
        assert store.get_events("s1")[0].data == {"pair": [1, 2]}

    def test_mutating_a_returned_event_does_not_change_the_store(self, store: SessionStore) -> None:
        store.append_event(new_event(data={"items": [1]}))
        store.get_events("s1")[0].data["items"].append(2)
        assert store.get_events("s1")[0].data == {"items": [1]}

    def test_sequences_survive_reopen(self, store: SessionStore, tmp_path: Path) -> None:
        store.append_events([new_event(), new_event()])
        store = self.reopened(store, tmp_path)
        assert store.get_latest_sequence("s1") == 2
        assert store.append_event_with_sequence(new_event()).sequence_number == 3

    def test_concurrent_threads_get_gap_free_sequences(self, store: SessionStore) -> None:
        threads, per_thread = 8, 25
        barrier = threading.Barrier(threads)
        results: list[list[int]] = [[] for _ in range(threads)]

        def append(slot: int) -> None:
            barrier.wait()
            for _ in range(per_thread):
                results[slot].append(store.append_event_with_sequence(new_event()).sequence_number or 0)

        workers = [threading.Thread(target=append, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        everything = sorted(seq for seqs in results for seq in seqs)
        assert everything == list(range(1, threads * per_thread + 1))
        assert all(seqs == sorted(seqs) for seqs in results)
        assert seqs(store.get_events("s1")) == everything

    # Duplicates ------------------------------------------------------------------------------

    def test_duplicate_id_returns_original_event(self, store: SessionStore, tmp_path: Path) -> None:
        original = store.append_event_with_sequence(new_event(id="e1", data={"v": 1}))
        store.append_event(new_event())
        store = self.reopened(store, tmp_path)
        again = store.append_event_with_sequence(
            new_event(id="e1", type="error_occurred", data={"v": 2}, timestamp=T0)
        )
        assert again == original
        assert again.sequence_number == 1 and again.data == {"v": 1}
        assert store.get_latest_sequence("s1") == 2

    def test_duplicate_id_in_other_session_conflicts(self, store: SessionStore) -> None:
        store.append_event(new_event("s1", id="e1"))
        with pytest.raises(EventIdConflictError):
            store.append_event_with_sequence(new_event("s2", id="e1"))
        assert store.get_events("s2") == []
        assert store.get_latest_sequence("s2") == 0

    def test_duplicate_id_ignores_expected_sequence(self, store: SessionStore) -> None:
        original = store.append_event_with_sequence(new_event(id="e1"))
        assert store.append_event_with_sequence(new_event(id="e1"), expected_sequence=7) == original

    # Optimistic concurrency ------------------------------------------------------------------

    def test_expected_sequence_matching_appends(self, store: SessionStore) -> None:
        assert store.append_event_with_sequence(new_event(), expected_sequence=0).sequence_number == 1
        assert store.append_event_with_sequence(new_event(), expected_sequence=1).sequence_number == 2

    def test_expected_sequence_mismatch_raises_with_actual(self, store: SessionStore) -> None:
        store.append_event(new_event())
        with pytest.raises(SequenceConflictError) as caught:
            store.append_event_with_sequence(new_event(), expected_sequence=0)
        assert caught.value.actual == 1 and caught.value.expected == 0
        assert store.get_latest_sequence("s1") == 1

    def test_expected_sequence_admits_one_of_racing_writers(self, store: SessionStore) -> None:
        store.append_event(new_event())
        barrier = threading.Barrier(6)
        outcomes: list[str] = []
        lock = threading.Lock()

        def attempt() -> None:
            barrier.wait()
            try:
                store.append_event_with_sequence(new_event(), expected_sequence=1)
                result = "ok"
            except SequenceConflictError:
                result = "conflict"
            with lock:
                outcomes.append(result)

        workers = [threading.Thread(target=attempt) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
        assert store.get_latest_sequence("s1") == 2

    # Batches ---------------------------------------------------------------------------------

    def test_batch_sequences_are_contiguous_per_session_in_input_order(self, store: SessionStore) -> None:
        store.append_event(new_event("a"))
        stored = store.append_events(
            [
                new_event("a", id="a2"),
                new_event("b", id="b1"),
                new_event("a", id="a3"),
                new_event("b", id="b2"),
            ]
        )
        assert [(e.id, e.sequence_number) for e in stored] == [("a2", 2), ("b1", 1), ("a3", 3), ("b2", 2)]
        assert seqs(store.get_events("a")) == [1, 2, 3]

    def test_empty_batch_returns_empty(self, store: SessionStore) -> None:
        assert store.append_events([]) == []

    def test_batch_returns_originals_for_stored_ids(self, store: SessionStore) -> None:
        original = store.append_event_with_sequence(new_event(id="e1", data={"v": 1}))
        stored = store.append_events([new_event(id="new"), new_event(id="e1", data={"v": 2})])
        assert stored[1] == original
        assert stored[0].sequence_number == 2
        assert store.get_latest_sequence("s1") == 2

    def test_batch_with_stored_ids_in_several_sessions_leaves_no_gaps(self, store: SessionStore) -> None:
        first_a = store.append_event_with_sequence(new_event("a", id="a1"))
        first_b = store.append_event_with_sequence(new_event("b", id="b1"))
        stored = store.append_events(
            [
                new_event("a", id="a2"),
                new_event("b", id="b1"),
                new_event("b", id="b2"),
                new_event("a", id="a1"),
                new_event("a", id="a3"),
            ]
        )
        assert [(e.id, e.sequence_number) for e in stored] == [
            ("a2", 2),
            ("b1", 1),
            ("b2", 2),
            ("a1", 1),
            ("a3", 3),
        ]
        assert stored[1] == first_b and stored[3] == first_a
        assert store.append_event_with_sequence(new_event("a", id="a4")).sequence_number == 4
        assert seqs(store.get_events("a")) == [1, 2, 3, 4]
        assert seqs(store.get_events("b")) == [1, 2]

    def test_batch_repeating_an_id_stores_it_once(self, store: SessionStore) -> None:
        stored = store.append_events([new_event(id="x", data={"v": 1}), new_event(id="x", data={"v": 2})])
        assert stored[0] == stored[1]
        assert stored[1].data == {"v": 1}
        assert store.get_latest_sequence("s1") == 1

    def test_batch_with_conflicting_id_writes_nothing(self, store: SessionStore) -> None:
        store.append_event(new_event("other", id="taken"))
        with pytest.raises(EventIdConflictError):
            store.append_events([new_event("s1", id="fine"), new_event("s1", id="taken")])
        assert store.get_events("s1") == []
        assert store.get_latest_sequence("s1") == 0

    def test_batch_with_an_invalid_item_writes_nothing(self, store: SessionStore) -> None:
        with pytest.raises(ValidationError, match=r"events\[1\]"):
            store.append_events([new_event(), "not an event"])  # type: ignore[list-item]
        assert store.get_latest_sequence("s1") == 0

    def test_batch_may_be_any_iterable_and_its_error_writes_nothing(self, store: SessionStore) -> None:
        stored = store.append_events(new_event(id=f"g{n}") for n in range(3))
        assert [(e.id, e.sequence_number) for e in stored] == [("g0", 1), ("g1", 2), ("g2", 3)]

        class Broken(Exception):
            pass

        def failing() -> Iterator[Event]:
            yield new_event("s2", id="before-the-failure")
            raise Broken("the caller's generator failed")

        with pytest.raises(Broken):
            store.append_events(failing())
        assert store.get_latest_sequence("s2") == 0

    def test_batch_repeating_an_id_across_sessions_writes_nothing(self, store: SessionStore) -> None:
        with pytest.raises(EventIdConflictError):
            store.append_events([new_event("s1", id="x"), new_event("s2", id="x")])
        assert store.get_latest_sequence("s1") == 0
