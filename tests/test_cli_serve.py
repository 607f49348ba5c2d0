"""``sqlitestream serve`` as a real process: the URL line once listening, a store that another
process writes, SIGTERM and SIGINT ending open live responses with a clean exit, and the refusal
to listen beyond loopback without a token."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from http_support import http_client, serve_process
from support import child_env

from sqlitestream import Event, SQLiteSessionStore
from sqlitestream.cli import cli


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_open_live_responses_and_the_server_exits_cleanly(tmp_path: Path, sig: int) -> None:
    db = tmp_path / "store.db"
    with serve_process(str(db)) as (process, url), http_client(url, timeout=30) as client:
        client.put("/v1/stream/a", headers={"content-type": "text/plain"})
        with client.stream("GET", "/v1/stream/a", params={"offset": "-1", "live": "sse"}) as response:
            parts = response.iter_text()
            assert "event: control" in next(parts)  # the first control event: the response is live
            process.send_signal(sig)
            rest = "".join(parts)  # ends because the server ended it
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    assert "event: data" not in rest
    with SQLiteSessionStore(db) as store:  # closed cleanly: opens and has the stream
        assert store.byte_streams().stream_state("a").content_type == "text/plain"


def test_serve_follows_a_session_written_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    with serve_process(str(db), "--long-poll-timeout-ms", "20000") as (_process, url):
        with SQLiteSessionStore(db) as store:
            store.append_event(Event("message_sent", "s1", data={"n": 1}))
        response = httpx.get(f"{url}/v1/sessions/s1", params={"offset": "-1"})
        assert [event["data"] for event in json.loads(response.text)] == [{"n": 1}]


def test_a_token_from_the_environment_is_required(tmp_path: Path) -> None:
    env = {**child_env(), "SQLITESTREAM_TOKEN": "tok-123"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sqlitestream", "--db", str(tmp_path / "s.db"), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[1]
        assert httpx.put(f"{url}/v1/stream/a").status_code == 401
        assert httpx.put(f"{url}/v1/stream/a", headers={"authorization": "Bearer tok-123"}).status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_a_non_loopback_address_needs_a_token_or_insecure(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "s.db"), "serve", "--host", "0.0.0.0"], env={})
    assert result.exit_code == 2
    assert "--token" in result.output and "--insecure" in result.output
    assert not (tmp_path / "s.db").exists()
