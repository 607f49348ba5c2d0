"""Helpers for the viewer's browser tests: headless Chromium from the system packages driven by
Selenium with the system chromedriver, a ``sqlitestream serve`` process that can be killed and
started again on its port, and readers of what the pages show."""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from support import child_env, command_process

from tools import forked

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def skip_without_browser() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "no browser: install chromium and chromium-driver (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[test]')")


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium that keeps every console message for ``get_log("browser")``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        # Chromium's background services (updates, sync, translation, metrics) take about an
        # eighth of the module's CPU and nothing the tests look at.
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-default-browser-check",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        "--mute-audio",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def forget_everything(driver: Any) -> None:
    """Leave the page and drop what it left behind, so the next test meets the browser as
    :func:`chrome` made it: no page (its live connections closed), no cookies, no cache, the
    window's own size, and no unread console messages."""
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get_log("browser")


def narrow(driver: Any, width: int = 375, height: int = 800) -> None:
    """Emulate a phone's viewport (a headless window cannot be made narrower than 500 px)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )


def page_problems(driver: Any) -> list[dict[str, Any]]:
    """Console messages since the last call that are errors or warnings, and any script error."""
    return [
        entry
        for entry in driver.get_log("browser")
        if entry["level"] in ("SEVERE", "WARNING") or entry["source"] == "javascript"
    ]


class _Lines:
    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put("")

    def next(self, timeout: float) -> str:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None


class Server:
    """``sqlitestream --db DB serve`` in its own process; :meth:`kill` is a SIGKILL, and
    :meth:`start` again listens on the same port, so open pages reconnect to it."""

    def __init__(self, db: Path, log: Path, token: str | None = None) -> None:
        self._db = db
        self._log = log
        self._token = token
        self.port = 0
        self.url = ""
        self._process: forked.Child | None = None

    def start(self) -> None:
        argv = ["--db", str(self._db), "serve", "--port", str(self.port)]
        # The token from the environment: not in the command line ps shows.
        environment = {} if self._token is None else {"SQLITESTREAM_TOKEN": self._token}
        self._process = command_process(argv, environment=environment, stderr_path=self._log)
        line = _Lines(self._process.stdout).next(timeout=30)
        assert line.startswith("serving http://"), f"serve printed {line!r}; log: {self._log.read_text()}"
        self.url = line.split()[1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


class Writer:
    """tests/scripts/viewer_writer.py: another OS process writing through the Python API."""

    def __init__(self, db: Path) -> None:
        script = Path(__file__).resolve().parent / "scripts" / "viewer_writer.py"
        self._process = subprocess.Popen(
            [sys.executable, str(script), str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self._process.stdout is not None
        self._lines = _Lines(self._process.stdout)
        assert self._lines.next(timeout=30) == "ready"

    def send(self, **command: Any) -> str:
        import json

        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        reply = self._lines.next(timeout=30)
        assert reply.startswith("ok"), reply
        return reply

    def session(self, session_id: str, agent: str, status: str = "active") -> None:
        self.send(op="session", id=session_id, agent=agent, status=status)

    def append(
        self, session_id: str, type: str, data: dict[str, Any] | None = None, run: str | None = None
    ) -> int:
        return int(self.send(op="append", session=session_id, type=type, data=data or {}, run=run).split()[1])

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)


# Reading the session page ----------------------------------------------------------------

_ROWS_IN_VIEW = """
return [...document.querySelectorAll('#timeline [data-seq]')]
  .map((node) => [parseFloat(node.style.top), Number(node.dataset.seq), node.dataset.type])
  .sort((a, b) => a[0] - b[0]);
"""

_SCAN = """
const done = arguments[arguments.length - 1];
const timeline = document.getElementById('timeline');
const frames = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
(async () => {
  document.getElementById('follow').checked = false;
  const seen = [];
  timeline.scrollTop = 0;
  await frames();
  for (;;) {
    for (const node of timeline.querySelectorAll('[data-seq]')) {
      seen.push([parseFloat(node.style.top), Number(node.dataset.seq), node.dataset.type]);
    }
    if (timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - 1) break;
    timeline.scrollTop += timeline.clientHeight;
    await frames();
  }
  done(seen);
})();
"""


def rows_in_view(driver: Any) -> list[tuple[int, str]]:
    """(sequence, type) of the event rows in the document, top to bottom."""
    return [(seq, kind) for _, seq, kind in driver.execute_script(_ROWS_IN_VIEW)]


def all_rows(driver: Any) -> list[tuple[int, str]]:
    """(sequence, type) of every event row of the timeline, top to bottom, read by scrolling
    it from top to bottom (the list renders only what is in view); a row shown twice, at two
    places, is listed twice."""
    driver.set_script_timeout(120)
    by_place: dict[float, tuple[int, str]] = {}
    for top, seq, kind in driver.execute_async_script(_SCAN):
        by_place[top] = (seq, kind)
    return [by_place[top] for top in sorted(by_place)]
