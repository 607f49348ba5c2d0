"""The main job, runnable: one process records an agent session, another follows it live.

``run_demo()`` opens (or creates) a store file, generates a session id, and starts a second OS
process (``python -m sqlitestream.cli.demo --writer ...``) that runs that session through
``SessionManager`` with a ``ScriptedAdapter`` emitting events over a few seconds. Meanwhile
this process follows the session with the long-poll stream and prints each event as it
arrives: its sequence number and how long after its append it was seen (the writer stamps
each event's timestamp right before appending it). Then it prints a summary.

``python -m sqlitestream.cli.demo [--db PATH] [--events N] [--interval-ms MS]`` runs it directly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlitestream.adapters import RunOutcome, ScriptedAdapter
from sqlitestream.cli.common import DEMO_EVENTS, DEMO_INTERVAL_MS, DEMO_MIN_EVENTS
from sqlitestream.errors import SqliteStreamError, StoreClosedError, ValidationError
from sqlitestream.locations import is_postgres_location, open_store
from sqlitestream.manager import SessionManager
from sqlitestream.models import Event, EventType, new_id, utc_now

if TYPE_CHECKING:
    from sqlitestream.admin import AdminStore

__all__ = ["DemoSummary", "main", "run_demo"]

DEFAULT_EVENTS = DEMO_EVENTS
DEFAULT_INTERVAL_MS = DEMO_INTERVAL_MS
_MIN_EVENTS = DEMO_MIN_EVENTS
_INPUT_TOKENS = 12
_FOLLOW_WAIT_MS = 1000
_WRITER_GRACE_S = 10.0
"""After the writer exits, how long the follower may still take to reach the session's end
before the demo gives up (only a writer that died early gets anywhere near this)."""
_SESSION_ENDS = frozenset(
    {EventType.SESSION_COMPLETED, EventType.SESSION_FAILED, EventType.SESSION_CANCELLED}
)
_WORDS = (
    "Events",
    "are",
    "appended",
    "with",
    "gap-free",
    "sequence",
    "numbers",
    "and",
    "followed",
    "by",
    "cursor",
    "from",
    "another",
    "process",
    "while",
    "they",
    "happen.",
)


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the follower saw: ``events`` it received (the writer's agent events plus the
    session and input events), wake latency percentiles in milliseconds (append to seen),
    the session id, the store file and the writer process's exit code."""

    events: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    session_id: str
    db_path: str
    writer_exit_code: int


