"""The administration contract, :class:`AdminStore`, and (re-exported from
:mod:`sqlitestream.adminrecords`) every result type it returns.

:class:`AdminStore` extends the :class:`~sqlitestream.SessionStore` contract with what a tool
needs to look after a store: what is in the log (:meth:`~AdminStore.list_streams`), facts
about the store (:meth:`~AdminStore.store_info`), an integrity check
(:meth:`~AdminStore.check_integrity`), and moving the contents in and out
(:meth:`~AdminStore.export_records`, :meth:`~AdminStore.import_records`, built on the one
backend-specific step :meth:`~AdminStore.import_session`). Every store sqlitestream ships
implements it, so any two of them copy to each other: ``dst.import_records(src.export_records())``.

Schema inspection and migration work on a *location* rather than on an open store (opening a
store upgrades it): see :func:`sqlitestream.inspect_schema` and
:func:`sqlitestream.migrate_schema`, which return :class:`SchemaStatus` and
:class:`MigrationResult`.

The docstrings here are the specification: the contract tests check every store against them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlitestream._core.transfer import (
    PAGE,
    LogStart,
    SessionRecords,
    check_import_events,
    header_record,
    parse_record,
)
from sqlitestream._core.validate import check_id, check_int
from sqlitestream.adminrecords import (
    CheckFinding,
    CheckReport,
    ImportReport,
    MigrationResult,
    SchemaStatus,
    SchemaStep,
    SessionImport,
    SessionImportCallback,
    StoreInfo,
    StreamInfo,
)
from sqlitestream.damage import DamageCallback, read_page
from sqlitestream.errors import SessionNotFoundError, SqliteStreamError, ValidationError
from sqlitestream.models import Event, Run, Session
from sqlitestream.store import SessionStore, check_event, check_record

__all__ = [
    "AdminStore",
    "CheckFinding",
    "CheckReport",
    "ImportReport",
    "MigrationResult",
    "ProgressCallback",
    "SchemaStatus",
    "SchemaStep",
    "SessionImport",
    "SessionImportCallback",
    "StoreInfo",
    "StreamInfo",
    "check_session_import",
    "sequence_findings",
]

ProgressCallback = Callable[[int, int], None]
"""``on_progress(done, total)``: called by :meth:`AdminStore.check_integrity` after each session."""


# Shared rules for implementations ----------------------------------------------------------


def sequence_findings(
    session_id: str,
    latest: int | None,
    count: int,
    low: int | None,
    high: int | None,
    gap: int | None,
) -> Iterator[CheckFinding]:
    """The findings for one session from facts read in one snapshot: its stored ``latest``
    sequence (None without a counter), how many events it holds (``count``), their lowest and
    highest sequence numbers, and the first missing sequence number above the lowest (``gap``,
    if known). A trimmed log (lowest above 1, or no events left under a counter) is healthy;
    a hole inside the retained range is not."""
    if count == 0:
        return
    assert low is not None and high is not None
    if high - low + 1 != count:
        where = f"; sequence {gap} is missing" if gap is not None else ""
        yield CheckFinding(
            "sequence_gap",
            f"{count} events hold sequences {low}..{high}, not a run without gaps{where}",
            session_id,
        )
    if latest is None:
        yield CheckFinding(
            "missing_counter",
            f"{count} events but no stored latest sequence (the next append would reuse 1)",
            session_id,
        )
    elif latest != high:
        yield CheckFinding(
            "latest_mismatch",
            f"the stored latest sequence is {latest} but the highest event sequence is {high}",
            session_id,
        )


def check_session_import(
    session_id: object,
    session: Session | None,
    runs: Sequence[Run],
    events: Sequence[Event],
    max_event_bytes: int,
    first_sequence: object = None,
) -> tuple[str, list[Event]]:
    """Validate :meth:`AdminStore.import_session`'s arguments (every store calls this first):
    the session and runs must belong to ``session_id``, the events must be importable (see
    ``check_import_events``: contiguous sequence numbers, no repeats, none below
    ``first_sequence``) and within ``max_event_bytes``. Returns the checked id and the events in
    sequence order."""
    checked_id = check_id(session_id, "session_id")
    if session is not None:
        check_record(session, Session, "session")
        if session.id != checked_id:
            raise ValidationError(f"session {session.id!r} is not session_id {checked_id!r}")
    for index, run in enumerate(runs):
        check_record(run, Run, f"runs[{index}]")
        if run.session_id != checked_id:
            raise ValidationError(f"run {run.id!r} belongs to session {run.session_id!r}, not {checked_id!r}")
    ordered = check_import_events(checked_id, events)
    first = check_int(first_sequence, "first_sequence", minimum=1)
    if first is not None and ordered and (ordered[0].sequence_number or 0) < first:
        raise ValidationError(
            f"event {ordered[0].id!r} has sequence {ordered[0].sequence_number}, below the "
            f"first_sequence {first} of session {checked_id!r}"
        )
    for event in ordered:
        check_event(event, max_event_bytes)
    return checked_id, ordered


# The contract --------------------------------------------------------------------------------


class AdminStore(SessionStore):
    """A :class:`~sqlitestream.SessionStore` that can also be inspected, checked, exported and
    imported. Every method here works on a read-only store except :meth:`import_session` and
    :meth:`import_records`, which write."""

    @property
    @abc.abstractmethod
    def path(self) -> str:
        """Where the store is: an absolute file path, ``":memory:"``, or a ``postgresql://``
        URL without the password (what :func:`sqlitestream.open_store` takes)."""

    @property
    @abc.abstractmethod
    def readonly(self) -> bool:
        """Whether the store was opened read-only (every write then raises ``StorageError``)."""

    @property
    @abc.abstractmethod
    def upgraded_from(self) -> int | None:
        """The schema version this open created (0) or upgraded from; None if it was current
        (always None for a store without a schema)."""

    @abc.abstractmethod
    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        """Every session id with events (or a sequence counter) in the log, ordered by id
        (code point order), with its event count, latest sequence and newest event time.

        ``session_ids`` restricts the answer to those ids (ids without events are left out;
        a single string is refused with ``ValidationError``). The list is read in one
        consistent snapshot. Counting reads every event's key, so this takes time proportional
        to the size of the log.
        """

    @abc.abstractmethod
    def store_info(self) -> StoreInfo:
        """Facts about the store (see :class:`StoreInfo`), the counts read in one snapshot."""

    @abc.abstractmethod
    def check_integrity(self, *, on_progress: ProgressCallback | None = None) -> CheckReport:
        """The storage engine's own check where it has one, plus the log's invariants.

        For every session id in the log: its sequence numbers are exactly 1..N with no gaps,
        and its stored latest sequence equals N; store-wide: event ids are unique, every event
        has a known type and JSON-object payloads, every run's session is saved. Each session
        is checked in one snapshot, so the check is correct while others append. Read-only.
        ``on_progress(done, total)`` is called after each session. Each kind of store-wide
        finding is reported for at most 100 rows.
        """

    @abc.abstractmethod
    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
        first_sequence: int | None = None,
    ) -> SessionImport:
        """Store one session's exported records in one transaction: all of them or nothing.

        ``session`` (its id must be ``session_id``) and ``runs`` are inserted or replaced like
        ``save_session``/``save_run``, the session first; a record equal to the stored one is
        left alone and counted unchanged. ``events`` keep their ids, timestamps, payloads and
        sequence numbers exactly: each is either already stored by id at the same sequence
        number (skipped, counted) or continues the session's log with the next sequence number.
        Anything else raises a ``ConflictError`` (``EventIdConflictError`` for an id stored in
        another session) and writes nothing; so do bad records (``ValidationError``). Long-poll
        waiters on the session are woken when events are added.

        ``first_sequence`` (from an export's ``log`` record) says the exported log was trimmed
        and starts there: a session this store holds less of continues from that sequence
        (its counter is raised even when ``events`` is empty, so sequences are never reused).
        An event whose sequence number this store has trimmed is skipped, never brought back.
        """

    # Export ---------------------------------------------------------------------------------

    def export_records(
        self, session_ids: Iterable[str] | None = None, *, on_damaged: DamageCallback | None = None
    ) -> Iterator[dict[str, Any]]:
        """The store's contents as export records (the format: ``sqlitestream._core.transfer``
        and the README), header first.

        An event row the store cannot read (a damaged file) raises its ``StorageError`` from
        the iteration; with ``on_damaged``, the export instead calls ``on_damaged(row)`` (a
        :class:`~sqlitestream.damage.DamagedRow`) and goes on after it, so everything readable
        is exported (the session's log then has a hole there, which an import refuses).

        ``session_ids=None`` exports every session: each saved session and each session id
        with events, ordered by id. Named ids are exported in the order given; an id with
        neither a saved record nor events raises ``SessionNotFoundError`` from this call,
        before any record is produced. Each session's events are read page by page, so a
        session being appended to while it is exported comes out up to some point, always
        gap-free from sequence 1.
        """
        if session_ids is None:
            ids = sorted(
                {session.id for session in self.list_sessions()}
                | {stream.session_id for stream in self.list_streams()}
            )
        else:
            if isinstance(session_ids, str):
                raise ValidationError("session_ids must be a list of ids, not one string")
            ids = list(dict.fromkeys(session_ids))
            with_events = {stream.session_id for stream in self.list_streams(ids)}
            for session_id in ids:
                if session_id not in with_events:
                    self.get_session(session_id)  # SessionNotFoundError if it is nowhere
        return self._export(ids, on_damaged)

    def _export(self, ids: list[str], on_damaged: DamageCallback | None) -> Iterator[dict[str, Any]]:
        from sqlitestream import __version__

        yield header_record(__version__)
        for session_id in ids:
            try:
                yield {"kind": "session", **self.get_session(session_id).to_dict()}
            except SessionNotFoundError:
                pass  # a log-only session
            for run in self.list_runs(session_id):
                yield {"kind": "run", **run.to_dict()}
            after, first = 0, True
            while True:
                if on_damaged is None:
                    page, damage = self.get_events(session_id, after=after, limit=PAGE), None
                else:
                    page, damage = read_page(self, session_id, after=after, before=None, limit=PAGE)
                if first:
                    first = False
                    start = page[0].sequence_number if page else self._first_sequence(session_id)
                    if start is not None and start > 1:
                        yield LogStart(session_id, start).to_record()
                for event in page:
                    # Without ``position``: it belongs to this store, and an import assigns new ones.
                    yield {"kind": "event", **Event.to_dict(event)}
                if damage is not None and on_damaged is not None:
                    on_damaged(damage)
                    after = damage.sequence
                elif len(page) < PAGE:
                    break
                else:
                    after = page[-1].sequence_number or after

    def _first_sequence(self, session_id: str) -> int | None:
        """Where the session's log starts when it holds no event (None: no log at all)."""
        streams = self.list_streams([session_id])
        return streams[0].first_sequence if streams else None

    # Import ---------------------------------------------------------------------------------

    def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_session: SessionImportCallback | None = None,
    ) -> ImportReport:
        """Load export records (as produced by :meth:`export_records`), one session at a time.

        Consecutive records of the same session id are imported together by
        :meth:`import_session`: atomically, idempotently (an event already present by id is
        skipped and counted), keeping sequence numbers. A session of more than
        ``IMPORT_BATCH`` (1,000) events is imported in consecutive transactions of that many
        events each, so an import holds at most that many events in memory however long a
        session is. ``records`` is consumed as it goes. ``on_session`` is called after each
        session is committed, with its counts. The first bad record or conflict stops the
        import with its error (``ValidationError`` naming the record number,
        ``ConflictError``, ...); the sessions before it stay imported, and so do the earlier
        batches of a long session; nothing of the failing batch is written; a note on the
        exception (``exc.__notes__``) says what was kept. Importing the same records again
        after fixing the cause continues where it stopped.
        """
        done: list[SessionImport] = []
        group: SessionRecords | None = None
        kept: SessionImport | None = None  # the committed batches of ``group``'s session

        def commit_batch(group: SessionRecords) -> None:
            nonlocal kept
            session, runs, events, first_sequence = group.take()
            result = self.import_session(
                group.session_id, session=session, runs=runs, events=events, first_sequence=first_sequence
            )
            group.committed()
            kept = result if kept is None else _merged(kept, result)

        def flush(group: SessionRecords) -> None:
            nonlocal kept
            commit_batch(group)
            assert kept is not None
            done.append(kept)
            kept = None
            if on_session is not None:
                on_session(done[-1])

        number = handled = 0
        try:
            for number, raw in enumerate(records, 1):
                kind, record = parse_record(raw, number)
                if record is None:
                    handled = number
                    continue
                session_id = record.id if isinstance(record, Session) else record.session_id
                if group is None or group.session_id != session_id:
                    if group is not None:
                        flush(group)
                    group = SessionRecords(session_id, number)
                elif group.full:
                    commit_batch(group)
                group.add(number, kind, record)
                handled = number
            if group is not None:
                flush(group)
        except SqliteStreamError as exc:
            exc.add_note(
                f"import stopped at {_stopped_at(group, kept, number, handled)}; {len(done)} session(s) before it were imported"
            )
            raise
        return ImportReport(tuple(done))


def _merged(first: SessionImport, then: SessionImport) -> SessionImport:
    """One session's counts over two of its import batches."""
    return SessionImport(
        session_id=first.session_id,
        session=first.session if then.session is None else then.session,
        runs_added=first.runs_added + then.runs_added,
        runs_updated=first.runs_updated + then.runs_updated,
        runs_unchanged=first.runs_unchanged + then.runs_unchanged,
        events_added=first.events_added + then.events_added,
        events_skipped=first.events_skipped + then.events_skipped,
    )


def _stopped_at(group: SessionRecords | None, kept: SessionImport | None, number: int, handled: int) -> str:
    """Where a failed import stopped and what of that session it kept, for its note."""
    if group is None:
        # A record that failed to be read at all is the one after the last read.
        return f"record {number if number > handled else number + 1}: nothing of it was written"
    where = f"session {group.session_id!r} (records {group.first}-{group.last})"
    if kept is None:
        return f"{where}: nothing of it was written"
    return (
        f"{where}: its records before record {group.batch_first} were imported "
        f"({kept.events_added + kept.events_skipped} events), nothing from there on"
    )
