"""The benchmark harness runs: a ``--quick`` run of a few cases completes and writes its
report. No timings are asserted; the figures live in docs/performance.md. Run by .ci/run
from the checkout's root (a step of its own: it is a run of a tool, not a unit test)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    report, markdown = Path(tmp) / "bench.json", Path(tmp) / "bench.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--quick",
            "--no-peers",
            "--reps",
            "1",
            "--only",
            "append",
            "--only",
            "latest",
            "--only",
            "wake",
            "--json",
            str(report),
            "--markdown",
            str(markdown),
            "--cache-dir",
            str(Path(tmp) / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    names = {case["name"] for case in data["cases"]}
    assert {"append-normal", "append-full", "latest", "wake"} <= names, names
    assert data["failed"] == [], data["failed"]
    for case in data["cases"]:
        assert case["rows"], case["name"]
        for row in case["rows"]:
            assert row["samples"], (case["name"], row["label"])
    assert "append-normal" in done.stdout
    assert "| target | measured | met |" in markdown.read_text()
print("bench smoke run: ok")
