"""Durable Streams clients that are not ours follow and append to sessions written by another
OS process through the Python API: the TypeScript client from npm (in node) and the
``durable-streams`` client from PyPI."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import LiveServer
from support import REPO_ROOT, SCRIPTS, run_in_another_process

from sqlitestream import Event, SQLiteSessionStore

TS_CLIENT = REPO_ROOT / ".conformance" / "node_modules" / "@durable-streams" / "client" / "dist" / "index.js"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteSessionStore]:
    with SQLiteSessionStore(tmp_path / "store.db") as store:
        yield store


def append_in_other_process(path: str, session_id: str, count: int) -> None:
    code = (
        "import sys\nfrom sqlitestream import Event, SQLiteSessionStore\n"
        f"with SQLiteSessionStore({path!r}) as store:\n"
        f"    for n in range({count}):\n"
        f"        store.append_event(Event('message_sent', {session_id!r}, data={{'n': n}}))\n"
    )
    run_in_another_process(code)


def ts_client() -> Path:
    """The npm client, installed with the conformance suite (which depends on it)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript client")
    if not TS_CLIENT.exists():
        from tools.conformance import install

        install(REPO_ROOT / ".conformance")
    return TS_CLIENT


def test_the_typescript_client_follows_and_appends_to_a_session(
    store: SQLiteSessionStore, server: LiveServer
) -> None:
    client = ts_client()
    store.append_event(Event("message_sent", "s1", data={"n": "first"}))
    node = subprocess.Popen(
        ["node", str(SCRIPTS / "ts_client_session.mjs"), str(client), f"{server.url}/v1/sessions/s1", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert node.stdout is not None
    stdout = node.stdout

    def forward_lines() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=forward_lines, daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=60))  # following live before the other process writes
        assert (first["sequence_number"], first["data"]) == (1, {"n": "first"})
        append_in_other_process(store.path, "s1", 3)
        rest = [json.loads(lines.get(timeout=60)) for _ in range(3)]
        assert [event["sequence_number"] for event in rest] == [2, 3, 4]
        assert lines.get(timeout=60).strip() == "appended"
        assert node.wait(timeout=60) == 0
    finally:
        if node.poll() is None:
            node.kill()
        node.wait()
    last = store.get_events("s1")[-1]
    assert (last.sequence_number, last.type.value, last.data) == (
        5,
        "message_received",
        {"from": "typescript"},
    )


def test_the_python_durable_streams_client_reads_follows_and_appends_to_a_session(
    store: SQLiteSessionStore, server: LiveServer
) -> None:
    durable_streams = pytest.importorskip("durable_streams")
    append_in_other_process(store.path, "s1", 2)
    url = f"{server.url}/v1/sessions/s1"
    with durable_streams.stream(url, offset="-1", live=False) as response:
        events = list(response.iter_json())
        tail = response.offset
    assert [event["sequence_number"] for event in events] == [1, 2]
    followed: queue.Queue[dict[str, object]] = queue.Queue()

    def follow() -> None:
        with durable_streams.stream(url, offset=tail, live="long-poll") as live:
            for item in live.iter_json():
                followed.put(item)
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    append_in_other_process(store.path, "s1", 1)
    assert followed.get(timeout=60)["sequence_number"] == 3
    thread.join(timeout=60)
    with durable_streams.DurableStream(url, content_type="application/json", batching=False) as handle:
        handle.append({"type": "message_received", "data": {"from": "python"}})
    last = store.get_events("s1")[-1]
    assert (last.sequence_number, last.data) == (4, {"from": "python"})
