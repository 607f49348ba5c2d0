"""Hostile values: ids and payload strings full of quotes, wildcards, NUL, SQL fragments and
long or non-ASCII text are stored and filtered exactly, never interpreted. New files respect
the umask. Nothing in the package unpickles or evaluates anything."""

from __future__ import annotations

import ast
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import sqlitestream
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

HOSTILE_IDS = [
    "'",
    '"',
    "`",
    "%",
    "_",
    "%%",
    "a%",
    "_b",
    "[a-z]",
    "*",
    "?",
    "\\",
    "\\%",
    "'; DROP TABLE events; --",
    "x' OR '1'='1",
    '" OR ""="',
    "1; SELECT * FROM sessions",
    "?1",
    ":name",
    "$x",
    "@x",
    "/* comment */",
    "-- comment",
    " leading and trailing ",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "\x01\x02\x7f",
    "ünïcödé",
    "日本語のセッション",
    "emoji 🦆🧪",
    "rtl \u202e reversed",
    "e\u0301",  # e + combining acute: must not match the precomposed "é"
    "é",
    "A",
    "a",  # must not match "A" (no case folding)
    "x" * 10_000,
    "€" * 5_000,
]

HOSTILE_PAYLOAD_TEXT = [
    "NUL \x00 inside",
    "\x00",
    "\x00\x00\x00",
    "ends with NUL\x00",
    *HOSTILE_IDS,
    "__import__('os').system('touch pwned')",
    "{{7*7}} ${7*7} #{7*7}",
    "\\u0000 escaped, not a NUL",
    '{"looks": "like json"}',
    "cos\nsystem\n(S'touch pwned'\ntR.",  # a pickle protocol-0 payload, as text
    "\ufeffBOM",
    "\U0010ffff max code point",
    "y" * 200_000,
]