def demo_script(events: int) -> list[dict[str, Any]]:
    """The agent events the writer emits: exactly ``events`` (at least 5) of them."""
    middle = events - 4  # run_started ... message, usage, done
    tools: list[dict[str, Any]] = []
    if middle >= 3:
        tools = [
            {"type": "tool_use", "data": {"tool": "search", "query": "sqlite wal"}},
            {"type": "tool_result", "data": {"tool": "search", "hits": 3}},
        ]
    words = [_WORDS[index % len(_WORDS)] for index in range(middle - len(tools))]
    deltas: list[dict[str, Any]] = [{"type": "delta", "data": {"text": word + " "}} for word in words]
    text = " ".join(words)
    return [
        {"type": "run_started"},
        *tools[:1],
        *deltas[: len(deltas) // 2],
        *tools[1:],
        *deltas[len(deltas) // 2 :],
        {"type": "message", "data": {"role": "assistant", "content": text}},
        {"type": "usage", "data": {"input_tokens": _INPUT_TOKENS, "output_tokens": len(deltas)}},
        {"type": "done", "data": {"status": "success"}},
    ]


def run_demo(
    db_path: str | os.PathLike[str] = "sqlitestream.db",
    *,
    events: int = DEFAULT_EVENTS,
    interval_ms: int = DEFAULT_INTERVAL_MS,
    echo: Callable[[str], None] = print,
) -> DemoSummary:
    """Record a session in a second process while following it live here; see the module doc.

    ``events`` (>= 5) agent events are emitted ``interval_ms`` apart. Each line given to
    ``echo`` is one event as seen, then a summary. Raises ``SqliteStreamError`` if the writer
    process fails (its exit code and stderr tail in the message).
    """
    events = _whole(events, "events", _MIN_EVENTS)
    interval_ms = _whole(interval_ms, "interval_ms", 0)
    if not callable(echo):
        raise ValidationError(f"echo must be callable, got {type(echo).__name__}")
    session_id = new_id("ses_")
    # Create the file and its schema here, before the writer starts, so the two processes
    # never race to create it.
    with _open_store(db_path) as store:
        path = store.path
        echo(f"store {path}")
        echo(f"session {session_id}: recorded by a writer process, followed live by this one")
        # A PostgreSQL URL is passed on as given: store.path has no password.
        target = os.fspath(db_path) if is_postgres_location(os.fspath(db_path)) else path
        writer = _Writer(target, session_id, events, interval_ms, on_early_exit=store.close)
        try:
            latencies = _follow(SessionManager(store), session_id, echo)
        except BaseException as exc:
            writer.stop()
            if isinstance(exc, StoreClosedError):
                raise SqliteStreamError(f"the writer process ended early: {writer.failure()}") from None
            raise
        finally:
            writer.following_done()
        code = writer.wait()
    if code != 0:
        raise SqliteStreamError(f"the writer process failed: {writer.failure()}")
    ordered = sorted(latencies)
    summary = DemoSummary(
        events=len(ordered),
        p50_ms=_percentile(ordered, 50),
        p99_ms=_percentile(ordered, 99),
        max_ms=ordered[-1],
        session_id=session_id,
        db_path=path,
        writer_exit_code=code,
    )
    echo(
        f"{summary.events} events followed across processes; wake latency "
        f"p50 {summary.p50_ms:.1f} ms, p99 {summary.p99_ms:.1f} ms, max {summary.max_ms:.1f} ms"
    )
    return summary


def _follow(manager: SessionManager, session_id: str, echo: Callable[[str], None]) -> list[float]:
    latencies: list[float] = []
    stream = manager.stream_session_events(session_id, wait_timeout_ms=_FOLLOW_WAIT_MS)
    try:
        for event in stream:
            latency_ms = (utc_now() - event.timestamp).total_seconds() * 1000.0
            latencies.append(latency_ms)
            echo(_describe(event, latency_ms))
            if event.type in _SESSION_ENDS:
                break
    finally:
        stream.close()
    return latencies


def _describe(event: Event, latency_ms: float) -> str:
    detail = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
    if len(detail) > 48:
        detail = detail[:45] + "..."
    return (
        f"#{event.sequence_number:<4} {event.type.value:<22} seen {latency_ms:7.1f} ms after append  {detail}"
    )


def _percentile(ordered: list[float], percent: int) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


class _Writer:
    """The second OS process, and a thread that reaps it and collects its stderr."""

    def __init__(
        self,
        db_path: str,
        session_id: str,
        events: int,
        interval_ms: int,
        *,
        on_early_exit: Callable[[], None],
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "sqlitestream.cli.demo",
            "--writer",
            "--db",
            db_path,
            "--session-id",
            session_id,
            "--events",
            str(events),
            "--interval-ms",
            str(interval_ms),
        ]
        self._stderr = ""
        self._done_following = threading.Event()
        self._on_early_exit = on_early_exit
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=_child_env(),
        )
        self._reaper = threading.Thread(target=self._reap, name="sqlitestream-demo-writer", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        _, self._stderr = self._proc.communicate()
        # A writer that died before ending the session would leave the follower waiting for
        # ever: closing the store makes its long-poll raise StoreClosedError.
        if not self._done_following.wait(_WRITER_GRACE_S):
            self._on_early_exit()

    def following_done(self) -> None:
        self._done_following.set()

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()

    def wait(self) -> int:
        self._reaper.join()
        return self._proc.returncode

    def failure(self) -> str:
        self._reaper.join()
        tail = self._stderr.strip()[-2000:]
        return f"exit code {self._proc.returncode}" + (f": {tail}" if tail else "")


def _open_store(db_path: str | os.PathLike[str]) -> AdminStore:
    """A SQLite file, or a PostgreSQL store for a ``postgresql://`` URL (``?schema=`` allowed)."""
    return open_store(db_path)


def _whole(value: object, name: str, minimum: int) -> int:
    if type(value) is not int:
        raise ValidationError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}")
    return value


def _child_env() -> dict[str, str]:
    """This environment, with the directory holding this package first on PYTHONPATH, so the
    writer runs the same sqlitestream as this process (installed or from a source tree)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_parent + (os.pathsep + existing if existing else "")
    return env


def _write(db_path: str, session_id: str, events: int, interval_ms: int) -> None:
    """The writer process's job: run the session to its end."""
    script = demo_script(events)
    # The run record keeps the usage the run's own token_usage_updated event reported.
    usage = next(step["data"] for step in script if step["type"] == "usage")
    adapter = ScriptedAdapter(
        script,
        name="demo-agent",
        delay_ms=interval_ms,
        outcome=RunOutcome(output={"text": "done"}, token_usage=usage),
    )
    with _open_store(db_path) as store:
        SessionManager(store, adapter).run_once(
            {"prompt": "Explain how this event log works."},
            session_id=session_id,
            metadata={"demo": True},
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sqlitestream.cli.demo``: run the demo (or, with ``--writer``, its writer side)."""
    parser = argparse.ArgumentParser(
        prog="python -m sqlitestream.cli.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--db", default="sqlitestream.db", help="store file (created if missing)")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="agent events to emit")
    parser.add_argument("--interval-ms", type=int, default=DEFAULT_INTERVAL_MS, help="pause between events")
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--session-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.writer:
            _write(args.db, args.session_id, args.events, args.interval_ms)
        else:
            run_demo(args.db, events=args.events, interval_ms=args.interval_ms)
    except SqliteStreamError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
