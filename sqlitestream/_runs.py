"""The pieces of ``SessionManager`` that need none of its state: where a call's stored events
go (:class:`Sink`), the state of one executing run (:class:`Execution`), turning an adapter's
event into the event to store, the argument checks, and how an error is recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlitestream._core.validate import check_id, check_json_object, describe
from sqlitestream.adapters import normalise_event_type
from sqlitestream.errors import (
    ProviderError,
    SqliteStreamError,
    StorageError,
    ValidationError,
)
from sqlitestream.models import (
    Event,
    Run,
    Session,
    StoredEvent,
    new_id,
    parse_timestamp,
    utc_now,
)

EventCallback = Callable[[StoredEvent], None]
"""Called with each ``StoredEvent`` right after it is appended."""

EVENT_DATA_KEYS = frozenset({"type", "data", "metadata", "timestamp", "status", "id"})
"""The keys an adapter event may have."""


@dataclass
class Sink:
    """Where a call's stored events go: its result list and the user's callback."""

    callback: EventCallback | None = None
    events: list[StoredEvent] = field(default_factory=list)

    def deliver(self, event: StoredEvent) -> None:
        self.events.append(event)
        if self.callback is not None:
            self.callback(event)


@dataclass
class Execution:
    """The state of one run executing in this manager, shared by emit, cancel and finish."""

    run: Run
    session: Session
    sink: Sink
    lock: threading.RLock = field(default_factory=threading.RLock)
    cancelled: bool = False
    finished: bool = False
    saw_run_failed: bool = False
    # Events stored under an id the adapter chose, so a re-sent id is delivered only once.
    emitted: dict[str, StoredEvent] = field(default_factory=dict)
    # The first failure inside emit: (error code, exception). It fails the run even if the
    # adapter caught it.
    emit_failure: tuple[str, BaseException] | None = None

    def note_failure(self, code: str, exc: BaseException) -> None:
        if self.emit_failure is None:
            self.emit_failure = (code, exc)


def adapter_event(run: Run, session: Session, event_data: Mapping[str, Any], provider: str | None) -> Event:
    """The event to store for one adapter event (see ``SessionManager.handle_adapter_event``);
    ``provider`` (the adapter's name) goes into ``metadata["provider"]``."""
    if run.session_id != session.id:
        raise ValidationError(f"run {run.id!r} belongs to session {run.session_id!r}, not {session.id!r}")
    if not isinstance(event_data, Mapping):
        raise ValidationError(f"event_data must be a dict, got {describe(event_data)}")
    unknown = sorted(str(key) for key in event_data if key not in EVENT_DATA_KEYS)
    if unknown:
        raise ValidationError(f"event_data has unknown keys {unknown}; allowed: {sorted(EVENT_DATA_KEYS)}")
    if "type" not in event_data:
        raise ValidationError("event_data['type'] is required")
    raw_data = event_data.get("data")
    data = {} if raw_data is None else check_json_object(raw_data, "event_data['data']")
    status = event_data.get("status")
    if status is not None:
        data.setdefault("status", status)
    else:
        status = data.get("status")
    event_type, original = normalise_event_type(event_data["type"], status=status)
    if original is not None:
        data["original_type"] = original
    raw_metadata = event_data.get("metadata")
    metadata = {} if raw_metadata is None else check_json_object(raw_metadata, "event_data['metadata']")
    if provider is not None:
        metadata["provider"] = provider
    raw_timestamp = event_data.get("timestamp")
    timestamp = (
        utc_now() if raw_timestamp is None else parse_timestamp(raw_timestamp, "event_data['timestamp']")
    )
    raw_id = event_data.get("id")
    return Event(
        type=event_type,
        session_id=session.id,
        run_id=run.id,
        data=data,
        metadata=metadata,
        id=new_id("evt_") if raw_id is None else check_id(raw_id, "event_data['id']"),
        timestamp=timestamp,
    )


def not_following(follow: object) -> bool:
    """``stop_when_caught_up`` for the follower, from the stream methods' ``follow`` flag."""
    if not isinstance(follow, bool):
        raise ValidationError(f"follow must be a bool, got {describe(follow)}")
    return not follow


def check_adapter(adapter: object) -> None:
    name = getattr(adapter, "name", None)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"adapter must have a non-empty str name, got {describe(adapter)}")
    for method in ("capabilities", "execute", "cancel"):
        if not callable(getattr(adapter, method, None)):
            raise ValidationError(f"adapter {name!r} has no {method}() method")


def check_callback(callback: object) -> None:
    if callback is not None and not callable(callback):
        raise ValidationError(f"event_callback must be callable, got {describe(callback)}")


def check_adapter_opts(opts: object) -> dict[str, Any]:
    if opts is None:
        return {}
    if not isinstance(opts, Mapping) or not all(isinstance(key, str) for key in opts):
        raise ValidationError(f"adapter_opts must be a dict with str keys, got {describe(opts)}")
    return dict(opts)


def check_names(names: object, argument: str) -> set[str]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValidationError(f"{argument} must be a collection of strings, got {describe(names)}")
    checked = set(names)
    for name in checked:
        if not isinstance(name, str):
            raise ValidationError(f"{argument} must hold strings, got {describe(name)}")
    return checked


def check_input(run_input: object) -> dict[str, Any]:
    """A run input: a JSON object whose ``messages`` (if any) are role/content dicts and whose
    ``prompt`` (if any) is a string."""
    checked = check_json_object(run_input, "input")
    messages = checked.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise ValidationError(f"input['messages'] must be a list, got {describe(messages)}")
        for index, message in enumerate(messages):
            name = f"input['messages'][{index}]"
            if not isinstance(message, dict):
                raise ValidationError(f"{name} must be a dict with role and content, got {describe(message)}")
            if not isinstance(message.get("role"), str) or not message["role"]:
                raise ValidationError(f"{name}['role'] must be a non-empty string")
            if "content" not in message:
                raise ValidationError(f"{name}['content'] is required")
    prompt = checked.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValidationError(f"input['prompt'] must be a string, got {describe(prompt)}")
    return checked


def input_messages(run_input: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """(role, content) of each input message to record, empty contents skipped; a non-empty
    ``prompt`` comes last as a user message."""
    if not run_input:
        return []
    found = [
        (message["role"], message["content"])
        for message in run_input.get("messages") or []
        if message.get("content") not in (None, "", [], {})
    ]
    prompt = run_input.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        found.append(("user", prompt))
    return found


def describe_error(error: object) -> tuple[str, str, dict[str, Any]]:
    """(code, message, details) for recording an error on a run or session."""
    if isinstance(error, ProviderError):
        return error.code, error.message, error.details
    if isinstance(error, ValidationError):
        return "validation_error", str(error), {}
    if isinstance(error, StorageError):
        return "storage_error", str(error), {}
    if isinstance(error, SqliteStreamError):
        return "provider_error", str(error), {}
    if isinstance(error, Mapping):
        code = error.get("code", "error")
        message = error.get("message", "")
        return str(code), str(message), {}
    if isinstance(error, str):
        return "error", error, {}
    if isinstance(error, BaseException):
        code = "adapter_error" if isinstance(error, Exception) else "interrupted"
        text = str(error)
        return code, f"{type(error).__name__}: {text}" if text else type(error).__name__, {}
    raise ValidationError(f"error must be an exception, a dict or a str, got {describe(error)}")
