"""Bad input, table-driven: every public method and record, every argument, wrong types and
values. Each raises ``ValidationError`` whose message names the argument, and the store is
exactly as it was (a full export before and after compares equal)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apsw
import pytest

from sqlitestream import (
    Event,
    InMemorySessionStore,
    Run,
    Session,
    SessionStore,
    SQLiteSessionStore,
    ValidationError,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NAIVE = datetime(2026, 1, 1)
HUGE = 2**64
MAX_EVENT_BYTES = 4096
KNOWN_SESSIONS = ("s1", "s2")


def _event(**fields: Any) -> Event:
    base: dict[str, Any] = {"type": "message_sent", "session_id": "s1"}
    base.update(fields)
    return Event(**base)


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"x": value}
    return value


def _label(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # an int too long to print, or a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


def _failing_iterable() -> Iterator[Event]:
    yield _event(id="gen-1")
    yield "not an event"  # type: ignore[misc]


# What each kind of argument must refuse -------------------------------------------------------

BAD_IDS: list[Any] = [
    None, "", 7, True, b"s1", ["s1"], "a\x00b", "lone \ud800 surrogate", 10**5000, _Unprintable(),
]
BAD_OPTIONAL_IDS: list[Any] = ["", 7, b"r1", "a\x00b", "\udcff"]
BAD_CURSORS: list[Any] = [-1, True, False, 1.0, math.nan, "3", HUGE]
BAD_LIMITS: list[Any] = [0, -1, True, 2.0, "10", HUGE]
BAD_CHOICES: list[Any] = ["nope", "", 5, b"running", "RUNNING ", ["running"]]
BAD_TIMES: list[Any] = [NAIVE, "2026-01-01T00:00:00+00:00", 0, date(2026, 1, 1), 1.5e9]
BAD_PAYLOADS: list[Any] = [
    [1, 2],
    "text",
    b"bytes",
    {1: "int key"},
    {None: "None key"},
    {(1, 2): "tuple key"},
    {"x": math.nan},
    {"x": math.inf},
    {"x": -math.inf},
    {"x": [1, math.nan]},
    {"x": b"bytes"},
    {"x": {1, 2}},
    {"x": object()},
    {"x": datetime.now(timezone.utc)},
    {"x": 10**5000},  # too many digits to encode as JSON
    {"x": _Unprintable()},
    {"x": "\ud800"},
    {"\udcff": 1},
    _deep(150),
]


def _cases() -> Iterator[Any]:
    """(label, call, the argument name the message must contain)."""

    def case(label: str, call: Callable[[SessionStore], object], name: str) -> Any:
        return pytest.param(call, name, id=label)

    # Records: a bad field never becomes a record, so no store ever sees it.
    for value in BAD_IDS:
        yield case(f"Event.session_id={_label(value)}", lambda s, v=value: _event(session_id=v), "session_id")
        yield case(f"Event.id={_label(value)}", lambda s, v=value: _event(id=v), "id")
        yield case(f"Session.agent_id={_label(value)}", lambda s, v=value: Session(agent_id=v), "agent_id")
        yield case(f"Session.id={_label(value)}", lambda s, v=value: Session(agent_id="a", id=v), "id")
        yield case(f"Run.session_id={_label(value)}", lambda s, v=value: Run(session_id=v), "session_id")
        yield case(f"Run.id={_label(value)}", lambda s, v=value: Run(session_id="s1", id=v), "id")
    for value in BAD_OPTIONAL_IDS:
        yield case(f"Event.run_id={_label(value)}", lambda s, v=value: _event(run_id=v), "run_id")
        yield case(
            f"Session.parent_session_id={_label(value)}",
            lambda s, v=value: Session(agent_id="a", parent_session_id=v),
            "parent_session_id",
        )
    for value in [None, *BAD_CHOICES, "MESSAGE_SENT"]:
        yield case(f"Event.type={_label(value)}", lambda s, v=value: _event(type=v), "type")
    for value in [None, *BAD_CHOICES]:
        yield case(f"Session.status={_label(value)}", lambda s, v=value: Session(agent_id="a", status=v), "status")
        yield case(f"Run.status={_label(value)}", lambda s, v=value: Run(session_id="s1", status=v), "status")
    for index, value in enumerate([None, *BAD_PAYLOADS]):
        yield case(f"Event.data={index}:{_label(value)}", lambda s, v=value: _event(data=v), "data")
        yield case(f"Event.metadata={index}:{_label(value)}", lambda s, v=value: _event(metadata=v), "metadata")
        yield case(f"Session.metadata={index}:{_label(value)}", lambda s, v=value: Session(agent_id="a", metadata=v), "metadata")
        yield case(f"Session.context={index}:{_label(value)}", lambda s, v=value: Session(agent_id="a", context=v), "context")
        yield case(f"Run.metadata={index}:{_label(value)}", lambda s, v=value: Run(session_id="s1", metadata=v), "metadata")
        yield case(f"Run.token_usage={index}:{_label(value)}", lambda s, v=value: Run(session_id="s1", token_usage=v), "token_usage")
    for index, value in enumerate(BAD_PAYLOADS):  # optional: None is fine, nothing else bad is
        for field in ("input", "output", "error"):
            yield case(f"Run.{field}={index}:{_label(value)}", lambda s, v=value, f=field: Run(session_id="s1", **{f: v}), field)
    for value in [None, *BAD_TIMES]:
        yield case(f"Event.timestamp={_label(value)}", lambda s, v=value: _event(timestamp=v), "timestamp")
        yield case(f"Session.created_at={_label(value)}", lambda s, v=value: Session(agent_id="a", created_at=v), "created_at")
        yield case(f"Session.updated_at={_label(value)}", lambda s, v=value: Session(agent_id="a", updated_at=v), "updated_at")
        yield case(f"Run.started_at={_label(value)}", lambda s, v=value: Run(session_id="s1", started_at=v), "started_at")
    for value in BAD_TIMES:
        yield case(f"Run.ended_at={_label(value)}", lambda s, v=value: Run(session_id="s1", ended_at=v), "ended_at")
    for value in [0, -1, True, 1.0, "1", HUGE]:
        yield case(f"Event.sequence_number={_label(value)}", lambda s, v=value: _event(sequence_number=v), "sequence_number")
    for value in [None, -1, True, 1.0, "1", HUGE]:
        yield case(f"Run.turn_count={_label(value)}", lambda s, v=value: Run(session_id="s1", turn_count=v), "turn_count")
    for value in ["tag", None, [1], [b"x"], ["\ud800"], {"a": 1}]:
        yield case(f"Session.tags={_label(value)}", lambda s, v=value: Session(agent_id="a", tags=v), "tags")
    for value, name in [
        (None, "event record"),
        ([], "event record"),
        ("x", "event record"),
        ({"session_id": "s1"}, "type"),
        ({"type": "nope", "session_id": "s1"}, "type"),
        ({"type": "message_sent"}, "session_id"),
        ({"type": "message_sent", "session_id": "s1", "sequence_number": 0}, "sequence_number"),
    ]:
        yield case(f"Event.from_dict({_label(value)})", lambda s, v=value: Event.from_dict(v), name)
    for value, name in [({}, "agent_id"), ({"agent_id": ""}, "agent_id"), ([], "session record")]:
        yield case(f"Session.from_dict({_label(value)})", lambda s, v=value: Session.from_dict(v), name)
    for value, name in [({}, "session_id"), ({"session_id": "s1", "ended_at": "soon"}, "ended_at")]:
        yield case(f"Run.from_dict({_label(value)})", lambda s, v=value: Run.from_dict(v), name)
    yield case(
        "Event.from_dict(timestamp=garbage)",
        lambda s: Event.from_dict({"type": "message_sent", "session_id": "s1", "timestamp": "yesterday"}),
        "timestamp",
    )

    # Store methods with wrong arguments.
    for value in [None, {"agent_id": "a"}, "s1", Run(session_id="s1")]:
        yield case(f"save_session({_label(value)})", lambda s, v=value: s.save_session(v), "session")
    for value in [None, {"session_id": "s1"}, "r1", Session(agent_id="a")]:
        yield case(f"save_run({_label(value)})", lambda s, v=value: s.save_run(v), "run")
    for value in BAD_IDS:
        yield case(f"get_session({_label(value)})", lambda s, v=value: s.get_session(v), "session_id")
        yield case(f"delete_session({_label(value)})", lambda s, v=value: s.delete_session(v), "session_id")
        yield case(f"get_run({_label(value)})", lambda s, v=value: s.get_run(v), "run_id")
        yield case(f"list_runs({_label(value)})", lambda s, v=value: s.list_runs(v), "session_id")
        yield case(f"get_active_run({_label(value)})", lambda s, v=value: s.get_active_run(v), "session_id")
        yield case(f"get_events({_label(value)})", lambda s, v=value: s.get_events(v), "session_id")
        yield case(f"get_latest_sequence({_label(value)})", lambda s, v=value: s.get_latest_sequence(v), "session_id")
    for value in BAD_OPTIONAL_IDS:
        yield case(f"list_sessions(agent_id={_label(value)})", lambda s, v=value: s.list_sessions(agent_id=v), "agent_id")
        yield case(f"get_events(run_id={_label(value)})", lambda s, v=value: s.get_events("s1", run_id=v), "run_id")
    for value in BAD_CHOICES:
        yield case(f"list_sessions(status={_label(value)})", lambda s, v=value: s.list_sessions(status=v), "status")
        yield case(f"list_runs(status={_label(value)})", lambda s, v=value: s.list_runs("s1", status=v), "status")
        yield case(f"get_events(type={_label(value)})", lambda s, v=value: s.get_events("s1", type=v), "type")
    for value in BAD_LIMITS:
        yield case(f"list_sessions(limit={_label(value)})", lambda s, v=value: s.list_sessions(limit=v), "limit")
        yield case(f"list_runs(limit={_label(value)})", lambda s, v=value: s.list_runs("s1", limit=v), "limit")
        yield case(f"get_events(limit={_label(value)})", lambda s, v=value: s.get_events("s1", limit=v), "limit")
    for value in BAD_CURSORS:
        yield case(f"list_sessions(offset={_label(value)})", lambda s, v=value: s.list_sessions(offset=v), "offset")
        yield case(f"get_events(after={_label(value)})", lambda s, v=value: s.get_events("s1", after=v), "after")
        yield case(f"get_events(before={_label(value)})", lambda s, v=value: s.get_events("s1", before=v), "before")
        yield case(
            f"get_events(wait_timeout_ms={_label(value)})",
            lambda s, v=value: s.get_events("s1", wait_timeout_ms=v),
            "wait_timeout_ms",
        )
        yield case(
            f"append_event_with_sequence(expected_sequence={_label(value)})",
            lambda s, v=value: s.append_event_with_sequence(_event(id="new-1"), expected_sequence=v),
            "expected_sequence",
        )
    for value in BAD_TIMES:
        yield case(f"get_events(since={_label(value)})", lambda s, v=value: s.get_events("s1", since=v), "since")
    for value in [None, "e1", {"type": "message_sent", "session_id": "s1"}, Session(agent_id="a")]:
        yield case(f"append_event({_label(value)})", lambda s, v=value: s.append_event(v), "event")
        yield case(
            f"append_event_with_sequence({_label(value)})",
            lambda s, v=value: s.append_event_with_sequence(v),
            "event",
        )
    for value in [None, "events", b"events", 5, _event(id="single"), {"id": "x"}]:
        yield case(f"append_events({_label(value)})", lambda s, v=value: s.append_events(v), "events")
    yield case(
        "append_events([ok, None])",
        lambda s: s.append_events([_event(id="new-1"), None]),  # type: ignore[list-item]
        "events[1]",
    )
    yield case(
        "append_events([ok, ok, str]) from a generator",
        lambda s: s.append_events(_failing_iterable()),
        "events[1]",
    )
    oversized = {"blob": "x" * MAX_EVENT_BYTES}
    yield case(
        "append_event(oversized)",
        lambda s: s.append_event(_event(id="big-1", data=oversized)),
        "max_event_bytes",
    )
    yield case(
        "append_event_with_sequence(oversized metadata)",
        lambda s: s.append_event_with_sequence(_event(id="big-1", metadata=oversized)),
        "max_event_bytes",
    )
    yield case(
        "append_events([ok, oversized, ok])",
        lambda s: s.append_events([_event(id="new-1"), _event(id="big-1", data=oversized), _event(id="new-2")]),
        "events[1]",
    )


# Stores and exports ---------------------------------------------------------------------------


def _seed(store: SessionStore) -> None:
    store.save_session(Session(agent_id="agent", id="s1", created_at=T0, updated_at=T0, tags=["t"]))
    store.save_run(Run(session_id="s1", id="r1", status="running", started_at=T0))
    store.append_events(
        [_event(id=f"e{n}", run_id="r1", timestamp=T0 + timedelta(seconds=n)) for n in (1, 2, 3)]
    )
    store.append_event(_event(session_id="s2", id="e4", timestamp=T0))


def _export(store: SessionStore) -> dict[str, Any]:
    """Everything the public API shows about the seeded ids."""
    return {
        "sessions": [s.to_dict() for s in store.list_sessions()],
        "runs": {sid: [r.to_dict() for r in store.list_runs(sid)] for sid in KNOWN_SESSIONS},
        "events": {sid: [e.to_dict() for e in store.get_events(sid)] for sid in KNOWN_SESSIONS},
        "latest": {sid: store.get_latest_sequence(sid) for sid in KNOWN_SESSIONS},
    }


def _dump_file(path: Path) -> dict[str, list[Any]]:
    """Every row of every table, read beside the store with a connection of our own."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        return {table: conn.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2').fetchall() for table in tables}
    finally:
        conn.close()


