"""The contract for long-polls (``wait_timeout_ms``) and for closing the store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sqlitestream.errors import StoreClosedError
from sqlitestream.models import Session
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import DEADLINE_S, Background, ContractBase, new_event, seqs


class LongPollContract(ContractBase):
    """Long-polls and closing: one behaviour per test."""

    # Long-poll -------------------------------------------------------------------------------

    def test_long_poll_returns_at_once_when_events_exist(self, store: SessionStore) -> None:
        store.append_event(new_event())
        waiter = Background(store.get_events, "s1", wait_timeout_ms=60_000)
        assert seqs(waiter.result()) == [1]

    def test_long_poll_wakes_on_matching_append(self, store: SessionStore) -> None:
        self._require_long_poll()
        store.append_event(new_event())
        waiter = Background(store.get_events, "s1", after=1, wait_timeout_ms=60_000)
        store.append_event(new_event(id="wake"))
        # Returning early (with []) or missing the append both fail here.
        assert [e.id for e in waiter.result()] == ["wake"]

    def test_long_poll_ignores_other_sessions_types_and_runs(self, store: SessionStore) -> None:
        self._require_long_poll()
        waiter = Background(
            store.get_events, "s1", type="tool_call_started", run_id="r1", wait_timeout_ms=60_000
        )
        store.append_event(new_event("s2", "tool_call_started", run_id="r1"))
        store.append_event(new_event("s1", "message_sent", run_id="r1"))
        store.append_event(new_event("s1", "tool_call_started", run_id="r2"))
        store.append_event(new_event("s1", "tool_call_started", run_id="r1", id="match"))
        assert [e.id for e in waiter.result()] == ["match"]

    def test_long_poll_returns_up_to_limit(self, store: SessionStore) -> None:
        self._require_long_poll()
        waiter = Background(store.get_events, "s1", limit=2, wait_timeout_ms=60_000)
        store.append_events([new_event(), new_event(), new_event()])
        assert seqs(waiter.result()) == [1, 2]

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
        store.append_event(new_event())
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
            store.append_event(new_event())
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
            store.append_event(new_event())
        with pytest.raises(StoreClosedError):
            store.get_latest_sequence("s1")
