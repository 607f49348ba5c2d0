"""Crash test: SIGKILL writer processes at random moments and prove nothing acknowledged is lost.

Each round starts ``--writers`` OS processes that append to the same store (single events,
batches, or both; ``--threads`` threads in each, sharing one store object, so that their appends
share group commits) and report every acknowledged event (id, session, sequence) on stdout the
moment ``append_*`` returns. The parent kills each writer with SIGKILL at an independent random
moment, then checks the file:

* the store opens and ``PRAGMA integrity_check`` is ``ok``;
* every acknowledged event is present with the sequence it was acknowledged with;
* each session's sequences are gap-free from its first retained one, which is 1 unless a trim
  reached that far (in mixed mode writers also trim sessions: an acknowledged trim removed
  everything below its bound, an interrupted one only a prefix of it; an acknowledged event
  may be missing only below a trim's bound), and the stored latest sequence is the maximum;
* every batch is all there or not there at all, contiguous per session, in input order;
* a session delete (mixed mode) is whole: an acknowledged one left nothing, one cut short by
  the kill left the session, its run, its events and its counter all there or all gone;
* no writer saw an error (a busy error or anything else) before it was killed.

Upgrade rounds kill a process while it opens a version-2 store (the upgrade step that gives
every event its feed position) and check the file is either the old or the new version, never
in between, with its data intact and, once upgraded, every event at a position.

    python tools/crashtest.py --rounds 200 --upgrade-rounds 50 --writers 2 --seed 7

prints a summary and exits 1 on any violation. ``tests/test_crash.py`` runs a few rounds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

if importlib.util.find_spec("sqlitestream") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlitestream import Event, Run, Session, SessionNotFoundError, SQLiteSessionStore

if __package__ in (None, ""):  # run as a script: tools/ is then not a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import forked
from tools.oldstores import downgrade_sqlite_store

forked.configure(preload=["tools.crashtest"])

MODES = ("single", "batch", "mixed")
SYNCHRONOUS = ("normal", "full")


# The writer process -----------------------------------------------------------------------------


def _emit(line: str) -> None:
    # One write per line (shorter lines than PIPE_BUF are atomic); a line cut off by the kill
    # has no newline and is ignored by the parent.
    os.write(1, (line + "\n").encode())


def writer_main(
    path: str, name: str, mode: str, synchronous: str, sessions: int, seed: int, threads: int
) -> None:
    """Append forever (until killed) from ``threads`` threads sharing one store object, so
    that their appends share group commits; report each acknowledged event as a JSON line."""
    try:
        store = SQLiteSessionStore(path, synchronous=synchronous, busy_timeout_ms=20_000)
    except Exception as exc:  # reported, then the parent counts it as a violation
        _emit(json.dumps({"error": f"open: {type(exc).__name__}: {exc}"}))
        return
    workers = [
        threading.Thread(
            target=_append_forever, args=(store, f"{name}t{n}", mode, sessions, seed + n), daemon=True
        )
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    _emit(json.dumps({"ready": name}))
    for worker in workers:
        worker.join()


def _append_forever(store: SQLiteSessionStore, name: str, mode: str, sessions: int, seed: int) -> None:
    rng = random.Random(seed)
    counter = 0
    seen: dict[str, int] = {}  # the highest sequence this writer was given, per session
    while True:
        if mode == "mixed" and seen and rng.random() < 0.05:
            session_id = rng.choice(sorted(seen))
            before = seen[session_id] - 3
            if before > 1:
                try:
                    _trim(store, session_id, before)
                except Exception as exc:
                    _emit(json.dumps({"error": f"trim: {type(exc).__name__}: {exc}"}))
                    return
            continue
        if mode == "mixed" and rng.random() < 0.1:
            counter += 1
            try:
                _delete_cycle(store, f"d-{name}-{counter}")
            except Exception as exc:
                _emit(json.dumps({"error": f"delete cycle: {type(exc).__name__}: {exc}"}))
                return
            continue
        batch = mode == "batch" or (mode == "mixed" and rng.random() < 0.5)
        size = rng.randint(2, 12) if batch else 1
        batch_id = f"{name}-{counter}"
        # Each member names every member's session, so that a check can tell a member a trim
        # took from one that went missing.
        targets = [f"s{rng.randrange(sessions)}" for _ in range(size)]
        events = []
        for index, session_id in enumerate(targets):
            counter += 1
            events.append(
                Event(
                    "message_sent",
                    session_id,
                    id=f"{name}-e{counter}",
                    data={"pad": "x" * rng.randrange(0, 3000), "i": counter},
                    metadata={"batch": batch_id, "size": size, "index": index, "sessions": targets}
                    if batch
                    else {},
                )
            )
        try:
            stored = store.append_events(events) if batch else [store.append_event_with_sequence(events[0])]
        except Exception as exc:
            _emit(json.dumps({"error": f"append: {type(exc).__name__}: {exc}"}))
            return
        for event in stored:
            seen[event.session_id] = max(seen.get(event.session_id, 0), event.sequence_number or 0)
        _emit(json.dumps({"acked": [[e.id, e.session_id, e.sequence_number] for e in stored]}))


def _trim(store: SQLiteSessionStore, session_id: str, before: int) -> None:
    """A trim of the events below ``before``, reported before and after."""
    _emit(json.dumps({"trimming": [session_id, before]}))
    store.trim_session(session_id, before_sequence=before)
    _emit(json.dumps({"trimmed": [session_id, before]}))


def _delete_cycle(store: SQLiteSessionStore, session_id: str) -> None:
    """A saved session with a run and three events, then deleted: reported step by step."""
    store.save_session(Session(agent_id="crash", id=session_id))
    store.save_run(Run(session_id=session_id, id=f"{session_id}-run"))
    stored = store.append_events(
        [Event("message_sent", session_id, id=f"{session_id}-{n}") for n in range(3)]
    )
    _emit(json.dumps({"acked": [[e.id, e.session_id, e.sequence_number] for e in stored]}))
    _emit(json.dumps({"deleting": session_id}))
    store.delete_session(session_id)
    _emit(json.dumps({"deleted": session_id}))


def upgrader_main(path: str) -> None:
    """Open (and so upgrade) a store, then append until killed."""
    _emit(json.dumps({"ready": "upgrader"}))
    try:
        store = SQLiteSessionStore(path)
    except Exception as exc:
        _emit(json.dumps({"error": f"open: {type(exc).__name__}: {exc}"}))
        return
    _emit(json.dumps({"opened": store.upgraded_from}))
    counter = 0
    while True:
        counter += 1
        stored = store.append_event_with_sequence(Event("message_sent", "up", id=f"up-{counter}"))
        _emit(json.dumps({"acked": [[stored.id, stored.session_id, stored.sequence_number]]}))


# The parent -------------------------------------------------------------------------------------


class Child:
    """A child process (``tools.forked``: forked from a server that has imported this module, so
    a round does not wait for new interpreters) whose stdout lines a reader thread collects."""

    def __init__(self, args: list[str]) -> None:
        # By this module's name: run as a script or with -m, this module is __main__, which the
        # server's children cannot import by that name.
        from tools.crashtest import child_main

        self.process = forked.Child(child_main, (args,), text=False)
        self.messages: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            if not raw.endswith(b"\n"):
                break  # cut off by the kill: never acknowledged
            message = json.loads(raw)
            self.messages.append(message)
            if "ready" in message or "error" in message:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        return self._ready.wait(timeout) and any("ready" in m for m in self.messages)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._reader.join()
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read().decode(errors="replace")
        self.process.close()

    def acked(self) -> Iterable[tuple[str, str, int]]:
        for message in self.messages:
            yield from ((event_id, session_id, seq) for event_id, session_id, seq in message.get("acked", ()))

    def deletes(self) -> dict[str, bool]:
        """Sessions whose delete was attempted: True if the delete was acknowledged."""
        attempted = {m["deleting"]: False for m in self.messages if "deleting" in m}
        attempted.update({m["deleted"]: True for m in self.messages if "deleted" in m})
        return attempted

    def trims(self, key: str) -> dict[str, int]:
        """The highest bound per session of the trims attempted (``"trimming"``) or
        acknowledged (``"trimmed"``)."""
        bounds: dict[str, int] = {}
        for message in self.messages:
            if key in message:
                session_id, before = message[key]
                bounds[session_id] = max(bounds.get(session_id, 0), int(before))
        return bounds

    def errors(self) -> list[str]:
        return [m["error"] for m in self.messages if "error" in m]


@dataclass
class Summary:
    rounds: int = 0
    kills: int = 0
    acknowledged: int = 0
    committed_unacknowledged: int = 0
    stored: int = 0
    batches_seen: int = 0
    deletes_acknowledged: int = 0
    deletes_interrupted: int = 0
    sessions_trimmed: int = 0
    upgrade_rounds: int = 0
    upgrade_killed_before_commit: int = 0
    upgrade_killed_after_commit: int = 0
    violations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"kill rounds: {self.rounds} ({self.kills} writer processes killed)",
            (
                f"events acknowledged: {self.acknowledged}; committed but killed before acknowledging: "
                f"{self.committed_unacknowledged}; stored in total: {self.stored}"
            ),
            f"batches found whole: {self.batches_seen}; session deletes acknowledged: "
            f"{self.deletes_acknowledged}, cut short by a kill: {self.deletes_interrupted}; "
            f"sessions trimmed: {self.sessions_trimmed}",
            (
                f"upgrade rounds: {self.upgrade_rounds} (killed still at version 2: "
                f"{self.upgrade_killed_before_commit}, after the upgrade committed: "
                f"{self.upgrade_killed_after_commit})"
            ),
            f"violations: {len(self.violations)}",
            *(f"  {v}" for v in self.violations[:50]),
        ]


def integrity(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` rows other than ``ok``, on a connection of our own."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows
    finally:
        conn.close()


def check_store(
    path: Path,
    acked: dict[str, tuple[str, int]],
    prefix: str = "",
    deletes: dict[str, bool] | None = None,
    trims: tuple[dict[str, int], dict[str, int]] = ({}, {}),
) -> tuple[list[str], dict[str, Any]]:
    """Every invariant of the file after a crash: (violations, facts). ``deletes`` maps each
    session whose deletion was attempted to whether it was acknowledged; ``trims`` gives, per
    session, the highest bound of the trims attempted and of those acknowledged: events below
    the first may be gone (a prefix only), events below the second must be."""
    deletes = deletes or {}
    attempted, acknowledged_trims = trims
    violations: list[str] = []
    facts: dict[str, Any] = {"stored": 0, "batches": 0, "unacked": 0}
    try:
        store = SQLiteSessionStore(path)
    except Exception as exc:
        return [f"{prefix}the store did not open: {type(exc).__name__}: {exc}"], facts
    try:
        violations += [f"{prefix}integrity_check: {row}" for row in integrity(path)]
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            counters: dict[str, int] = {
                str(session_id): int(latest)
                for session_id, latest in conn.execute("SELECT session_id, latest_seq FROM streams")
            }
            sessions_with_events = {r[0] for r in conn.execute("SELECT DISTINCT session_id FROM events")}
        finally:
            conn.close()
        stored_at: dict[str, tuple[str, int]] = {}
        batches: dict[str, list[Event]] = {}
        first_of: dict[str, int] = {}
        for session_id in sorted(set(counters) | sessions_with_events):
            events = store.get_events(session_id)
            seqs = [e.sequence_number for e in events]
            first = seqs[0] or 0 if seqs else 1
            first_of[session_id] = first
            if seqs != list(range(first, first + len(seqs))):
                violations.append(f"{prefix}session {session_id}: sequences are not gap-free: {_gaps(seqs)}")
            if first != 1 and first > attempted.get(session_id, 1):
                violations.append(
                    f"{prefix}session {session_id}: starts at {first} but no trim went that far"
                )
            if seqs and first < acknowledged_trims.get(session_id, 0):
                violations.append(
                    f"{prefix}session {session_id}: an acknowledged trim below "
                    f"{acknowledged_trims[session_id]} left sequence {first}"
                )
            latest = store.get_latest_sequence(session_id)
            if latest != (seqs[-1] if seqs else 0):
                violations.append(
                    f"{prefix}session {session_id}: stored latest sequence {latest} != max {seqs[-1] if seqs else 0}"
                )
            for event in events:
                stored_at[event.id] = (event.session_id, event.sequence_number or 0)
                if "batch" in event.metadata:
                    batches.setdefault(event.metadata["batch"], []).append(event)
        gone = set()
        for session_id, acknowledged in deletes.items():
            parts = {
                "session": _saved(store, session_id),
                "runs": bool(store.list_runs(session_id)),
                "events": bool(store.get_events(session_id)),
                "counter": store.get_latest_sequence(session_id) > 0,
            }
            if not any(parts.values()):
                gone.add(session_id)
            elif acknowledged or not all(parts.values()):
                state = "acknowledged" if acknowledged else "interrupted"
                violations.append(f"{prefix}{state} delete of {session_id} left {parts}")
        for event_id, where in acked.items():
            if where[0] in gone:
                continue
            found = stored_at.get(event_id)
            if found is None and where[1] < min(attempted.get(where[0], 0), first_of.get(where[0], 1)):
                continue  # trimmed
            if found is None:
                violations.append(f"{prefix}acknowledged event {event_id} {where} is missing")
            elif found != where:
                violations.append(f"{prefix}acknowledged event {event_id} was {where}, is now {found}")
        for batch_id, members in batches.items():
            size = members[0].metadata["size"]
            indexes = sorted(e.metadata["index"] for e in members)
            if indexes != list(range(size)):
                targets = members[0].metadata["sessions"]
                kept: dict[str, int] = {}
                for e in members:
                    kept[e.session_id] = min(
                        kept.get(e.session_id, e.sequence_number or 0), e.sequence_number or 0
                    )
                # A trim may take a batch's first members in a session: only those.
                trimmed = all(
                    targets[i] in attempted
                    and kept.get(targets[i], first_of.get(targets[i])) == first_of.get(targets[i])
                    for i in set(range(size)) - set(indexes)
                )
                if not trimmed:
                    violations.append(f"{prefix}batch {batch_id} is partial: {len(members)} of {size} events")
                continue
            by_index = sorted(members, key=lambda e: e.metadata["index"])
            for session_id in {e.session_id for e in members}:
                numbers = [e.sequence_number or 0 for e in by_index if e.session_id == session_id]
                if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                    violations.append(
                        f"{prefix}batch {batch_id} is not contiguous in {session_id}: {numbers}"
                    )
        facts = {
            "stored": len(stored_at),
            "batches": len(batches),
            "unacked": len(set(stored_at) - set(acked)),
        }
    finally:
        store.close()
    return violations, facts


def _saved(store: SQLiteSessionStore, session_id: str) -> bool:
    try:
        store.get_session(session_id)
    except SessionNotFoundError:
        return False
    return True


def _gaps(seqs: list[Any]) -> str:
    text = str(seqs[:20])
    return text if len(seqs) <= 20 else text[:-1] + f", ... ({len(seqs)} in all)]"


def kill_round(
    path: Path,
    acked: dict[str, tuple[str, int]],
    deletes: dict[str, bool],
    *,
    round_no: int,
    writers: int,
    mode: str,
    synchronous: str,
    sessions: int,
    max_delay_s: float,
    rng: random.Random,
    threads: int = 1,
    trims: tuple[dict[str, int], dict[str, int]] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """One round: start the writers, kill each at a random moment, check the file. ``trims``
    (attempted and acknowledged trim bounds per session) is updated from the writers."""
    trims = trims if trims is not None else ({}, {})
    children = [
        Child(
            [
                "writer",
                str(path),
                f"r{round_no}w{n}",
                mode,
                synchronous,
                str(sessions),
                str(rng.randrange(2**32)),
                str(threads),
            ]
        )
        for n in range(writers)
    ]
    violations = []
    for child in children:
        if not child.wait_ready():
            violations.append(f"round {round_no}: a writer did not start: {child.errors()}")
    kill_at = sorted((rng.uniform(0, max_delay_s), n) for n in range(writers))
    started = time.monotonic()
    for at, n in kill_at:
        time.sleep(max(0.0, started + at - time.monotonic()))
        children[n].kill()
    for child in children:
        violations += [f"round {round_no}: a writer failed before the kill: {e}" for e in child.errors()]
        if child.process.returncode != -signal.SIGKILL:
            violations.append(
                f"round {round_no}: a writer exited by itself ({child.process.returncode}): {child.stderr[-500:]}"
            )
        for event_id, session_id, seq in child.acked():
            acked[event_id] = (session_id, seq)
        deletes.update(child.deletes())
        for known, key in zip(trims, ("trimming", "trimmed"), strict=True):
            for session_id, before in child.trims(key).items():
                known[session_id] = max(known.get(session_id, 0), before)
    found, facts = check_store(
        path, acked, prefix=f"round {round_no} ({mode}, {synchronous}): ", deletes=deletes, trims=trims
    )
    return violations + found, facts


# Upgrade rounds ---------------------------------------------------------------------------------

_UPGRADE_TABLE = "feed"  # what the last step (version 3 to 4) creates


def make_version_2_store(path: Path, runs: int) -> dict[str, Any]:
    """A store at schema version 2 (before the byte streams' tables and feed positions) with
    ``runs`` runs and as many events."""
    with SQLiteSessionStore(path) as store:
        store.save_session(Session(agent_id="a", id="s-up"))
        for start in range(0, max(runs, 50), 1000):
            store.append_events(
                [
                    Event("message_sent", f"up-{n % 7}", id=f"seed-{n}")
                    for n in range(start, min(start + 1000, max(runs, 50)))
                ]
            )
    conn = apsw.Connection(str(path))
    try:
        with conn:
            conn.executemany(
                "INSERT INTO runs (id, session_id, status, metadata, turn_count, token_usage, started_at) "
                "VALUES (?, 's-up', ?, '{}', 0, '{}', ?)",
                ((f"run-{n}", "running" if n % 2 else "completed", n) for n in range(runs)),
            )
    finally:
        conn.close()
    downgrade_sqlite_store(path, 2)
    return file_facts(path)


def file_facts(path: Path) -> dict[str, Any]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        version = conn.pragma("user_version")
        return {
            "version": version,
            "index": bool(
                conn.execute("SELECT 1 FROM sqlite_schema WHERE name = ?", (_UPGRADE_TABLE,)).fetchall()
            ),
            "byte_streams": bool(
                conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'ds_streams'").fetchall()
            ),
            "runs": conn.execute("SELECT count(*) FROM runs").fetchall()[0][0],
            "seed_events": conn.execute("SELECT count(*) FROM events WHERE id LIKE 'seed-%'").fetchall()[0][
                0
            ],
            # Once upgraded: the distinct positions, which must be one per event.
            "positions": conn.execute("SELECT count(DISTINCT position) FROM events").fetchall()[0][0]
            if version == SQLiteSessionStore.SCHEMA_VERSION
            else None,
        }
    finally:
        conn.close()


def upgrade_round(
    template: Path, workdir: Path, round_no: int, max_delay_s: float, rng: random.Random
) -> tuple[list[str], bool]:
    """Kill a process while it upgrades a copy of ``template``; (violations, upgrade committed)."""
    path = workdir / f"upgrade-{round_no}.db"
    shutil.copyfile(template, path)
    before = file_facts(path)
    child = Child(["upgrade", str(path)])
    prefix = f"upgrade round {round_no}: "
    if not child.wait_ready():
        return [prefix + f"the upgrader did not start: {child.errors()}"], False
    time.sleep(rng.uniform(0, max_delay_s))
    child.kill()
    violations = [prefix + e for e in child.errors()]
    violations += [prefix + f"integrity_check: {row}" for row in integrity(path)]
    after = file_facts(path)
    current = SQLiteSessionStore.SCHEMA_VERSION
    upgraded = after["version"] == current
    if (
        after["version"] not in (2, current)
        or after["index"] != upgraded
        or after["byte_streams"] != upgraded
    ):
        violations.append(prefix + f"the file is between versions: {after}")
    if after["version"] == current and after["positions"] < before["seed_events"]:
        violations.append(prefix + f"upgraded without a position for every event: {after}")
    if (after["runs"], after["seed_events"]) != (before["runs"], before["seed_events"]):
        violations.append(prefix + f"data changed: {before} -> {after}")
    committed = upgraded
    acked = {event_id: (session_id, seq) for event_id, session_id, seq in child.acked()}
    with SQLiteSessionStore(path) as store:
        expected_from = None if committed else 2
        if store.upgraded_from != expected_from:
            violations.append(
                prefix + f"reopen upgraded_from={store.upgraded_from}, expected {expected_from}"
            )
    found, _ = check_store(path, acked, prefix=prefix)
    final = file_facts(path)
    if (final["version"], final["index"], final["runs"]) != (current, True, before["runs"]):
        violations.append(prefix + f"after reopening: {final}")
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return violations + found, committed


# Entry points -----------------------------------------------------------------------------------


def run(
    workdir: Path,
    *,
    rounds: int,
    upgrade_rounds: int,
    writers: int = 2,
    sessions: int = 3,
    modes: tuple[str, ...] = MODES,
    synchronous: tuple[str, ...] = SYNCHRONOUS,
    max_delay_s: float = 0.3,
    threads: int = 1,
    upgrade_runs: int = 100_000,
    seed: int = 0,
    progress: bool = False,
) -> Summary:
    """Run the kill rounds on one store file in ``workdir``, then the upgrade rounds."""
    rng = random.Random(seed)
    summary = Summary()
    path = workdir / "crash.db"
    acked: dict[str, tuple[str, int]] = {}
    deletes: dict[str, bool] = {}
    trims: tuple[dict[str, int], dict[str, int]] = ({}, {})
    for round_no in range(rounds):
        mode = modes[round_no % len(modes)]
        level = synchronous[(round_no // len(modes)) % len(synchronous)]
        violations, facts = kill_round(
            path,
            acked,
            deletes,
            round_no=round_no,
            writers=writers,
            mode=mode,
            synchronous=level,
            sessions=sessions,
            max_delay_s=max_delay_s,
            rng=rng,
            threads=threads,
            trims=trims,
        )
        summary.rounds += 1
        summary.kills += writers
        summary.violations += violations
        summary.stored, summary.batches_seen = facts["stored"], facts["batches"]
        summary.committed_unacknowledged = facts["unacked"]
        if progress:
            print(
                f"round {round_no}: {mode}/{level} acked={len(acked)} stored={facts['stored']} violations={len(violations)}",
                flush=True,
            )
    summary.acknowledged = len(acked)
    summary.deletes_acknowledged = sum(deletes.values())
    summary.deletes_interrupted = len(deletes) - summary.deletes_acknowledged
    summary.sessions_trimmed = len(trims[0])
    if upgrade_rounds:
        template = workdir / "version-2.db"
        make_version_2_store(template, upgrade_runs)
        timing = workdir / "timing.db"
        shutil.copyfile(template, timing)
        started = time.monotonic()
        SQLiteSessionStore(timing).close()
        upgrade_s = time.monotonic() - started
        timing.unlink()
        for round_no in range(upgrade_rounds):
            # Kill anywhere from before the upgrade begins to as long again after it would end.
            violations, committed = upgrade_round(template, workdir, round_no, 2 * upgrade_s, rng)
            summary.upgrade_rounds += 1
            summary.violations += violations
            if committed:
                summary.upgrade_killed_after_commit += 1
            else:
                summary.upgrade_killed_before_commit += 1
            if progress:
                print(
                    f"upgrade round {round_no}: committed={committed} violations={len(violations)}",
                    flush=True,
                )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100, help="kill rounds (default 100)")
    parser.add_argument(
        "--upgrade-rounds", type=int, default=20, help="kills during a schema upgrade (default 20)"
    )
    parser.add_argument("--writers", type=int, default=2, help="writer processes per round (default 2)")
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per writer process, sharing group commits (default 4)"
    )
    parser.add_argument("--sessions", type=int, default=3, help="session ids the writers share (default 3)")
    parser.add_argument(
        "--mode", choices=[*MODES, "all"], default="all", help="single appends, batches, or both"
    )
    parser.add_argument("--synchronous", choices=[*SYNCHRONOUS, "both"], default="both")
    parser.add_argument("--max-delay-ms", type=int, default=300, help="latest kill after the writers start")
    parser.add_argument(
        "--upgrade-runs", type=int, default=100_000, help="runs (and events) in the version-2 store"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="sqlitestream-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary = run(
        workdir,
        rounds=args.rounds,
        upgrade_rounds=args.upgrade_rounds,
        writers=args.writers,
        sessions=args.sessions,
        modes=MODES if args.mode == "all" else (args.mode,),
        synchronous=SYNCHRONOUS if args.synchronous == "both" else (args.synchronous,),
        max_delay_s=args.max_delay_ms / 1000.0,
        threads=args.threads,
        upgrade_runs=args.upgrade_runs,
        seed=seed,
        progress=not args.quiet,
    )
    print(f"crashtest seed={seed} dir={workdir} in {time.monotonic() - started:.1f} s")
    for line in summary.lines():
        print(line)
    if not summary.violations and args.dir is None:
        shutil.rmtree(workdir)
    return 1 if summary.violations else 0


def child_main(argv: list[str]) -> None:
    """What a :class:`Child` runs: ``writer PATH NAME MODE SYNCHRONOUS SESSIONS SEED THREADS``
    or ``upgrade PATH``."""
    if argv[0] == "writer":
        path, name, mode, synchronous, sessions, seed, threads = argv[1:]
        writer_main(path, name, mode, synchronous, int(sessions), int(seed), int(threads))
    elif argv[0] == "upgrade":
        upgrader_main(argv[1])
    else:
        raise SystemExit(f"unknown child command {argv[0]!r}")


if __name__ == "__main__":
    sys.exit(main())
