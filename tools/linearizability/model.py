"""The sequential specification: one session's log, and what each operation does to it.

The state is the tuple of event ids in sequence order (id ``state[n - 1]`` holds sequence
``n``). :func:`step` applies one operation as if it ran alone at one instant, and either returns
the state after it or :class:`Refused` saying why the recorded outcome is impossible from this
state. The rules are the ``SessionStore`` contract's, restricted to one session (the workload
never uses an id in two sessions, so a session's log depends on its own operations only):

* an append of a new id stores it at ``len + 1``; of an id already in the log, returns the
  original sequence and changes nothing;
* ``expected_sequence=N`` stores a new id only if ``len == N``, else raises
  ``SequenceConflictError(actual=len)``; an id already in the log returns its original sequence
  whatever ``N`` is;
* a batch stores its new ids contiguously in input order, an id already stored (or repeated
  inside the batch) answering with its original sequence; all of it at one instant;
* a read returns the events past ``after``, oldest first, up to ``limit``. A long-poll that
  came back empty is a read that found nothing past ``after`` at its linearization point, so it
  needs no rule of its own;
* ``get_latest_sequence`` returns ``len``.

An operation whose outcome is unknown (a write that raised a storage error) is applied as if it
succeeded, with whatever result the state gives; the checker may also leave it out, which is the
write never having happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from .history import Kind, Operation, Status

State = tuple[str, ...]

INITIAL: State = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """The recorded outcome cannot come from this state; ``reason`` says what the model expected."""

    reason: str


def step(state: State, op: Operation) -> State | Refused:
    """The state after ``op`` ran alone on ``state``, or why its outcome rules that out."""
    if op.status is Status.RAISED:
        return Refused(f"the model never raises ({op.error})")
    if op.status is Status.FAILED and not op.is_write:
        return state  # a read that failed saw nothing and changed nothing
    if op.kind is Kind.READ:
        return _read(state, op)
    if op.kind is Kind.LATEST:
        if op.value != len(state):
            return Refused(f"latest sequence is {len(state)}")
        return state
    if op.kind is Kind.APPEND_BATCH:
        return _batch(state, op)
    return _append(state, op)


def _append(state: State, op: Operation) -> State | Refused:
    event_id = op.ids[0]
    unknown = op.status is Status.FAILED
    if event_id in state:
        original = state.index(event_id) + 1
        if op.status is Status.CONFLICT:
            return Refused(f"{event_id} is stored at {original}: a repeat returns it, never conflicts")
        if not unknown and op.seqs[0] != original:
            return Refused(f"{event_id} is stored at {original}: a repeat returns that sequence")
        return state
    if op.kind is Kind.APPEND_EXPECTED and op.expected != len(state):
        if op.status is Status.CONFLICT and op.value == len(state):
            return state
        if unknown:
            return state  # refused with a conflict the client did not see
        return Refused(f"latest sequence is {len(state)}: expected_sequence={op.expected} conflicts")
    if op.status is Status.CONFLICT:
        return Refused(f"latest sequence is {len(state)}, as expected: the append stores {event_id}")
    if not unknown and op.seqs[0] != len(state) + 1:
        return Refused(f"{event_id} is new: it is stored at {len(state) + 1}")
    return (*state, event_id)


def _batch(state: State, op: Operation) -> State | Refused:
    if op.status is Status.CONFLICT:
        return Refused("a batch never raises SequenceConflictError")
    log = list(state)
    positions = {event_id: index + 1 for index, event_id in enumerate(state)}
    answers = []
    for event_id in op.ids:
        if event_id not in positions:
            log.append(event_id)
            positions[event_id] = len(log)
        answers.append(positions[event_id])
    if op.status is Status.OK and tuple(answers) != op.seqs:
        return Refused(f"the batch applied here answers {answers}")
    return tuple(log)


def _read(state: State, op: Operation) -> State | Refused:
    end = len(state) if op.limit is None else min(len(state), op.after + op.limit)
    expected = tuple((state[index], index + 1) for index in range(op.after, end))
    if op.events == expected:
        return state
    for (want_id, want_seq), (got_id, got_seq) in zip(expected, op.events):
        if (want_id, want_seq) != (got_id, got_seq):
            return Refused(f"the log holds {want_id}@{want_seq} where the read has {got_id}@{got_seq}")
    if len(expected) > len(op.events):
        missing = expected[len(op.events)]
        return Refused(
            f"the log past {op.after} holds {len(expected)} events (limit {op.limit}), "
            f"the read stops at {len(op.events)}: missing {missing[0]}@{missing[1]}"
        )
    extra = op.events[len(expected)]
    return Refused(
        f"the log past {op.after} holds {len(expected)} events (limit {op.limit}), "
        f"the read has more: {extra[0]}@{extra[1]}"
    )
