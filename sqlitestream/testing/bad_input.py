"""The contract for bad input: each argument of each store method, with each kind of bad value
once, raises ``ValidationError`` naming the argument, and the store is exactly as it was (what
the public API shows, and :meth:`~sqlitestream.testing.SessionStoreContract.stored_state`, are
equal before and after).

The table is data: :data:`BAD_ARGUMENTS` lists each argument, the calls that take it and the
kinds of bad value; each (call, kind) pair is tried once, one test per argument. The kinds
(``BAD_IDS``, ``BAD_COUNTS``, ...) are shared with the record tests of this project."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sqlitestream.errors import ValidationError
from sqlitestream.models import Event, Run, RunStatus, Session
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import T0, ContractBase, new_event

HUGE = 2**64
NAIVE = datetime(2026, 1, 1)
KNOWN_SESSIONS = ("s1", "s2")


class Unprintable:
    """A value whose ``repr`` raises: an error message must not depend on printing it."""

    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


@dataclass(frozen=True, slots=True)
class Fresh:
    """A bad value made anew for each call (a generator is used up by one call), from the
    store's ``max_event_bytes``."""

    make: Callable[[int], Any]


@dataclass(frozen=True, slots=True)
class BadArgument:
    """One argument: the calls that take it (by a label) and the bad values (by kind), each of
    which every call must refuse with a ``ValidationError`` whose message contains ``name``."""

    label: str
    name: str
    calls: dict[str, Callable[[Any, Any], object]]
    values: dict[str, Any]

    def refused_by(self, target: Any, max_event_bytes: int, unchanged: Callable[[], object]) -> None:
        """Call each call with each bad value on ``target``; fail, listing every (call, kind)
        that did not raise a ``ValidationError`` naming the argument or that changed what
        ``unchanged()`` returns."""
        before = unchanged()
        problems = []
        for kind, value in self.values.items():
            for label, call in self.calls.items():
                made = value.make(max_event_bytes) if isinstance(value, Fresh) else value
                try:
                    call(target, made)
                except ValidationError as exc:
                    if self.name not in str(exc):
                        problems.append(f"{label} with {kind}: the message does not name {self.name}: {exc}")
                else:
                    problems.append(f"{label} accepted {kind}")
                if unchanged() != before:
                    problems.append(f"{label} with {kind} changed the store")
                    before = unchanged()
        assert not problems, "\n".join(problems)


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"x": value}
    return value


def _half_good_batch(max_event_bytes: int) -> Iterator[Event]:
    yield new_event(id="gen-1")
    yield "not an event"  # type: ignore[misc]


# The kinds of bad value, by the kind of argument --------------------------------------------

BAD_IDS: dict[str, Any] = {
    "None": None,
    "empty": "",
    "int": 7,
    "bool": True,
    "bytes": b"s1",
    "list": ["s1"],
    "NUL": "a\x00b",
    "lone-surrogate": "lone \ud800 surrogate",
    "unprintable": Unprintable(),
}
# An optional id (a filter, a parent): None is fine, the rest of BAD_IDS is not.
BAD_OPTIONAL_IDS: dict[str, Any] = {k: v for k, v in BAD_IDS.items() if k != "None"}
BAD_CHOICES: dict[str, Any] = {
    "unknown": "nope",
    "empty": "",
    "int": 5,
    "bytes": b"running",
    "padded": "RUNNING ",
    "list": ["running"],
}
# Event types that look like SQL or patterns are refused, never matched.
BAD_EVENT_TYPES: dict[str, Any] = {
    **BAD_CHOICES,
    "upper-case": "MESSAGE_SENT",
    "sql": "message_sent' OR '1'='1",
    "wildcard": "message_%",
    "NUL": "message_sent\x00",
}
# Cursors, offsets and timeouts: ints >= 0 (None is fine).
BAD_COUNTS: dict[str, Any] = {
    "negative": -1,
    "bool": True,
    "float": 1.0,
    "NaN": math.nan,
    "inf": math.inf,
    "str": "3",
    "overflow": HUGE,
}
# Limits: ints >= 1 (None is fine).
BAD_LIMITS: dict[str, Any] = {"zero": 0, **BAD_COUNTS}
BAD_TIMES: dict[str, Any] = {
    "naive": NAIVE,
    "str": "2026-01-01T00:00:00+00:00",
    "int": 0,
    "date": date(2026, 1, 1),
    "float": 1.5e9,
}
# JSON objects (data, metadata, ...): a dict of str keys and JSON values only.
BAD_PAYLOADS: dict[str, Any] = {
    "list": [1, 2],
    "str": "text",
    "int-key": {1: "int key"},
    "None-key": {None: "None key"},
    "NaN": {"x": math.nan},
    "inf": {"x": -math.inf},
    "nested-NaN": {"x": [1, math.nan]},
    "bytes": {"x": b"bytes"},
    "set": {"x": {1, 2}},
    "object": {"x": object()},
    "datetime": {"x": T0},
    "too-many-digits": {"x": 10**5000},
    "unprintable": {"x": Unprintable()},
    "lone-surrogate": {"x": "\ud800"},
    "lone-surrogate-key": {"\udcff": 1},
    "deep": _deep(150),
}


