"""``python -m tools.trim_bench [--events N] [--sessions S] [--keep FRACTION] [--payload-bytes B]
[--dir DIR]``: how fast does a trim run, and how much of the file comes back?

Fills a SQLite store with N events spread over S sessions (payloads of about B bytes), closes it
and copies the file, then trims each copy down to FRACTION of every session's events: one with
``trim_store(keep_last=...)`` (the store's way: 200,000-event transactions, then bounded
incremental vacuum), one with hand-written SQL, the raw limit of the same work on the same
file (one ``DELETE`` per session in one transaction, then ``PRAGMA incremental_vacuum``). It
reports both times, their ratio, and the file sizes before and after (after the store is
closed, so after the last checkpoint). The machine is shared: compare the ratio, not seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import apsw

from sqlitestream import Event, SQLiteSessionStore

_MIB = 1024 * 1024


def _fill(path: Path, events: int, sessions: int, payload_bytes: int) -> None:
    text = "x" * payload_bytes
    with SQLiteSessionStore(path) as store:
        for start in range(0, events, 10_000):
            store.append_events(
                [
                    Event("message_sent", f"s{n % sessions}", data={"text": text})
                    for n in range(start, min(events, start + 10_000))
                ]
            )


def _trim_with_store(path: Path, keep: float, events: int, sessions: int) -> tuple[float, int]:
    with SQLiteSessionStore(path) as store:
        started = time.perf_counter()
        removed = store.trim_store(keep_last=int(events / sessions * keep))
        elapsed = time.perf_counter() - started
    return elapsed, removed


def _trim_raw(path: Path, keep: float, events: int, sessions: int) -> tuple[float, int]:
    conn = apsw.Connection(str(path))
    keep_last = int(events / sessions * keep)
    started = time.perf_counter()
    removed = 0
    with conn:
        for session_id, latest in conn.execute("SELECT session_id, latest_seq FROM streams").fetchall():
            conn.execute(
                "DELETE FROM events WHERE session_id = ? AND seq <= ?",
                (session_id, int(latest) - keep_last),  # type: ignore[arg-type]
            )
            removed += conn.changes()
    conn.execute("PRAGMA incremental_vacuum").fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--keep", type=float, default=0.1, help="fraction of each session kept")
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trim-bench-", dir=options.dir) as directory:
        original = Path(directory) / "original.db"
        started = time.perf_counter()
        _fill(original, options.events, options.sessions, options.payload_bytes)
        print(
            f"filled {options.events:,} events in {options.sessions} sessions in {time.perf_counter() - started:.1f} s"
        )
        size = os.path.getsize(original)
        results = {}
        for name, trim in (("store", _trim_with_store), ("raw SQL", _trim_raw)):
            copy = Path(directory) / f"{name.replace(' ', '-')}.db"
            shutil.copyfile(original, copy)
            elapsed, removed = trim(copy, options.keep, options.events, options.sessions)
            with SQLiteSessionStore(copy) as store:  # the close checkpoints and truncates
                assert store.check_integrity().ok
            results[name] = elapsed
            print(
                f"{name:8} removed {removed:,} events in {elapsed:.2f} s; file {size / _MIB:.1f} MiB -> "
                f"{os.path.getsize(copy) / _MIB:.1f} MiB"
            )
        print(f"store / raw time: {results['store'] / results['raw SQL']:.2f}x")


if __name__ == "__main__":
    main()
