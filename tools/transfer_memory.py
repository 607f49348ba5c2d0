"""``python -m tools.transfer_memory [--events N] [--payload-bytes B]``: do ``export``,
``import`` and ``copy`` run in bounded memory?

Fills one SQLite store with N events in one session (payloads of about B bytes), then runs
``sqlitestream export``, ``import`` of that export into a new store and ``copy`` into another
new store, each as its own process, and reports each one's peak resident set size (from
``wait4``) beside that of ``sqlitestream --version`` (the interpreter and the package alone).
Bounded means the peaks stay flat as N grows: run it with two sizes and compare.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlitestream import Event, SQLiteSessionStore

_MIB = 1024 * 1024


def _peak_rss_mib(args: list[str], **kwargs: object) -> float:
    """Run ``python -m sqlitestream ARGS`` and return its peak RSS in MiB."""
    process = subprocess.Popen([sys.executable, "-m", "sqlitestream", *args], **kwargs)  # type: ignore[call-overload]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"sqlitestream {' '.join(args)} exited {process.returncode}")
    return float(usage.ru_maxrss) / 1024.0  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events in the one session")
    parser.add_argument("--payload-bytes", type=int, default=200, help="about this much text per event")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="transfer-memory-") as directory:
        root = Path(directory)
        source, export = root / "source.db", root / "export.jsonl"
        with SQLiteSessionStore(source) as store:
            text = "x" * options.payload_bytes
            for start in range(0, options.events, 5_000):
                count = min(5_000, options.events - start)
                store.append_events(
                    [Event("message_sent", "long", data={"n": start + n, "text": text}) for n in range(count)]
                )
        baseline = _peak_rss_mib(["--version"], stdout=subprocess.DEVNULL)
        peaks = {
            "export": _peak_rss_mib(["--db", str(source), "export", "-o", str(export), "--no-progress"]),
            "import": _peak_rss_mib(
                ["--db", str(root / "imported.db"), "import", str(export), "--no-progress"],
                stdout=subprocess.DEVNULL,
            ),
            "copy": _peak_rss_mib(
                ["copy", "--from", str(source), "--to", str(root / "copied.db"), "--no-progress"],
                stdout=subprocess.DEVNULL,
            ),
        }
        export_mib = export.stat().st_size / _MIB
    print(f"{options.events} events in one session, export {export_mib:.1f} MiB")
    print(f"peak RSS: --version {baseline:.1f} MiB (the interpreter and the package)")
    for name, peak in peaks.items():
        print(f"  {name:<7} {peak:7.1f} MiB  ({peak - baseline:+.1f} MiB over --version)")


if __name__ == "__main__":
    main()
