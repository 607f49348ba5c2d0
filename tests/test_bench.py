"""The benchmark harness runs: a ``--quick`` run of a few cases completes and writes its
report. No timings are asserted here; the figures live in the README's Performance section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_completes_and_writes_its_report(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    markdown = tmp_path / "bench.md"
    done = subprocess.run(
        [
            sys.executable, "-m", "tools.bench", "--quick", "--no-peers", "--reps", "1",
            "--only", "append", "--only", "latest", "--only", "wake",
            "--json", str(report), "--markdown", str(markdown),
            "--cache-dir", str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    names = {case["name"] for case in data["cases"]}
    assert {"append-normal", "append-full", "latest", "wake"} <= names
    assert data["failed"] == []
    for case in data["cases"]:
        assert case["rows"], case["name"]
        for row in case["rows"]:
            assert row["samples"], (case["name"], row["label"])
    assert "append-normal" in done.stdout
    assert "| target | measured | met |" in markdown.read_text()
