"""The export record format and the backend-neutral steps of importing it; the export and
import methods themselves are :class:`sqlitestream.admin.AdminStore`'s.

**The format.** An export is a sequence of JSON objects (one per line in a file: JSON lines,
UTF-8), each with a ``"kind"``:

- ``"header"``: ``{"kind": "header", "format": "sqlitestream-export", "version": 1, ...}``,
  written first by ``export_records``; optional on import (a header with a newer ``version``
  is refused).
- ``"session"``: a saved session, the fields of :meth:`Session.to_dict`.
- ``"run"``: a saved run, the fields of :meth:`Run.to_dict`.
- ``"event"``: a stored event, the fields of :meth:`Event.to_dict`, ``sequence_number`` included.
- ``"log"`` (version 2): ``{"kind": "log", "session_id": ..., "first_sequence": N}``, written
  before the events of a session whose log was trimmed: its retained events start at N (or,
  with none left, its sequence counter stands at N - 1).

An export lists each session's records together: its session record (if it was saved), its
runs, then its events in sequence order. Timestamps are ISO 8601 with microseconds in UTC, so
the format is lossless.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlitestream._core.validate import check_id, check_int
from sqlitestream.errors import ConflictError, EventIdConflictError, ValidationError
from sqlitestream.models import Event, Run, Session, StoredEvent, with_sequence

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "IMPORT_BATCH",
    "PAGE",
    "ImportPlan",
    "LogStart",
    "SessionRecords",
    "check_import_events",
    "header_record",
    "parse_record",
    "plan_event_import",
]

EXPORT_FORMAT = "sqlitestream-export"
EXPORT_VERSION = 2
"""The record format version this code writes and the newest it reads."""

PAGE = 1000
"""Events read per ``get_events`` call while exporting (bounded memory for any session size)."""

IMPORT_BATCH = 1000
"""Events of one session imported per transaction, and so the most an import holds at once:
a longer session is imported in consecutive transactions of this many events."""


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
    for previous, event in itertools.pairwise(ordered):
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


@dataclass(frozen=True, slots=True)
class LogStart:
    """A ``log`` record: session ``session_id``'s exported log starts at ``first_sequence``."""

    session_id: str
    first_sequence: int

    def to_record(self) -> dict[str, Any]:
        return {"kind": "log", "session_id": self.session_id, "first_sequence": self.first_sequence}


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What :func:`plan_event_import` decided: the events to insert, how many are skipped, and
    the session's latest sequence once they are in (a backend stores it as the counter)."""

    new: list[StoredEvent]
    skipped: int
    latest: int


def plan_event_import(
    session_id: str,
    events: Sequence[Event],
    latest: int,
    stored: Mapping[str, tuple[str, int]],
    *,
    first_retained: int | None = None,
    first_sequence: int | None = None,
) -> ImportPlan:
    """Decide, inside the importing transaction, which events to insert.

    ``events`` come from :func:`check_import_events`; ``latest`` is the session's latest
    sequence in the store and ``first_retained`` its oldest retained event's (None when it
    holds none); ``stored`` maps each of the events' ids that the store already holds to its
    ``(session_id, sequence_number)`` there. ``first_sequence`` is where the exported log
    starts (its earlier events were trimmed at the source): a session the store has not got
    that far in continues from there, as if the same events had been trimmed here too.

    An event is skipped when it is stored by id at the same sequence number, or when its
    sequence number is one this store has trimmed (an import never brings trimmed events back).
    New events must continue the log exactly.

    Raises ``EventIdConflictError`` if an id is stored in another session, and
    ``ConflictError`` if an id is stored at another sequence number, or a new event's sequence
    number is taken by another event or would leave a gap after ``latest``: the import and the
    store have diverged, and nothing may be written.
    """
    if first_sequence is not None and latest < first_sequence - 1:
        latest = first_sequence - 1
    new: list[StoredEvent] = []
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
        if seq < next_seq and (first_retained is None or seq < first_retained):
            skipped += 1  # trimmed here
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
        new.append(with_sequence(event, seq, 0))  # the store assigns positions as it inserts
        next_seq += 1
    return ImportPlan(new, skipped, next_seq - 1)


def header_record(package_version: str) -> dict[str, Any]:
    """The first record of an export, naming the sqlitestream version that wrote it."""
    return {
        "kind": "header",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "sqlitestream": package_version,
    }


class SessionRecords:
    """The records of one session, gathered from consecutive import records and handed to
    ``import_session`` in batches of at most :data:`IMPORT_BATCH` events (:meth:`take`)."""

    def __init__(self, session_id: str, first: int) -> None:
        self.session_id = session_id
        self.first = first
        """The number of the session's first record..."""
        self.batch_first = first
        """...and of the first record not yet handed out."""
        self.last = first
        self.session: Session | None = None
        self.runs: dict[str, Run] = {}
        self.events: list[Event] = []
        self.first_sequence: int | None = None
        # Kept across batches, so a repeat is refused wherever it comes.
        self._session_seen = False
        self._events_seen = False
        self._run_ids: set[str] = set()

    @property
    def full(self) -> bool:
        return len(self.events) >= IMPORT_BATCH

    def add(self, number: int, kind: str, record: Session | Run | Event | LogStart) -> None:
        self.last = number
        if isinstance(record, LogStart):
            if self.first_sequence is not None or self._events_seen:
                raise ValidationError(
                    f"record {number}: the log record of session {record.session_id!r} must come "
                    "once, before its events"
                )
            self.first_sequence = record.first_sequence
        elif isinstance(record, Session):
            if self._session_seen:
                raise ValidationError(f"record {number}: session {record.id!r} appears twice")
            self._session_seen = True
            self.session = record
        elif isinstance(record, Run):
            if record.id in self._run_ids:
                raise ValidationError(f"record {number}: run {record.id!r} appears twice")
            self._run_ids.add(record.id)
            self.runs[record.id] = record
        else:
            self._events_seen = True
            self.events.append(record)

    def take(self) -> tuple[Session | None, list[Run], list[Event], int | None]:
        """The records gathered since the last take, which then starts a new batch
        (:meth:`committed` moves ``batch_first`` once they are stored), and the log's first
        sequence (for every batch: later batches continue above it anyway)."""
        taken = (self.session, list(self.runs.values()), self.events, self.first_sequence)
        self.session, self.runs, self.events = None, {}, []
        return taken

    def committed(self) -> None:
        self.batch_first = self.last + 1


def parse_record(raw: object, number: int) -> tuple[str, Session | Run | Event | LogStart | None]:
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
        if kind == "log":
            return kind, _log_start(fields)
        if kind == "event":
            if fields.get("sequence_number") is None:
                raise ValidationError("an event record needs its sequence_number")
            return kind, Event.from_dict(fields)
    except (ValidationError, TypeError) as exc:
        # TypeError: a required field is missing (the record types' constructors need it).
        raise ValidationError(f"record {number} ({kind}): {exc}") from exc
    raise ValidationError(
        f"record {number}: kind must be one of header, session, run, log, event; got {kind!r}"
    )


def _log_start(fields: Mapping[str, Any]) -> LogStart:
    unknown = set(fields) - {"kind", "session_id", "first_sequence"}
    if unknown:
        raise ValidationError(f"unknown fields {sorted(unknown)}")
    first = check_int(fields.get("first_sequence"), "first_sequence", minimum=1, allow_none=False)
    assert first is not None
    return LogStart(check_id(fields.get("session_id"), "session_id"), first)