@pytest.fixture(params=["memory", "sqlite"])
def store_and_snapshot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SessionStore, Callable[[], Any]]]:
    if request.param == "memory":
        store: SessionStore = InMemorySessionStore(max_event_bytes=MAX_EVENT_BYTES)
        _seed(store)
        yield store, lambda: _export(store)
    else:
        path = tmp_path / "events.db"
        store = SQLiteSessionStore(path, max_event_bytes=MAX_EVENT_BYTES)
        _seed(store)
        yield store, lambda: (_export(store), _dump_file(path))
    store.close()


@pytest.mark.parametrize(("call", "name"), list(_cases()))
def test_bad_argument_raises_naming_it_and_changes_nothing(
    store_and_snapshot: tuple[SessionStore, Callable[[], Any]],
    call: Callable[[SessionStore], object],
    name: str,
) -> None:
    store, snapshot = store_and_snapshot
    before = snapshot()
    with pytest.raises(ValidationError, match=re.escape(name)):
        call(store)
    assert snapshot() == before


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


def test_errors_never_leak_raw_exceptions_for_json_numbers_at_the_edges(
    store_and_snapshot: tuple[SessionStore, Callable[[], Any]],
) -> None:
    """Big but finite numbers are valid JSON and come back exactly (not a bad input)."""
    store, _ = store_and_snapshot
    data = {"big": 2**70, "neg": -(2**70), "tiny": 5e-324, "max": 1.7976931348623157e308, "zero": -0.0}
    stored = store.append_event_with_sequence(_event(id="numbers", data=data))
    (read,) = store.get_events("s1", after=stored.sequence_number - 1, limit=1)
    assert read.data == data
    assert all(type(read.data[k]) is type(v) for k, v in data.items())
