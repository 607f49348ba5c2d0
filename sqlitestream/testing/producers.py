"""The :class:`~sqlitestream.producers.SessionProducers` contract as a pytest test class.

Subclass :class:`SessionProducersContract` and provide ``make_store(tmp_path)`` (a store that
is a ``SessionProducers``; close it in ``close_store``). One behaviour per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlitestream.bytestreams import Producer
from sqlitestream.errors import ProducerEpochError, ProducerSequenceGapError, ValidationError
from sqlitestream.models import Event
from sqlitestream.producers import SessionProducers

__all__ = ["SessionProducersContract"]


def _batch(session_id: str, *texts: str) -> list[Event]:
    return [Event("message_sent", session_id, data={"text": text}) for text in texts]


def _texts(store: SessionProducers, session_id: str) -> list[str]:
    return [event.data["text"] for event in store.get_events(session_id)]  # type: ignore[attr-defined]


class SessionProducersContract:
    def make_store(self, tmp_path: Path) -> SessionProducers:
        raise NotImplementedError

    def close_store(self) -> None:
        """Close what ``make_store`` opened."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SessionProducers]:
        store = self.make_store(tmp_path)
        try:
            yield store
        finally:
            self.close_store()

    def test_a_stamped_batch_is_stored_with_contiguous_sequences(self, store: SessionProducers) -> None:
        result = store.append_events_as(Producer("p", 0, 0), _batch("s1", "a", "b"))
        assert not result.duplicate and (result.epoch, result.seq) == (0, 0)
        assert [event.sequence_number for event in result.events] == [1, 2]

    def test_a_retried_stamp_is_a_duplicate_and_writes_nothing(self, store: SessionProducers) -> None:
        store.append_events_as(Producer("p", 0, 0), _batch("s1", "a"))
        store.append_events_as(Producer("p", 0, 1), _batch("s1", "b"))
        again = store.append_events_as(Producer("p", 0, 0), _batch("s1", "a"))
        assert again.duplicate and again.events == [] and again.seq == 1
        assert _texts(store, "s1") == ["a", "b"]

    def test_a_skipped_seq_is_a_gap_and_writes_nothing(self, store: SessionProducers) -> None:
        store.append_events_as(Producer("p", 0, 0), _batch("s1", "a"))
        with pytest.raises(ProducerSequenceGapError) as raised:
            store.append_events_as(Producer("p", 0, 2), _batch("s1", "c"))
        assert (raised.value.expected, raised.value.received) == (1, 2)
        assert _texts(store, "s1") == ["a"]

    def test_a_first_batch_must_start_at_seq_0(self, store: SessionProducers) -> None:
        with pytest.raises(ProducerSequenceGapError):
            store.append_events_as(Producer("p", 0, 1), _batch("s1", "a"))
        assert store.get_latest_sequence("s1") == 0  # type: ignore[attr-defined]

    def test_an_older_epoch_is_fenced(self, store: SessionProducers) -> None:
        store.append_events_as(Producer("p", 0, 0), _batch("s1", "a"))
        store.append_events_as(Producer("p", 1, 0), _batch("s1", "b"))
        with pytest.raises(ProducerEpochError) as raised:
            store.append_events_as(Producer("p", 0, 1), _batch("s1", "zombie"))
        assert raised.value.current_epoch == 1
        assert _texts(store, "s1") == ["a", "b"]

    def test_a_new_epoch_must_start_at_seq_0(self, store: SessionProducers) -> None:
        store.append_events_as(Producer("p", 0, 0), _batch("s1", "a"))
        with pytest.raises(ValidationError):
            store.append_events_as(Producer("p", 1, 3), _batch("s1", "b"))

    def test_producers_are_kept_per_session_and_per_id(self, store: SessionProducers) -> None:
        store.append_events_as(Producer("p", 5, 0), _batch("s1", "a"))
        store.append_events_as(Producer("p", 0, 0), _batch("s2", "a"))
        store.append_events_as(Producer("q", 0, 0), _batch("s1", "b"))
        assert _texts(store, "s1") == ["a", "b"] and _texts(store, "s2") == ["a"]

    def test_deleting_the_session_forgets_its_producers(self, store: SessionProducers) -> None:
        store.append_events_as(Producer("p", 3, 0), _batch("s1", "old"))
        store.delete_session("s1")  # type: ignore[attr-defined]
        result = store.append_events_as(Producer("p", 0, 0), _batch("s1", "new"))
        assert not result.duplicate and _texts(store, "s1") == ["new"]

    def test_a_batch_over_several_sessions_is_refused(self, store: SessionProducers) -> None:
        with pytest.raises(ValidationError):
            store.append_events_as(Producer("p", 0, 0), [*_batch("s1", "a"), *_batch("s2", "b")])
        with pytest.raises(ValidationError):
            store.append_events_as(Producer("p", 0, 0), [])
        assert store.get_latest_sequence("s1") == 0  # type: ignore[attr-defined]

    def test_an_invalid_event_writes_nothing_and_records_no_stamp(self, store: SessionProducers) -> None:
        with pytest.raises(ValidationError):
            store.append_events_as(Producer("p", 0, 0), [*_batch("s1", "a"), "not an event"])  # type: ignore[list-item]
        assert not store.append_events_as(Producer("p", 0, 0), _batch("s1", "a")).duplicate
