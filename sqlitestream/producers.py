"""Idempotent producers on sessions: the capability :class:`SessionProducers`, and the one rule
(:func:`producer_verdict`) that byte streams and sessions both apply.

A producer stamps each batch it sends with its id, an epoch (raised each time it restarts) and a
sequence number (0, 1, 2, ... within an epoch). The store keeps the last accepted ``(epoch,
seq)`` per session and producer id, committed in the same transaction as the batch it stamps, so
a retried batch is stored once, a batch sent after a lost one is refused, and a producer that was
replaced (a "zombie" with an older epoch) cannot write any more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sqlitestream.bytestreams import Producer
from sqlitestream.errors import ProducerEpochError, ProducerSequenceGapError, ValidationError
from sqlitestream.models import Event, StoredEvent

__all__ = ["ProducerAppend", "SessionProducers", "producer_session", "producer_verdict"]


def producer_verdict(stored: tuple[int, int] | None, producer: Producer) -> int | None:
    """Check ``producer``'s stamp against the ``(epoch, seq)`` last stored for its id
    (``None``: none yet). Returns ``None`` when the batch is to be stored, or the last stored
    seq when it is a duplicate (already stored: store nothing, answer as for the original).

    Raises:
        ProducerEpochError: the epoch is older than the stored one.
        ProducerSequenceGapError: the seq skips ahead of the next one due.
        ValidationError: a new epoch that does not start at seq 0.
    """
    if stored is None:
        if producer.seq != 0:
            raise ProducerSequenceGapError(producer.id, 0, producer.seq)
        return None
    epoch, last = stored
    if producer.epoch < epoch:
        raise ProducerEpochError(producer.id, producer.epoch, epoch)
    if producer.epoch > epoch:
        if producer.seq != 0:
            raise ValidationError(f"a new producer epoch must start at seq 0, got {producer.seq}")
        return None
    if producer.seq <= last:
        return last
    if producer.seq != last + 1:
        raise ProducerSequenceGapError(producer.id, last + 1, producer.seq)
    return None


def producer_session(events: Sequence[Event]) -> str:
    """The one session a producer's batch (already checked as events) appends to."""
    if not events:
        raise ValidationError("a producer's batch needs at least one event")
    sessions = {event.session_id for event in events}
    if len(sessions) != 1:
        raise ValidationError("a producer's batch appends to one session, got several")
    return events[0].session_id


@dataclass(frozen=True)
class ProducerAppend:
    """What :meth:`SessionProducers.append_events_as` did: the ``events`` stored (or, for
    events whose id was already stored, the stored ones), in order; ``duplicate`` when the
    whole batch had been accepted before (``events`` is then empty: nothing was written);
    ``epoch`` and ``seq``: the producer's stamp now on record for the session."""

    events: list[StoredEvent]
    duplicate: bool
    epoch: int
    seq: int


class SessionProducers(ABC):
    """A store whose sessions take batches from idempotent producers (the SQLite and the
    in-memory store; the HTTP server uses it for ``Producer-*`` headers on session POSTs)."""

    @abstractmethod
    def append_events_as(self, producer: Producer, events: Sequence[Event]) -> ProducerAppend:
        """Append ``events`` (one session, at least one event) as :meth:`append_events` does
        (one batch, contiguous sequences, all or nothing), stamped by ``producer``.

        The stamp is checked with :func:`producer_verdict` against the one last accepted from
        ``producer.id`` on this session, and the new stamp is recorded in the same transaction
        as the events: a duplicate stamp writes nothing and returns ``duplicate=True``; an
        older epoch raises :class:`~sqlitestream.errors.ProducerEpochError`, a skipped seq
        :class:`~sqlitestream.errors.ProducerSequenceGapError`, and nothing is written. The
        producers' stamps go with the session: :meth:`delete_session` forgets them.
        """
