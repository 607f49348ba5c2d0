"""Wall-clock start-up time of a short CLI command (``sqlitestream latest S``), measured.

Runs the command as a fresh process ``--runs`` times against a small store and prints the
median and the fastest run, next to a bare ``python -c pass`` and ``import sqlitestream`` for
reference, and each one's CPU time (user + system, from ``wait4``): on a loaded machine the
wall clock mostly measures the wait for a core, the CPU time what start-up costs. The cases
run interleaved. Usage: ``python tools/cli_startup.py [--runs 30]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run's wall-clock and CPU (user + system) milliseconds."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv} exited {process.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from sqlitestream import Event, SQLiteSessionStore

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as directory:
        db = os.path.join(directory, "s.db")
        with SQLiteSessionStore(db) as store:
            store.append_events([Event(type="message_sent", session_id="s") for _ in range(100)])
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import sqlitestream'": [sys.executable, "-c", "import sqlitestream"],
            "python -c 'import sqlitestream.cli'": [sys.executable, "-c", "import sqlitestream.cli"],
            "python -m sqlitestream latest s": [
                sys.executable,
                "-m",
                "sqlitestream",
                "--db",
                db,
                "latest",
                "s",
            ],
        }
        # Interleaved, so a change in the machine's load touches every case alike.
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                wall, cpu = run_once(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
        for name in cases:
            print(
                f"{name:40s} wall median {statistics.median(walls[name]):6.1f} ms, "
                f"fastest {min(walls[name]):6.1f} ms; CPU median {statistics.median(cpus[name]):6.1f} ms"
            )


if __name__ == "__main__":
    main()
