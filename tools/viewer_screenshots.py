"""``python -m tools.viewer_screenshots [--out docs/images]``: the screenshots of the session
viewer in the docs, taken from a real ``sqlitestream serve`` on a small demo store.

Needs headless Chromium and chromedriver from the system packages (``apt-get install chromium
chromium-driver``) and Selenium (the test extra). Writes ``viewer-sessions.png``,
``viewer-session.png`` (1280 x 860) and ``viewer-session-375.png`` (a 375 px wide phone).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlitestream import Event, Run, RunStatus, Session, SessionStatus, SQLiteSessionStore

ROOT = Path(__file__).resolve().parent.parent


def build_demo(path: Path) -> None:
    """A few sessions of an imaginary coding agent; ``ses_fix_cursor`` has two runs, tool calls,
    a failure and token usage."""
    now = datetime.now(UTC)
    with SQLiteSessionStore(path) as store:
        for index, (session_id, agent, status) in enumerate(
            [
                ("ses_docs_refresh", "writer", SessionStatus.COMPLETED),
                ("ses_triage_1482", "triage", SessionStatus.FAILED),
                ("ses_bench_nightly", "bench", SessionStatus.PAUSED),
                ("ses_fix_cursor", "coder", SessionStatus.ACTIVE),
            ]
        ):
            at = now - timedelta(minutes=40 - 10 * index)
            store.save_session(
                Session(id=session_id, agent_id=agent, status=status, created_at=at, updated_at=at)
            )
            store.append_events(
                [
                    Event(type="session_started", session_id=session_id, timestamp=at),
                    Event(
                        type="message_sent",
                        session_id=session_id,
                        timestamp=at,
                        data={"role": "user", "content": "go"},
                    ),
                ]
            )
        sid = "ses_fix_cursor"
        start = now - timedelta(minutes=3)
        store.save_run(
            Run(
                session_id=sid,
                id="run_reproduce",
                status=RunStatus.COMPLETED,
                started_at=start,
                ended_at=start + timedelta(seconds=41),
                token_usage={"input_tokens": 18230, "output_tokens": 1904},
            )
        )
        script: list[tuple[str, str | None, dict[str, Any]]] = [
            (
                "run_started",
                "run_reproduce",
                {"input": {"task": "tail -f skips an event after a re-created session"}},
            ),
            (
                "message_received",
                "run_reproduce",
                {"role": "assistant", "content": "Let me reproduce it first."},
            ),
            (
                "tool_call_started",
                "run_reproduce",
                {"tool": "bash", "arguments": {"cmd": "pytest -q tests/test_cli.py -k tail"}},
            ),
            (
                "tool_call_completed",
                "run_reproduce",
                {"tool": "bash", "result": "1 failed, 41 passed in 3.2s"},
            ),
            (
                "tool_call_started",
                "run_reproduce",
                {"tool": "read_file", "arguments": {"path": "sqlitestream/streaming.py"}},
            ),
            (
                "tool_call_completed",
                "run_reproduce",
                {"tool": "read_file", "result": "def follow(store, session_id, *, after=0, ..."},
            ),
            ("token_usage_updated", "run_reproduce", {"input_tokens": 18230, "output_tokens": 1904}),
            ("run_completed", "run_reproduce", {"output": {"found": "cursor kept across a delete"}}),
            (
                "run_started",
                "run_fix",
                {"input": {"task": "reset the cursor when the session is re-created"}},
            ),
            (
                "message_received",
                "run_fix",
                {
                    "role": "assistant",
                    "content": "The follower keeps `after` when the latest sequence drops; resetting it.",
                },
            ),
            (
                "tool_call_started",
                "run_fix",
                {"tool": "edit_file", "arguments": {"path": "sqlitestream/streaming.py", "lines": "88-97"}},
            ),
            ("tool_call_completed", "run_fix", {"tool": "edit_file", "result": "ok"}),
            ("tool_call_started", "run_fix", {"tool": "bash", "arguments": {"cmd": "pytest -q"}}),
            (
                "tool_call_failed",
                "run_fix",
                {"tool": "bash", "error": "exit status 1: test_tail_follow_restarts FAILED"},
            ),
            (
                "error_occurred",
                "run_fix",
                {"type": "AssertionError", "message": "assert [1, 2] == [1, 2, 3]"},
            ),
            ("token_usage_updated", "run_fix", {"input_tokens": 9120, "output_tokens": 2210}),
            (
                "message_received",
                "run_fix",
                {
                    "role": "assistant",
                    "content": "One more case: the wake-up arrives before the delete commits.",
                },
            ),
        ]
        store.append_events(
            [
                Event(
                    type=kind,
                    session_id=sid,
                    run_id=run,
                    data=data,
                    timestamp=start + timedelta(seconds=4 * n),
                )
                for n, (kind, run, data) in enumerate(script)
            ]
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        print("needs chromium and chromedriver: apt-get install chromium chromium-driver", file=sys.stderr)
        return 1
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "demo.db"
        build_demo(db)
        server = subprocess.Popen(
            [sys.executable, "-m", "sqlitestream", "--db", str(db), "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[1]
            options = webdriver.ChromeOptions()
            options.binary_location = chromium
            for argument in (
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ):
                options.add_argument(argument)
            driver = webdriver.Chrome(service=Service(driver_path), options=options)
            try:
                shots = [
                    ("/", "viewer-sessions.png", 1280, 560),
                    ("/session?id=ses_fix_cursor", "viewer-session.png", 1280, 1180),
                    ("/session?id=ses_fix_cursor", "viewer-session-375.png", 375, 1100),
                ]
                for path, name, width, height in shots:
                    driver.execute_cdp_cmd(
                        "Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
                    )
                    driver.get(url + path)
                    # The pages render on their own schedule; a screenshot only has to look right.
                    time.sleep(1.5)
                    driver.save_screenshot(str(args.out / name))
                    print(args.out / name)
            finally:
                driver.quit()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
