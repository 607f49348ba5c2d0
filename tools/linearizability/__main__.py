"""``python -m tools.linearizability``: record a long concurrent history and check it.

    python -m tools.linearizability --store sqlite --processes 4 --threads 3 --ops 500 \\
        --sessions 6 --seed 7

runs the workers on a fresh SQLite file (``--store postgres``: a fresh schema on
``--dsn``, default ``$SQLITESTREAM_PG_DSN``, dropped afterwards), checks the history, prints a
summary and exits 1 if it is not linearizable (2 if the search ran out of its state budget).
``--history FILE`` keeps the recorded history as JSON lines; ``--check FILE`` checks a saved one.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .check import DEFAULT_MAX_STATES, check
from .history import Operation, read_history, write_history
from .run import record
from .workload import Workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.linearizability", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--dsn", default=os.environ.get("SQLITESTREAM_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ops", type=int, default=200, help="operations per thread")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-states", type=int, default=DEFAULT_MAX_STATES, help="search budget per session"
    )
    parser.add_argument("--history", type=Path, help="write the recorded history here (JSON lines)")
    parser.add_argument(
        "--check", type=Path, metavar="FILE", help="check a saved history instead of recording one"
    )
    args = parser.parse_args(argv)

    if args.check is not None:
        history = read_history([args.check])
        print(f"{args.check}: {len(history)} operations")
    else:
        started = time.monotonic()
        history = _record(args)
        print(
            f"recorded {len(history)} operations from {args.processes} processes x {args.threads} "
            f"threads on {args.store} in {time.monotonic() - started:.1f} s: {_outcomes(history)}"
        )
        if args.history is not None:
            write_history(args.history, history)
    started = time.monotonic()
    result = check(history, max_states=args.max_states)
    print(f"checked in {time.monotonic() - started:.2f} s")
    print(result.summary())
    if result.violations:
        return 1
    return 0 if result.ok else 2


def _record(args: argparse.Namespace) -> list[Operation]:
    with tempfile.TemporaryDirectory(prefix="linearizability-") as directory:
        if args.store == "sqlite":
            location = str(Path(directory) / "store.db")
        else:
            separator = "&" if "?" in args.dsn else "?"
            location = f"{args.dsn}{separator}schema=linearizability_{secrets.token_hex(5)}"
        workload = Workload(location, args.processes, args.threads, args.ops, args.sessions, args.seed)
        try:
            return record(workload, Path(directory) / "history")
        finally:
            if args.store == "postgres":
                _drop_schema(location)


def _drop_schema(location: str) -> None:
    import psycopg

    parts = urlsplit(location)
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(params)["schema"]
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in params if k != "schema"])))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _outcomes(history: list[Operation]) -> str:
    counts = Counter(f"{op.kind.value} {op.status.value}" for op in history)
    return ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))


if __name__ == "__main__":
    sys.exit(main())
