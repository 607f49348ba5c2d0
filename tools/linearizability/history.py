"""A recorded history: what each client called, when, and what came back.

Each worker process writes its clients' operations as JSON lines (one :class:`Operation` a
line). Times are ``time.monotonic_ns()``, which on Linux is the system-wide CLOCK_MONOTONIC, so
the intervals of operations in different processes can be compared: ``invoke_ns`` is taken
before the call and ``complete_ns`` after it returned or raised, so each interval contains the
moment the store really performed the operation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Kind(str, Enum):
    """What a client called (every operation touches one session)."""

    APPEND = "append"  # append_event_with_sequence(event)
    APPEND_EXPECTED = "append_expected"  # ... with expected_sequence=expected
    APPEND_BATCH = "append_batch"  # append_events([...]), all in one session
    READ = "read"  # get_events(after=, limit=), wait_ms > 0 for a long-poll
    LATEST = "latest"  # get_latest_sequence


class Status(str, Enum):
    """How the call ended."""

    OK = "ok"  # returned: the result fields hold what it returned
    CONFLICT = "conflict"  # raised SequenceConflictError; ``value`` is its ``actual``
    FAILED = "failed"  # raised a storage error: a write may or may not have been applied
    RAISED = "raised"  # raised any other error (the sequential model never does)


@dataclass(frozen=True, slots=True)
class Operation:
    """One call by one client, with its interval and outcome.

    ``ids`` are the event ids appended (one, or a batch's in order); ``seqs`` the sequence
    numbers returned for them. ``events`` are a read's ``(id, sequence)`` pairs; ``value`` is
    ``get_latest_sequence``'s answer, or a conflict's actual sequence. ``error`` describes a
    raised exception.
    """

    client: str
    kind: Kind
    session: str
    invoke_ns: int
    complete_ns: int
    status: Status = Status.OK
    ids: tuple[str, ...] = ()
    expected: int | None = None
    after: int = 0
    limit: int | None = None
    wait_ms: int = 0
    seqs: tuple[int, ...] = ()
    events: tuple[tuple[str, int], ...] = ()
    value: int | None = None
    error: str = field(default="", compare=False)

    @property
    def is_write(self) -> bool:
        return self.kind in (Kind.APPEND, Kind.APPEND_EXPECTED, Kind.APPEND_BATCH)

    def describe(self) -> str:
        """One line: who called what, with what outcome, over which interval."""
        if self.kind is Kind.APPEND:
            call = f"append({self.ids[0]})"
        elif self.kind is Kind.APPEND_EXPECTED:
            call = f"append({self.ids[0]}, expected_sequence={self.expected})"
        elif self.kind is Kind.APPEND_BATCH:
            call = f"append_events([{', '.join(self.ids)}])"
        elif self.kind is Kind.READ:
            wait = f", wait_timeout_ms={self.wait_ms}" if self.wait_ms else ""
            call = f"get_events(after={self.after}, limit={self.limit}{wait})"
        else:
            call = "get_latest_sequence()"
        if self.status is Status.CONFLICT:
            result = f"SequenceConflictError(actual={self.value})"
        elif self.status in (Status.FAILED, Status.RAISED):
            result = f"{self.status.value}: {self.error}"
        elif self.kind is Kind.READ:
            result = _events(self.events)
        elif self.kind is Kind.LATEST:
            result = str(self.value)
        else:
            result = str(list(self.seqs)) if self.kind is Kind.APPEND_BATCH else str(self.seqs[0])
        return f"{self.client} {self.session}: {call} -> {result}"

    def to_json(self) -> str:
        record: dict[str, Any] = {
            "client": self.client,
            "kind": self.kind.value,
            "session": self.session,
            "invoke_ns": self.invoke_ns,
            "complete_ns": self.complete_ns,
            "status": self.status.value,
        }
        defaults = _DEFAULTS
        for name in ("ids", "expected", "after", "limit", "wait_ms", "seqs", "events", "value", "error"):
            value = getattr(self, name)
            if value != defaults[name]:
                record[name] = value
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Operation:
        raw = json.loads(line)
        return cls(
            client=raw["client"],
            kind=Kind(raw["kind"]),
            session=raw["session"],
            invoke_ns=raw["invoke_ns"],
            complete_ns=raw["complete_ns"],
            status=Status(raw["status"]),
            ids=tuple(raw.get("ids", ())),
            expected=raw.get("expected"),
            after=raw.get("after", 0),
            limit=raw.get("limit"),
            wait_ms=raw.get("wait_ms", 0),
            seqs=tuple(raw.get("seqs", ())),
            events=tuple((str(i), int(s)) for i, s in raw.get("events", ())),
            value=raw.get("value"),
            error=raw.get("error", ""),
        )


def _events(events: tuple[tuple[str, int], ...], shown: int = 6) -> str:
    items = [f"{event_id}@{seq}" for event_id, seq in events]
    if len(items) > shown:
        items = [*items[: shown // 2], f"... {len(items) - shown} more ...", *items[-(shown // 2) :]]
    return "[" + ", ".join(items) + "]"


_DEFAULTS: dict[str, Any] = {
    "ids": (),
    "expected": None,
    "after": 0,
    "limit": None,
    "wait_ms": 0,
    "seqs": (),
    "events": (),
    "value": None,
    "error": "",
}


def write_history(path: Path, operations: Iterable[Operation]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for operation in operations:
            out.write(operation.to_json() + "\n")


def read_history(paths: Iterable[Path]) -> list[Operation]:
    """Every operation in the files, ordered by invocation time."""
    return sorted(_lines(paths), key=lambda op: (op.invoke_ns, op.complete_ns))


def _lines(paths: Iterable[Path]) -> Iterator[Operation]:
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    yield Operation.from_json(line)