TAKING_A_SESSION_ID: dict[str, Callable[[Any, Any], object]] = {
    "get_session": lambda s, v: s.get_session(v),
    "delete_session": lambda s, v: s.delete_session(v),
    "list_runs": lambda s, v: s.list_runs(v),
    "get_active_run": lambda s, v: s.get_active_run(v),
    "get_events": lambda s, v: s.get_events(v),
    "get_latest_sequence": lambda s, v: s.get_latest_sequence(v),
}


OVERSIZED = Fresh(lambda limit: {"blob": "x" * limit})

BAD_ARGUMENTS: list[BadArgument] = [
    BadArgument(
        "session",
        "session",
        {
            "save_session": lambda s, v: s.save_session(v),
            "create_session": lambda s, v: s.create_session(v),
        },
        {"None": None, "dict": {"agent_id": "a"}, "str": "s1", "run-record": Run(session_id="s1")},
    ),
    BadArgument(
        "run",
        "run",
        {"save_run": lambda s, v: s.save_run(v)},
        {
            "None": None,
            "dict": {"session_id": "s1"},
            "str": "r1",
            "session-record": Session(agent_id="a"),
        },
    ),
    BadArgument("session_id", "session_id", TAKING_A_SESSION_ID, BAD_IDS),
    BadArgument("run_id", "run_id", {"get_run": lambda s, v: s.get_run(v)}, BAD_IDS),
    BadArgument(
        "agent_id-filter",
        "agent_id",
        {"list_sessions": lambda s, v: s.list_sessions(agent_id=v)},
        BAD_OPTIONAL_IDS,
    ),
    BadArgument(
        "run_id-filter", "run_id", {"get_events": lambda s, v: s.get_events("s1", run_id=v)}, BAD_OPTIONAL_IDS
    ),
    BadArgument(
        "status",
        "status",
        {
            "list_sessions": lambda s, v: s.list_sessions(status=v),
            "list_runs": lambda s, v: s.list_runs("s1", status=v),
        },
        BAD_CHOICES,
    ),
    BadArgument("type", "type", {"get_events": lambda s, v: s.get_events("s1", type=v)}, BAD_EVENT_TYPES),
    BadArgument(
        "limit",
        "limit",
        {
            "list_sessions": lambda s, v: s.list_sessions(limit=v),
            "list_runs": lambda s, v: s.list_runs("s1", limit=v),
            "get_events": lambda s, v: s.get_events("s1", limit=v),
        },
        BAD_LIMITS,
    ),
    BadArgument("offset", "offset", {"list_sessions": lambda s, v: s.list_sessions(offset=v)}, BAD_COUNTS),
    BadArgument("after", "after", {"get_events": lambda s, v: s.get_events("s1", after=v)}, BAD_COUNTS),
    BadArgument("before", "before", {"get_events": lambda s, v: s.get_events("s1", before=v)}, BAD_COUNTS),
    BadArgument(
        "wait_timeout_ms",
        "wait_timeout_ms",
        {"get_events": lambda s, v: s.get_events("s1", wait_timeout_ms=v)},
        BAD_COUNTS,
    ),
    BadArgument(
        "expected_sequence",
        "expected_sequence",
        {
            "append_event_with_sequence": lambda s, v: s.append_event_with_sequence(
                new_event(id="new-1"), expected_sequence=v
            )
        },
        BAD_COUNTS,
    ),
    BadArgument("since", "since", {"get_events": lambda s, v: s.get_events("s1", since=v)}, BAD_TIMES),
    BadArgument(
        "event",
        "event",
        {
            "append_event": lambda s, v: s.append_event(v),
            "append_event_with_sequence": lambda s, v: s.append_event_with_sequence(v),
        },
        {
            "None": None,
            "str": "e1",
            "dict": {"type": "message_sent", "session_id": "s1"},
            "session-record": Session(agent_id="a"),
        },
    ),
    BadArgument(
        "events",
        "events",
        {"append_events": lambda s, v: s.append_events(v)},
        {
            "None": None,
            "str": "events",
            "bytes": b"events",
            "int": 5,
            "one-event": new_event(id="single"),
            "dict": {"id": "x"},
        },
    ),
    BadArgument(
        "events-item",
        "events[1]",
        {"append_events": lambda s, v: s.append_events(v)},
        {
            "None": Fresh(lambda limit: [new_event(id="new-1"), None]),
            "from-a-generator": Fresh(_half_good_batch),
            "oversized": Fresh(
                lambda limit: [
                    new_event(id="new-1"),
                    new_event(id="big-1", data=OVERSIZED.make(limit)),
                    new_event(id="new-2"),
                ]
            ),
        },
    ),
    BadArgument(
        "payload-size",
        "max_event_bytes",
        {
            "append_event(data)": lambda s, v: s.append_event(new_event(id="big-1", data=v)),
            "append_event_with_sequence(metadata)": lambda s, v: s.append_event_with_sequence(
                new_event(id="big-1", metadata=v)
            ),
        },
        {"one-byte-over": OVERSIZED},
    ),
]


