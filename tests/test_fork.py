"""A store belongs to the process that opened it: a child of fork() that uses an inherited store
gets ``StoreClosedError`` (never an acknowledgement, never a hang), and neither closing nor
dropping it there touches the parent's files.

A child holds none of its parent's POSIX locks, which SQLite's cross-process safety rests on:
without this, a child's appends were acknowledged and then lost when the parent's close deleted
the -wal, and children forked while a thread wrote hung forever on the write lock.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest
from support import python_output, run_in_another_process

from sqlitestream import Event, PostgresSessionStore, SQLiteSessionStore, StoreClosedError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_CHILD_DEADLINE_S = 60.0  # far past anything a refused call takes: reaching it means a hang


def _run_in_child(work: Callable[[], object], *, parent_first: Callable[[], object] | None = None) -> str:
    """Fork; in the child run ``work`` (once the parent has run ``parent_first``, if given) and
    report what it returned or raised; "hung" if the child did not finish by the deadline."""
    results_r, results_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(results_r)
            os.close(go_w)
            os.read(go_r, 1)
            try:
                outcome = f"returned {work()!r}"
            except BaseException as exc:  # reported to the parent
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(results_w, outcome.encode())
        finally:
            os._exit(0)
    os.close(results_w)
    os.close(go_r)
    try:
        if parent_first is not None:
            parent_first()
        os.write(go_w, b"g")
        deadline = time.monotonic() + _CHILD_DEADLINE_S
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "hung"
            time.sleep(0.01)
        chunks = []
        while chunk := os.read(results_r, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(results_r)
        os.close(go_w)


def _ids_in_fresh_process(path: Path, session_id: str) -> list[str]:
    """The event ids of a session as a new process opening the file sees them."""
    script = (
        "import sys, json\nfrom sqlitestream import SQLiteSessionStore\n"
        "with SQLiteSessionStore(sys.argv[1]) as store:\n"
        "    print(json.dumps([e.id for e in store.get_events(sys.argv[2])]))\n"
    )
    return list(json.loads(run_in_another_process(script, str(path), session_id)))


def _integrity(path: Path) -> list[str]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def test_child_appending_after_the_parent_closed_is_refused_and_the_parents_log_is_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path)
    for n in range(5):
        store.append_event(Event("message_sent", "s1", id=f"parent-{n}"))

    def child_appends() -> object:
        return [
            store.append_event_with_sequence(Event("message_sent", "s1", id=f"child-{n}")) for n in range(100)
        ]

    # The parent closes its store (checkpointing and deleting -wal and -shm), then the child appends.
    outcome = _run_in_child(child_appends, parent_first=store.close)
    assert outcome.startswith("StoreClosedError"), outcome
    assert "fork" in outcome and "open a new store" in outcome
    assert _ids_in_fresh_process(path, "s1") == [f"parent-{n}" for n in range(5)]
    assert _integrity(path) == ["ok"]


def test_child_of_a_parent_that_exits_without_closing_is_refused(tmp_path: Path) -> None:
    """The issue's second case, with real processes: a parent appends and ``_exit``s without
    closing, its child tries to append, and a short-lived process opens, appends and closes."""
    path = tmp_path / "events.db"
    script = textwrap.dedent(
        """
        import os, sys, json
        from sqlitestream import Event, SQLiteSessionStore, StoreClosedError
        store = SQLiteSessionStore(sys.argv[1])
        for n in range(50):
            store.append_event(Event("message_sent", "s1", id=f"parent-{n}"))
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(w)
            os.read(r, 1)  # until the parent is gone
            acked, refused = 0, ""
            for n in range(100):
                try:
                    store.append_event(Event("message_sent", "s1", id=f"child-{n}"))
                    acked += 1
                except StoreClosedError as exc:
                    refused = str(exc)
            print(json.dumps({"acked": acked, "refused": refused}), flush=True)
            os._exit(0)
        os._exit(0)  # without closing; the child's end of the pipe then reads EOF
        """
    )
    # The output pipe reaches end of file once the child, which inherited it, has exited too.
    child = json.loads(python_output(script, str(path), timeout=120))
    assert child["acked"] == 0, child
    assert "fork" in child["refused"]
    with SQLiteSessionStore(path) as later:  # a short-lived process's open, append and close
        later.append_event(Event("message_sent", "s1", id="later"))
    assert _ids_in_fresh_process(path, "s1") == [f"parent-{n}" for n in range(50)] + ["later"]
    assert _integrity(path) == ["ok"]


def test_forks_while_a_thread_appends_never_hang_the_child(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path)
    stop = threading.Event()

    def append_forever() -> None:
        n = 0
        while not stop.is_set():
            store.append_event(Event("message_sent", "s1", id=f"thread-{n}"))
            n += 1

    appender = threading.Thread(target=append_forever)
    appender.start()
    try:
        outcomes: list[str] = []
        while len(outcomes) < 20 and "hung" not in outcomes:
            outcomes.append(_run_in_child(lambda: store.append_event(Event("message_sent", "s1"))))
    finally:
        stop.set()
        appender.join()
    try:
        assert [o.split(":")[0] for o in outcomes] == ["StoreClosedError"] * 20, outcomes
        ids = [e.id for e in store.get_events("s1")]
        assert all(i.startswith("thread-") for i in ids)
    finally:
        store.close()
    assert _integrity(path) == ["ok"]


def test_every_call_and_close_in_the_child_is_refused_or_harmless(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteSessionStore(path)
    store.append_event(Event("message_sent", "s1"))

    def child() -> object:
        refused = []
        calls: list[Callable[[], object]] = [
            lambda: store.get_events("s1"),
            lambda: store.get_latest_sequence("s1"),
            lambda: store.list_sessions(),
            lambda: store.store_info(),
            lambda: store.get_events("s1", after=1, wait_timeout_ms=10),
            lambda: store.append_events([Event("message_sent", "s1")]),
        ]
        for call in calls:
            try:
                call()
            except StoreClosedError:
                refused.append(True)
        store.close()
        try:
            store.get_latest_sequence("s1")
        except StoreClosedError as exc:
            refused.append("fork" in str(exc))
        return refused

    assert _run_in_child(child) == f"returned {[True] * 7!r}"
    # The child's close touched nothing: the parent's store works, and its -wal and -shm stay.
    assert store.append_event_with_sequence(Event("message_sent", "s1")).sequence_number == 2
    assert os.path.exists(f"{path}-wal") and os.path.exists(f"{path}-shm")
    store.close()
    assert _integrity(path) == ["ok"]


_CHILD_CLOSES_AND_EXITS = textwrap.dedent(
    """
    import gc, os, sys, json
    from sqlitestream import Event, SQLiteSessionStore
    store = SQLiteSessionStore(sys.argv[1])
    store.append_event(Event("message_sent", "s1", id="before-fork"))
    files = {name: os.stat(sys.argv[1] + name).st_ino for name in ("-wal", "-shm")}
    pid = os.fork()
    if pid == 0:
        store.close()
        del store
        gc.collect()
        sys.exit(0)  # a normal exit: interpreter shutdown runs in the child
    os.waitpid(pid, 0)
    same = files == {name: os.stat(sys.argv[1] + name).st_ino for name in ("-wal", "-shm")}
    store.append_event(Event("message_sent", "s1", id="after-fork"))
    store.close()
    print(json.dumps(same))
    """
)


def test_a_child_closing_and_dropping_an_inherited_store_leaves_the_parents_files_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    assert json.loads(python_output(_CHILD_CLOSES_AND_EXITS, str(path), timeout=120)) is True
    assert _ids_in_fresh_process(path, "s1") == ["before-fork", "after-fork"]
    assert _integrity(path) == ["ok"]


def _multiprocessing_child(store: SQLiteSessionStore, results: multiprocessing.SimpleQueue[str]) -> None:
    try:
        store.append_event(Event("message_sent", "s1", id="child"))
        results.put("acknowledged")
    except StoreClosedError as exc:
        results.put(f"refused: {exc}")


def test_multiprocessing_fork_children_are_refused_an_inherited_store(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    context = multiprocessing.get_context("fork")
    results: multiprocessing.SimpleQueue[str] = context.SimpleQueue()
    with SQLiteSessionStore(path) as store:
        store.append_event(Event("message_sent", "s1", id="parent"))
        process = context.Process(target=_multiprocessing_child, args=(store, results))
        process.start()
        process.join(_CHILD_DEADLINE_S)
        assert process.exitcode == 0
        answer = results.get()
        assert answer.startswith("refused") and "fork" in answer, answer
        assert [e.id for e in store.get_events("s1")] == ["parent"]


def test_postgres_store_inherited_through_fork_is_refused_and_the_parent_keeps_working(
    pg_dsn: str, pg_schema: str
) -> None:
    store = PostgresSessionStore(pg_dsn, schema=pg_schema, pool_size=2)
    try:
        store.append_event(Event("message_sent", "s1", id="parent-1"))

        def child() -> object:
            try:
                return store.append_event_with_sequence(
                    Event("message_sent", "s1", id="child")
                ).sequence_number
            finally:
                store.close()

        outcome = _run_in_child(child)
        assert outcome.startswith("StoreClosedError") and "fork" in outcome, outcome
        # The child's close did not end the parent's sessions on their shared sockets.
        assert (
            store.append_event_with_sequence(Event("message_sent", "s1", id="parent-2")).sequence_number == 2
        )
        assert [e.id for e in store.get_events("s1")] == ["parent-1", "parent-2"]
    finally:
        store.close()
