"""Crash safety: writer processes killed with SIGKILL at random moments lose nothing they
acknowledged; a process killed while upgrading the schema leaves the old or the new version.

A short run of ``tools/crashtest.py`` (the long version takes its round count on the command
line); the checks themselves are in that tool, and the last test proves they catch damage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import apsw
import pytest

from sqlitestream import Event, Run, Session, SQLiteSessionStore
from tools import crashtest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


@pytest.mark.parametrize(
    ("synchronous", "threads"),
    [("normal", 1), ("full", 4)],
    ids=["normal-single-threaded", "full-group-commits"],
)
def test_killed_writers_lose_no_acknowledged_event(tmp_path: Path, synchronous: str, threads: int) -> None:
    """Two writer processes on three shared sessions, each killed at a random moment, one
    round of each mode on one file: single appends, batches, and both mixed. Each level once,
    and each way of writing once: one thread per process, or four threads on one store object,
    where the kill lands in the middle of commits that carry several threads' appends
    (``tools/crashtest.py`` runs every combination, for as many rounds as it is given)."""
    summary = crashtest.run(
        tmp_path,
        rounds=len(crashtest.MODES),
        upgrade_rounds=0,
        writers=2,
        sessions=3,
        synchronous=(synchronous,),
        max_delay_s=0.25,
        threads=threads,
        seed=1 if synchronous == "normal" else 4,
    )
    assert summary.violations == []
    assert summary.rounds == 3 and summary.kills == 6
    assert summary.acknowledged > 0 and summary.batches_seen > 0
    assert summary.stored > 0


def test_kill_during_schema_upgrade_leaves_old_or_new_version(tmp_path: Path) -> None:
    # A version-2 store with 10,000 runs and 10,000 events, upgraded to version 3 (feed
    # positions): the upgrade lasts long enough to be killed anywhere in it (the kill window
    # scales with the measured upgrade time); the long run in tools/crashtest.py uses 100,000.
    summary = crashtest.run(tmp_path, rounds=0, upgrade_rounds=3, upgrade_runs=10_000, seed=3)
    assert summary.violations == []
    assert summary.upgrade_rounds == 3


def test_checker_catches_planted_damage(tmp_path: Path) -> None:
    """The crash checks are not vacuous: a lost event, a gap, a wrong counter, a partial batch,
    a moved sequence, a half-done delete, a log starting where no trim went and a trim that did
    not remove what it acknowledged are each reported."""
    path = tmp_path / "damaged.db"
    with SQLiteSessionStore(path) as store:
        acked = {
            e.id: (e.session_id, e.sequence_number)
            for e in store.append_events([Event("message_sent", "s1", id=f"e{n}") for n in range(1, 6)])
        }
        batch = store.append_events(
            [
                Event(
                    "message_sent",
                    "s2",
                    id=f"b{n}",
                    metadata={"batch": "B", "size": 3, "index": n, "sessions": ["s2"] * 3},
                )
                for n in range(3)
            ]
        )
        store.append_events([Event("message_sent", "s3", id=f"t{n}") for n in range(1, 4)])
        store.trim_session("s3", before_sequence=2)  # a trim the writers reported
        store.append_events([Event("message_sent", "s4", id=f"u{n}") for n in range(1, 4)])
        store.save_session(Session(agent_id="a", id="d1"))
        store.save_run(Run(session_id="d1", id="d1-run"))
        store.append_events([Event("message_sent", "d1", id=f"d1-{n}") for n in range(3)])
    trims = ({"s3": 2}, {"s3": 2})
    assert crashtest.check_store(path, acked, deletes={"d1": False}, trims=trims)[0] == []

    conn = apsw.Connection(str(path))
    with conn:
        conn.execute("DELETE FROM events WHERE id IN ('e3', ?)", (batch[1].id,))
        conn.execute("UPDATE streams SET latest_seq = 9 WHERE session_id = 's1'")
        conn.execute("DELETE FROM events WHERE session_id = 'd1'")  # half a delete
        conn.execute("DELETE FROM events WHERE id = 'u1'")  # a first event gone with no trim
    conn.close()
    acked["e5"] = ("s1", 4)  # acknowledged with another sequence than stored
    violations = crashtest.check_store(path, acked, deletes={"d1": False}, trims=({"s3": 2}, {"s3": 3}))[0]
    text = "\n".join(violations)
    assert "acknowledged event e3" in text and "is missing" in text
    assert "sequences are not gap-free" in text
    assert "session s4: starts at 2 but no trim went that far" in text
    assert "an acknowledged trim below 3 left sequence 2" in text
    assert "stored latest sequence 9" in text
    assert "batch B is partial" in text
    assert "acknowledged event e5 was ('s1', 4), is now ('s1', 5)" in text
    assert "interrupted delete of d1 left" in text
