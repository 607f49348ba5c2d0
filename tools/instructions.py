"""The cost of one append, counted rather than timed: CPU instructions (valgrind's callgrind)
and system calls (strace) per single-event append, for sqlitestream and the raw apsw loop of
``tools.bench``, on the same schema and payloads.

Wall-clock ratios on a shared machine swing by 3x between runs; instruction and system-call
counts do not (callgrind gives the same total twice for the same binary and inputs, whatever
else the machine runs). Each variant runs twice, with ``--appends`` and with twice as many, and
the difference is divided by ``--appends``, so interpreter start-up and imports cancel out.

    python -m tools.instructions --appends 2000 --synchronous normal

Instructions count user space only: a system call costs one line of the second table instead.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("sqlitestream", "raw apsw")


def run_child(variant: str, path: Path, synchronous: str, appends: int) -> None:
    """Append ``appends`` events one at a time after a warm-up; the measured process."""
    from tools.bench.workloads import OurStore, RawApsw

    workload = OurStore.file(path, synchronous) if variant == "sqlitestream" else RawApsw(path, synchronous)
    try:
        workload.append(50)  # caches, prepared statements and the first pages are warm
        # The steady state of a store open for more than a second: its directory's last change
        # is old, so commits check the directory alone (sqlitestream/sqlite/files.py).
        an_hour_ago = time.time() - 3600
        os.utime(path.parent, (an_hour_ago, an_hour_ago))
        workload.append(appends)
    finally:
        workload.close()


def _child_command(variant: str, path: Path, synchronous: str, appends: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tools.instructions",
        "--child",
        variant,
        "--path",
        str(path),
        "--synchronous",
        synchronous,
        "--appends",
        str(appends),
    ]


def count_instructions(variant: str, directory: Path, synchronous: str, appends: int) -> int:
    """Instructions (user space) of the whole child process, under callgrind."""
    out = directory / f"callgrind-{variant.replace(' ', '-')}-{appends}.out"
    db = directory / f"{variant.replace(' ', '-')}-{appends}-i.db"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *_child_command(variant, db, synchronous, appends),
        ],
        check=True,
        capture_output=True,
    )
    for line in out.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def count_syscalls(variant: str, directory: Path, synchronous: str, appends: int) -> collections.Counter[str]:
    """System calls of the whole child process (all threads), by name, under strace."""
    out = directory / f"strace-{variant.replace(' ', '-')}-{appends}.txt"
    db = directory / f"{variant.replace(' ', '-')}-{appends}-s.db"
    subprocess.run(
        ["strace", "-f", "-c", "-o", str(out), *_child_command(variant, db, synchronous, appends)],
        check=True,
        capture_output=True,
    )
    counts: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=2000, help="appends per measured run")
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.appends < 1:
        parser.error("--appends must be at least 1")
    if args.child is not None:
        run_child(args.child, args.path, args.synchronous, args.appends)
        return 0
    for tool in ("valgrind", "strace"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian package {tool})")
    n = args.appends
    with tempfile.TemporaryDirectory(prefix="sqlitestream-instructions-") as tmp:
        directory = Path(tmp)
        per_append: dict[str, float] = {}
        calls: dict[str, dict[str, float]] = {}
        for variant in VARIANTS:
            low = count_instructions(variant, directory, args.synchronous, n)
            high = count_instructions(variant, directory, args.synchronous, 2 * n)
            per_append[variant] = (high - low) / n
            low_calls = count_syscalls(variant, directory, args.synchronous, n)
            high_calls = count_syscalls(variant, directory, args.synchronous, 2 * n)
            calls[variant] = {
                name: (high_calls[name] - low_calls[name]) / n for name in high_calls | low_calls
            }
    raw = per_append["raw apsw"]
    print(f"single-event appends, synchronous={args.synchronous}, {n} appends per run")
    print(f"{'variant':<14}{'instructions/append':>22}{'vs raw apsw':>14}")
    for variant in VARIANTS:
        print(f"{variant:<14}{per_append[variant]:>22,.0f}{per_append[variant] / raw:>13.2f}x")
    print(f"\n{'system call':<16}" + "".join(f"{v:>16}" for v in VARIANTS) + "   (calls per append)")
    names = sorted({name for c in calls.values() for name, k in c.items() if abs(k) >= 0.01})
    for name in names:
        print(f"{name:<16}" + "".join(f"{calls[v].get(name, 0.0):>16.2f}" for v in VARIANTS))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
