"""Wall-clock start-up time of a short CLI command (``sqlitestream latest S``), measured.

Runs the command as a fresh process ``--runs`` times against a small store and prints the
median and the fastest run, next to a bare ``python -c pass`` and ``import sqlitestream`` for
reference. Usage: ``python tools/cli_startup.py [--runs 30]``.
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


def measure(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


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
        for name, argv in cases.items():
            median, fastest = measure(argv, args.runs, env)
            print(f"{name:40s} median {median:6.1f} ms   fastest {fastest:6.1f} ms")


if __name__ == "__main__":
    main()
