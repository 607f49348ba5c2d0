"""Concurrent histories are linearizable: several OS processes x threads append (fresh ids,
repeats of ids that may still be in flight, batches with repeats inside, expected_sequence)
and read (cursor, long-poll, latest) on one store, and a Wing-Gong-Lowe search finds an order
of their calls, inside their recorded intervals, that the sequential log model explains.
Faults planted in recorded histories show that the check does report what it should.
``python -m tools.linearizability`` runs long versions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.linearizability.check import CheckResult, check
from tools.linearizability.history import Kind, Operation, Status
from tools.linearizability.run import record
from tools.linearizability.workload import Workload

# 3 processes x 2 threads x 40 operations on 4 sessions: a few seconds per store.
SHORT = {"processes": 3, "threads": 2, "ops": 40, "sessions": 4, "seed": 11}


def _record(location: str, directory: Path) -> list[Operation]:
    return record(Workload(location, **SHORT), directory)


@pytest.fixture(scope="module")
def sqlite_history(tmp_path_factory: pytest.TempPathFactory) -> list[Operation]:
    directory = tmp_path_factory.mktemp("linearizability")
    return _record(str(directory / "store.db"), directory / "history")


def _violation_naming(result: CheckResult, planted: Operation) -> str:
    assert not result.ok
    [violation] = result.violations
    assert violation.session == planted.session
    assert planted.describe() in violation.report, violation.report
    return violation.report


def _assert_exercised(history: list[Operation]) -> None:
    """The workload did what the check is about: repeats, batches repeating ids, long-polls."""
    writes = [op for op in history if op.is_write]
    ids = [event_id for op in writes for event_id in op.ids]
    assert len(set(ids)) < len(ids)
    assert any(len(set(op.ids)) < len(op.ids) for op in writes if op.kind is Kind.APPEND_BATCH)
    assert any(op.kind is Kind.APPEND_EXPECTED for op in writes)
    assert any(op.kind is Kind.READ and op.wait_ms for op in history)
    assert {op.client for op in history} >= {f"p{p}t{t}" for p in range(3) for t in range(2)}


def test_concurrent_sqlite_history_is_linearizable(sqlite_history: list[Operation]) -> None:
    _assert_exercised(sqlite_history)
    result = check(sqlite_history)
    assert result.ok, result.summary()
    assert result.operations == len(sqlite_history)


def test_concurrent_postgres_history_is_linearizable(pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    separator = "&" if "?" in pg_dsn else "?"
    history = _record(f"{pg_dsn}{separator}schema={pg_schema}", tmp_path)
    _assert_exercised(history)
    result = check(history)
    assert result.ok, result.summary()


# Faults planted in a recorded history ------------------------------------------------------


def _first(history: list[Operation], wanted: Callable[[Operation], bool]) -> Operation:
    found = [op for op in history if wanted(op)]
    assert found, "the recorded history has no operation to plant this fault on"
    return found[0]


def _writers_of(history: list[Operation], event_id: str) -> list[Operation]:
    return [op for op in history if op.is_write and event_id in op.ids]


def test_read_missing_an_acknowledged_event_is_reported(sqlite_history: list[Operation]) -> None:
    # The full read after every worker finished, short of the last event: a prefix that an
    # earlier read could have returned, but not one made after the append was acknowledged.
    final = _first(
        sqlite_history,
        lambda op: (
            op.client == "final"
            and bool(op.events)
            and all(w.status is Status.OK for w in _writers_of(sqlite_history, op.events[-1][0]))
        ),
    )
    planted = dataclasses.replace(final, events=final.events[:-1])
    history = [planted if op is final else op for op in sqlite_history]
    missing = "{}@{}".format(*final.events[-1])
    assert f"the read stops at {len(planted.events)}: missing {missing}" in _violation_naming(
        check(history), planted
    )


def test_duplicate_answering_another_sequence_is_reported(sqlite_history: list[Operation]) -> None:
    # A repeat of an id, invoked after the id was acknowledged, answering another sequence.
    def acknowledged_before(op: Operation) -> bool:
        return any(
            w.status is Status.OK and w.complete_ns < op.invoke_ns
            for w in _writers_of(sqlite_history, op.ids[0])
        )

    repeat = _first(
        sqlite_history,
        lambda op: op.kind is Kind.APPEND and op.status is Status.OK and acknowledged_before(op),
    )
    planted = dataclasses.replace(repeat, seqs=(repeat.seqs[0] + 1,))
    history = [planted if op is repeat else op for op in sqlite_history]
    report = _violation_naming(check(history), planted)
    assert f"{repeat.ids[0]} is stored at {repeat.seqs[0]}" in report


def test_torn_batch_is_reported(sqlite_history: list[Operation]) -> None:
    # A read during a batch of new ids that sees the first of them and not the rest.
    def new_batch(op: Operation) -> bool:
        return (
            op.kind is Kind.APPEND_BATCH
            and op.status is Status.OK
            and len(_writers_of(sqlite_history, op.ids[0])) == 1  # so it is new in the batch
            and op.seqs[0] + 1 in op.seqs  # and so is another (an old id answers a lower one)
        )

    batch = _first(sqlite_history, new_batch)
    first = batch.seqs[0]
    planted = Operation(
        "planted",
        Kind.READ,
        batch.session,
        batch.invoke_ns,
        batch.complete_ns,
        after=first - 1,
        events=((batch.ids[0], first),),
    )
    report = _violation_naming(check([*sqlite_history, planted]), planted)
    second = next(event_id for event_id, seq in zip(batch.ids, batch.seqs) if seq == first + 1)
    assert f"the read stops at 1: missing {second}@{first + 1}" in report


def test_expected_sequence_conflict_for_an_id_stored_by_a_racing_append_is_reported() -> None:
    # The PostgreSQL race once seen: an expected_sequence append of an id that a plain append
    # stored meanwhile raised SequenceConflictError instead of returning the stored event.
    plain = Operation("a", Kind.APPEND, "s", 0, 10, ids=("x",), seqs=(1,))
    racing = Operation("b", Kind.APPEND_EXPECTED, "s", 1, 9, ids=("x",), expected=0)
    fixed = dataclasses.replace(racing, seqs=(1,))
    assert check([plain, fixed]).ok
    planted = dataclasses.replace(racing, status=Status.CONFLICT, value=1)
    _violation_naming(check([plain, planted]), planted)


# The checker on small hand-written histories ----------------------------------------------


def _op(client: str, kind: Kind, start: int, end: int, **fields: Any) -> Operation:
    return Operation(client, kind, "s", start, end, **fields)


def test_overlapping_operations_are_accepted_in_any_order_the_intervals_allow() -> None:
    history = [
        _op("a", Kind.APPEND, 0, 10, ids=("a",), seqs=(2,)),  # overlaps b, and lost the race
        _op("b", Kind.APPEND, 1, 5, ids=("b",), seqs=(1,)),
        _op("c", Kind.READ, 2, 12, events=(("b", 1),)),  # between b and a
        _op("d", Kind.APPEND, 3, 4, ids=("b",), seqs=(1,)),  # a repeat while b is in flight
        _op("e", Kind.APPEND, 3, 6, ids=("c",), status=Status.FAILED, error="busy"),
        _op("f", Kind.APPEND_BATCH, 6, 8, ids=("d", "b", "d"), seqs=(3, 1, 3)),
        _op("g", Kind.LATEST, 11, 12, value=3),
        _op("h", Kind.READ, 7, 13, after=3, wait_ms=50),  # a long-poll that found nothing
    ]
    final = _op("final", Kind.READ, 20, 21, events=(("b", 1), ("a", 2), ("d", 3)))
    assert check([*history, final]).ok
    # The failed append may also have happened, at any point after its invocation.
    applied = dataclasses.replace(final, events=(*final.events, ("c", 4)))
    assert check([*history, applied]).ok
    # ... but not before an operation that completed before it was invoked.
    earlier = dataclasses.replace(history[0], seqs=(3,))
    assert not check([*history[1:], earlier, final]).ok


def test_an_order_the_intervals_forbid_is_rejected_naming_the_operation() -> None:
    first = _op("a", Kind.APPEND, 0, 1, ids=("a",), seqs=(2,))
    second = _op("b", Kind.APPEND, 2, 3, ids=("b",), seqs=(1,))
    result = check([first, second])
    [violation] = result.violations
    assert violation.operation == first
    assert "a is new: it is stored at 1" in violation.report


def test_failed_batch_seen_in_part_is_a_torn_batch() -> None:
    batch = _op("a", Kind.APPEND_BATCH, 0, 5, ids=("a", "b"), status=Status.FAILED, error="busy")
    whole = _op("r", Kind.READ, 6, 7, events=(("a", 1), ("b", 2)))
    assert check([batch, whole]).ok
    assert check([batch, dataclasses.replace(whole, events=())]).ok
    torn = dataclasses.replace(whole, events=(("a", 1),))
    _violation_naming(check([batch, torn]), torn)


def test_unexpected_exception_is_a_violation() -> None:
    raised = _op("a", Kind.APPEND, 0, 1, ids=("a",), status=Status.RAISED, error="EventIdConflictError")
    assert not check([raised]).ok


def test_a_search_over_its_state_budget_is_inconclusive_not_a_pass() -> None:
    history = [_op(f"c{n}", Kind.APPEND, n, 100, ids=(f"e{n}",), seqs=(n + 1,)) for n in range(4)]
    assert check(history).ok
    result = check(history, max_states=2)
    assert not result.ok and not result.violations
    assert "gave up" in result.summary()
