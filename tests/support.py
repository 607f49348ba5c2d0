"""Helpers shared by the test modules, each written once: ``wait_until`` (poll a condition with a
deadline), ``child_env`` (the environment of a child Python process that imports this checkout),
``run_in_another_process`` and ``python_output``, ``processes`` (the multiprocessing context of
the tests' child processes), ``command_process`` (a ``sqlitestream`` command in one of them) and
the store factories of the manager, adapter and streaming tests.

Each of those modules declares a three-line ``store`` fixture over ``STORE_KINDS`` with
``open_store``, so every manager test runs against the in-memory store and a SQLite file store
without duplicating the test code.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.context
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import spawned

from sqlitestream import Event, InMemorySessionStore, SessionStore, SQLiteSessionStore, StoredEvent
from sqlitestream.store import SessionStore as _Base
from tools import forked

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"


# A test that raises KeyboardInterrupt at random moments (a real SIGALRM) sometimes strikes while
# Python runs a finalizer or a weakref callback, where it cannot propagate: Python reports it as
# ignored, and pytest as a warning. That is one of the random moments, not a fault; any other
# exception reported there still shows.
INTERRUPTS_IN_FINALIZERS_ARE_EXPECTED = pytest.mark.filterwarnings(
    "ignore:(?ms).*^KeyboardInterrupt$:pytest.PytestUnraisableExceptionWarning"
)


def make_store(kind: str, tmp_path: Path) -> SessionStore:
    if kind == "memory":
        return InMemorySessionStore()
    return SQLiteSessionStore(tmp_path / "manager.db")


STORE_KINDS = ["memory", "sqlite"]


def open_store(kind: str, tmp_path: Path) -> Iterator[SessionStore]:
    """Body of each test module's ``store`` fixture (parametrized over ``STORE_KINDS``)."""
    opened = make_store(kind, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


CHILD_PACKAGE_VARIABLE = "SQLITESTREAM_TEST_CHILD_PACKAGE"
"""Set by ``conftest.py`` for the whole run: a directory holding a byte-compiled copy of this
checkout's ``sqlitestream`` package, which child interpreters import first."""


def child_import_path() -> str:
    """``PYTHONPATH`` for a child interpreter: the compiled copy of the package (when the run
    made one), then this checkout (``tools``, and the package when there is no copy)."""
    copy = os.environ.get(CHILD_PACKAGE_VARIABLE)
    return os.pathsep.join([copy, str(REPO_ROOT)] if copy else [str(REPO_ROOT)])


def child_env() -> dict[str, str]:
    """The environment for a child Python process that imports this source tree.

    ``PYTHONSAFEPATH``: ``python -c`` and ``-m`` would otherwise put the working directory
    (the checkout, where pytest runs) first on ``sys.path``, ahead of the compiled copy."""
    env = dict(os.environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = child_import_path() + (os.pathsep + existing if existing else "")
    env["PYTHONSAFEPATH"] = "1"
    return env


_PRELOADED = (
    "spawned",
    "sqlitestream.postgres",
    "sqlitestream.sqlite",
    # What ``sqlitestream serve`` imports (see command_process), about 0.35 s of CPU per node.
    "sqlitestream.cli.main",
    "sqlitestream.http",
    "uvicorn.main",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
)
# Before any test starts a child: this worker's server (tools.forked) imports these, with this
# directory (``spawned``) and the compiled copy of the package first on its path.
forked.configure(
    preload=_PRELOADED, path=[str(Path(__file__).resolve().parent), *child_import_path().split(os.pathsep)]
)


def processes() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context for child processes that run a function of ``spawned``.

    ``forkserver`` (``tools.forked``): each child is a fork of one clean, single-threaded server
    process (one per test worker) that imported ``spawned`` and the package once, so a child
    starts in milliseconds; a ``spawn`` child is a new interpreter that imports them again,
    0.2-0.5 s of CPU each, more than the work most of them do. Either way it is another OS
    process with its own connections to the store. A test about a fresh interpreter uses
    ``python_output`` instead."""
    return forked.context()


def run_in_another_process(code: str, *args: str, timeout: float = 60) -> str:
    """What ``code`` prints, run as ``python -c code *args`` runs it but in a child of
    :func:`processes` (another OS process, with its own files and connections, that starts in
    milliseconds); fail the test with the child's traceback if it fails. A test about a fresh
    interpreter (imports, the environment, exit codes, signals) uses ``python_output``."""
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = processes().Process(target=spawned.run_code, args=(code, list(args), sender))
    child.start()
    sender.close()
    try:
        if receiver.poll(timeout):
            ok, text = receiver.recv()
        else:
            ok, text = False, f"no report within {timeout} s"
    except EOFError:
        ok, text = False, "it ended without a report"
    finally:
        receiver.close()
    child.join(timeout if ok else 0)
    if child.is_alive():
        child.kill()
        child.join()
    assert ok and child.exitcode == 0, f"the child process failed (exit code {child.exitcode}): {text}"
    return str(text)


def command_process(
    argv: list[str], *, environment: dict[str, str] | None = None, stderr_path: Path | None = None
) -> forked.Child:
    """``sqlitestream *argv`` run by its entry point in a child of :func:`processes`, with
    ``environment`` added to the child's: another OS process that starts in milliseconds where a
    new interpreter imports the package, the HTTP stack and uvicorn again (0.3-0.5 s of CPU for
    every ``serve`` node). A test about the command as a program (its console script, its
    interpreter) starts it with ``subprocess`` instead."""
    from sqlitestream.cli.main import main

    return forked.Child(main, (argv,), environment=environment, stderr_path=stderr_path)


def python_output(code: str, *args: str, timeout: float = 60) -> str:
    """What ``code`` prints, run in a new interpreter that imports this checkout; fail the test
    (with the end of its stderr) if it fails."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def script(name: str) -> list[str]:
    """argv that runs ``tests/scripts/<name>`` with this interpreter."""
    return [sys.executable, str(SCRIPTS / name)]


def records(events: list[StoredEvent]) -> list[dict[str, Any]]:
    """The events as records, without their positions (which differ between stores)."""
    return [Event.to_dict(event) for event in events]


def types(events: Sequence[Event]) -> list[str]:
    return [event.type.value for event in events]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; fail the test if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


async def await_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """``wait_until`` inside an event loop: awaits between looks, so the loop keeps running."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


class DelegatingStore(_Base):
    """A store that forwards everything to ``inner``; subclasses override one behaviour."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner

    def create_session(self, session: Any) -> None:
        self.inner.create_session(session)

    def save_session(self, session: Any) -> None:
        self.inner.save_session(session)

    def get_session(self, session_id: str) -> Any:
        return self.inner.get_session(session_id)

    def list_sessions(self, **kwargs: Any) -> Any:
        return self.inner.list_sessions(**kwargs)

    def delete_session(self, session_id: str) -> None:
        self.inner.delete_session(session_id)

    def save_run(self, run: Any) -> None:
        self.inner.save_run(run)

    def get_run(self, run_id: str) -> Any:
        return self.inner.get_run(run_id)

    def list_runs(self, session_id: str, **kwargs: Any) -> Any:
        return self.inner.list_runs(session_id, **kwargs)

    def get_active_run(self, session_id: str) -> Any:
        return self.inner.get_active_run(session_id)

    def append_event_with_sequence(
        self, event: Event, *, expected_sequence: int | None = None
    ) -> StoredEvent:
        return self.inner.append_event_with_sequence(event, expected_sequence=expected_sequence)

    def append_events(self, events: Any) -> list[StoredEvent]:
        return self.inner.append_events(events)

    def read_events(self, query: Any) -> Any:
        return self.inner.read_events(query)

    def get_latest_sequence(self, session_id: str) -> int:
        return self.inner.get_latest_sequence(session_id)

    def close(self) -> None:
        self.inner.close()


class RecordingStore(DelegatingStore):
    """Records each ``get_events`` call: its keyword arguments, when it started, what it
    returned. ``entered`` is set on every call (tests clear it to await the next one)."""

    def __init__(self, inner: SessionStore, *, ignore_wait: bool = False) -> None:
        super().__init__(inner)
        self.ignore_wait = ignore_wait
        self.calls: list[tuple[float, dict[str, Any], int]] = []
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def get_events(self, session_id: str, **kwargs: Any) -> list[StoredEvent]:
        started = time.monotonic()
        self.entered.set()
        if self.ignore_wait:  # a store without long-poll: answers at once
            page = self.inner.get_events(session_id, **{**kwargs, "wait_timeout_ms": None})
        else:
            page = self.inner.get_events(session_id, **kwargs)
        with self._lock:
            self.calls.append((started, dict(kwargs), len(page)))
        return page

    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)


def stderr_on_a_terminal(argv: list[str], deadline: float = 60.0) -> tuple[int, bytes]:
    """Run ``argv`` (with :func:`child_env`, no ``SQLITESTREAM_DB``) with its stderr on a
    pseudo-terminal; its exit code and what it printed there."""
    import pty
    import select

    env = child_env()
    env.pop("SQLITESTREAM_DB", None)
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    printed = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], deadline)
            assert ready, "no output and no exit before the deadline"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            printed += chunk
        return process.wait(deadline), printed
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def run_followers_then_writers(
    followers: list[Any], writers: list[Any], readies: list[Any], start: Any, deadline_s: float
) -> None:
    """Start the ``followers`` and ``writers`` processes (``multiprocessing``); once every
    follower has set its ``readies`` event, set ``start`` for the writers; then wait for all to
    exit with 0 (within ``deadline_s`` + 30 s each), killing what is left on a failure."""
    for process in followers + writers:
        process.start()
    try:
        for ready in readies:
            assert ready.wait(deadline_s), "a follower did not start"
        start.set()
        for process in writers + followers:
            process.join(deadline_s + 30)
            assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"
    finally:
        for process in followers + writers:
            if process.is_alive():
                process.kill()
                process.join()


