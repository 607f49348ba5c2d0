"""``python -m tools.wal_bound [--appends N] [--pin] [--read-between]``: does the WAL stay bounded?

Two writer processes append N events each to one SQLite store (one session each, ~150-byte
payloads). With ``--read-between`` each writer also reads its latest sequence through the store
after every append. With ``--pin`` a third process (the stdlib ``sqlite3`` module) holds a read
transaction open (a half-read cursor) until the writers are half way, then leaves.

The -wal file's size is sampled every 5 ms. Reported: the peak size against
``journal_size_limit`` (overall, while pinned, after the pin left), how long after the pin left
the WAL was back under the limit, and the database file's size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlitestream import Event, SQLiteSessionStore

_MIB = 1024 * 1024
_LIMIT = 64 * _MIB  # the store's journal_size_limit (docs/sqlite-file.md)

_WRITER = """
import sys
from sqlitestream import Event, SQLiteSessionStore
path, name, count, read_between = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
with SQLiteSessionStore(path) as store:
    for n in range(count):
        store.append_event_with_sequence(Event("message_sent", name, data={"n": n, "text": "x" * 120}))
        if read_between:
            store.get_latest_sequence(name)
        if n == count // 2:
            print("half", flush=True)
    print("done", flush=True)
"""

_PINNER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
cursor = conn.execute("SELECT * FROM events")
cursor.fetchone()  # the cursor reads one row ahead: the table needs three rows or more
print("pinned", flush=True)
sys.stdin.readline()
conn.close()
"""


class _Sampler:
    """The -wal file's size every 5 ms, with the time of each sample."""

    def __init__(self, wal: Path) -> None:
        self.samples: list[tuple[float, int]] = []
        self._wal = wal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                size = self._wal.stat().st_size
            except FileNotFoundError:
                size = 0
            self.samples.append((time.monotonic(), size))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        return max((size for at, size in self.samples if start <= at <= end), default=0)


def _mib(size: int) -> str:
    return f"{size / _MIB:,.1f} MiB ({size / _LIMIT:.2f}x limit)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=50_000, help="appends per writer process")
    parser.add_argument("--pin", action="store_true", help="a foreign reader pins the WAL until half way")
    parser.add_argument("--read-between", action="store_true", help="writers read after each append")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "wal.db")
        with SQLiteSessionStore(path) as store:  # rows for the pinning reader's cursor
            store.append_events([Event("message_sent", "seed", data={"n": n}) for n in range(10)])
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        pinner = None
        if args.pin:
            pinner = subprocess.Popen(
                [sys.executable, "-c", _PINNER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert pinner.stdout is not None
            pinner.stdout.readline()
        sampler = _Sampler(Path(path + "-wal"))
        started = time.monotonic()
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, path, f"w{n}", str(args.appends), "1" if args.read_between else "0"],
                stdout=subprocess.PIPE, text=True, env=env,
            )
            for n in range(2)
        ]
        released = None
        for writer in writers:
            assert writer.stdout is not None
            writer.stdout.readline()  # half way
        if pinner is not None:
            assert pinner.stdin is not None
            pinner.stdin.write("\n")
            pinner.stdin.flush()
            pinner.wait()
            released = time.monotonic()
        for writer in writers:
            writer.wait()
        finished = time.monotonic()
        sampler.stop()
        print(f"2 writers x {args.appends:,} appends in {finished - started:.1f} s"
              f"{', reading between appends' if args.read_between else ''}"
              f"{', pinned by a foreign reader until half way' if args.pin else ''}")
        print(f"  journal_size_limit      {_LIMIT / _MIB:.0f} MiB")
        print(f"  WAL peak                {_mib(sampler.peak())}")
        if released is not None:
            print(f"  WAL peak while pinned   {_mib(sampler.peak(end=released))}")
            print(f"  WAL peak after release  {_mib(sampler.peak(start=released + 0.5))} (from 0.5 s after)")
            back = next((at for at, size in sampler.samples if at >= released and size <= _LIMIT), None)
            print(f"  back under the limit    {'never' if back is None else f'{back - released:.2f} s after the pin left'}")
        print(f"  WAL at the end          {_mib(sampler.samples[-1][1] if sampler.samples else 0)}")
        print(f"  database file           {os.path.getsize(path) / _MIB:,.1f} MiB")


if __name__ == "__main__":
    main()
