"""The records are plain dataclasses: their fields are what ``dataclasses.fields`` lists and
``help()`` shows readably. Reads and appends return :class:`StoredEvent`, whose
``sequence_number`` is an ``int``: a user's ``mypy --strict`` code does arithmetic on it with
no assertion or cast (tests/typed_user_code.py, type-checked by a step of .ci/run)."""

from __future__ import annotations

import dataclasses
import pydoc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from sqlitestream import (
    Event,
    EventType,
    InMemorySessionStore,
    Run,
    Session,
    StoredEvent,
    ValidationError,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("record", [Event, StoredEvent, Session, Run])
def test_a_records_fields_are_its_constructor_arguments(record: type[Event | Session | Run]) -> None:
    names = [field.name for field in dataclasses.fields(record)]
    assert not [name for name in names if name.startswith("_")]
    assert set(names) == set(record.__init__.__code__.co_varnames[1 : len(names) + 1])


@pytest.mark.parametrize("record", [Event, StoredEvent, Session, Run])
def test_help_shows_readable_defaults(record: type) -> None:
    assert " object at 0x" not in pydoc.render_doc(record)


def test_reads_and_appends_return_stored_events() -> None:
    store = InMemorySessionStore()
    appended = store.append_event_with_sequence(Event("message_sent", "s"))
    batch = store.append_events([Event("message_sent", "s")])
    read = store.get_events("s")
    assert all(type(event) is StoredEvent for event in [appended, *batch, *read])
    assert [event.sequence_number for event in read] == [1, 2]


def test_a_stored_event_needs_a_sequence_number() -> None:
    with pytest.raises(ValidationError, match="sequence_number"):
        StoredEvent("message_sent", "s", sequence_number=None, position=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="sequence_number"):
        StoredEvent("message_sent", "s", sequence_number=0, position=1)


def test_a_stored_event_needs_a_position() -> None:
    with pytest.raises(ValidationError, match="position"):
        StoredEvent("message_sent", "s", sequence_number=1, position=0)
    with pytest.raises(ValidationError, match="position"):
        StoredEvent("message_sent", "s", sequence_number=1, position=None)  # type: ignore[arg-type]
    event = StoredEvent("message_sent", "s", sequence_number=1, position=7)
    assert event.to_dict()["position"] == 7
    assert "position" not in Event.from_dict(event.to_dict()).to_dict()
    assert StoredEvent.from_dict(event.to_dict()) == event
    with pytest.raises(ValidationError, match="position"):
        StoredEvent.from_dict(Event.to_dict(event))


EDGE_NUMBERS: dict[str, Any] = {
    "ints": [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30)],
    "floats": [1e-7, 1e16, 1e22, 5e-324, 1.7976931348623157e308, -0.0, 0.1 + 0.2],
    "nested": {"deep": [[2**64 + 1, 1.5], {"k": -(2**63) - 1}]},
}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_numbers_around_64_bits_come_back_exactly(kind: str, tmp_path: Path) -> None:
    """Each side of the 64-bit range, where the JSON writer changes, reads back as written."""
    from sqlitestream import SQLiteSessionStore

    store = InMemorySessionStore() if kind == "memory" else SQLiteSessionStore(tmp_path / "e.db")
    with store:
        stored = store.append_event_with_sequence(Event("message_sent", "s", data=EDGE_NUMBERS))
        (read,) = store.get_events("s")
    for event in (stored, read):
        assert event.data == EDGE_NUMBERS
        assert [type(v) for v in event.data["ints"]] == [int] * len(EDGE_NUMBERS["ints"])
        assert [type(v) for v in event.data["floats"]] == [float] * len(EDGE_NUMBERS["floats"])


@pytest.mark.parametrize(
    "data",
    [{"x": float("nan")}, {"x": [float("inf")]}, {"x": {"y": -float("inf")}}, {1: "a"}, {"x": "\ud800"}],
    ids=repr,
)
def test_values_json_cannot_hold_exactly_are_refused(data: dict[Any, Any]) -> None:
    with pytest.raises(ValidationError):
        Event("message_sent", "s", data=data)


class _Name(str):
    """A str subclass, as an enum or a library's own id type may be."""


def test_an_event_holds_its_fields_in_normal_form() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    event = Event("message_sent", _Name("s"), run_id=_Name("r"), id=_Name("evt_1"), timestamp=moment)
    assert event.type is EventType.MESSAGE_SENT
    assert [type(value) for value in (event.session_id, event.run_id, event.id)] == [str, str, str]
    assert (event.session_id, event.run_id, event.id) == ("s", "r", "evt_1")
    assert event.timestamp.tzinfo is UTC
    assert event.timestamp == moment


def _nested(depth: int, padding: str = "") -> dict[str, Any]:
    """A payload of ``depth`` nested containers in all (the outer dict counted)."""
    value: Any = padding
    for _ in range(depth - 1):
        value = [value]
    return {"x": value}


@pytest.mark.parametrize("padding", ["", "p" * 300], ids=["short text", "long text"])
def test_payloads_nest_at_most_100_levels(padding: str) -> None:
    assert Event("message_sent", "s", data=_nested(100, padding)).data == _nested(100, padding)
    with pytest.raises(ValidationError, match="nested more than 100 levels"):
        Event("message_sent", "s", data=_nested(101, padding))


def test_the_typed_event_signature_matches_the_generated_one() -> None:
    """Type checkers see Event.__init__ from models.py (it also takes a type's string value);
    it must list the same parameters, in order, with the same defaults, as the runtime one."""
    import ast
    import inspect

    import sqlitestream.models

    tree = ast.parse(Path(sqlitestream.models.__file__).read_text(encoding="utf-8"))
    (event_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Event"]
    (typed,) = [n for n in ast.walk(event_class) if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    typed_names = [arg.arg for arg in typed.args.args[1:]]
    typed_defaults = [ast.unparse(d) for d in typed.args.defaults]
    fields = dataclasses.fields(Event)
    assert typed_names == [field.name for field in fields]
    assert typed_names == list(inspect.signature(Event).parameters)
    expected = [
        "..." if field.default is dataclasses.MISSING else repr(field.default)
        for field in fields
        if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    ]
    assert typed_defaults == expected
