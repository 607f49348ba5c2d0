"""Interrupt test: a real SIGALRM at a random moment of each write raises KeyboardInterrupt,
and after every interrupted write the store must be whole and free.

Each write (a single append with ``expected_sequence``, or a batch of 1-6 events over three
sessions) runs with a one-shot ``setitimer`` alarm a random delay (0 to ``--max-delay-ms``)
ahead; the alarm's handler raises ``KeyboardInterrupt``, as Ctrl-C would. After each write:

* the write is all there (in order, with the next sequences) or not there at all;
* the latest sequence of every touched session matches what is stored;
* after an interrupted write, another store object on the file with ``busy_timeout_ms=0``
  appends at once (no SQLite lock left), a fresh descriptor takes the side lock (none left),
  and the same store object appends from another thread (no thread lock or open transaction);
* at the end every session's sequences are 1..latest and ``PRAGMA integrity_check`` is ok.

With ``--contended`` another connection holds SQLite's lock and the side lock before each
write and lets go a moment later, so every write takes the slow path (a busy first attempt,
the wait for the side lock, then SQLite's busy handler) and the alarms strike there.

    python tools/interrupts.py --writes 20000 --seed 7 [--contended] [--max-delay-ms 0.5]

prints a summary and exits 1 on any violation. ``tests/test_faults.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import apsw

if __name__ == "__main__":  # run as a script: test the source tree this file sits in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlitestream import Event, SQLiteSessionStore, SqliteStreamError, StoreBusyError

SESSIONS = ("s0", "s1", "s2")


@dataclass
class Summary:
    writes: int = 0
    interrupted: int = 0
    applied_anyway: int = 0  # interrupted after the commit: whole, and the caller saw the interrupt
    violations: list[str] = field(default_factory=list)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupted(call: Callable[[], object], delay_s: float) -> bool:
    """Run ``call`` with an alarm ``delay_s`` ahead; whether the interrupt reached the caller."""
    try:
        signal.setitimer(signal.ITIMER_REAL, delay_s)
        try:
            call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except KeyboardInterrupt:
        return True
    return False


def side_lock_free(path: Path, within_s: float = 5.0) -> bool:
    """Whether a fresh descriptor takes the side lock (polled: a waiter thread whose caller
    gave up lets go of a late grant a moment later)."""
    fd = os.open(f"{path}-lock", os.O_RDONLY)
    try:
        deadline = time.monotonic() + within_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.001)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
    finally:
        os.close(fd)


def _append_from_thread(store: SQLiteSessionStore, event: Event) -> object:
    """The result of an append from another thread, or None if it did not return in 10 s."""
    outcome: list[object] = []

    def append() -> None:
        try:
            outcome.append(store.append_event_with_sequence(event))
        except BaseException as exc:  # reported by the caller
            outcome.append(exc)

    thread = threading.Thread(target=append, daemon=True)
    thread.start()
    thread.join(10)
    return outcome[0] if outcome else None


class _Contention:
    """Another writer holding SQLite's lock and the side lock (its own file description) from
    :meth:`arm` until a moment later."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.conn = apsw.Connection(str(path))
        self.fd = os.open(f"{path}-lock", os.O_RDONLY)
        self.rng = rng
        self.timer: threading.Timer | None = None

    def arm(self, within_s: float = 10.0) -> None:
        """Take both locks. The side lock is polled with a deadline: held past it (the store
        kept it after an interrupted write), the run fails with that instead of hanging."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the side lock stayed held for {within_s} s between writes") from None
                time.sleep(0.001)
        self.conn.execute("BEGIN IMMEDIATE")
        self.timer = threading.Timer(self.rng.uniform(0.0002, 0.002), self._release)
        self.timer.start()

    def _release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.conn.execute("ROLLBACK")

    def settle(self) -> None:
        if self.timer is not None:
            self.timer.join()
            self.timer = None

    def close(self) -> None:
        self.settle()
        os.close(self.fd)
        self.conn.close()


class _Run:
    def __init__(self, path: Path, rng: random.Random, summary: Summary) -> None:
        self.path = path
        self.rng = rng
        self.summary = summary
        self.latest = dict.fromkeys((*SESSIONS, "probe"), 0)  # what the store must hold

    def fail(self, message: str) -> None:
        self.summary.violations.append(f"write {self.summary.writes}: {message}")

    def plan(self, n: int) -> list[Event]:
        size = 1 if self.rng.random() < 0.5 else self.rng.randint(1, 6)
        return [Event("message_sent", self.rng.choice(SESSIONS), id=f"w{n}-{i}") for i in range(size)]

    def call(self, store: SQLiteSessionStore, batch: list[Event]) -> Callable[[], object]:
        if len(batch) == 1 and self.rng.random() < 0.5:
            event = batch[0]
            expected = self.latest[event.session_id]
            return lambda: store.append_event_with_sequence(event, expected_sequence=expected)
        return lambda: store.append_events(batch)

    def settle(self, store: SQLiteSessionStore, batch: list[Event], interrupted: bool) -> None:
        """Check the write is whole or absent, and bring the model up to date."""
        found: dict[str, bool] = {}
        for session_id in sorted({e.session_id for e in batch}):
            wanted = [e.id for e in batch if e.session_id == session_id]
            stored = store.get_events(session_id, after=self.latest[session_id])
            ids = [e.id for e in stored]
            seqs = [e.sequence_number for e in stored]
            first = self.latest[session_id] + 1
            if ids == wanted and seqs == list(range(first, first + len(ids))):
                found[session_id] = True
            elif not ids:
                found[session_id] = False
            else:
                self.fail(f"session {session_id} holds {list(zip(ids, seqs))} after the write of {wanted}")
                return
        applied = set(found.values())
        if len(applied) != 1:
            self.fail(f"half a batch: {found}")
            return
        if applied == {True}:
            for event in batch:
                self.latest[event.session_id] += 1
            self.summary.applied_anyway += interrupted
        elif not interrupted:
            self.fail("a write that returned is not stored")
        for session_id in found:
            if store.get_latest_sequence(session_id) != self.latest[session_id]:
                self.fail(
                    f"session {session_id}: latest sequence {store.get_latest_sequence(session_id)}, "
                    f"{self.latest[session_id]} stored"
                )

    def probe(self, store: SQLiteSessionStore, other: SQLiteSessionStore, n: int) -> None:
        """Nothing is left held: another store object, a fresh side-lock descriptor and another
        thread of the same store object all get on at once."""
        try:
            other.append_event(Event("message_sent", "probe", id=f"p{n}"))
            self.latest["probe"] += 1
        except StoreBusyError:
            self.fail("SQLite's write lock was left held (another store got busy at once)")
        if not side_lock_free(self.path):
            self.fail("the side lock was left held")
        outcome = _append_from_thread(store, Event("message_sent", "probe", id=f"q{n}"))
        if outcome is None:
            self.fail("a write from another thread hung: the thread lock was left held")
        elif isinstance(outcome, BaseException):
            self.fail(f"a write from another thread failed: {outcome!r}")
        else:
            self.latest["probe"] += 1


def run(
    path: Path, *, writes: int, seed: int, contended: bool = False, max_delay_ms: float | None = None
) -> Summary:
    """``writes`` writes on a new store at ``path``, each with an alarm at a random moment."""
    rng = random.Random(seed)
    summary = Summary()
    max_delay_s = (max_delay_ms if max_delay_ms is not None else 3.0 if contended else 0.5) / 1000.0
    store = SQLiteSessionStore(path, busy_timeout_ms=10_000)
    other = SQLiteSessionStore(path, busy_timeout_ms=0)
    contention = _Contention(path, rng) if contended else None
    checks = _Run(path, rng, summary)
    previous = signal.signal(signal.SIGALRM, raise_interrupt)
    try:
        for n in range(writes):
            batch = checks.plan(n)
            call = checks.call(store, batch)
            if contention is not None:
                contention.arm()
            summary.writes += 1
            try:
                was_interrupted = interrupted(call, rng.uniform(0.0, max_delay_s))
            except SqliteStreamError as exc:
                checks.fail(f"the write raised {exc!r}")
                was_interrupted = True
            if contention is not None:
                contention.settle()
            summary.interrupted += was_interrupted
            checks.settle(store, batch, was_interrupted)
            if was_interrupted:
                checks.probe(store, other, n)
            if len(summary.violations) >= 10:
                break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if contention is not None:
            contention.close()
        other.close()
    try:
        for session_id, latest in checks.latest.items():
            seqs = [e.sequence_number for e in store.get_events(session_id)]
            if seqs != list(range(1, latest + 1)):
                summary.violations.append(f"session {session_id}: sequences {seqs[:5]}... not 1..{latest}")
    finally:
        store.close()
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    if integrity != ["ok"]:
        summary.violations.append(f"integrity_check: {integrity}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=20_000, help="writes to interrupt (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--contended", action="store_true", help="make every write wait for both locks")
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=None,
        help="latest alarm after a write starts (default 0.5, contended 3)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sqlitestream-interrupts-") as directory:
        summary = run(
            Path(directory) / "events.db",
            writes=args.writes,
            seed=args.seed,
            contended=args.contended,
            max_delay_ms=args.max_delay_ms,
        )
    print(
        f"writes {summary.writes}, interrupted {summary.interrupted} "
        f"(of which committed before the interrupt {summary.applied_anyway}), "
        f"violations {len(summary.violations)}"
    )
    for violation in summary.violations:
        print(f"  {violation}")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
