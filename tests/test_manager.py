"""SessionManager: lifecycles, run events and their order, adapter event metadata, failures,
cancellation. Every test runs against the in-memory store and a SQLite file store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support import STORE_KINDS, DelegatingStore, open_store, types, wait_until

from sqlitestream import (
    ConflictError,
    Event,
    EventType,
    InMemorySessionStore,
    ProviderError,
    RunOutcome,
    RunStatus,
    ScriptedAdapter,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    SessionStore,
    SqliteStreamError,
    StorageError,
    StoredEvent,
    ValidationError,
)
from sqlitestream.models import Run, Session

SUCCESS_SCRIPT: list[dict[str, Any]] = [
    {"type": "run_started"},
    {"type": "delta", "data": {"text": "Hel"}},
    {"type": "chunk", "data": {"text": "lo"}},
    {"type": "tool_use", "data": {"tool": "search"}},
    {"type": "tool_result", "data": {"tool": "search", "hits": 2}},
    {"type": "assistant", "data": {"content": "Hello"}},
    {"type": "usage", "data": {"input_tokens": 3, "output_tokens": 2}},
    {"type": "done"},
]
SUCCESS_TYPES = [
    "run_started",
    "message_streamed",
    "message_streamed",
    "tool_call_started",
    "tool_call_completed",
    "message_received",
    "token_usage_updated",
    "run_completed",
]
OUTCOME = RunOutcome(output={"text": "Hello"}, token_usage={"input_tokens": 3, "output_tokens": 2})


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    yield from open_store(request.param, tmp_path)


def manager_with(
    store: SessionStore, events: list[dict[str, Any]] = SUCCESS_SCRIPT, **kwargs: Any
) -> SessionManager:
    kwargs.setdefault("outcome", OUTCOME)
    return SessionManager(store, ScriptedAdapter(events, name="fake-llm", **kwargs))


# Success ------------------------------------------------------------------------------------


def test_run_once_records_events_in_order(store: SessionStore) -> None:
    result = manager_with(store).run_once({"messages": [{"role": "user", "content": "hi"}]})

    stored = store.get_events(result.session_id)
    assert types(stored) == [
        "session_created",
        "session_started",
        "message_sent",
        *SUCCESS_TYPES,
        "session_completed",
    ]
    assert [event.sequence_number for event in stored] == list(range(1, len(stored) + 1))
    assert [event.id for event in result.events] == [event.id for event in stored]


def test_run_once_ends_run_and_session_completed(store: SessionStore) -> None:
    result = manager_with(store).run_once({"prompt": "hi"})

    run = store.get_run(result.run_id)
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"text": "Hello"} == result.output
    assert run.token_usage == OUTCOME.token_usage == result.token_usage
    assert run.ended_at is not None
    assert store.get_session(result.session_id).status is SessionStatus.COMPLETED


def test_session_gets_provider_and_default_agent_id(store: SessionStore) -> None:
    result = manager_with(store).run_once({"prompt": "hi"}, metadata={"team": "a", "provider": "x"})

    session = store.get_session(result.session_id)
    assert session.agent_id == "fake-llm"
    assert session.metadata == {"team": "a", "provider": "fake-llm"}
    created = store.get_events(result.session_id, type="session_created")
    assert created[0].data == {"provider": "fake-llm"}


def test_callback_receives_each_stored_event_with_its_sequence(store: SessionStore) -> None:
    seen: list[Event] = []
    result = manager_with(store).run_once({"prompt": "hi"}, event_callback=seen.append)

    assert seen == store.get_events(result.session_id)
    assert all(event.sequence_number is not None for event in seen)


def test_every_event_carries_the_provider(store: SessionStore) -> None:
    result = manager_with(store).run_once({"prompt": "hi"})

    assert {event.metadata["provider"] for event in store.get_events(result.session_id)} == {"fake-llm"}


def test_input_messages_become_message_sent_skipping_empty(store: SessionStore) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "hello"},
    ]
    result = manager_with(store).run_once({"messages": messages, "prompt": "and then?"})

    sent = store.get_events(result.session_id, type="message_sent")
    assert [event.data for event in sent] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "user", "content": "and then?"},
    ]
    assert all(event.run_id == result.run_id for event in sent)


def test_execute_run_returns_the_runs_events(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    manager.activate_session(session.id)
    run = manager.start_run(session.id, {"prompt": "hi"})

    result = manager.execute_run(run.id)

    assert types(result.events) == ["message_sent", *SUCCESS_TYPES]
    assert result.run.status is RunStatus.COMPLETED
    assert result.events == store.get_events(session.id, run_id=run.id)


def test_adapter_opts_reach_the_adapter(store: SessionStore) -> None:
    received: dict[str, Any] = {}

    class Adapter(ScriptedAdapter):
        def execute(self, run: Run, session: Session, emit: Any, **opts: Any) -> RunOutcome:
            received.update(opts)
            return super().execute(run, session, emit)

    SessionManager(store, Adapter([])).run_once({"prompt": "x"}, adapter_opts={"model": "m1"})

    assert received == {"model": "m1"}


# Adapter event contents -----------------------------------------------------------------------


def test_adapter_timestamp_is_kept(store: SessionStore) -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    result = manager_with(store, [{"type": "delta", "timestamp": moment, "data": {"text": "a"}}]).run_once(
        {"prompt": "x"}
    )

    [streamed] = store.get_events(result.session_id, type="message_streamed")
    assert streamed.timestamp == moment
    assert streamed.timestamp.tzinfo == UTC


def test_iso_timestamp_string_is_accepted(store: SessionStore) -> None:
    result = manager_with(store, [{"type": "delta", "timestamp": "2024-05-01T10:00:00+00:00"}]).run_once(
        {"prompt": "x"}
    )

    [streamed] = store.get_events(result.session_id, type="message_streamed")
    assert streamed.timestamp == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_naive_timestamp_fails_the_run_naming_it(store: SessionStore) -> None:
    manager = manager_with(store, [{"type": "delta", "timestamp": datetime(2024, 5, 1)}])

    with pytest.raises(ValidationError, match=r"timestamp.*timezone-aware"):
        manager.run_once({"prompt": "x"})

    [session] = store.list_sessions()
    stored = store.get_events(session.id)
    assert "message_streamed" not in types(stored)
    [failed] = [event for event in stored if event.type is EventType.RUN_FAILED]
    assert failed.data["error_code"] == "invalid_event"
    error = store.list_runs(session.id)[0].error
    assert error is not None and error["code"] == "invalid_event"


def test_adapter_metadata_is_merged_and_provider_overrides(store: SessionStore) -> None:
    script = [{"type": "delta", "metadata": {"model": "m1", "provider": "spoofed"}}]
    result = manager_with(store, script).run_once({"prompt": "x"})

    [streamed] = store.get_events(result.session_id, type="message_streamed")
    assert streamed.metadata == {"model": "m1", "provider": "fake-llm"}


def test_unknown_type_is_error_occurred_keeping_the_original(store: SessionStore) -> None:
    result = manager_with(store, [{"type": "thinking_block", "data": {"text": "hmm"}}]).run_once(
        {"prompt": "x"}
    )

    [event] = store.get_events(result.session_id, type="error_occurred")
    assert event.data == {"text": "hmm", "original_type": "thinking_block"}


def test_done_with_error_status_is_one_run_failed(store: SessionStore) -> None:
    script = [{"type": "run_started"}, {"type": "done", "status": "error"}]
    manager = manager_with(store, script, error=ProviderError("it broke", "upstream"))

    with pytest.raises(ProviderError):
        manager.run_once({"prompt": "x"})

    [session] = store.list_sessions()
    stored = store.get_events(session.id)
    assert types(stored).count("run_failed") == 1
    assert types(stored)[-2:] == ["run_failed", "session_failed"]
    assert stored[-2].data["status"] == "error"


def test_handle_adapter_event_appends_one_normalised_event(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})

    stored = manager.handle_adapter_event(run, session, {"type": "function_call", "data": {"name": "f"}})

    assert stored.type is EventType.TOOL_CALL_STARTED
    assert stored.run_id == run.id
    assert stored.metadata == {"provider": "fake-llm"}
    assert store.get_events(session.id, after=stored.sequence_number - 1) == [stored]


@pytest.mark.parametrize(
    ("event_data", "named"),
    [
        ("delta", "event_data"),
        ({"data": {}}, "type"),
        ({"type": 3}, "type"),
        ({"type": "delta", "data": "text"}, "data"),
        ({"type": "delta", "metadata": ["x"]}, "metadata"),
        ({"type": "delta", "colour": "red"}, "unknown keys"),
        ({"type": "delta", "id": ""}, "id"),
    ],
)
def test_bad_event_data_is_refused_naming_it(store: SessionStore, event_data: Any, named: str) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})
    before = store.get_latest_sequence(session.id)

    with pytest.raises(ValidationError, match=named):
        manager.handle_adapter_event(run, session, event_data)

    assert store.get_latest_sequence(session.id) == before


def test_repeated_event_id_is_recorded_and_delivered_once(store: SessionStore) -> None:
    script = [
        {"type": "delta", "id": "evt-1", "data": {"n": 1}},
        {"type": "delta", "id": "evt-1", "data": {"n": 2}},
    ]
    seen: list[Event] = []
    result = manager_with(store, script).run_once({"prompt": "x"}, event_callback=seen.append)

    streamed = store.get_events(result.session_id, type="message_streamed")
    assert [(event.id, event.data) for event in streamed] == [("evt-1", {"n": 1})]
    assert [event.id for event in seen].count("evt-1") == 1


# Failures ----------------------------------------------------------------------------------


def test_provider_failure_is_recorded_then_raised(store: SessionStore) -> None:
    error = ProviderError("rate limited", "rate_limited")
    manager = manager_with(store, SUCCESS_SCRIPT[:2], error=error)

    with pytest.raises(ProviderError) as raised:
        manager.run_once({"prompt": "x"})

    assert raised.value is error
    [session] = store.list_sessions()
    stored = store.get_events(session.id)
    assert types(stored) == [
        "session_created",
        "session_started",
        "message_sent",
        "run_started",
        "message_streamed",
        "run_failed",
        "session_failed",
    ]
    assert stored[-2].data == {"error_code": "rate_limited", "error_message": "rate limited"}
    assert stored[-1].data == {"error_code": "rate_limited", "error_message": "rate limited"}
    [run] = store.list_runs(session.id)
    assert run.status is RunStatus.FAILED
    assert run.error == {"code": "rate_limited", "message": "rate limited"}
    assert run.ended_at is not None
    assert store.get_session(session.id).status is SessionStatus.FAILED


def test_execute_run_failure_leaves_the_session_open(store: SessionStore) -> None:
    manager = manager_with(store, [], error=ProviderError("nope"))
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})

    with pytest.raises(ProviderError):
        manager.execute_run(run.id)

    assert store.get_run(run.id).status is RunStatus.FAILED
    assert store.get_session(session.id).status is SessionStatus.PENDING
    assert types(store.get_events(session.id))[-1] == "run_failed"


def test_other_adapter_exceptions_become_provider_errors(store: SessionStore) -> None:
    manager = manager_with(store, [], error=RuntimeError("bug in adapter"))

    with pytest.raises(ProviderError, match="bug in adapter") as raised:
        manager.run_once({"prompt": "x"})

    assert raised.value.code == "adapter_error"
    assert isinstance(raised.value.__cause__, RuntimeError)


class _SwallowingAdapter:
    """Emits events but catches every error emit raises, then reports success."""

    name = "swallower"

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.swallowed: list[BaseException] = []

    def capabilities(self) -> set[str]:
        return {"chat"}

    def execute(self, run: Run, session: Session, emit: Any, **opts: Any) -> RunOutcome:
        for event in self.events:
            try:
                emit(event)
            except SqliteStreamError as exc:
                self.swallowed.append(exc)
        return RunOutcome(output={"ok": True})

    def cancel(self, run_id: str) -> None:
        pass


class _FailingAppends(DelegatingStore):
    """Fails every append of a message_streamed event with a StorageError."""

    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        if event.type is EventType.MESSAGE_STREAMED:
            raise StorageError("disk I/O error", sqlite_code=10)
        return super().append_event_with_sequence(event, expected_sequence=expected_sequence)


def test_failing_append_fails_the_run_even_if_the_adapter_swallows_it(store: SessionStore) -> None:
    adapter = _SwallowingAdapter([{"type": "run_started"}, {"type": "delta"}, {"type": "done"}])
    manager = SessionManager(_FailingAppends(store), adapter)

    with pytest.raises(StorageError, match="disk I/O error"):
        manager.run_once({"prompt": "x"})

    assert len(adapter.swallowed) == 1
    [session] = store.list_sessions()
    [run] = store.list_runs(session.id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error["code"] == "storage_error"
    assert types(store.get_events(session.id))[-2:] == ["run_failed", "session_failed"]


def test_callback_error_fails_the_run_and_is_raised(store: SessionStore) -> None:
    class Boom(Exception):
        pass

    def callback(event: Event) -> None:
        if event.type is EventType.MESSAGE_STREAMED:
            raise Boom("callback broke")

    with pytest.raises(Boom):
        manager_with(store).run_once({"prompt": "x"}, event_callback=callback)

    [session] = store.list_sessions()
    error = store.list_runs(session.id)[0].error
    assert error is not None and error["code"] == "callback_error"
    assert store.get_session(session.id).status is SessionStatus.FAILED


# Lifecycle and runs ------------------------------------------------------------------------


def test_lifecycle_methods_save_status_and_append_events(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session(agent_id="agent-7", tags=["a"], context={"cwd": "/"})
    assert session.status is SessionStatus.PENDING and session.agent_id == "agent-7"
    assert manager.activate_session(session.id).status is SessionStatus.ACTIVE
    assert manager.complete_session(session.id).status is SessionStatus.COMPLETED

    assert store.get_session(session.id).status is SessionStatus.COMPLETED
    assert types(store.get_events(session.id)) == ["session_created", "session_started", "session_completed"]


def test_fail_session_records_code_and_message(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()

    manager.fail_session(session.id, ProviderError("quota exceeded", "quota"))

    [_, failed] = store.get_events(session.id)
    assert failed.type is EventType.SESSION_FAILED
    assert failed.data == {"error_code": "quota", "error_message": "quota exceeded"}
    assert store.get_session(session.id).status is SessionStatus.FAILED


def test_ended_session_cannot_change_again(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    manager.complete_session(session.id)

    with pytest.raises(ConflictError, match="completed"):
        manager.activate_session(session.id)
    with pytest.raises(ConflictError):
        manager.fail_session(session.id, "late")
    with pytest.raises(ConflictError):
        manager.start_run(session.id, {"prompt": "x"})
    assert len(store.get_events(session.id)) == 2


def test_chosen_session_id_is_used_and_cannot_be_reused(store: SessionStore) -> None:
    manager = manager_with(store)
    manager.start_session(session_id="ses-fixed")

    with pytest.raises(ConflictError, match="ses-fixed"):
        manager.run_once({"prompt": "x"}, session_id="ses-fixed")

    assert len(store.get_events("ses-fixed")) == 1


class _CreatedMeanwhile(DelegatingStore):
    """A store on which another manager creates the same session id right after this one's
    first look at the store (as another process can, between any two calls)."""

    def __init__(self, inner: SessionStore, rival: SessionManager) -> None:
        super().__init__(inner)
        self.rival: SessionManager | None = rival

    def _rival_acts(self) -> None:
        rival, self.rival = self.rival, None
        if rival is not None:
            rival.start_session(agent_id="rival", session_id="ses-race")

    def get_session(self, session_id: str) -> Any:
        try:
            return super().get_session(session_id)
        finally:
            self._rival_acts()

    def create_session(self, session: Any) -> None:
        self._rival_acts()
        super().create_session(session)

    def save_session(self, session: Any) -> None:
        self._rival_acts()
        super().save_session(session)


def test_start_session_loses_cleanly_to_a_rival_creating_the_same_id(store: SessionStore) -> None:
    racing = _CreatedMeanwhile(store, manager_with(store))
    with pytest.raises(ConflictError, match="ses-race"):
        manager_with(racing).start_session(agent_id="late", session_id="ses-race")
    assert store.get_session("ses-race").agent_id == "rival"
    assert types(store.get_events("ses-race")) == ["session_created"]


def test_start_run_of_unknown_session_raises_not_found(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        manager_with(store).start_run("no-such-session", {"prompt": "x"})


def test_missing_required_capability_is_a_clear_error(store: SessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter([], capabilities={"chat"}))
    session = manager.start_session()

    with pytest.raises(ProviderError, match="vision") as raised:
        manager.start_run(session.id, {"prompt": "x"}, required_capabilities=["chat", "vision"])

    assert raised.value.code == "missing_capabilities"
    assert store.list_runs(session.id) == []


def test_missing_optional_capabilities_are_noted_on_the_run(store: SessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter([], capabilities={"chat"}))
    session = manager.start_session()

    run = manager.start_run(session.id, {"prompt": "x"}, optional_capabilities=["chat", "tool"])

    assert store.get_run(run.id).metadata == {
        "provider": "scripted",
        "missing_optional_capabilities": ["tool"],
    }


def test_a_run_executes_only_once(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})
    manager.execute_run(run.id)
    count = store.get_latest_sequence(session.id)

    with pytest.raises(ConflictError, match="completed"):
        manager.execute_run(run.id)

    assert store.get_latest_sequence(session.id) == count


@pytest.mark.parametrize(
    ("run_input", "named"),
    [
        ("hello", "input"),
        ({"prompt": 5}, r"input\['prompt'\]"),
        ({"messages": "hi"}, r"input\['messages'\]"),
        ({"messages": [{"content": "hi"}]}, r"input\['messages'\]\[0\]\['role'\]"),
        ({"messages": [{"role": "user"}]}, r"input\['messages'\]\[0\]\['content'\]"),
    ],
)
def test_bad_run_input_writes_nothing(store: SessionStore, run_input: Any, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        manager_with(store).run_once(run_input)

    assert store.list_sessions() == []


def test_manager_without_adapter_reads_but_cannot_run(store: SessionStore) -> None:
    manager = SessionManager(store)
    with pytest.raises(ValidationError, match="agent_id"):
        manager.start_session()
    session = manager.start_session(agent_id="me")
    with pytest.raises(ValidationError, match="adapter"):
        manager.start_run(session.id, {"prompt": "x"})

    assert manager.get_session_events(session.id)[0].type is EventType.SESSION_CREATED
    assert "provider" not in store.get_session(session.id).metadata


def test_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="store"):
        SessionManager("db.sqlite")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="adapter"):
        SessionManager(InMemorySessionStore(), object())  # type: ignore[arg-type]


def test_get_session_events_passes_filters_through(store: SessionStore) -> None:
    result = manager_with(store).run_once({"prompt": "x"})
    manager = SessionManager(store)

    assert manager.get_session_events(
        result.session_id, type="message_streamed", limit=1
    ) == store.get_events(result.session_id, type="message_streamed", limit=1)


# Cancellation ------------------------------------------------------------------------------


def test_cancel_executing_run_stops_it_and_records_run_cancelled(store: SessionStore) -> None:
    manager = manager_with(
        store, [{"type": "run_started"}, {"type": "delta"}, {"type": "delta"}], delay_ms=60_000
    )
    started = threading.Event()
    outcome: list[BaseException] = []

    def callback(event: Event) -> None:
        if event.type is EventType.RUN_STARTED:
            started.set()

    def run() -> None:
        try:
            manager.run_once({"prompt": "x"}, event_callback=callback)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(10)
    [session] = store.list_sessions()
    [run_record] = store.list_runs(session.id)

    cancelled = manager.cancel_run(run_record.id)
    worker.join(10)

    assert not worker.is_alive()
    assert isinstance(outcome[0], ProviderError) and outcome[0].code == "cancelled"
    assert cancelled.status is RunStatus.CANCELLED
    assert store.get_run(run_record.id).status is RunStatus.CANCELLED
    assert types(store.get_events(session.id))[-3:] == ["run_started", "run_cancelled", "session_cancelled"]
    assert store.get_session(session.id).status is SessionStatus.CANCELLED


def test_cancel_pending_run_then_it_cannot_execute(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})

    assert manager.cancel_run(run.id).status is RunStatus.CANCELLED
    assert manager.cancel_run(run.id).status is RunStatus.CANCELLED  # idempotent
    with pytest.raises(ConflictError):
        manager.execute_run(run.id)

    assert types(store.get_events(session.id)) == ["session_created", "run_cancelled"]


def test_cancel_finished_run_is_a_conflict(store: SessionStore) -> None:
    manager = manager_with(store)
    result = manager.run_once({"prompt": "x"})

    with pytest.raises(ConflictError, match="completed"):
        manager.cancel_run(result.run_id)


def test_cancel_run_executing_elsewhere_is_a_conflict(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})
    store.save_run(Run(session_id=session.id, id=run.id, status=RunStatus.RUNNING))

    with pytest.raises(ConflictError, match="another"):
        manager_with(store).cancel_run(run.id)


def test_concurrent_runs_in_one_session_keep_gap_free_sequences(store: SessionStore) -> None:
    manager = manager_with(store)
    session = manager.start_session()
    runs = [manager.start_run(session.id, {"prompt": f"p{index}"}) for index in range(4)]
    threads = [threading.Thread(target=manager.execute_run, args=(run.id,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    stored = store.get_events(session.id)
    assert [event.sequence_number for event in stored] == list(range(1, len(stored) + 1))
    for run in runs:
        assert types(store.get_events(session.id, run_id=run.id)) == ["message_sent", *SUCCESS_TYPES]
    wait_until(lambda: all(store.get_run(run.id).status is RunStatus.COMPLETED for run in runs))


def test_cancel_from_the_event_callback_stops_the_run(store: SessionStore) -> None:
    manager = manager_with(store, [{"type": "run_started"}, {"type": "delta"}, {"type": "delta"}])

    def callback(event: Event) -> None:
        if event.type is EventType.RUN_STARTED:
            manager.cancel_run(event.run_id or "")

    with pytest.raises(ProviderError) as raised:
        manager.run_once({"prompt": "x"}, event_callback=callback)

    assert raised.value.code == "cancelled"
    [session] = store.list_sessions()
    assert types(store.get_events(session.id))[-3:] == ["run_started", "run_cancelled", "session_cancelled"]


class _PoliteAdapter:
    """Emits until cancelled; its cancel() waits until execute has wound down."""

    name = "polite"

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.stopped = threading.Event()
        self.emitting = threading.Event()

    def capabilities(self) -> set[str]:
        return {"chat"}

    def execute(self, run: Run, session: Session, emit: Any, **opts: Any) -> RunOutcome:
        try:
            while not self.stop.is_set():
                try:
                    emit({"type": "delta"})
                except ProviderError:
                    break
                self.emitting.set()
            raise ProviderError("stopped", "cancelled")
        finally:
            self.stopped.set()

    def cancel(self, run_id: str) -> None:
        self.stop.set()
        self.stopped.wait()


def test_an_adapter_whose_cancel_waits_for_execute_does_not_deadlock(store: SessionStore) -> None:
    adapter = _PoliteAdapter()
    manager = SessionManager(store, adapter)
    session = manager.start_session()
    run = manager.start_run(session.id, {"prompt": "x"})
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            manager.execute_run(run.id)
        except ProviderError as exc:
            errors.append(exc)

    worker = threading.Thread(target=execute, daemon=True)
    worker.start()
    assert adapter.emitting.wait(10)
    canceller = threading.Thread(target=manager.cancel_run, args=(run.id,), daemon=True)
    canceller.start()
    canceller.join(30)
    worker.join(30)

    assert not canceller.is_alive() and not worker.is_alive()
    assert [exc.code for exc in errors] == ["cancelled"]  # type: ignore[attr-defined]
    assert store.get_run(run.id).status is RunStatus.CANCELLED
    assert types(store.get_events(session.id))[-1] == "run_cancelled"
