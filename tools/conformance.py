"""``python -m tools.conformance [--dir DIR] [-t REGEX] [--db URL] [--nodes N]``: run the Durable
Streams conformance suite (``@durable-streams/server-conformance-tests``, on vitest) against
``sqlitestream serve`` on a temporary store, and fail unless every test it runs passes (all 332
without ``-t``).

``--db postgresql://...`` serves a PostgreSQL store instead (a fresh schema, dropped after the
run: give the URL without a ``schema`` parameter). ``--nodes 2`` starts two ``serve`` processes
on that one database and puts a round-robin proxy (``tools/rrproxy.py``) in front of them, so
consecutive requests of a test go to different nodes.

The suite is installed with npm into ``DIR`` (default ``.conformance/`` at the repository root,
ignored by git) the first time; node 18 or newer and npm must be on the PATH. The server runs
with a 2 s long-poll timeout: two of the suite's tests wait for a long-poll's 204 inside a 5 s
test timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = "@durable-streams/server-conformance-tests"
SUITE_VERSION = "0.3.6"
EXPECTED = 332  # 338 tests, less the 6 reserved-subscription tests the suite skips
RUNNER = f"node_modules/{SUITE}/dist/test-runner.js"
# The published CLI runs vitest on RUNNER, which vitest's default include and exclude filter out.
VITEST_CONFIG = f"""import {{ defineConfig }} from "vitest/config"
export default defineConfig({{ test: {{ include: ["{RUNNER}"], exclude: [] }} }})
"""
ROOT = Path(__file__).resolve().parent.parent


def install(directory: Path) -> None:
    """npm-install the suite into ``directory`` unless that exact version is there."""
    directory.mkdir(parents=True, exist_ok=True)
    package = directory / "node_modules" / SUITE / "package.json"
    if package.exists() and json.loads(package.read_text())["version"] == SUITE_VERSION:
        return
    if not (directory / "package.json").exists():
        (directory / "package.json").write_text('{"name": "conformance", "private": true}\n')
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", f"{SUITE}@{SUITE_VERSION}"], cwd=directory, check=True
    )


def _started(command: list[str], banner: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(banner):
        process.kill()
        raise SystemExit(f"{command[2]} did not start: {line!r}")
    return process, line.split()[1]


def start_server(store: Path | str) -> tuple[subprocess.Popen[str], str]:
    """``sqlitestream serve --port 0`` on ``store``, and the URL it prints once listening."""
    command = [sys.executable, "-m", "sqlitestream", "--db", str(store), "serve", "--port", "0"]
    return _started([*command, "--long-poll-timeout-ms", "2000"], "serving ")


def start_proxy(upstreams: list[str]) -> tuple[subprocess.Popen[str], str]:
    """``tools/rrproxy.py`` on a free port in front of ``upstreams``, and its URL."""
    return _started([sys.executable, "-m", "tools.rrproxy", *upstreams], "proxying ")


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def run_suite(directory: Path, url: str, pattern: str | None, report: Path) -> None:
    (directory / "vitest.config.mjs").write_text(VITEST_CONFIG)
    # vitest's default 5 s per test is the suite runner's, not the protocol's: on a loaded two-core
    # machine its chunk-size test (100,000 assertions in the client) took 5.6 s against the
    # reference server too. The assertions are the same with more time.
    command = ["npx", "vitest", "run", RUNNER, "--testTimeout=20000", "--reporter=default", "--reporter=json"]
    command.append(f"--outputFile.json={report}")
    if pattern:
        command += ["-t", pattern]
    subprocess.run(command, cwd=directory, env={**os.environ, "CONFORMANCE_TEST_URL": url}, check=False)


def summarise(report: Path, expect_all: bool) -> int:
    """Print the failures; 0 if none failed (and, for a full run, all 332 passed)."""
    results = json.loads(report.read_text())
    passed, failed = results["numPassedTests"], results["numFailedTests"]
    for suite in results["testResults"]:
        for test in suite["assertionResults"]:
            if test["status"] == "failed":
                message = (test.get("failureMessages") or [""])[0].splitlines()[:1]
                print(f"FAILED {test['fullName']}: {' '.join(message)}")
    print(f"conformance: {passed} passed, {failed} failed, {results['numPendingTests']} skipped")
    if failed or passed == 0 or (expect_all and passed != EXPECTED):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".conformance", help="where to install the suite")
    parser.add_argument("-t", dest="pattern", help="only the tests whose names match this regex")
    parser.add_argument(
        "--db", help="a postgresql:// URL to serve a fresh schema of (default: a SQLite file)"
    )
    parser.add_argument("--nodes", type=int, default=1, help="serve processes behind a round-robin proxy")
    args = parser.parse_args(argv)
    if args.nodes < 1 or (args.nodes > 1 and not args.db):
        parser.error("--nodes above 1 needs --db postgresql://... (nodes share one database)")
    directory = args.dir.resolve()
    install(directory)
    schema = f"sqlitestream_conformance_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="sqlitestream-conformance-") as scratch:
        if args.db:
            separator = "&" if "?" in args.db else "?"
            store: Path | str = f"{args.db}{separator}schema={schema}"
        else:
            store = Path(scratch) / "store.db"
        servers: list[subprocess.Popen[str]] = []
        proxy = None
        status = 0
        try:
            urls = []
            for _ in range(args.nodes):
                server, url = start_server(store)
                servers.append(server)
                urls.append(url)
            if args.nodes > 1:
                proxy, url = start_proxy(urls)
            report = Path(scratch) / "report.json"
            run_suite(directory, url, args.pattern, report)
        finally:
            if proxy is not None:
                stop(proxy)
            for server in servers:
                code = stop(server)
                if code != 0:
                    print(f"the server exited with {code} on SIGTERM")
                    status = 1
            if args.db:
                drop_schema(args.db, schema)
        status = summarise(report, expect_all=args.pattern is None) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
