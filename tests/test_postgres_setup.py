"""How the PostgreSQL tests treat the server: without SQLITESTREAM_PG_DSN they skip with a
one-line reason; with it set and no server answering they fail (never silently skip)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = "tests/test_postgres_contract.py::TestPostgresStore::test_sequences_start_at_one_and_increase_by_one"


def _pytest(env_dsn: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "SQLITESTREAM_PG_DSN"}
    if env_dsn is not None:
        env["SQLITESTREAM_PG_DSN"] = env_dsn
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", PROBE],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_without_the_variable_postgres_tests_skip_with_a_reason() -> None:
    result = _pytest(None)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "set SQLITESTREAM_PG_DSN to a PostgreSQL URL" in result.stdout


def test_with_the_variable_and_no_server_postgres_tests_fail() -> None:
    result = _pytest(f"postgresql://postgres@127.0.0.1:{_closed_port()}/test")
    assert result.returncode != 0, result.stdout
    assert "skipped" not in result.stdout
    assert "SQLITESTREAM_PG_DSN is set but PostgreSQL does not answer" in result.stdout
