"""``python -m tools.long_poll_load [--waiters N]``: the long-poll load tests at full size.

``tests/test_long_poll_robustness.py`` runs a few hundred waiting threads in the test suite;
this runs the same tests with thousands (by default 1,500 waiters on 300 sessions, 1,000
released by a close, 2,000 under a 256-file descriptor limit), in one process so that nothing
else competes for the threads. Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent / "tests" / "test_long_poll_robustness.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=1500, help="waiting threads per test (suite: 300)")
    args = parser.parse_args()
    env = {**os.environ, "SQLITESTREAM_LONG_POLL_WAITERS": str(args.waiters)}
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-n", "0", str(_TESTS)]
    raise SystemExit(subprocess.run(command, env=env, check=False).returncode)


if __name__ == "__main__":
    main()
