"""Hostile values beyond the contract kit's table (sqlitestream/testing/hostile.py, run by every
store): new files respect the umask, SQL fragments in values leave a SQLite file's schema alone,
and nothing in the package unpickles or evaluates anything."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

import sqlitestream
from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.testing.hostile import HOSTILE_IDS

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
    assert modes == {
        "events.db": 0o600,
        "events.db-wal": 0o600,
        "events.db-shm": 0o600,
        "events.db-lock": 0o600,
    }


# Code ------------------------------------------------------------------------------------------

_FORBIDDEN_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "yaml",
    "jsonpickle",
}
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
                names = (
                    [] if isinstance(value, ast.Name) and value.id in _JSON_MODULES else [ast.unparse(node)]
                )
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
    assert tables == [
        "cursors",
        "ds_chunks",
        "ds_producers",
        "ds_streams",
        "events",
        "feed",
        "runs",
        "session_producers",
        "sessions",
        "sqlite_sequence",
        "streams",
    ]
    assert count == 22