@pytest.fixture(params=["memory", "sqlite", "sqlite-reopened"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Yields (store, reopen): ``reopen()`` returns the store to read back from."""
    path = tmp_path / "events.db"
    if request.param == "memory":
        store: SessionStore = InMemorySessionStore()
        yield store, lambda: store
        store.close()
        return
    opened = [SQLiteSessionStore(path)]

    def reopen() -> SessionStore:
        if request.param == "sqlite-reopened":
            opened[-1].close()
            opened.append(SQLiteSessionStore(path))
        return opened[-1]

    yield opened[0], reopen
    opened[-1].close()


def test_hostile_ids_are_stored_and_filtered_exactly(stores: Any) -> None:
    store, reopen = stores
    for index, value in enumerate(HOSTILE_IDS):
        store.save_session(Session(agent_id=value, id=value, created_at=T0, updated_at=T0, tags=[value]))
        store.save_run(Run(session_id=value, id=f"run:{value}", status="running", started_at=T0))
        store.append_events(
            [
                Event("message_sent", value, id=f"evt:{value}", run_id=f"run:{value}", data={"i": index}),
                Event("message_received", value, id=f"evt2:{value}", run_id=value, data={"i": index}),
            ]
        )
    store = reopen()
    for index, value in enumerate(HOSTILE_IDS):
        session = store.get_session(value)
        assert (session.id, session.agent_id, session.tags) == (value, value, [value])
        assert [s.id for s in store.list_sessions(agent_id=value)] == [value]
        assert store.get_run(f"run:{value}").session_id == value
        assert [r.id for r in store.list_runs(value)] == [f"run:{value}"]
        assert [r.id for r in store.list_runs(value, status="running")] == [f"run:{value}"]
        active = store.get_active_run(value)
        assert active is not None and active.id == f"run:{value}"
        events = store.get_events(value)
        assert [(e.id, e.session_id, e.sequence_number, e.data) for e in events] == [
            (f"evt:{value}", value, 1, {"i": index}),
            (f"evt2:{value}", value, 2, {"i": index}),
        ]
        assert [e.id for e in store.get_events(value, run_id=f"run:{value}")] == [f"evt:{value}"]
        assert [e.id for e in store.get_events(value, run_id=value)] == [f"evt2:{value}"]
        assert [e.id for e in store.get_events(value, type="message_received")] == [f"evt2:{value}"]
        assert store.get_latest_sequence(value) == 2
    assert len(store.list_sessions()) == len(HOSTILE_IDS)


def test_wildcards_and_case_never_widen_a_filter(stores: Any) -> None:
    store, reopen = stores
    for value in ["%", "_", "a", "A", "ab", "a_", "a%", "é", "e\u0301"]:
        store.append_event(Event("message_sent", "s1", id=f"id-{value}", run_id=value))
        store.save_session(Session(agent_id=value, id=f"ses-{value}", created_at=T0, updated_at=T0))
    store = reopen()
    for value in ["%", "_", "a", "A", "a_", "a%", "é", "e\u0301"]:
        assert [e.id for e in store.get_events("s1", run_id=value)] == [f"id-{value}"]
        assert [s.id for s in store.list_sessions(agent_id=value)] == [f"ses-{value}"]
    for absent in ["%%", "__", "*", "a*", "A%", "É", ".*"]:
        assert store.get_events("s1", run_id=absent) == []
        assert store.list_sessions(agent_id=absent) == []
        assert store.get_events(absent) == []
        assert store.get_latest_sequence(absent) == 0


def test_hostile_payload_text_round_trips_exactly(stores: Any) -> None:
    store, reopen = stores
    data = {f"k{index}": text for index, text in enumerate(HOSTILE_PAYLOAD_TEXT)}
    keys = {text: index for index, text in enumerate(HOSTILE_PAYLOAD_TEXT[:-1])}  # texts as keys
    nested = {"list": list(HOSTILE_PAYLOAD_TEXT[:5]), "deep": {"\x00": {"'": ["%", {"_": "\x00"}]}}}
    metadata = {"keys": keys, "nested": nested}
    session = Session(agent_id="a", id="s1", metadata=metadata, context=data, tags=HOSTILE_PAYLOAD_TEXT[:8])
    run = Run(session_id="s1", id="r1", input=data, output=metadata, error=nested, metadata=keys)
    store.save_session(session)
    store.save_run(run)
    stored = store.append_event_with_sequence(Event("message_sent", "s1", data=data, metadata=metadata))
    assert (stored.data, stored.metadata) == (data, metadata)
    store = reopen()
    (event,) = store.get_events("s1")
    assert event.data == data and event.metadata == metadata
    assert all(type(value) is str for value in event.data.values())
    assert store.get_session("s1") == session
    assert store.get_run("r1") == run
    assert not Path("pwned").exists()


@pytest.mark.parametrize(
    "type_", ["message_sent' OR '1'='1", "message_sent\x00", "message_%", "MESSAGE_SENT", "message_sent "]
)
def test_hostile_event_types_are_refused_not_matched(stores: Any, type_: str) -> None:
    store, _ = stores
    store.append_event(Event("message_sent", "s1"))
    with pytest.raises(ValidationError, match="type"):
        store.get_events("s1", type=type_)
    with pytest.raises(ValidationError, match="type"):
        Event(type_, "s1")  # type: ignore[arg-type]
    assert len(store.get_events("s1")) == 1


def test_ids_refuse_nul_by_design(stores: Any) -> None:
    """Ids double as file names and CLI arguments, so NUL is refused (payloads keep it)."""
    store, _ = stores
    for field in ("session_id", "id", "run_id"):
        with pytest.raises(ValidationError, match=field):
            Event("message_sent", **{"session_id": "s1", field: "a\x00b"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="session_id"):
        store.get_events("a\x00b")
    assert store.get_latest_sequence("a") == 0


# Files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o002, 0o022, 0o027, 0o077])
def test_store_files_follow_the_umask_and_are_never_world_writable(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with SQLiteSessionStore(tmp_path / "events.db") as store:
            store.append_event(Event("message_sent", "s1"))
            with SQLiteSessionStore(tmp_path / "events.db") as second:  # a second opener
                second.append_event(Event("message_sent", "s1"))
                modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert set(modes) == {"events.db", "events.db-wal", "events.db-shm", "events.db-lock"}
    for name, mode in modes.items():
        assert mode & umask == 0, (name, oct(mode))
        assert mode & stat.S_IWOTH == 0, (name, oct(mode))
        assert mode & 0o111 == 0, (name, oct(mode))  # never executable


def test_opening_an_existing_store_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteSessionStore(path).close()
    path.chmod(0o600)
    old = os.umask(0o000)
    try:
        with SQLiteSessionStore(path) as store:
            store.append_event(Event("message_sent", "s1"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    # The side lock file is readable and writable only by those who may write the store.
    assert modes == {"events.db": 0o600, "events.db-wal": 0o600, "events.db-shm": 0o600, "events.db-lock": 0o600}


# Code ------------------------------------------------------------------------------------------

_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml", "jsonpickle"}
_FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile"}
_JSON_MODULES = {"json", "orjson"}


def _package_sources() -> list[Path]:
    root = Path(sqlitestream.__file__).parent
    return sorted(root.rglob("*.py"))


def test_the_package_never_unpickles_or_evaluates() -> None:
    """Stored bytes only ever go through a JSON parser (``json.loads``, ``orjson.loads``): a
    static check of every module."""
    findings = []
    for path in _package_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                names = [node.func.id] if node.func.id in _FORBIDDEN_CALLS else []
            elif isinstance(node, ast.Attribute) and node.attr in {"loads", "load"}:
                value = node.value
                names = [] if isinstance(value, ast.Name) and value.id in _JSON_MODULES else [ast.unparse(node)]
            else:
                continue
            for name in names:
                if name in _FORBIDDEN_MODULES or name in _FORBIDDEN_CALLS or "." in name:
                    findings.append(f"{path.name}:{node.lineno}: {name}")
    assert len(_package_sources()) > 5
    assert findings == []


def test_sql_fragments_in_values_leave_the_schema_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with SQLiteSessionStore(path) as store:
        for value in HOSTILE_IDS[:22]:
            store.append_event(Event("message_sent", value, data={"sql": value}, metadata={value: value}))
            store.get_events(value, run_id=value)
            store.list_sessions(agent_id=value)
            store.delete_session(value + "x")
    import apsw

    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'"))
        count = conn.execute("SELECT count(*) FROM events").fetchall()[0][0]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    assert tables == ["events", "runs", "sessions", "streams"]
    assert count == 22
