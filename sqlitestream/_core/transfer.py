"""Moving a store's contents in and out: the export record format and the store-agnostic part
of export and import (:class:`TransferMixin`).

**The format.** An export is a sequence of JSON objects (one per line in a file: JSON lines,
UTF-8), each with a ``"kind"``:

- ``"header"``: ``{"kind": "header", "format": "sqlitestream-export", "version": 1, ...}``,
  written first by :meth:`TransferMixin.export_records`; optional on import (a header with a
  newer ``version`` is refused).
- ``"session"``: a saved session, the fields of :meth:`Session.to_dict`.
- ``"run"``: a saved run, the fields of :meth:`Run.to_dict`.
- ``"event"``: a stored event, the fields of :meth:`Event.to_dict`, ``sequence_number`` included.

An export lists each session's records together: its session record (if it was saved), its
runs, then its events in sequence order. Timestamps are ISO 8601 with microseconds in UTC, so
the format is lossless.

**Store-specific pieces.** A store that mixes in :class:`TransferMixin` provides two methods:
:meth:`~TransferMixin.list_streams` (every session id that has events) and
:meth:`~TransferMixin.import_session` (store one session's records atomically, keeping the
events' sequence numbers). Everything else here uses only the :class:`SessionStore` contract,
so any two such stores can copy to each other: ``dst.import_records(src.export_records())``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlitestream._core.validate import check_id
from sqlitestream.errors import (
    ConflictError,
    EventIdConflictError,
    SessionNotFoundError,
    SqliteStreamError,
    ValidationError,
)
from sqlitestream.models import Event, Run, Session
from sqlitestream.store import SessionStore, check_event, check_record

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "StreamInfo",
    "SessionImport",
    "ImportReport",
    "TransferMixin",
    "check_import_events",
    "plan_event_import",
]

EXPORT_FORMAT = "sqlitestream-export"
EXPORT_VERSION = 1
"""The record format version this code writes and the newest it reads."""

_PAGE = 1000
"""Events read per ``get_events`` call while exporting (bounded memory for any session size)."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One session id present in the log: how many events it holds and its latest sequence.

    ``latest_sequence`` is the store's sequence counter for the session; in a healthy store it
    equals ``event_count``. ``last_event_at`` is the newest event timestamp (None if no events).
    """

    session_id: str
    event_count: int
    latest_sequence: int
    last_event_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "event_count": self.event_count,
            "latest_sequence": self.latest_sequence,
            "last_event_at": None if self.last_event_at is None else self.last_event_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SessionImport:
    """What importing one session's records did.

    ``session`` is ``"added"``, ``"updated"`` or ``"unchanged"`` for the session record, or
    ``None`` when the import had no record for the session (a log-only session). Runs are
    counted the same way; events are ``added`` (new ids, with their sequence numbers) or
    ``skipped`` (already stored by id at the same sequence number).
    """

    session_id: str
    session: str | None = None
    runs_added: int = 0
    runs_updated: int = 0
    runs_unchanged: int = 0
    events_added: int = 0
    events_skipped: int = 0

    @classmethod
    def counted(
        cls,
        session_id: str,
        session: str | None,
        runs: Sequence[str],
        events_added: int,
        events_skipped: int,
    ) -> SessionImport:
        """The result from each run's outcome (``"added"``, ``"updated"`` or ``"unchanged"``)."""
        return cls(
            session_id=session_id,
            session=session,
            runs_added=runs.count("added"),
            runs_updated=runs.count("updated"),
            runs_unchanged=runs.count("unchanged"),
            events_added=events_added,
            events_skipped=events_skipped,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "session": self.session,
            "runs_added": self.runs_added,
            "runs_updated": self.runs_updated,
            "runs_unchanged": self.runs_unchanged,
            "events_added": self.events_added,
            "events_skipped": self.events_skipped,
        }


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :meth:`TransferMixin.import_records` did, per session and in total."""

    sessions: tuple[SessionImport, ...]

    def _sum(self, name: str) -> int:
        return sum(getattr(item, name) for item in self.sessions)

    def _records(self, outcome: str) -> int:
        return sum(1 for item in self.sessions if item.session == outcome)

    @property
    def sessions_added(self) -> int:
        return self._records("added")

    @property
    def sessions_updated(self) -> int:
        return self._records("updated")

    @property
    def sessions_unchanged(self) -> int:
        return self._records("unchanged")

    @property
    def runs_added(self) -> int:
        return self._sum("runs_added")

    @property
    def runs_updated(self) -> int:
        return self._sum("runs_updated")

    @property
    def runs_unchanged(self) -> int:
        return self._sum("runs_unchanged")

    @property
    def events_added(self) -> int:
        return self._sum("events_added")

    @property
    def events_skipped(self) -> int:
        return self._sum("events_skipped")

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions_added": self.sessions_added,
            "sessions_updated": self.sessions_updated,
            "sessions_unchanged": self.sessions_unchanged,
            "runs_added": self.runs_added,
            "runs_updated": self.runs_updated,
            "runs_unchanged": self.runs_unchanged,
            "events_added": self.events_added,
            "events_skipped": self.events_skipped,
            "sessions": [item.to_dict() for item in self.sessions],
        }


def check_session_import(
    session_id: object,
    session: Session | None,
    runs: Sequence[Run],
    events: Sequence[Event],
    max_event_bytes: int,
) -> tuple[str, list[Event]]:
    """Validate ``import_session``'s arguments (shared by every store): the session and runs
    must belong to ``session_id``, the events as :func:`check_import_events` says and within
    ``max_event_bytes``. Returns the checked id and the events in sequence order."""
    checked_id = check_id(session_id, "session_id")
    if session is not None:
        check_record(session, Session, "session")
        if session.id != checked_id:
            raise ValidationError(f"session {session.id!r} is not session_id {checked_id!r}")
    for index, run in enumerate(runs):
        check_record(run, Run, f"runs[{index}]")
        if run.session_id != checked_id:
            raise ValidationError(
                f"run {run.id!r} belongs to session {run.session_id!r}, not {checked_id!r}"
            )
    ordered = check_import_events(checked_id, events)
    for event in ordered:
        check_event(event, max_event_bytes)
    return checked_id, ordered


def check_import_events(session_id: str, events: Sequence[Event]) -> list[Event]:
    """The events of one imported session in sequence order, checked to be importable.

    Each must belong to ``session_id``, carry a ``sequence_number``, and have an id and a
    sequence number not repeated in the batch; together their sequence numbers must be
    contiguous (no holes: ``5, 6, 7`` but not ``5, 7``). ``ValidationError`` otherwise.
    """
    ordered: list[Event] = []
    seen_ids: set[str] = set()
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise ValidationError(f"events[{index}] must be an Event, got {type(event).__name__}")
        if event.session_id != session_id:
            raise ValidationError(
                f"event {event.id!r} belongs to session {event.session_id!r}, not {session_id!r}"
            )
        if event.sequence_number is None:
            raise ValidationError(f"event {event.id!r} has no sequence_number; imports keep them")
        if event.id in seen_ids:
            raise ValidationError(f"event id {event.id!r} appears twice in session {session_id!r}")
        seen_ids.add(event.id)
        ordered.append(event)
    ordered.sort(key=lambda event: event.sequence_number or 0)
    for previous, event in zip(ordered, ordered[1:]):
        if event.sequence_number == previous.sequence_number:
            raise ValidationError(
                f"events {previous.id!r} and {event.id!r} of session {session_id!r} both have "
                f"sequence_number {event.sequence_number}"
            )
        if event.sequence_number != (previous.sequence_number or 0) + 1:
            raise ValidationError(
                f"the events of session {session_id!r} jump from sequence "
                f"{previous.sequence_number} to {event.sequence_number}: an import must hold "
                "every sequence number in between"
            )
    return ordered


def plan_event_import(
    session_id: str,
    events: Sequence[Event],
    latest: int,
    stored: Mapping[str, tuple[str, int]],
) -> tuple[list[Event], int]:
    """Decide, inside the importing transaction, which events to insert.

    ``events`` come from :func:`check_import_events`; ``latest`` is the session's latest
    sequence in the store; ``stored`` maps each of the events' ids that the store already holds
    to its ``(session_id, sequence_number)`` there. Returns the events to insert (their
    sequence numbers continue ``latest`` exactly) and how many are skipped as already present.

    Raises ``EventIdConflictError`` if an id is stored in another session, and
    ``ConflictError`` if an id is stored at another sequence number, or a new event's sequence
    number is taken by another event or would leave a gap after ``latest``: the import and the
    store have diverged, and nothing may be written.
    """
    new: list[Event] = []
    skipped = 0
    next_seq = latest + 1
    for event in events:
        seq = event.sequence_number or 0
        found = stored.get(event.id)
        if found is not None:
            found_session, found_seq = found
            if found_session != session_id:
                raise EventIdConflictError(event.id, session_id, found_session)
            if found_seq != seq:
                raise ConflictError(
                    f"event {event.id!r} is sequence {found_seq} of session {session_id!r} in "
                    f"the store but sequence {seq} in the import; the two logs have diverged"
                )
            skipped += 1
            continue
        if seq != next_seq:
            if seq <= next_seq - 1:
                raise ConflictError(
                    f"sequence {seq} of session {session_id!r} already holds another event than "
                    f"{event.id!r}; the import and the store have diverged"
                )
            raise ConflictError(
                f"event {event.id!r} has sequence {seq} but session {session_id!r} is at "
                f"sequence {next_seq - 1}: importing it would leave a gap"
            )
        new.append(event)
        next_seq += 1
    return new, skipped


def header_record() -> dict[str, Any]:
    """The first record of an export."""
    from sqlitestream import __version__

    return {
        "kind": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "sqlitestream": __version__,
    }


class _Group:
    """The records of one session, gathered from consecutive import records."""

    def __init__(self, session_id: str, first: int) -> None:
        self.session_id = session_id
        self.first = first
        self.last = first
        self.session: Session | None = None
        self.runs: dict[str, Run] = {}
        self.events: list[Event] = []

    def add(self, number: int, kind: str, record: Session | Run | Event) -> None:
        self.last = number
        if isinstance(record, Session):
            if self.session is not None:
                raise ValidationError(f"record {number}: session {record.id!r} appears twice")
            self.session = record
        elif isinstance(record, Run):
            if record.id in self.runs:
                raise ValidationError(f"record {number}: run {record.id!r} appears twice")
            self.runs[record.id] = record
        else:
            self.events.append(record)


def _parse_record(raw: object, number: int) -> tuple[str, Session | Run | Event | None]:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"record {number}: must be a JSON object, got {type(raw).__name__}")
    kind = raw.get("kind")
    try:
        if kind == "header":
            if raw.get("format") != EXPORT_FORMAT:
                raise ValidationError(f"format must be {EXPORT_FORMAT!r}, got {raw.get('format')!r}")
            version = raw.get("version")
            if type(version) is not int or not 1 <= version <= EXPORT_VERSION:
                raise ValidationError(
                    f"export format version {version!r} is not one this sqlitestream reads "
                    f"(1..{EXPORT_VERSION}); upgrade sqlitestream"
                )
            return kind, None
        fields = dict(raw)
        if kind == "session":
            return kind, Session.from_dict(fields)
        if kind == "run":
            return kind, Run.from_dict(fields)
        if kind == "event":
            if fields.get("sequence_number") is None:
                raise ValidationError("an event record needs its sequence_number")
            return kind, Event.from_dict(fields)
    except (ValidationError, TypeError) as exc:
        # TypeError: a required field is missing (the record types' constructors need it).
        raise ValidationError(f"record {number} ({kind}): {exc}") from exc
    raise ValidationError(
        f"record {number}: kind must be one of header, session, run, event; got {kind!r}"
    )


class TransferMixin(SessionStore):
    """Export and import over the contract; a store supplies the two abstract methods."""

    @abc.abstractmethod
    def list_streams(self, session_ids: Iterable[str] | None = None) -> list[StreamInfo]:
        """Every session id with events (or a sequence counter) in the log, ordered by id.

        ``session_ids`` restricts the answer to those ids (ids without events are left out).
        Each entry is read in one consistent snapshot.
        """

    @abc.abstractmethod
    def import_session(
        self,
        session_id: str,
        *,
        session: Session | None = None,
        runs: Sequence[Run] = (),
        events: Sequence[Event] = (),
    ) -> SessionImport:
        """Store one session's exported records in one transaction: all of them or nothing.

        ``session`` (its id must be ``session_id``) and ``runs`` are inserted or replaced like
        ``save_session``/``save_run``, the session first; a record equal to the stored one is
        left alone and counted unchanged. ``events`` keep their ids, timestamps, payloads and
        sequence numbers exactly: each is either already stored by id at the same sequence
        number (skipped, counted) or continues the session's log with the next sequence number.
        Anything else (see :func:`plan_event_import`) raises a ``ConflictError`` and writes
        nothing; so do bad records (``ValidationError``). Long-poll waiters on the session are
        woken when events are added.
        """

    # Export -------------------------------------------------------------------------------

    def export_records(self, session_ids: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """The store's contents as export records (see the module docs), header first.

        ``session_ids=None`` exports every session: each saved session and each session id
        with events, ordered by id. Named ids are exported in the order given; an id with
        neither a saved record nor events raises ``SessionNotFoundError`` from this call, before
        any record is produced. Each session's events are read page by page, so a session being appended to
        while it is exported comes out up to some point, always gap-free from sequence 1.
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
        return self._export(ids)

    def _export(self, ids: list[str]) -> Iterator[dict[str, Any]]:
        yield header_record()
        for session_id in ids:
            try:
                yield {"kind": "session", **self.get_session(session_id).to_dict()}
            except SessionNotFoundError:
                pass  # a log-only session
            for run in self.list_runs(session_id):
                yield {"kind": "run", **run.to_dict()}
            after = 0
            while True:
                page = self.get_events(session_id, after=after, limit=_PAGE)
                for event in page:
                    yield {"kind": "event", **event.to_dict()}
                if len(page) < _PAGE:
                    break
                after = page[-1].sequence_number or after

    # Import -------------------------------------------------------------------------------

    def import_records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        on_session: Callable[[SessionImport], None] | None = None,
    ) -> ImportReport:
        """Load export records (as produced by :meth:`export_records`), one session at a time.

        Consecutive records of the same session id are imported together by
        :meth:`import_session`: atomically, idempotently (an event already present by id is
        skipped and counted), keeping sequence numbers. ``on_session`` is called after each
        session is committed. The first bad record or conflict stops the import with its
        error (``ValidationError`` naming the record number, ``ConflictError``, ...); the
        sessions before it stay imported, nothing of the failing session is written, and a note
        on the exception (``exc.__notes__``) says so.
        """
        done: list[SessionImport] = []
        group: _Group | None = None

        def flush(group: _Group) -> None:
            result = self.import_session(
                group.session_id,
                session=group.session,
                runs=list(group.runs.values()),
                events=group.events,
            )
            done.append(result)
            if on_session is not None:
                on_session(result)

        number = 0
        try:
            for number, raw in enumerate(records, 1):
                kind, record = _parse_record(raw, number)
                if record is None:
                    continue
                session_id = record.id if isinstance(record, Session) else record.session_id
                if group is None or group.session_id != session_id:
                    if group is not None:
                        flush(group)
                    group = _Group(session_id, number)
                group.add(number, kind, record)
            if group is not None:
                flush(group)
        except SqliteStreamError as exc:
            where = (
                f"session {group.session_id!r} (records {group.first}-{group.last})"
                if group is not None
                else f"record {number}"
            )
            exc.add_note(
                f"import stopped at {where}: nothing of it was written; "
                f"{len(done)} session(s) before it were imported"
            )
            raise
        return ImportReport(tuple(done))
