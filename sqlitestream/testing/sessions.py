"""The contract for session and run records: saved records read back equal, upserts, atomic
create, listing order, filters and paging, delete."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from sqlitestream.errors import ConflictError, RunNotFoundError, SessionNotFoundError
from sqlitestream.models import Event, EventType, Run, RunStatus, Session, SessionStatus
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import T0, ContractBase, new_event


class SessionsContract(ContractBase):
    """Sessions and runs: one behaviour per test."""

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
            created_at=T0,
            updated_at=T0 + timedelta(seconds=1),
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
                Session(agent_id="x", id=session_id, created_at=T0 + timedelta(seconds=offset))
            )
        assert [s.id for s in store.list_sessions()] == ["c", "a", "b"]

    def test_list_sessions_filters_and_pages(self, store: SessionStore) -> None:
        for index in range(6):
            store.save_session(
                Session(
                    agent_id="even" if index % 2 == 0 else "odd",
                    id=f"s{index}",
                    status=SessionStatus.ACTIVE if index < 3 else SessionStatus.COMPLETED,
                    created_at=T0 + timedelta(seconds=index),
                )
            )
        assert [s.id for s in store.list_sessions(agent_id="even")] == ["s0", "s2", "s4"]
        assert [s.id for s in store.list_sessions(status="completed")] == ["s3", "s4", "s5"]
        assert [s.id for s in store.list_sessions(status=SessionStatus.ACTIVE, agent_id="odd")] == ["s1"]
        assert [s.id for s in store.list_sessions(limit=2, offset=3)] == ["s3", "s4"]
        assert store.list_sessions(offset=10) == []

    def test_list_sessions_excludes_log_only_sessions(self, store: SessionStore) -> None:
        store.append_event(new_event("log-only"))
        assert store.list_sessions() == []
        with pytest.raises(SessionNotFoundError):
            store.get_session("log-only")

    def test_delete_session_removes_everything(self, store: SessionStore, tmp_path: Path) -> None:
        store.save_session(Session(agent_id="a", id="s1"))
        store.save_run(Run(session_id="s1", id="r1"))
        store.append_events([new_event("s1"), new_event("s1")])
        store.append_event(new_event("s2"))
        store.delete_session("s1")
        store = self.reopened(store, tmp_path)
        with pytest.raises(SessionNotFoundError):
            store.get_session("s1")
        with pytest.raises(RunNotFoundError):
            store.get_run("r1")
        assert store.get_events("s1") == []
        assert store.get_latest_sequence("s1") == 0
        assert store.get_latest_sequence("s2") == 1
        assert store.append_event_with_sequence(new_event("s1")).sequence_number == 1

    def test_delete_session_is_idempotent(self, store: SessionStore) -> None:
        store.delete_session("never-existed")
        store.save_session(Session(agent_id="a", id="s1"))
        store.delete_session("s1")
        store.delete_session("s1")
        assert store.list_sessions() == []

    def test_deleted_event_ids_can_be_reused(self, store: SessionStore) -> None:
        store.append_event(new_event("s1", id="e1"))
        store.delete_session("s1")
        assert store.append_event_with_sequence(new_event("s2", id="e1")).session_id == "s2"

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
            started_at=T0,
            ended_at=T0 + timedelta(milliseconds=1500),
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
        store.save_run(Run(session_id="s1", id="late", started_at=T0 + timedelta(seconds=2)))
        store.save_run(Run(session_id="s1", id="early", status=RunStatus.COMPLETED, started_at=T0))
        store.save_run(Run(session_id="s1", id="mid", started_at=T0 + timedelta(seconds=1)))
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
