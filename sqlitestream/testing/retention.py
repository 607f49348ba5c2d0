"""The contract for retention (:class:`~sqlitestream.retention.RetentionStore`): trims, the
"gap-free from ``first_sequence``" rule, and what a trim does to ids, positions, the feed, the
integrity check and export/import.

A store that is not a ``RetentionStore`` skips these tests.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sqlitestream.admin import AdminStore, StreamInfo
from sqlitestream.aio import AsyncStore
from sqlitestream.errors import ValidationError
from sqlitestream.feed import FeedStore
from sqlitestream.memory import InMemorySessionStore
from sqlitestream.retention import RetentionStore
from sqlitestream.store import SessionStore
from sqlitestream.testing._base import T0, Background, ContractBase, new_event, seqs


def retention_of(store: SessionStore) -> RetentionStore:
    if not isinstance(store, RetentionStore):
        pytest.skip("this store is not a RetentionStore")
    return store


def filled(store: SessionStore, count: int, session_id: str = "s1") -> RetentionStore:
    retention = retention_of(store)
    retention.append_events(
        [new_event(session_id, id=f"{session_id}-{n}", data={"n": n}) for n in range(1, count + 1)]
    )
    return retention


BAD_TRIMS: list[tuple[dict[str, Any], str]] = [
    ({}, "before_sequence, keep_last or older_than"),
    ({"keep_last": -1}, "keep_last"),
    ({"keep_last": True}, "keep_last"),
    ({"before_sequence": 0}, "before_sequence"),
    ({"before_sequence": "3"}, "before_sequence"),
    ({"older_than": 30}, "older_than"),
    ({"older_than": timedelta(days=-1)}, "older_than"),
    ({"older_than": T0.replace(tzinfo=None)}, "older_than"),
    ({"keep_last": 1, "dry_run": "yes"}, "dry_run"),
]


class RetentionContract(ContractBase):
    """Trimming the oldest events of a session: one behaviour per test."""

    def test_keep_last_removes_the_oldest_and_reports_how_many(self, store: SessionStore) -> None:
        retention = filled(store, 10)
        assert retention.trim_session("s1", keep_last=3) == 7
        assert seqs(retention.get_events("s1")) == [8, 9, 10]
        info = retention.get_stream_info("s1")
        assert (info.first_sequence, info.latest_sequence, info.event_count) == (8, 10, 3)
        assert retention.get_latest_sequence("s1") == 10

    def test_before_sequence_removes_every_event_below_it(self, store: SessionStore) -> None:
        retention = filled(store, 5)
        assert retention.trim_session("s1", before_sequence=3) == 2
        assert seqs(retention.get_events("s1")) == [3, 4, 5]
        assert retention.trim_session("s1", before_sequence=3) == 0  # nothing left below 3
        assert retention.trim_session("s1", before_sequence=100) == 3  # never past the latest
        assert retention.get_stream_info("s1").first_sequence == 6

    def test_a_dry_run_counts_and_writes_nothing(self, store: SessionStore) -> None:
        retention = filled(store, 6)
        assert retention.trim_session("s1", keep_last=2, dry_run=True) == 4
        assert retention.trim_store(keep_last=2, dry_run=True) == 4
        assert seqs(retention.get_events("s1")) == [1, 2, 3, 4, 5, 6]

    def test_older_than_removes_the_prefix_before_the_first_recent_event(self, store: SessionStore) -> None:
        retention = retention_of(store)
        ages = [40, 30, 5, 20, 1]  # days before T0 + 100 days: the third is recent, the fourth not
        now = T0 + timedelta(days=100)
        retention.append_events([new_event("s1", timestamp=now - timedelta(days=age)) for age in ages])
        assert retention.trim_session("s1", older_than=now - timedelta(days=10)) == 2
        assert seqs(retention.get_events("s1")) == [3, 4, 5]

    def test_older_than_takes_an_age_counted_back_from_now(self, store: SessionStore) -> None:
        retention = retention_of(store)
        retention.append_event(new_event("s1", timestamp=T0))
        retention.append_event(new_event("s1"))  # now
        assert retention.trim_session("s1", older_than=timedelta(days=1)) == 1
        assert seqs(retention.get_events("s1")) == [2]

    def test_several_criteria_remove_the_longest_prefix(self, store: SessionStore) -> None:
        retention = filled(store, 10)
        assert retention.trim_session("s1", before_sequence=3, keep_last=5) == 5
        assert retention.get_stream_info("s1").first_sequence == 6

    def test_a_cursor_below_the_first_retained_event_reads_from_it(self, store: SessionStore) -> None:
        retention = filled(store, 6)
        retention.trim_session("s1", keep_last=2)
        page = retention.get_events("s1", after=1, limit=10)
        assert seqs(page) == [5, 6]
        assert (page[0].sequence_number or 0) > 1 + 1  # the reader can tell events were trimmed
        assert retention.get_events("s1", before=5) == []
        assert seqs(retention.get_events("s1", after=5)) == [6]

    def test_appends_continue_from_the_latest_after_trimming_everything(self, store: SessionStore) -> None:
        retention = filled(store, 3)
        assert retention.trim_session("s1", keep_last=0) == 3
        info = retention.get_stream_info("s1")
        assert (info.first_sequence, info.latest_sequence, info.event_count, info.bytes) == (4, 3, 0, 0)
        assert info.last_event_at is None
        assert retention.append_event(new_event("s1")).sequence_number == 4
        assert retention.append_event_with_sequence(new_event("s1"), expected_sequence=4).sequence_number == 5

    def test_a_trimmed_id_is_forgotten_and_a_retained_one_is_not(self, store: SessionStore) -> None:
        retention = filled(store, 3)
        retention.trim_session("s1", keep_last=1)
        again = retention.append_event(new_event("s1", id="s1-1", data={"n": "again"}))
        assert again.sequence_number == 4 and again.data == {"n": "again"}
        original = retention.append_event(new_event("s1", id="s1-3", data={"n": "changed"}))
        assert original.sequence_number == 3 and original.data == {"n": 3}

    def test_positions_are_never_reused_after_a_trim(self, store: SessionStore) -> None:
        retention = filled(store, 3)
        if not isinstance(retention, FeedStore):
            pytest.skip("this store has no feed")
        last = retention.get_last_position()
        retention.trim_session("s1", keep_last=0)
        assert retention.get_last_position() == last
        assert retention.read_feed() == []
        assert retention.append_event(new_event("s2")).position > last

    def test_trimmed_events_leave_the_feed(self, store: SessionStore) -> None:
        retention = filled(store, 4)
        if not isinstance(retention, FeedStore):
            pytest.skip("this store has no feed")
        retention.append_event(new_event("s2", id="other"))
        retention.trim_session("s1", keep_last=1)
        assert [event.id for event in retention.read_feed()] == ["s1-4", "other"]

    def test_an_unknown_session_has_an_empty_log(self, store: SessionStore) -> None:
        retention = retention_of(store)
        assert retention.trim_session("nobody", keep_last=0) == 0
        info = retention.get_stream_info("nobody")
        assert (info.first_sequence, info.latest_sequence, info.event_count, info.bytes) == (1, 0, 0, 0)

    def test_stream_info_counts_the_retained_bytes(self, store: SessionStore) -> None:
        retention = retention_of(store)
        retention.append_event(new_event("s1", data={"k": "é"}, metadata={"m": 1}))  # 2-byte é
        retention.append_event(new_event("s1", data={}))
        before = retention.get_stream_info("s1")
        assert before.bytes == len('{"k":"é"}'.encode()) + len('{"m":1}') + 2 * len("{}")
        retention.trim_session("s1", keep_last=1)
        assert retention.get_stream_info("s1").bytes == 2 * len("{}")

    def test_trim_store_applies_one_policy_to_every_session(self, store: SessionStore) -> None:
        retention = filled(store, 5, "a")
        filled(store, 2, "b")
        progress: list[tuple[int, int]] = []
        assert (
            retention.trim_store(keep_last=2, on_progress=lambda done, total: progress.append((done, total)))
            == 3
        )
        assert seqs(retention.get_events("a")) == [4, 5]
        assert seqs(retention.get_events("b")) == [1, 2]
        assert progress[-1] == (2, 2) and len(progress) == 2

    @pytest.mark.parametrize(("arguments", "named"), BAD_TRIMS)
    def test_bad_trim_arguments_are_refused_and_nothing_is_removed(
        self, store: SessionStore, arguments: dict[str, Any], named: str
    ) -> None:
        retention = filled(store, 3)
        with pytest.raises(ValidationError, match=named):
            retention.trim_session("s1", **arguments)
        store_arguments = {key: value for key, value in arguments.items() if key != "before_sequence"}
        if store_arguments:
            with pytest.raises(ValidationError, match=named):
                retention.trim_store(**store_arguments)
        assert seqs(retention.get_events("s1")) == [1, 2, 3]

    def test_a_bad_session_id_is_refused(self, store: SessionStore) -> None:
        retention = retention_of(store)
        for bad in ("", 5, None):
            with pytest.raises(ValidationError, match="session_id"):
                retention.trim_session(bad, keep_last=1)  # type: ignore[arg-type]
            with pytest.raises(ValidationError, match="session_id"):
                retention.get_stream_info(bad)  # type: ignore[arg-type]

    def test_a_trim_does_not_release_a_waiter(self, store: SessionStore) -> None:
        self._require_long_poll()
        retention = filled(store, 3)
        waiter = Background(retention.get_events, "s1", after=3, wait_timeout_ms=60_000)
        retention.trim_session("s1", keep_last=0)
        retention.append_event(new_event("s1", id="after-trim"))
        assert [event.id for event in waiter.result()] == ["after-trim"]

    def test_a_trim_survives_reopening(self, store: SessionStore, tmp_path: Path) -> None:
        filled(store, 4).trim_session("s1", keep_last=1)
        again = retention_of(self.reopened(store, tmp_path))
        assert seqs(again.get_events("s1")) == [4]
        assert again.append_event(new_event("s1")).sequence_number == 5

    def test_a_trimmed_log_checks_healthy(self, store: SessionStore) -> None:
        retention = filled(store, 4)
        filled(store, 2, "s2")
        if not isinstance(retention, AdminStore):
            pytest.skip("this store is not an AdminStore")
        retention.trim_session("s1", keep_last=1)
        retention.trim_session("s2", keep_last=0)
        report = retention.check_integrity()
        assert report.ok, report.findings
        assert report.events_checked == 1

    def test_export_and_import_reproduce_first_sequence(self, store: SessionStore) -> None:
        retention = filled(store, 4)
        filled(store, 2, "s2")
        if not isinstance(retention, AdminStore):
            pytest.skip("this store is not an AdminStore")
        retention.trim_session("s1", keep_last=2)
        retention.trim_session("s2", keep_last=0)
        records = list(retention.export_records())
        assert {"kind": "log", "session_id": "s1", "first_sequence": 3} in records
        with InMemorySessionStore() as copy:
            copy.import_records(records)
            for session_id in ("s1", "s2"):
                original, copied = retention.get_stream_info(session_id), copy.get_stream_info(session_id)
                assert (copied.first_sequence, copied.latest_sequence, copied.event_count) == (
                    original.first_sequence,
                    original.latest_sequence,
                    original.event_count,
                )
            assert copy.append_event(new_event("s2")).sequence_number == 3
            report = copy.import_records(records)  # again: nothing new, trimmed ids not brought back
            assert report.events_added == 0

    def test_an_import_into_a_trimmed_log_skips_the_trimmed_events(self, store: SessionStore) -> None:
        retention = filled(store, 4)
        if not isinstance(retention, AdminStore):
            pytest.skip("this store is not an AdminStore")
        records = list(retention.export_records())
        retention.trim_session("s1", keep_last=1)
        report = retention.import_records(records)
        assert (report.events_added, report.events_skipped) == (0, 4)
        assert seqs(retention.get_events("s1")) == [4]

    def test_the_asyncio_facade_trims_and_reports(self, store: SessionStore) -> None:
        retention = filled(store, 5)

        async def trim() -> tuple[int, int, int, StreamInfo]:
            async with AsyncStore(retention) as facade:
                dry = await facade.trim_session("s1", keep_last=2, dry_run=True)
                one = await facade.trim_session("s1", keep_last=2)
                every = await facade.trim_store(keep_last=1)
                return dry, one, every, await facade.get_stream_info("s1")

        dry, one, every, info = asyncio.run(trim())
        assert (dry, one, every, info.first_sequence, info.event_count) == (3, 3, 1, 5, 1)
