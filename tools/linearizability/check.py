"""A linearizability checker: the Wing-Gong search with Lowe's memoisation, per session.

A history is linearizable if each operation can be given one instant inside its interval
(``invoke_ns`` .. ``complete_ns``) such that running the operations one at a time in that order
through the sequential model (:mod:`.model`) gives exactly the recorded outcomes. Sessions are
independent logs (the workload keeps every id and every batch in one session), so the history
splits into one search per session (P-compositionality, as Porcupine and Knossos use it).

The search (Wing and Gong; Lowe's variant) extends a linearization one operation at a time: the
next operation may be any not yet placed whose invocation precedes every unplaced operation's
completion. A (placed set, model state) pair already explored is not explored again, which is
what keeps the search polynomial on histories with bounded concurrency. A write whose outcome is
unknown (:attr:`Status.FAILED`) has no completion: it may be placed anywhere after its
invocation, or never (the write did not happen). A failed read is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .history import Operation, Status
from .model import INITIAL, Refused, State, step

NEVER = 1 << 62
"""The completion time given to an operation whose outcome is unknown."""

DEFAULT_MAX_STATES = 2_000_000


@dataclass(frozen=True, slots=True)
class Violation:
    """A session whose history no order explains.

    ``operation`` is the first operation the deepest partial linearization could not place,
    ``reason`` what the model expected instead, ``report`` the full context: the log at that
    point, each operation that could have come next and why it could not, and the operations
    overlapping the named one.
    """

    session: str
    operation: Operation
    reason: str
    report: str


@dataclass(frozen=True, slots=True)
class SessionResult:
    session: str
    operations: int
    states: int
    violation: Violation | None = None
    inconclusive: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on a whole history, one :class:`SessionResult` per session."""

    sessions: tuple[SessionResult, ...]

    @property
    def ok(self) -> bool:
        return all(s.violation is None and not s.inconclusive for s in self.sessions)

    @property
    def violations(self) -> list[Violation]:
        return [s.violation for s in self.sessions if s.violation is not None]

    @property
    def operations(self) -> int:
        return sum(s.operations for s in self.sessions)

    @property
    def states(self) -> int:
        return sum(s.states for s in self.sessions)

    def summary(self) -> str:
        verdict = "linearizable" if self.ok else "NOT linearizable"
        inconclusive = [s.session for s in self.sessions if s.inconclusive]
        lines = [
            f"{self.operations} operations in {len(self.sessions)} sessions, "
            + f"{self.states} search states: {verdict}"
        ]
        if inconclusive:
            lines.append(f"search gave up (state budget) on: {', '.join(inconclusive)}")
        lines.extend(v.report for v in self.violations)
        return "\n".join(lines)


def check(history: Iterable[Operation], *, max_states: int = DEFAULT_MAX_STATES) -> CheckResult:
    """Check every session of ``history`` (in any order) against the sequential model."""
    by_session: dict[str, list[Operation]] = {}
    for op in history:
        by_session.setdefault(op.session, []).append(op)
    return CheckResult(
        tuple(check_session(s, ops, max_states=max_states) for s, ops in sorted(by_session.items()))
    )


def check_session(
    session: str, operations: Sequence[Operation], *, max_states: int = DEFAULT_MAX_STATES
) -> SessionResult:
    """Search for a linearization of one session's operations."""
    ops = sorted(
        (op for op in operations if op.is_write or op.status is not Status.FAILED),
        key=lambda op: (op.invoke_ns, op.complete_ns),
    )
    search = _Search(ops)
    found = search.run(max_states)
    if found is None:
        return SessionResult(session, len(ops), len(search.seen), inconclusive=True)
    if found:
        return SessionResult(session, len(ops), len(search.seen))
    return SessionResult(session, len(ops), len(search.seen), violation=search.explain(session))


