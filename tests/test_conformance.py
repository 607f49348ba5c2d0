"""The Durable Streams conformance suite against ``sqlitestream serve``: a part of it here
(stream closure, idempotent producers with it, SSE and long-poll at the end of a stream); CI
runs all 332 tests with ``python -m tools.conformance``."""

from __future__ import annotations

import shutil

import pytest
from support import REPO_ROOT


def test_the_conformance_suite_passes_its_stream_closure_tests() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the conformance suite")
    from tools.conformance import main

    assert main(["--dir", str(REPO_ROOT / ".conformance"), "-t", "Stream Closure"]) == 0
