"""Adapters: event type normalisation, ScriptedAdapter, and CommandAdapter against a real child
Python process (tests/scripts/fake_agent.py)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from support import (
    STORE_KINDS,
    child_env,
    open_store,
    script,
    types,
    wait_until,
)

from sqlitestream import (
    CommandAdapter,
    Event,
    EventType,
    ProviderAdapter,
    ProviderError,
    RunOutcome,
    RunStatus,
    ScriptedAdapter,
    SessionManager,
    SessionStore,
    ValidationError,
    normalise_event_type,
)
from sqlitestream.adapters import EVENT_TYPE_ALIASES, Emit
from sqlitestream.models import Run, Session


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    yield from open_store(request.param, tmp_path)


# Normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("delta", "message_streamed"),
        ("chunk", "message_streamed"),
        ("text_delta", "message_streamed"),
        ("tool_use", "tool_call_started"),
        ("function_call", "tool_call_started"),
        ("tool_result", "tool_call_completed"),
        ("usage", "token_usage_updated"),
        ("done", "run_completed"),
        ("complete", "run_completed"),
        ("run_end", "run_completed"),
        ("message", "message_received"),
        ("assistant", "message_received"),
        ("error", "error_occurred"),
        ("exception", "error_occurred"),
        ("Text-Delta", "message_streamed"),
        ("TOOL_USE", "tool_call_started"),
    ],
)
def test_aliases_named_in_the_issue_normalise(raw: str, expected: str) -> None:
    assert normalise_event_type(raw) == (EventType(expected), None)


@pytest.mark.parametrize("alias", sorted(EVENT_TYPE_ALIASES))
def test_every_alias_maps_to_its_table_entry(alias: str) -> None:
    assert normalise_event_type(alias) == (EVENT_TYPE_ALIASES[alias], None)


@pytest.mark.parametrize("member", list(EventType))
def test_canonical_types_map_to_themselves(member: EventType) -> None:
    assert normalise_event_type(member) == (member, None)
    assert normalise_event_type(member.value) == (member, None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("error", "run_failed"),
        ("failed", "run_failed"),
        ("cancelled", "run_cancelled"),
        ("canceled", "run_cancelled"),
        ("timeout", "run_timeout"),
        ("success", "run_completed"),
        (None, "run_completed"),
    ],
)
def test_done_is_refined_by_status(status: str | None, expected: str) -> None:
    for alias in ("done", "complete", "run_end"):
        assert normalise_event_type(alias, status=status) == (EventType(expected), None)


def test_canonical_run_completed_is_not_refined() -> None:
    assert normalise_event_type("run_completed", status="error") == (EventType.RUN_COMPLETED, None)


def test_unknown_type_becomes_error_occurred_with_the_original() -> None:
    assert normalise_event_type("Thinking") == (EventType.ERROR_OCCURRED, "Thinking")


def test_non_string_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="type"):
        normalise_event_type(7)


# ScriptedAdapter ----------------------------------------------------------------------------


def _run_and_session() -> tuple[Run, Session]:
    session = Session(agent_id="a")
    return Run(session_id=session.id), session


def _recording_emit(emitted: list[Any], session: Session) -> Emit:
    """An ``emit`` that keeps the event data it is given. Its answer stands in for the stored
    event, which ScriptedAdapter does not read."""

    def emit(event_data: Mapping[str, Any]) -> Event:
        emitted.append(event_data)
        return Event(EventType.MESSAGE_STREAMED, session.id)

    return emit


def test_scripted_adapter_replays_its_events_and_returns_its_outcome() -> None:
    outcome = RunOutcome(output={"a": 1})
    adapter = ScriptedAdapter([{"type": "delta"}, {"type": "done"}], outcome=outcome)
    emitted: list[Any] = []
    run, session = _run_and_session()

    assert adapter.execute(run, session, _recording_emit(emitted, session)) is outcome
    assert emitted == [{"type": "delta"}, {"type": "done"}]
    assert isinstance(adapter, ProviderAdapter)


def test_scripted_adapter_raises_its_error_after_the_events() -> None:
    adapter = ScriptedAdapter([{"type": "delta"}], error=ProviderError("nope", "x"))
    emitted: list[Any] = []
    run, session = _run_and_session()

    with pytest.raises(ProviderError, match="nope"):
        adapter.execute(run, session, _recording_emit(emitted, session))
    assert emitted == [{"type": "delta"}]


def test_scripted_adapter_cancel_interrupts_the_delay() -> None:
    adapter = ScriptedAdapter([{"type": "delta"}, {"type": "delta"}], delay_ms=600_000)
    run, session = _run_and_session()
    first = threading.Event()
    errors: list[BaseException] = []

    def emit(event_data: Mapping[str, Any]) -> Event:
        first.set()
        return Event(EventType.MESSAGE_STREAMED, session.id)

    def execute() -> None:
        try:
            adapter.execute(run, session, emit)
        except ProviderError as exc:
            errors.append(exc)

    worker = threading.Thread(target=execute)
    worker.start()
    assert first.wait(10)
    adapter.cancel(run.id)
    worker.join(10)

    assert not worker.is_alive()
    assert [exc.code for exc in errors] == ["cancelled"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"events": "delta"}, "events"),
        ({"events": [1]}, r"events\[0\]"),
        ({"events": [], "name": ""}, "name"),
        ({"events": [], "capabilities": "chat"}, "capabilities"),
        ({"events": [], "delay_ms": -1}, "delay_ms"),
        ({"events": [], "outcome": {"output": {}}}, "outcome"),
        ({"events": [], "error": "boom"}, "error"),
    ],
)
def test_scripted_adapter_refuses_bad_arguments(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        ScriptedAdapter(**kwargs)


# CommandAdapter -----------------------------------------------------------------------------


def command(mode: str, *extra: str, **kwargs: Any) -> CommandAdapter:
    return CommandAdapter(
        [*script("fake_agent.py"), mode, *extra], name="fake-cli", env=child_env(), **kwargs
    )


def test_command_output_lines_become_events_and_the_result_the_outcome(store: SessionStore) -> None:
    manager = SessionManager(store, command("events"))

    result = manager.run_once({"prompt": "hello there"})

    stored = store.get_events(result.session_id, run_id=result.run_id)
    assert types(stored) == [
        "message_sent",
        "run_started",
        "message_streamed",
        "message_streamed",
        "message_streamed",
        "tool_call_started",
        "token_usage_updated",
    ]
    assert stored[2].data == {"text": "echo: hello there"}
    assert stored[3].data == {"text": "plain text line"}
    assert stored[4].data == {"text": "[1, 2]"}
    assert stored[5].data == {"tool": "ls"}
    assert stored[5].metadata == {"step": 1, "provider": "fake-cli"}
    assert stored[6].data == {"input_tokens": 5, "output_tokens": 7}
    assert result.output == {"answer": "42"}
    assert result.token_usage == {"input_tokens": 5}


def test_command_prompt_can_be_substituted_into_argv(store: SessionStore) -> None:
    manager = SessionManager(store, command("argv", "{prompt}", stdin="none"))

    result = manager.run_once({"messages": [{"role": "user", "content": "from argv"}]})

    [streamed] = store.get_events(result.session_id, type="message_streamed")
    assert streamed.data == {"text": "from argv"}


def test_command_can_read_the_run_input_as_json(store: SessionStore) -> None:
    result = SessionManager(store, command("json", stdin="json")).run_once({"prompt": "as json"})

    [received] = store.get_events(result.session_id, type="message_received")
    assert received.data == {"content": "as json"}


def test_command_without_result_gives_exit_code_and_last_usage(store: SessionStore) -> None:
    result = SessionManager(store, command("plain")).run_once({"prompt": "x"})

    assert result.output == {"exit_code": 0}
    assert result.token_usage == {"output_tokens": 2}


def test_command_failure_carries_exit_code_and_stderr_tail(store: SessionStore) -> None:
    manager = SessionManager(store, command("fail"))

    with pytest.raises(ProviderError, match="exited with code 3: fatal: model overloaded") as raised:
        manager.run_once({"prompt": "x"})

    assert raised.value.code == "command_failed"
    assert raised.value.details["exit_code"] == 3
    assert "fatal: model overloaded" in raised.value.details["stderr_tail"]
    [session] = store.list_sessions()
    [run] = store.list_runs(session.id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None and run.error["code"] == "command_failed"
    assert run.error["details"]["exit_code"] == 3
    stored = store.get_events(session.id)
    assert types(stored)[-3:] == ["run_started", "run_failed", "session_failed"]
    assert "exited with code 3" in stored[-2].data["error_message"]


def test_missing_command_is_a_provider_error(store: SessionStore) -> None:
    adapter = CommandAdapter(["/nonexistent/agent-binary"])

    with pytest.raises(ProviderError) as raised:
        SessionManager(store, adapter).run_once({"prompt": "x"})

    assert raised.value.code == "command_not_found"


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not sys.platform.startswith("linux")
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
def test_cancel_kills_the_command_and_everything_it_started(store: SessionStore) -> None:
    manager = SessionManager(store, command("hang"))
    started: list[Event] = []
    ready = threading.Event()
    errors: list[BaseException] = []

    def callback(event: Event) -> None:
        if event.type is EventType.RUN_STARTED:
            started.append(event)
            ready.set()

    def run() -> None:
        try:
            manager.run_once({"prompt": "x"}, event_callback=callback)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert ready.wait(30)
    pids = [started[0].data["pid"], started[0].data["grandchild"]]
    assert all(_alive(pid) for pid in pids)

    manager.cancel_run(started[0].run_id or "")
    worker.join(30)

    assert not worker.is_alive()
    assert isinstance(errors[0], ProviderError) and errors[0].code == "cancelled"
    wait_until(lambda: not any(_alive(pid) for pid in pids), what="the command's processes to end")
    assert store.get_run(started[0].run_id or "").status is RunStatus.CANCELLED
    assert types(store.get_events(started[0].session_id))[-2:] == ["run_cancelled", "session_cancelled"]


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ("python", {}, "argv"),
        ([], {}, "argv"),
        (["python", 3], {}, r"argv\[1\]"),
        (["python"], {"stdin": "file"}, "stdin"),
        (["python"], {"stderr_tail_chars": 0}, "stderr_tail_chars"),
        (["python"], {"name": None}, "name"),
    ],
)
def test_command_adapter_refuses_bad_arguments(args: Any, kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        CommandAdapter(args, **kwargs)
