"""The Durable Streams conformance suite against ``sqlitestream serve``: a part of it here
(stream closure, idempotent producers with it, SSE and long-poll at the end of a stream); CI
runs all 332 tests with ``python -m tools.conformance`` (and on PostgreSQL, one node and two)."""

from __future__ import annotations

import shutil

import pytest
from support import REPO_ROOT


def test_the_conformance_suite_passes_its_stream_closure_tests() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the conformance suite")
    from tools.conformance import main

    assert main(["--dir", str(REPO_ROOT / ".conformance"), "-t", "Stream Closure"]) == 0


def test_the_closing_producer_tests_pass_over_two_postgresql_nodes(pg_dsn: str) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the conformance suite")
    from tools.conformance import main

    argv = [
        "--dir",
        str(REPO_ROOT / ".conformance"),
        "-t",
        "Idempotent Producers with Stream Closure",
        "--db",
        pg_dsn,
        "--nodes",
        "2",
    ]
    assert main(argv) == 0