class _Search:
    def __init__(self, ops: list[Operation]) -> None:
        self.ops = ops
        self.invoke = [op.invoke_ns for op in ops]
        self.complete = [NEVER if op.status is Status.FAILED else op.complete_ns for op in ops]
        self.required = sum(1 << i for i, op in enumerate(ops) if op.status is not Status.FAILED)
        self.seen: set[tuple[int, State]] = set()
        self.deepest: tuple[int, int, State] = (-1, 0, INITIAL)  # (placed required, mask, state)

    def candidates(self, mask: int) -> list[int]:
        """Unplaced operations that may come next: invoked before every unplaced one completes."""
        first = (~mask & (mask + 1)).bit_length() - 1
        earliest_end = NEVER + 1
        found = []
        for i in range(first, len(self.ops)):
            if mask >> i & 1:
                continue
            if self.invoke[i] >= earliest_end:
                break  # invoked later still: it completes later, too
            found.append(i)
            earliest_end = min(earliest_end, self.complete[i])
        return [i for i in found if self.invoke[i] < earliest_end]

    def run(self, max_states: int) -> bool | None:
        """True if a linearization exists, False if none does, None if the budget ran out."""
        if self.required == 0:
            return True
        stack = [(0, INITIAL, iter(self.candidates(0)))]
        self._note(0, INITIAL)
        while stack:
            mask, state, pending = stack[-1]
            for i in pending:
                after = step(state, self.ops[i])
                if isinstance(after, Refused):
                    continue
                placed = mask | 1 << i
                if placed & self.required == self.required:
                    return True
                key = (placed, after)
                if key in self.seen:
                    continue
                if len(self.seen) >= max_states:
                    return None
                self.seen.add(key)
                self._note(placed, after)
                stack.append((placed, after, iter(self.candidates(placed))))
                break
            else:
                stack.pop()
        return False

    def _note(self, mask: int, state: State) -> None:
        depth = (mask & self.required).bit_count()
        if depth > self.deepest[0]:
            self.deepest = (depth, mask, state)

    def explain(self, session: str) -> Violation:
        depth, mask, state = self.deepest
        refusals = []
        for i in self.candidates(mask):
            after = step(state, self.ops[i])
            if isinstance(after, Refused) and self.required >> i & 1:
                refusals.append((self.complete[i], i, after.reason))
        # The operation named is the refused one that had to come first (earliest completion).
        refusals.sort()
        _, culprit, reason = refusals[0] if refusals else (0, self._first_unplaced(mask), "")
        op = self.ops[culprit]
        origin = self.invoke[0]
        lines = [
            f"session {session}: no linearization places {op.describe()}",
            f"  interval {_ms(op.invoke_ns - origin)} .. {_ms(op.complete_ns - origin)} ms; "
            + f"expected: {reason or 'every order was refused further on'}",
            f"  after the longest explained prefix ({depth} of {self.required.bit_count()} "
            + f"operations) the log holds {len(state)} events: {_tail(state)}",
            "  could come next there, and were refused:",
        ]
        for _, i, why in refusals:
            lines.append(f"    {self.ops[i].describe()}: {why}")
        overlapping = [
            other
            for other in self.ops
            if other is not op and other.invoke_ns < op.complete_ns and op.invoke_ns < other.complete_ns
        ]
        lines.append("  overlapping it:" + ("" if overlapping else " nothing"))
        for other in overlapping:
            end = "?" if other.status is Status.FAILED else _ms(other.complete_ns - origin)
            lines.append(f"    [{_ms(other.invoke_ns - origin)} .. {end}] {other.describe()}")
        return Violation(session, op, reason, "\n".join(lines))

    def _first_unplaced(self, mask: int) -> int:
        unplaced = self.required & ~mask
        return (unplaced & -unplaced).bit_length() - 1


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / 1e6:.3f}"


def _tail(state: State, shown: int = 8) -> str:
    start = max(0, len(state) - shown)
    items = [f"{event_id}@{index + 1}" for index, event_id in enumerate(state[start:], start)]
    return ("... " if start else "") + "[" + ", ".join(items) + "]"
