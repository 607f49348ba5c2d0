"""Planning a batch append, shared by every store: which events are new, which repeat an
already stored id (returned as the original), and which sequence each new event gets.

A store looks up the stored originals of the batch's ids however suits it, then calls
:func:`plan_batch` inside its write transaction, bumps each session's counter by
``plan.counts[session]`` and calls :meth:`BatchPlan.numbered` with the counters' new values
and the feed position before the batch (its new events take the next ``len(plan.new)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlitestream.errors import EventIdConflictError
from sqlitestream.models import Event, StoredEvent, with_sequence


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What a batch writes: ``new`` holds the first occurrence of each id not yet stored, in
    batch order; ``counts`` the number of new events per session, sessions in sorted order (so
    that stores locking counters lock them in one order and cannot deadlock)."""

    batch: Sequence[Event]
    stored: Mapping[str, StoredEvent]
    new: tuple[Event, ...]
    counts: Mapping[str, int]

    def numbered(self, latest: Mapping[str, int], last_position: int) -> list[StoredEvent]:
        """The new events with their sequences and positions, given each session's latest
        sequence after its counter was raised by ``counts[session]`` and the feed's last
        position before the batch (the new events take the next ones, in batch order)."""
        next_seq = {session: latest[session] - count + 1 for session, count in self.counts.items()}
        numbered = []
        for position, event in enumerate(self.new, last_position + 1):
            seq = next_seq[event.session_id]
            next_seq[event.session_id] = seq + 1
            numbered.append(with_sequence(event, seq, position))
        return numbered

    def results(self, numbered: Sequence[StoredEvent]) -> list[StoredEvent]:
        """One stored event per batch entry: the original for a stored or repeated id."""
        by_id = {**self.stored, **{event.id: event for event in numbered}}
        return [by_id[event.id] for event in self.batch]


def plan_batch(batch: Sequence[Event], stored: Mapping[str, StoredEvent]) -> BatchPlan:
    """Plan ``batch`` against ``stored`` (the originals of those of its ids already stored).

    Raises ``EventIdConflictError`` if an id is stored, or repeated inside the batch, under
    another session: the whole batch is then refused.
    """
    first: dict[str, Event] = {}
    counts: dict[str, int] = {}
    for event in batch:
        original = stored.get(event.id) or first.get(event.id)
        if original is not None:
            if original.session_id != event.session_id:
                raise EventIdConflictError(event.id, event.session_id, original.session_id)
            continue
        first[event.id] = event
        counts[event.session_id] = counts.get(event.session_id, 0) + 1
    return BatchPlan(batch, stored, tuple(first.values()), dict(sorted(counts.items())))
