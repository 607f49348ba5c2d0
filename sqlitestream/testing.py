"""The ``SessionStore`` contract as a pytest test class, shipped for custom stores.

Subclass :class:`SessionStoreContract` in a ``test_*.py`` file and provide a factory::

    from sqlitestream.testing import SessionStoreContract

    class TestMyStore(SessionStoreContract):
        def make_store(self, tmp_path):
            return MyStore(...)

The class name does not start with ``Test``, so pytest collects only your subclass. Durable
stores also override :meth:`SessionStoreContract.reopen` (close and open the same storage) so
the persistence tests run; stores that cannot long-poll set ``supports_long_poll = False``.
The same class runs the cursor follower (:func:`sqlitestream.streaming.follow`) on your
store. Requires pytest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sqlitestream._follow_contract import DEADLINE_S, Background, FollowContract
from sqlitestream.errors import (
    ConflictError,
    EventIdConflictError,
    RunNotFoundError,
    SequenceConflictError,
    SessionNotFoundError,
    StoreClosedError,
    ValidationError,
)
from sqlitestream.models import (
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    StoredEvent,
)
from sqlitestream.store import SessionStore

__all__ = ["SessionStoreContract"]

_T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _event(session_id: str = "s1", type: str = "message_sent", **fields: Any) -> Event:
    return Event(type=type, session_id=session_id, **fields)


def _seqs(events: Sequence[Event]) -> list[int | None]:
    return [event.sequence_number for event in events]


class SessionStoreContract(FollowContract):
    """Every rule of the ``SessionStore`` contract, one behaviour per test, and the cursor
    follower (:mod:`sqlitestream.streaming`) on the store.

    No test sleeps and hopes: a waiter is checked by what it returns (the event appended
    after it started, or ``[]`` no sooner than its timeout), and an idempotent action that
    should release a waiter is repeated until it does, within a deadline.
    """

    supports_long_poll = True

    # Factory hooks ---------------------------------------------------------------------------

    def make_store(self, tmp_path: Path) -> SessionStore:
        raise NotImplementedError("subclasses return a new, empty store")

    def reopen(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        """Close ``store`` and open the same storage again; non-durable stores return it as is."""
        return store

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SessionStore]:
        holder = [self.make_store(tmp_path)]
        self._holder = holder
        try:
            yield holder[0]
        finally:
            holder[-1].close()

    def reopened(self, store: SessionStore, tmp_path: Path) -> SessionStore:
        new = self.reopen(store, tmp_path)
        self._holder.append(new)
        return new

    # Sessions --------------------------------------------------------------------------------

    def test_saved_session_reads_back_equal(self, store: SessionStore, tmp_path: Path) -> None:
        session = Session(
            agent_id="agent",
            id="s1",
            status=SessionStatus.ACTIVE,
            parent_session_id="parent",
            metadata={"k": [1, 2.5, None, True]},
            context={"nested": {"x": "y"}},
            tags=["a", "b"],
            created_at=_T0,
            updated_at=_T0 + timedelta(seconds=1),
        )
        store.save_session(session)
        store = self.reopened(store, tmp_path)
        assert store.get_session("s1") == session

    def test_save_session_upserts(self, store: SessionStore) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        store.save_session(Session(agent_id="a", id="s1", status=SessionStatus.COMPLETED))
        assert store.get_session("s1").status is SessionStatus.COMPLETED
        assert len(store.list_sessions()) == 1

    def test_create_session_refuses_a_saved_id_and_writes_nothing(self, store: SessionStore) -> None:
        store.create_session(Session(agent_id="first", id="s1"))
        with pytest.raises(ConflictError, match="s1"):
            store.create_session(Session(agent_id="second", id="s1", status=SessionStatus.ACTIVE))
        stored = store.get_session("s1")
        assert (stored.agent_id, stored.status) == ("first", SessionStatus.PENDING)
        assert len(store.list_sessions()) == 1

    def test_create_session_ignores_events_under_an_unsaved_id(self, store: SessionStore) -> None:
        store.append_event_with_sequence(Event(EventType.MESSAGE_SENT, "s1"))
        store.create_session(Session(agent_id="a", id="s1"))
        assert store.get_session("s1").agent_id == "a"

    def test_concurrent_creates_of_one_id_have_one_winner(self, store: SessionStore) -> None:
        threads = 8
        start = threading.Barrier(threads)
        outcomes: list[str] = []

        def create(agent: int) -> None:
            start.wait()
            try:
                store.create_session(Session(agent_id=f"agent-{agent}", id="s1"))
                outcomes.append("created")
            except ConflictError:
                outcomes.append("conflict")

        workers = [threading.Thread(target=create, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(outcomes) == ["conflict"] * (threads - 1) + ["created"]

    def test_get_unknown_session_raises(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError):
            store.get_session("missing")

    def test_list_sessions_orders_by_created_then_id(self, store: SessionStore) -> None:
        for session_id, offset in [("b", 1), ("a", 1), ("c", 0)]:
            store.save_session(
                Session(agent_id="x", id=session_id, created_at=_T0 + timedelta(seconds=offset))
            )
        assert [s.id for s in store.list_sessions()] == ["c", "a", "b"]

    def test_list_sessions_filters_and_pages(self, store: SessionStore) -> None:
        for index in range(6):
            store.save_session(
                Session(
                    agent_id="even" if index % 2 == 0 else "odd",
                    id=f"s{index}",
                    status=SessionStatus.ACTIVE if index < 3 else SessionStatus.COMPLETED,
                    created_at=_T0 + timedelta(seconds=index),
                )
            )
        assert [s.id for s in store.list_sessions(agent_id="even")] == ["s0", "s2", "s4"]
        assert [s.id for s in store.list_sessions(status="completed")] == ["s3", "s4", "s5"]
        assert [s.id for s in store.list_sessions(status=SessionStatus.ACTIVE, agent_id="odd")] == ["s1"]
        assert [s.id for s in store.list_sessions(limit=2, offset=3)] == ["s3", "s4"]
        assert store.list_sessions(offset=10) == []

    def test_list_sessions_excludes_log_only_sessions(self, store: SessionStore) -> None:
        store.append_event(_event("log-only"))
        assert store.list_sessions() == []
        with pytest.raises(SessionNotFoundError):
            store.get_session("log-only")

    def test_delete_session_removes_everything(self, store: SessionStore, tmp_path: Path) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        store.save_run(Run(session_id="s1", id="r1"))
        store.append_events([_event("s1"), _event("s1")])
        store.append_event(_event("s2"))
        store.delete_session("s1")
        store = self.reopened(store, tmp_path)
        with pytest.raises(SessionNotFoundError):
            store.get_session("s1")
        with pytest.raises(RunNotFoundError):
            store.get_run("r1")
        assert store.get_events("s1") == []
        assert store.get_latest_sequence("s1") == 0
        assert store.get_latest_sequence("s2") == 1
        assert store.append_event_with_sequence(_event("s1")).sequence_number == 1

    def test_delete_session_is_idempotent(self, store: SessionStore) -> None:
        store.delete_session("never-existed")
        store.save_session(Session(agent_id="a", id="s1"))
        store.delete_session("s1")
        store.delete_session("s1")
        assert store.list_sessions() == []

    def test_deleted_event_ids_can_be_reused(self, store: SessionStore) -> None:
        store.append_event(_event("s1", id="e1"))
        store.delete_session("s1")
        assert store.append_event_with_sequence(_event("s2", id="e1")).session_id == "s2"

    # Runs ------------------------------------------------------------------------------------

    def test_saved_run_reads_back_equal(self, store: SessionStore, tmp_path: Path) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        run = Run(
            session_id="s1",
            id="r1",
            status=RunStatus.FAILED,
            input={"prompt": "hi"},
            output={"text": "x"},
            error={"code": "boom", "message": "bad"},
            metadata={"m": 1},
            turn_count=3,
            token_usage={"input": 10, "output": 20},
            started_at=_T0,
            ended_at=_T0 + timedelta(milliseconds=1500),
        )
        store.save_run(run)
        store = self.reopened(store, tmp_path)
        assert store.get_run("r1") == run

    def test_save_run_needs_a_saved_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError):
            store.save_run(Run(session_id="nope"))

    def test_save_run_upserts(self, store: SessionStore) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        store.save_run(Run(session_id="s1", id="r1"))
        store.save_run(Run(session_id="s1", id="r1", status=RunStatus.COMPLETED, output={"ok": True}))
        run = store.get_run("r1")
        assert (run.status, run.output) == (RunStatus.COMPLETED, {"ok": True})

    def test_get_unknown_run_raises(self, store: SessionStore) -> None:
        with pytest.raises(RunNotFoundError):
            store.get_run("missing")

    def test_list_runs_orders_and_filters(self, store: SessionStore) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        store.save_session(Session(agent_id="a", id="s2"))
        store.save_run(Run(session_id="s1", id="late", started_at=_T0 + timedelta(seconds=2)))
        store.save_run(Run(session_id="s1", id="early", status=RunStatus.COMPLETED, started_at=_T0))
        store.save_run(Run(session_id="s1", id="mid", started_at=_T0 + timedelta(seconds=1)))
        store.save_run(Run(session_id="s2", id="other"))
        assert [r.id for r in store.list_runs("s1")] == ["early", "mid", "late"]
        assert [r.id for r in store.list_runs("s1", status="pending")] == ["mid", "late"]
        assert [r.id for r in store.list_runs("s1", limit=1)] == ["early"]
        assert store.list_runs("unknown") == []

    def test_active_run_is_read_after_write(self, store: SessionStore) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        assert store.get_active_run("s1") is None
        store.save_run(Run(session_id="s1", id="r1", status=RunStatus.RUNNING))
        assert store.get_active_run("s1") == store.get_run("r1")
        store.save_run(Run(session_id="s1", id="r1", status=RunStatus.COMPLETED))
        assert store.get_active_run("s1") is None

    # Sequencing ------------------------------------------------------------------------------

    def test_sequences_start_at_one_and_increase_by_one(self, store: SessionStore) -> None:
        stored = [store.append_event_with_sequence(_event()) for _ in range(5)]
        assert _seqs(stored) == [1, 2, 3, 4, 5]
        assert store.get_latest_sequence("s1") == 5

    def test_sequences_are_per_session(self, store: SessionStore) -> None:
        store.append_event(_event("a"))
        store.append_event(_event("a"))
        assert store.append_event_with_sequence(_event("b")).sequence_number == 1
        assert store.get_latest_sequence("a") == 2

    def test_latest_sequence_of_unknown_session_is_zero(self, store: SessionStore) -> None:
        assert store.get_latest_sequence("nothing") == 0

    def test_append_event_returns_none_and_stores(self, store: SessionStore) -> None:
        assert store.append_event(_event()) is None  # type: ignore[func-returns-value]
        assert _seqs(store.get_events("s1")) == [1]

    def test_stored_event_reads_back_equal(self, store: SessionStore, tmp_path: Path) -> None:
        event = _event(
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
        assert (read.data, read.metadata, read.run_id, read.id) == (
            event.data, event.metadata, "r1", "e1"
        )

    def test_tuples_come_back_as_lists(self, store: SessionStore) -> None:
        store.append_event(_event(data={"pair": (1, 2)}))
        assert store.get_events("s1")[0].data == {"pair": [1, 2]}

    def test_mutating_a_returned_event_does_not_change_the_store(self, store: SessionStore) -> None:
        store.append_event(_event(data={"items": [1]}))
        store.get_events("s1")[0].data["items"].append(2)
        assert store.get_events("s1")[0].data == {"items": [1]}

    def test_sequences_survive_reopen(self, store: SessionStore, tmp_path: Path) -> None:
        store.append_events([_event(), _event()])
        store = self.reopened(store, tmp_path)
        assert store.get_latest_sequence("s1") == 2
        assert store.append_event_with_sequence(_event()).sequence_number == 3

    def test_concurrent_threads_get_gap_free_sequences(self, store: SessionStore) -> None:
        threads, per_thread = 8, 25
        barrier = threading.Barrier(threads)
        results: list[list[int]] = [[] for _ in range(threads)]

        def append(slot: int) -> None:
            barrier.wait()
            for _ in range(per_thread):
                results[slot].append(store.append_event_with_sequence(_event()).sequence_number or 0)

        workers = [threading.Thread(target=append, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        everything = sorted(seq for seqs in results for seq in seqs)
        assert everything == list(range(1, threads * per_thread + 1))
        assert all(seqs == sorted(seqs) for seqs in results)
        assert _seqs(store.get_events("s1")) == everything

    # Duplicates ------------------------------------------------------------------------------

    def test_duplicate_id_returns_original_event(self, store: SessionStore, tmp_path: Path) -> None:
        original = store.append_event_with_sequence(_event(id="e1", data={"v": 1}))
        store.append_event(_event())
        store = self.reopened(store, tmp_path)
        again = store.append_event_with_sequence(
            _event(id="e1", type="error_occurred", data={"v": 2}, timestamp=_T0)
        )
        assert again == original
        assert again.sequence_number == 1 and again.data == {"v": 1}
        assert store.get_latest_sequence("s1") == 2

    def test_duplicate_id_in_other_session_conflicts(self, store: SessionStore) -> None:
        store.append_event(_event("s1", id="e1"))
        with pytest.raises(EventIdConflictError):
            store.append_event_with_sequence(_event("s2", id="e1"))
        assert store.get_events("s2") == []
        assert store.get_latest_sequence("s2") == 0

    def test_duplicate_id_ignores_expected_sequence(self, store: SessionStore) -> None:
        original = store.append_event_with_sequence(_event(id="e1"))
        assert store.append_event_with_sequence(_event(id="e1"), expected_sequence=7) == original

    # Optimistic concurrency ------------------------------------------------------------------

    def test_expected_sequence_matching_appends(self, store: SessionStore) -> None:
        assert store.append_event_with_sequence(_event(), expected_sequence=0).sequence_number == 1
        assert store.append_event_with_sequence(_event(), expected_sequence=1).sequence_number == 2

    def test_expected_sequence_mismatch_raises_with_actual(self, store: SessionStore) -> None:
        store.append_event(_event())
        with pytest.raises(SequenceConflictError) as caught:
            store.append_event_with_sequence(_event(), expected_sequence=0)
        assert caught.value.actual == 1 and caught.value.expected == 0
        assert store.get_latest_sequence("s1") == 1

    def test_expected_sequence_admits_one_of_racing_writers(self, store: SessionStore) -> None:
        store.append_event(_event())
        barrier = threading.Barrier(6)
        outcomes: list[str] = []
        lock = threading.Lock()

        def attempt() -> None:
            barrier.wait()
            try:
                store.append_event_with_sequence(_event(), expected_sequence=1)
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

    def test_batch_sequences_are_contiguous_per_session_in_input_order(
        self, store: SessionStore
    ) -> None:
        store.append_event(_event("a"))
        stored = store.append_events(
            [_event("a", id="a2"), _event("b", id="b1"), _event("a", id="a3"), _event("b", id="b2")]
        )
        assert [(e.id, e.sequence_number) for e in stored] == [
            ("a2", 2), ("b1", 1), ("a3", 3), ("b2", 2)
        ]
        assert _seqs(store.get_events("a")) == [1, 2, 3]

    def test_empty_batch_returns_empty(self, store: SessionStore) -> None:
        assert store.append_events([]) == []

    def test_batch_returns_originals_for_stored_ids(self, store: SessionStore) -> None:
        original = store.append_event_with_sequence(_event(id="e1", data={"v": 1}))
        stored = store.append_events([_event(id="new"), _event(id="e1", data={"v": 2})])
        assert stored[1] == original
        assert stored[0].sequence_number == 2
        assert store.get_latest_sequence("s1") == 2

    def test_batch_repeating_an_id_stores_it_once(self, store: SessionStore) -> None:
        stored = store.append_events([_event(id="x", data={"v": 1}), _event(id="x", data={"v": 2})])
        assert stored[0] == stored[1]
        assert stored[1].data == {"v": 1}
        assert store.get_latest_sequence("s1") == 1

    def test_batch_with_conflicting_id_writes_nothing(self, store: SessionStore) -> None:
        store.append_event(_event("other", id="taken"))
        with pytest.raises(EventIdConflictError):
            store.append_events([_event("s1", id="fine"), _event("s1", id="taken")])
        assert store.get_events("s1") == []
        assert store.get_latest_sequence("s1") == 0

    def test_batch_with_an_invalid_item_writes_nothing(self, store: SessionStore) -> None:
        with pytest.raises(ValidationError, match=r"events\[1\]"):
            store.append_events([_event(), "not an event"])  # type: ignore[list-item]
        assert store.get_latest_sequence("s1") == 0

    def test_batch_repeating_an_id_across_sessions_writes_nothing(self, store: SessionStore) -> None:
        with pytest.raises(EventIdConflictError):
            store.append_events([_event("s1", id="x"), _event("s2", id="x")])
        assert store.get_latest_sequence("s1") == 0

    # Cursor reads ----------------------------------------------------------------------------

    def _fill(self, store: SessionStore, count: int = 10) -> list[StoredEvent]:
        events = []
        for index in range(count):
            events.append(
                _event(
                    "s1",
                    "message_streamed" if index % 2 else "message_sent",
                    run_id="r1" if index < count // 2 else "r2",
                    timestamp=_T0 + timedelta(seconds=index),
                    data={"i": index},
                )
            )
        return store.append_events(events)

    def test_after_is_strict(self, store: SessionStore) -> None:
        self._fill(store)
        assert _seqs(store.get_events("s1", after=7)) == [8, 9, 10]
        assert store.get_events("s1", after=10) == []
        assert _seqs(store.get_events("s1", after=0)) == list(range(1, 11))

    def test_before_is_strict(self, store: SessionStore) -> None:
        self._fill(store)
        assert _seqs(store.get_events("s1", before=3)) == [1, 2]
        assert store.get_events("s1", before=1) == []
        assert store.get_events("s1", before=0) == []

    def test_after_and_before_give_a_window(self, store: SessionStore) -> None:
        self._fill(store)
        assert _seqs(store.get_events("s1", after=3, before=7)) == [4, 5, 6]
        assert store.get_events("s1", after=5, before=6) == []
        assert store.get_events("s1", after=8, before=2) == []

    def test_limit_takes_the_first_matches(self, store: SessionStore) -> None:
        self._fill(store)
        assert _seqs(store.get_events("s1", limit=3)) == [1, 2, 3]
        assert _seqs(store.get_events("s1", after=8, limit=5)) == [9, 10]

    def test_paging_by_cursor_visits_every_event_once(self, store: SessionStore) -> None:
        self._fill(store, 23)
        seen: list[int | None] = []
        cursor = 0
        while page := store.get_events("s1", after=cursor, limit=5):
            seen.extend(_seqs(page))
            cursor = page[-1].sequence_number or 0
        assert seen == list(range(1, 24))

    def test_run_id_and_type_filters_combine(self, store: SessionStore) -> None:
        self._fill(store)
        assert _seqs(store.get_events("s1", run_id="r1")) == [1, 2, 3, 4, 5]
        assert _seqs(store.get_events("s1", type="message_streamed")) == [2, 4, 6, 8, 10]
        assert _seqs(store.get_events("s1", run_id="r2", type=EventType.MESSAGE_SENT)) == [7, 9]
        assert _seqs(
            store.get_events("s1", run_id="r2", type="message_streamed", after=6, before=10, limit=1)
        ) == [8]

    def test_since_is_inclusive_and_timezone_aware(self, store: SessionStore) -> None:
        self._fill(store)
        cutoff = (_T0 + timedelta(seconds=7)).astimezone(timezone(timedelta(hours=-8)))
        assert _seqs(store.get_events("s1", since=cutoff)) == [8, 9, 10]
        micro_later = _T0 + timedelta(seconds=7, microseconds=1)
        assert _seqs(store.get_events("s1", since=micro_later)) == [9, 10]

    def test_events_of_other_sessions_are_not_returned(self, store: SessionStore) -> None:
        store.append_events([_event("a"), _event("b"), _event("a")])
        assert {e.session_id for e in store.get_events("a")} == {"a"}
        assert store.get_events("unknown") == []

    def test_events_come_in_sequence_order_not_time_order(self, store: SessionStore) -> None:
        store.append_event(_event(timestamp=_T0 + timedelta(hours=1)))
        store.append_event(_event(timestamp=_T0))
        assert _seqs(store.get_events("s1")) == [1, 2]

    # Validation ------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("argument", "value"),
        [
            ("after", -1),
            ("after", True),
            ("after", 1.5),
            ("after", "3"),
            ("before", -2),
            ("before", False),
            ("limit", 0),
            ("limit", -5),
            ("limit", True),
            ("wait_timeout_ms", -1),
            ("wait_timeout_ms", 2.5),
            ("type", "not_a_type"),
            ("type", 3),
            ("since", datetime(2026, 1, 1)),
            ("since", "2026-01-01T00:00:00Z"),
            ("run_id", ""),
        ],
    )
    def test_bad_get_events_argument_raises(
        self, store: SessionStore, argument: str, value: Any
    ) -> None:
        store.append_event(_event())
        with pytest.raises(ValidationError, match=argument):
            store.get_events("s1", **{argument: value})

    @pytest.mark.parametrize("session_id", ["", None, 5, b"s1"])
    def test_bad_session_id_raises(self, store: SessionStore, session_id: Any) -> None:
        with pytest.raises(ValidationError, match="session_id"):
            store.get_events(session_id)
        with pytest.raises(ValidationError, match="session_id"):
            store.get_latest_sequence(session_id)

    @pytest.mark.parametrize("expected", [-1, True, "1", 1.0])
    def test_bad_expected_sequence_raises(self, store: SessionStore, expected: Any) -> None:
        with pytest.raises(ValidationError, match="expected_sequence"):
            store.append_event_with_sequence(_event(), expected_sequence=expected)
        assert store.get_latest_sequence("s1") == 0

    def test_append_needs_an_event(self, store: SessionStore) -> None:
        with pytest.raises(ValidationError, match="event"):
            store.append_event_with_sequence({"type": "message_sent"})  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="events"):
            store.append_events(_event())  # type: ignore[arg-type]

    def test_bad_records_raise(self, store: SessionStore) -> None:
        with pytest.raises(ValidationError, match="session"):
            store.save_session("s1")  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="run"):
            store.save_run(None)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="status"):
            store.list_sessions(status="sleeping")
        with pytest.raises(ValidationError, match="limit"):
            store.list_runs("s1", limit=0)
        with pytest.raises(ValidationError, match="offset"):
            store.list_sessions(offset=-1)

    # Long-poll -------------------------------------------------------------------------------

    def _require_long_poll(self) -> None:
        if not self.supports_long_poll:
            pytest.skip("this store does not implement wait_timeout_ms")

    def test_long_poll_returns_at_once_when_events_exist(self, store: SessionStore) -> None:
        store.append_event(_event())
        waiter = Background(store.get_events, "s1", wait_timeout_ms=60_000)
        assert _seqs(waiter.result()) == [1]

    def test_long_poll_wakes_on_matching_append(self, store: SessionStore) -> None:
        self._require_long_poll()
        store.append_event(_event())
        waiter = Background(store.get_events, "s1", after=1, wait_timeout_ms=60_000)
        store.append_event(_event(id="wake"))
        # Returning early (with []) or missing the append both fail here.
        assert [e.id for e in waiter.result()] == ["wake"]

    def test_long_poll_ignores_other_sessions_types_and_runs(self, store: SessionStore) -> None:
        self._require_long_poll()
        waiter = Background(
            store.get_events, "s1", type="tool_call_started", run_id="r1", wait_timeout_ms=60_000
        )
        store.append_event(_event("s2", "tool_call_started", run_id="r1"))
        store.append_event(_event("s1", "message_sent", run_id="r1"))
        store.append_event(_event("s1", "tool_call_started", run_id="r2"))
        store.append_event(_event("s1", "tool_call_started", run_id="r1", id="match"))
        assert [e.id for e in waiter.result()] == ["match"]

    def test_long_poll_returns_up_to_limit(self, store: SessionStore) -> None:
        self._require_long_poll()
        waiter = Background(store.get_events, "s1", limit=2, wait_timeout_ms=60_000)
        store.append_events([_event(), _event(), _event()])
        assert _seqs(waiter.result()) == [1, 2]

    def test_long_poll_times_out_with_empty_list(self, store: SessionStore) -> None:
        self._require_long_poll()
        started = time.monotonic()
        assert store.get_events("s1", wait_timeout_ms=100) == []
        assert time.monotonic() - started >= 0.09

    def test_no_wait_when_unset_or_zero(self, store: SessionStore) -> None:
        waiter = Background(lambda: (store.get_events("s1"), store.get_events("s1", wait_timeout_ms=0)))
        assert waiter.result() == ([], [])

    def test_long_poll_released_when_session_deleted(self, store: SessionStore) -> None:
        self._require_long_poll()
        store.append_event(_event())
        waiter = Background(store.get_events, "s1", after=1, wait_timeout_ms=60_000)
        # The waiter may start waiting after a delete; deleting is idempotent, so repeat it.
        deadline = time.monotonic() + DEADLINE_S
        while not waiter.wait(0.01):
            assert time.monotonic() < deadline, "deleting the session did not release the waiter"
            store.delete_session("s1")
        assert waiter.result() == []

    def test_long_poll_raises_closed_when_store_closes(self, tmp_path: Path) -> None:
        self._require_long_poll()
        store = self.make_store(tmp_path)
        waiter = Background(store.get_events, "s1", wait_timeout_ms=60_000)
        store.close()  # a waiter that starts only now raises the same
        with pytest.raises(StoreClosedError):
            waiter.result()

    # Closing ---------------------------------------------------------------------------------

    def test_calls_after_close_raise(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.close()
        store.close()  # idempotent
        with pytest.raises(StoreClosedError):
            store.append_event(_event())
        with pytest.raises(StoreClosedError):
            store.get_events("s1")
        with pytest.raises(StoreClosedError):
            store.get_latest_sequence("s1")
        with pytest.raises(StoreClosedError):
            store.save_session(Session(agent_id="a"))
        with pytest.raises(StoreClosedError):
            store.list_sessions()

    def test_store_is_a_context_manager(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.append_event(_event())
        with pytest.raises(StoreClosedError):
            store.get_latest_sequence("s1")
