"""The :class:`~sqlitestream.bytestreams.ByteStreams` contract as a pytest test class.

Subclass :class:`ByteStreamsContract` and provide ``make_streams(tmp_path)`` (a store's
``byte_streams()``; close the store in ``close_streams``). One behaviour per test; the HTTP
conformance suite (``tools/conformance.py``) checks the protocol's wire rules on top.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sqlitestream.bytestreams import ByteStreams, Producer, StreamFork, format_offset
from sqlitestream.errors import (
    ProducerEpochError,
    ProducerSequenceGapError,
    StreamClosedError,
    StreamConflictError,
    StreamDeletedError,
    StreamNotFoundError,
    ValidationError,
)

__all__ = ["ByteStreamsContract"]

TEXT = "text/plain"
JSON = "application/json"


class ByteStreamsContract:
    def make_streams(self, tmp_path: Path) -> ByteStreams:
        raise NotImplementedError

    def close_streams(self) -> None:
        """Close what ``make_streams`` opened."""

    @pytest.fixture
    def streams(self, tmp_path: Path) -> Iterator[ByteStreams]:
        streams = self.make_streams(tmp_path)
        try:
            yield streams
        finally:
            self.close_streams()

    # Creating ------------------------------------------------------------------------------

    def test_create_then_create_again_with_the_same_settings_is_idempotent(
        self, streams: ByteStreams
    ) -> None:
        assert streams.create_stream("a", content_type=TEXT, ttl_seconds=60).created
        again = streams.create_stream("a", content_type=TEXT, ttl_seconds=60)
        assert not again.created and again.state.ttl_seconds == 60

    def test_create_with_other_settings_is_a_conflict(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        with pytest.raises(StreamConflictError):
            streams.create_stream("a", content_type=JSON)
        with pytest.raises(StreamConflictError):
            streams.create_stream("a", content_type=TEXT, closed=True)

    def test_ttl_and_expiry_together_are_refused(self, streams: ByteStreams) -> None:
        with pytest.raises(ValidationError):
            streams.create_stream("a", ttl_seconds=5, expires_at=datetime.now(UTC) + timedelta(hours=1))
        with pytest.raises(StreamNotFoundError):
            streams.stream_state("a")

    def test_a_stream_past_its_expiry_reads_as_absent_and_its_name_is_free(
        self, streams: ByteStreams
    ) -> None:
        streams.create_stream("a", content_type=TEXT, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        with pytest.raises(StreamNotFoundError):
            streams.read_stream("a")
        assert streams.create_stream("a", content_type=JSON).created

    def test_names_that_act_like_paths_are_refused(self, streams: ByteStreams) -> None:
        for name in ("", "a/../b", "a//b", "./a", "a\x00b", "a\nb"):
            with pytest.raises(ValidationError):
                streams.create_stream(name)

    def test_nul_in_a_content_type_stream_seq_or_producer_id_is_refused(self, streams: ByteStreams) -> None:
        with pytest.raises(ValidationError):
            streams.create_stream("a", content_type="text/plain\x00")
        streams.create_stream("a", content_type=TEXT)
        with pytest.raises(ValidationError):
            streams.append("a", b"x", content_type=TEXT, stream_seq="1\x00")
        with pytest.raises(ValidationError):
            Producer("p\x00", 0, 0)
        assert streams.read_stream("a").body() == b""

    # Appending and reading ------------------------------------------------------------------

    def test_bytes_of_appends_are_concatenated_and_offsets_grow(self, streams: ByteStreams) -> None:
        first = streams.create_stream("a", content_type=TEXT, data=b"ab").state.next_offset
        second = streams.append("a", b"cde", content_type=TEXT).state.next_offset
        assert (first, second) == (format_offset(1, 2), format_offset(2, 5))
        assert streams.read_stream("a").body() == b"abcde"
        assert streams.read_stream("a", offset=first).body() == b"cde"

    def test_json_appends_flatten_one_level_of_arrays(self, streams: ByteStreams) -> None:
        streams.create_stream("j", content_type=JSON, data=b"[]")
        streams.append("j", b'[{"a":1},[2,3]]', content_type=JSON)
        streams.append("j", b'"x"', content_type=JSON)
        assert json.loads(streams.read_stream("j").body()) == [{"a": 1}, [2, 3], "x"]

    def test_invalid_or_empty_json_appends_are_refused_and_nothing_is_written(
        self, streams: ByteStreams
    ) -> None:
        tail = streams.create_stream("j", content_type=JSON).state.next_offset
        for body in (b"[]", b"{nope", b"NaN"):
            with pytest.raises(ValidationError):
                streams.append("j", body, content_type=JSON)
        assert streams.stream_state("j").next_offset == tail

    def test_an_append_with_another_content_type_is_a_conflict(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        with pytest.raises(StreamConflictError):
            streams.append("a", b"{}", content_type=JSON)
        streams.append("a", b"ok", content_type="TEXT/PLAIN; charset=utf-8")

    def test_offset_now_reads_nothing_from_the_tail(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT, data=b"old")
        read = streams.read_stream("a", offset="now")
        assert (read.chunks, read.up_to_date, read.next_offset) == ((), True, format_offset(1, 3))

    def test_a_read_is_cut_to_max_bytes_and_says_it_is_not_up_to_date(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT, data=b"12345")
        streams.append("a", b"67890", content_type=TEXT)
        first = streams.read_stream("a", max_bytes=5)
        assert (first.body(), first.up_to_date) == (b"12345", False)
        rest = streams.read_stream("a", offset=first.next_offset, max_bytes=5)
        assert (rest.body(), rest.up_to_date) == (b"67890", True)

    def test_stream_seq_must_increase(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        streams.append("a", b"1", content_type=TEXT, stream_seq="b")
        with pytest.raises(StreamConflictError):
            streams.append("a", b"2", content_type=TEXT, stream_seq="a")
        streams.append("a", b"3", content_type=TEXT, stream_seq="c")
        assert streams.read_stream("a").body() == b"13"

    # Closing -------------------------------------------------------------------------------

    def test_closing_with_a_final_append_is_atomic_and_then_refuses_appends(
        self, streams: ByteStreams
    ) -> None:
        streams.create_stream("a", content_type=TEXT, data=b"x")
        closed = streams.append("a", b"end", content_type=TEXT, close=True)
        assert closed.state.closed
        with pytest.raises(StreamClosedError) as refused:
            streams.append("a", b"more", content_type=TEXT)
        assert refused.value.next_offset == closed.state.next_offset
        read = streams.read_stream("a")
        assert (read.body(), read.closed) == (b"xend", True)
        assert streams.append("a", b"", close=True).state.closed  # closing again: idempotent

    def test_a_producer_retrying_its_closing_append_is_a_duplicate(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        stamp = Producer("p", 0, 0)
        assert not streams.append("a", b"end", content_type=TEXT, close=True, producer=stamp).duplicate
        assert streams.append("a", b"end", content_type=TEXT, close=True, producer=stamp).duplicate
        with pytest.raises(StreamClosedError):
            streams.append("a", b"end", content_type=TEXT, close=True, producer=Producer("p", 0, 1))
        assert streams.read_stream("a").body() == b"end"

    # Producers -----------------------------------------------------------------------------

    def test_a_retried_producer_append_is_stored_once(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        assert not streams.append("a", b"x", content_type=TEXT, producer=Producer("p", 0, 0)).duplicate
        assert streams.append("a", b"x", content_type=TEXT, producer=Producer("p", 0, 0)).duplicate
        assert streams.read_stream("a").body() == b"x"

    def test_a_producer_gap_and_an_old_epoch_are_refused(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        streams.append("a", b"x", content_type=TEXT, producer=Producer("p", 1, 0))
        with pytest.raises(ProducerSequenceGapError) as gap:
            streams.append("a", b"y", content_type=TEXT, producer=Producer("p", 1, 5))
        assert (gap.value.expected, gap.value.received) == (1, 5)
        with pytest.raises(ProducerEpochError) as fenced:
            streams.append("a", b"z", content_type=TEXT, producer=Producer("p", 0, 1))
        assert fenced.value.current_epoch == 1
        with pytest.raises(ValidationError):
            streams.append("a", b"w", content_type=TEXT, producer=Producer("p", 2, 3))
        assert streams.read_stream("a").body() == b"x"

    # Forks ---------------------------------------------------------------------------------

    def test_a_fork_inherits_up_to_its_offset_and_sub_offset_then_lives_alone(
        self, streams: ByteStreams
    ) -> None:
        at = streams.create_stream("src", content_type=TEXT, data=b"first").state.next_offset
        streams.append("src", b"second", content_type=TEXT)
        streams.create_stream("fork", fork=StreamFork("src", at, 3))
        streams.append("fork", b"!", content_type=TEXT)
        streams.append("src", b"third", content_type=TEXT)
        assert streams.read_stream("fork").body() == b"firstsec!"
        assert streams.read_stream("src").body() == b"firstsecondthird"

    def test_a_fork_offset_past_the_tail_is_refused(self, streams: ByteStreams) -> None:
        streams.create_stream("src", content_type=TEXT, data=b"x")
        with pytest.raises(ValidationError):
            streams.create_stream("fork", fork=StreamFork("src", format_offset(9, 9)))
        with pytest.raises(StreamNotFoundError):
            streams.create_stream("fork2", fork=StreamFork("missing"))

    def test_deleting_a_forked_source_keeps_its_name_until_its_last_fork_goes(
        self, streams: ByteStreams
    ) -> None:
        streams.create_stream("src", content_type=TEXT, data=b"x")
        streams.create_stream("fork", fork=StreamFork("src"))
        streams.delete_stream("src")
        with pytest.raises(StreamDeletedError):
            streams.read_stream("src")
        with pytest.raises(StreamConflictError):
            streams.create_stream("src", content_type=TEXT)
        assert streams.read_stream("fork").body() == b"x"
        streams.delete_stream("fork")
        with pytest.raises(StreamNotFoundError):
            streams.stream_state("src")

    # Watching ------------------------------------------------------------------------------

    def test_a_watcher_is_woken_by_an_append(self, streams: ByteStreams) -> None:
        streams.create_stream("a", content_type=TEXT)
        woken = threading.Event()
        with streams.watch_stream("a", woken):
            streams.append("a", b"x", content_type=TEXT)
            assert woken.wait(10)