def _seed(store: SessionStore) -> None:
    store.save_session(Session(agent_id="agent", id="s1", created_at=T0, updated_at=T0, tags=["t"]))
    store.save_run(Run(session_id="s1", id="r1", status=RunStatus.RUNNING, started_at=T0))
    store.append_events(
        [new_event(id=f"e{n}", run_id="r1", timestamp=T0 + timedelta(seconds=n)) for n in (1, 2, 3)]
    )
    store.append_event(new_event("s2", id="e4", timestamp=T0))


def _export(store: SessionStore) -> dict[str, Any]:
    """Everything the public API shows about the seeded ids."""
    return {
        "sessions": [s.to_dict() for s in store.list_sessions()],
        "runs": {sid: [r.to_dict() for r in store.list_runs(sid)] for sid in KNOWN_SESSIONS},
        "events": {sid: [e.to_dict() for e in store.get_events(sid)] for sid in KNOWN_SESSIONS},
        "latest": {sid: store.get_latest_sequence(sid) for sid in KNOWN_SESSIONS},
    }


class BadInputContract(ContractBase):
    """Bad input: refused with a ``ValidationError`` naming the argument, nothing changed."""

    @pytest.mark.parametrize("argument", BAD_ARGUMENTS, ids=lambda argument: argument.label)
    def test_bad_argument_raises_naming_it_and_changes_nothing(
        self, store: SessionStore, tmp_path: Path, argument: BadArgument
    ) -> None:
        _seed(store)
        argument.refused_by(
            store, self.max_event_bytes, lambda: (_export(store), self.stored_state(store, tmp_path))
        )
