"""``python -m tools.bench [--quick] [--only NAME ...] [--json FILE]``: run the benchmark,
print a table per case, write every figure (with its samples) to a JSON file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

import sqlitestream

from .measure import CaseResult, render_case, render_markdown
from .processes import cli_cases, contention_cases, idle_cases, memory_cases, wake_cases
from .settings import Settings
from .threads import thread_cases
from .throughput import (
    append_cases,
    batch_cases,
    feed_cases,
    latest_cases,
    memory_store_cases,
    read_cases,
    scale_cases,
)

CASES: dict[str, Callable[[Settings], list[CaseResult]]] = {
    "append": append_cases,
    "batch": batch_cases,
    "threads": thread_cases,
    "read": read_cases,
    "feed": feed_cases,
    "scale": scale_cases,
    "latest": latest_cases,
    "memory-store": memory_store_cases,
    "wake": wake_cases,
    "idle": idle_cases,
    "contention": contention_cases,
    "memory": memory_cases,
    "cli": cli_cases,
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite (apsw)": apsw.sqlite_lib_version(),
        "apsw": apsw.apsw_version(),
        "sqlite (stdlib sqlite3)": sqlite3.sqlite_version,
        "sqlitestream": sqlitestream.__version__,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="sqlitestream side by side with the raw SQLite limit and its peers.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds per case")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        choices=sorted(CASES),
        help="run only this case (repeatable): " + ", ".join(CASES),
    )
    parser.add_argument(
        "--json", type=Path, default=Path("bench-results.json"), help="where to write the JSON report"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write a Markdown table here")
    parser.add_argument(
        "--no-peers", action="store_true", help="measure only sqlitestream and the raw baselines"
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions per figure (default: 3 quick, 7 full)"
    )
    parser.add_argument(
        "--poll-interval-ms",
        type=int,
        default=None,
        help="open sqlitestream's stores with this poll_interval_ms (default: the store's default)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sqlitestream-bench-cache",
        help="where bulk-loaded large stores are kept between runs",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = args.only or list(CASES)
    with tempfile.TemporaryDirectory(prefix="sqlitestream-bench-") as workdir:
        settings = Settings.for_mode(quick=args.quick, workdir=Path(workdir), cache_dir=args.cache_dir)
        if args.no_peers:
            settings = settings.with_(peers=False)
        if args.reps is not None:
            settings = settings.with_(reps=args.reps)
        if args.poll_interval_ms is not None:
            settings = settings.with_(poll_interval_ms=args.poll_interval_ms)
        info = machine()
        print("machine: " + ", ".join(f"{key} {value}" for key, value in info.items()), flush=True)
        print(f"mode: {'quick' if args.quick else 'full'}; cases: {', '.join(names)}\n", flush=True)
        results: list[CaseResult] = []
        failed: list[str] = []
        started = time.monotonic()
        for name in names:
            case_started = time.monotonic()
            try:
                produced = CASES[name](settings)
            except Exception as exc:  # one broken case must not lose the others' figures
                traceback.print_exc()
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            for case in produced:
                print(render_case(case), flush=True)
                print(f"  ({time.monotonic() - case_started:.1f} s)\n", flush=True)
            results.extend(produced)
    report = {
        "machine": info,
        "mode": "quick" if args.quick else "full",
        "settings": {key: str(value) for key, value in vars(settings).items() if key not in {"workdir"}},
        "elapsed_s": time.monotonic() - started,
        "cases": [case.to_json() for case in results],
        "failed": failed,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    if args.markdown is not None:
        args.markdown.write_text(render_markdown(results) + "\n")
        print(f"wrote {args.markdown}")
    missed = [t.text for case in results for t in case.targets if not t.met]
    print(f"targets: {sum(len(c.targets) for c in results) - len(missed)} met, {len(missed)} missed")
    for text in failed:
        print(f"FAILED case {text}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