class ThreadCall:
    """``call()`` on a thread of its own; :meth:`result` waits for it (up to 30 s) and gives
    what it returned or the exception it raised (the test inspects either)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.outcome: Any = None

        def run() -> None:
            try:
                self.outcome = call()
            except BaseException as exc:  # the test inspects it
                self.outcome = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> Any:
        self.thread.join(30)
        assert not self.thread.is_alive(), "the call never returned"
        return self.outcome


def interrupt_once_at(function: str, event_name: str, only_if: Callable[[Any], bool]) -> Callable[..., Any]:
    """A trace function for ``threading.settrace`` that raises ``KeyboardInterrupt`` once, at
    ``event_name`` ("call" or "return") of the first frame of ``function`` that ``only_if``
    accepts: an interrupt at one exact moment, where a signal strikes only by chance."""
    fired = threading.Lock()

    def local(frame: Any, event_name_now: str, arg: Any) -> Any:
        if event_name_now == event_name and only_if(frame) and fired.acquire(blocking=False):
            raise KeyboardInterrupt
        return local

    def global_(frame: Any, event_name_now: str, arg: Any) -> Any:
        # Called at each frame's "call": traces the frames of ``function`` only.
        return local(frame, event_name_now, arg) if frame.f_code.co_name == function else None

    return global_
