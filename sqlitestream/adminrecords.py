"""The records the administration contract (:mod:`sqlitestream.admin`) returns: what is in
a log, facts about a store, integrity findings, schema status, and what an import did.

They are plain frozen records; :mod:`sqlitestream.admin` re-exports every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "CheckFinding",
    "CheckReport",
    "ImportReport",
    "MigrationResult",
    "SchemaStatus",
    "SchemaStep",
    "SessionImport",
    "SessionImportCallback",
    "StoreInfo",
    "StreamInfo",
]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One session's log: its retained events and its sequence counter.

    The retained events hold sequences ``first_sequence`` .. ``latest_sequence`` without a gap
    (``first_sequence`` is 1 until a trim, and ``latest_sequence + 1`` once every event was
    trimmed); ``event_count`` is how many that is, ``bytes`` their encoded data and metadata,
    ``last_event_at`` the newest event timestamp (None if no event is retained).
    ``latest_sequence`` is the store's sequence counter for the session.
    """

    session_id: str
    event_count: int
    latest_sequence: int
    last_event_at: datetime | None
    first_sequence: int
    bytes: int

    @classmethod
    def of(
        cls,
        session_id: str,
        *,
        latest: int,
        count: int,
        lowest: int | None,
        size: int,
        last_event_at: datetime | None,
    ) -> StreamInfo:
        """Built from what a backend reads: the counter, and the count, lowest sequence and size
        of the retained events (``lowest`` None when there are none)."""
        return cls(
            session_id=session_id,
            event_count=count,
            latest_sequence=latest,
            last_event_at=last_event_at,
            first_sequence=latest + 1 if not count or lowest is None else lowest,
            bytes=size,
        )

    @property
    def trimmed(self) -> int:
        """How many of the session's events were trimmed (or are otherwise not held)."""
        return self.latest_sequence - self.event_count

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "first_sequence": self.first_sequence,
            "latest_sequence": self.latest_sequence,
            "event_count": self.event_count,
            "bytes": self.bytes,
            "last_event_at": None if self.last_event_at is None else self.last_event_at.isoformat(),
        }


_BACKEND_FIELDS = {
    "sqlite": ("file_bytes", "wal_bytes", "checkpoint_pending", "wal_pinned", "journal_mode", "synchronous"),
    "postgres": ("dsn", "schema", "server_version", "synchronous_commit", "table_bytes"),
    "memory": (),
}


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """Facts about a store, the counts read in one snapshot.

    Every backend fills the first fields: ``backend`` (``"sqlite"``, ``"postgres"`` or
    ``"memory"``), ``path`` (the store's location as :attr:`AdminStore.path` gives it),
    ``schema_version`` (None for the in-memory store, which has no schema), and the numbers of
    saved ``sessions`` and ``runs``, stored ``events`` and sequence counters (``streams``).

    The rest belong to one backend and are None for the others.

    - SQLite: ``file_bytes`` and ``wal_bytes``, the sizes of the database file and its
      write-ahead log (0 when there is none; None for ``":memory:"``); ``checkpoint_pending``,
      True when the WAL holds committed pages that a checkpoint may not have copied into the
      database file yet (the database file alone is then not the whole store: copy the store
      with ``export``, or close every connection first); ``wal_pinned``, True when this store's
      writer could not empty a large WAL at its last attempt because a read transaction held
      open (by any connection, maybe in another process) keeps an old snapshot in it (None
      when this store object does not write, so cannot tell); ``journal_mode``;
      ``synchronous``, the level this store object writes with (a per-connection setting, not
      stored in the file).
    - PostgreSQL: ``dsn`` (without the password), the PostgreSQL ``schema``,
      ``server_version``, ``synchronous_commit`` (the server setting that decides whether an
      acknowledged commit survives a server crash: ``on``, it does), ``table_bytes`` (the
      on-disk size of the store's tables and indexes).
    """

    backend: str
    path: str
    schema_version: int | None
    sessions: int
    runs: int
    events: int
    streams: int
    file_bytes: int | None = None
    wal_bytes: int | None = None
    checkpoint_pending: bool | None = None
    wal_pinned: bool | None = None
    journal_mode: str | None = None
    synchronous: str | None = None
    dsn: str | None = None
    schema: str | None = None
    server_version: str | None = None
    synchronous_commit: str | None = None
    table_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The backend-neutral fields, then this backend's own (each backend's set is fixed)."""
        neutral = ("backend", "path", "schema_version", "sessions", "runs", "events", "streams")
        names = neutral + _BACKEND_FIELDS.get(self.backend, ())
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True, slots=True)
class CheckFinding:
    """One problem found by :meth:`AdminStore.check_integrity`.

    ``kind`` is one of: ``integrity`` (the storage engine's own check, SQLite's ``PRAGMA
    integrity_check``), ``foreign_key`` (a run whose session record is missing),
    ``sequence_gap`` (a session's sequence numbers are not exactly 1..N), ``latest_mismatch``
    (the stored latest sequence is not the highest event's), ``missing_counter`` (events
    without a sequence counter), ``duplicate_id`` (an event id stored twice), ``bad_type`` (an
    unknown event type), ``bad_json`` (a payload that is not a JSON object), ``large_wal``
    (SQLite: the write-ahead log is over twice its size limit, usually because a read
    transaction is held open somewhere; not damage, but the disk fills). ``session_id``
    names the session when the problem is in one.
    """

    kind: str
    message: str
    session_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "session_id": self.session_id, "message": self.message}


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The result of :meth:`AdminStore.check_integrity`; ``ok`` when nothing was found."""

    findings: tuple[CheckFinding, ...]
    sessions_checked: int
    events_checked: int

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sessions_checked": self.sessions_checked,
            "events_checked": self.events_checked,
            "findings": [finding.to_dict() for finding in self.findings],
        }


@dataclass(frozen=True, slots=True)
class SchemaStep:
    """One schema upgrade: from ``from_version`` to ``from_version + 1``, its SQL statements."""

    from_version: int
    to_version: int
    statements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """A store's schema version, the version this code uses, and the steps between."""

    path: str
    version: int
    code_version: int
    pending: tuple[SchemaStep, ...]

    @property
    def up_to_date(self) -> bool:
        return not self.pending


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What :func:`sqlitestream.migrate_schema` did; ``backup_path`` is where the backup was
    written, None if none was (none asked for, or nothing to upgrade)."""

    path: str
    from_version: int
    to_version: int
    backup_path: str | None

    @property
    def upgraded(self) -> bool:
        return self.from_version != self.to_version


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


SessionImportCallback = Callable[[SessionImport], None]
"""``on_session(result)``: called by :meth:`AdminStore.import_records` after each session."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :meth:`AdminStore.import_records` did, per session and in total."""

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
