"""Bad input to the records and to the store constructors, table-driven: each field or argument
with each kind of bad value once raises ``ValidationError`` naming it, and a refused store
constructor creates no file. The store methods' table is part of the contract kit
(:mod:`sqlitestream.testing.bad_input`), run by every store in test_contract.py and
test_postgres_contract.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sqlitestream import (
    Event,
    InMemorySessionStore,
    Run,
    Session,
    SQLiteSessionStore,
    ValidationError,
)
from sqlitestream.testing.bad_input import (
    BAD_CHOICES,
    BAD_COUNTS,
    BAD_EVENT_TYPES,
    BAD_IDS,
    BAD_LIMITS,
    BAD_OPTIONAL_IDS,
    BAD_PAYLOADS,
    BAD_TIMES,
    HUGE,
    BadArgument,
)

# Records: a bad field never becomes a record, so no store ever sees it. ---------------------


def _event(**fields: Any) -> Event:
    return Event(**{"type": "message_sent", "session_id": "s1", **fields})


def _session(**fields: Any) -> Session:
    return Session(**{"agent_id": "a", **fields})


def _run(**fields: Any) -> Run:
    return Run(**{"session_id": "s1", **fields})


def _fields(make: Any, *fields: str) -> dict[str, Any]:
    """``{"Event.data": call, ...}``: one call per record field, passing the bad value."""
    return {
        f"{make.__name__[1:].title()}.{field}": (lambda _, v, f=field: make(**{f: v})) for field in fields
    }


REQUIRED = {"None": None}
RECORD_FIELDS: list[BadArgument] = [
    BadArgument(
        "session_id", "session_id", {**_fields(_event, "session_id"), **_fields(_run, "session_id")}, BAD_IDS
    ),
    BadArgument(
        "id", "id", {**_fields(_event, "id"), **_fields(_session, "id"), **_fields(_run, "id")}, BAD_IDS
    ),
    BadArgument("agent_id", "agent_id", _fields(_session, "agent_id"), BAD_IDS),
    BadArgument("run_id", "run_id", _fields(_event, "run_id"), BAD_OPTIONAL_IDS),
    BadArgument(
        "parent_session_id", "parent_session_id", _fields(_session, "parent_session_id"), BAD_OPTIONAL_IDS
    ),
    BadArgument("type", "type", _fields(_event, "type"), {**REQUIRED, **BAD_EVENT_TYPES}),
    BadArgument(
        "status",
        "status",
        {**_fields(_session, "status"), **_fields(_run, "status")},
        {**REQUIRED, **BAD_CHOICES},
    ),
    BadArgument("data", "data", _fields(_event, "data"), {**REQUIRED, **BAD_PAYLOADS}),
    BadArgument(
        "metadata",
        "metadata",
        {**_fields(_event, "metadata"), **_fields(_session, "metadata"), **_fields(_run, "metadata")},
        {**REQUIRED, **BAD_PAYLOADS},
    ),
    BadArgument("context", "context", _fields(_session, "context"), {**REQUIRED, **BAD_PAYLOADS}),
    BadArgument("token_usage", "token_usage", _fields(_run, "token_usage"), {**REQUIRED, **BAD_PAYLOADS}),
    # Optional payloads: None is fine, nothing else bad is.
    *(
        BadArgument(field, field, _fields(_run, field), BAD_PAYLOADS)
        for field in ("input", "output", "error")
    ),
    *(
        BadArgument(field, field, _fields(make, field), {**REQUIRED, **BAD_TIMES})
        for make, field in [
            (_event, "timestamp"),
            (_session, "created_at"),
            (_session, "updated_at"),
            (_run, "started_at"),
        ]
    ),
    BadArgument("ended_at", "ended_at", _fields(_run, "ended_at"), BAD_TIMES),
    BadArgument("sequence_number", "sequence_number", _fields(_event, "sequence_number"), BAD_LIMITS),
    BadArgument("turn_count", "turn_count", _fields(_run, "turn_count"), {**REQUIRED, **BAD_COUNTS}),
    BadArgument(
        "tags",
        "tags",
        _fields(_session, "tags"),
        {
            "None": None,
            "str": "tag",
            "dict": {"a": 1},
            "int-item": [1],
            "bytes-item": [b"x"],
            "surrogate-item": ["\ud800"],
        },
    ),
]


@pytest.mark.parametrize("argument", RECORD_FIELDS, ids=lambda argument: argument.label)
def test_bad_record_field_raises_naming_it(argument: BadArgument) -> None:
    argument.refused_by(None, max_event_bytes=1, unchanged=lambda: None)


FROM_DICT: list[Any] = [
    pytest.param(Event.from_dict, None, "event record", id="Event-None"),
    pytest.param(Event.from_dict, [], "event record", id="Event-list"),
    pytest.param(Event.from_dict, "x", "event record", id="Event-str"),
    pytest.param(Event.from_dict, {"session_id": "s1"}, "type", id="Event-no-type"),
    pytest.param(Event.from_dict, {"type": "nope", "session_id": "s1"}, "type", id="Event-unknown-type"),
    pytest.param(Event.from_dict, {"type": "message_sent"}, "session_id", id="Event-no-session_id"),
    pytest.param(
        Event.from_dict,
        {"type": "message_sent", "session_id": "s1", "sequence_number": 0},
        "sequence_number",
        id="Event-sequence-zero",
    ),
    pytest.param(
        Event.from_dict,
        {"type": "message_sent", "session_id": "s1", "timestamp": "yesterday"},
        "timestamp",
        id="Event-garbage-timestamp",
    ),
    pytest.param(Session.from_dict, {}, "agent_id", id="Session-no-agent_id"),
    pytest.param(Session.from_dict, {"agent_id": ""}, "agent_id", id="Session-empty-agent_id"),
    pytest.param(Session.from_dict, [], "session record", id="Session-list"),
    pytest.param(Run.from_dict, {}, "session_id", id="Run-no-session_id"),
    pytest.param(
        Run.from_dict, {"session_id": "s1", "ended_at": "soon"}, "ended_at", id="Run-garbage-ended_at"
    ),
]


@pytest.mark.parametrize(("from_dict", "value", "name"), FROM_DICT)
def test_bad_record_dict_raises_naming_the_field(from_dict: Any, value: Any, name: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(name)):
        from_dict(value)


# Store constructors ---------------------------------------------------------------------------

BAD_STORE_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    *(({"max_event_bytes": v}, "max_event_bytes") for v in [0, -1, True, 1.5, "1024", None, HUGE]),
    *(({"busy_timeout_ms": v}, "busy_timeout_ms") for v in [-1, True, 1.5, "5000", None, HUGE]),
    *(({"poll_interval_ms": v}, "poll_interval_ms") for v in [0, -1, True, 1.5, None, HUGE]),
    *(({"synchronous": v}, "synchronous") for v in ["off", "", None, 1, "extra", b"full"]),
    *(({"readonly": v}, "readonly") for v in [1, "yes", None]),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_STORE_ARGUMENTS, ids=lambda x: repr(x))
def test_bad_sqlite_store_argument_raises_and_creates_nothing(
    tmp_path: Path, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(name)):
        SQLiteSessionStore(tmp_path / "events.db", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [k for k, n in BAD_STORE_ARGUMENTS if n == "max_event_bytes"], ids=repr)
def test_bad_memory_store_argument_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="max_event_bytes"):
        InMemorySessionStore(**kwargs)


@pytest.mark.parametrize(
    "path",
    [None, "", 5, b"events.db", ["events.db"], "a\x00b.db", "caf\udce9.db"],
    ids=repr,
)
def test_bad_store_path_raises_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="path"):
        SQLiteSessionStore(path)
    assert list(tmp_path.iterdir()) == []
