"""The exception tree: every error sqlitestream raises derives from :class:`SqliteStreamError`.

Each class's docstring says what a caller can do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ConflictError",
    "EventIdConflictError",
    "MissingDependencyError",
    "NotFoundError",
    "ProducerEpochError",
    "ProducerSequenceGapError",
    "ProviderError",
    "RunNotFoundError",
    "SchemaVersionError",
    "SequenceConflictError",
    "SessionNotFoundError",
    "SqliteStreamError",
    "StorageError",
    "StoreBusyError",
    "StoreClosedError",
    "StreamClosedError",
    "StreamConflictError",
    "StreamDeletedError",
    "StreamNotFoundError",
    "ValidationError",
]


class SqliteStreamError(Exception):
    """Root of every error raised by sqlitestream. Catch this to catch them all."""


class ValidationError(SqliteStreamError, ValueError):
    """An argument or a record field was wrong; the message names it and the bad value.

    Nothing was written. Fix the call; retrying it unchanged fails the same way.
    """


class NotFoundError(SqliteStreamError, LookupError):
    """The record asked for does not exist."""


class SessionNotFoundError(NotFoundError):
    """No saved session has this id. Save it with ``save_session`` first."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session not found: {session_id!r}")
        self.session_id = session_id


class RunNotFoundError(NotFoundError):
    """No saved run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run not found: {run_id!r}")
        self.run_id = run_id


class ConflictError(SqliteStreamError):
    """The write conflicts with what is already stored; nothing was written."""


class SequenceConflictError(ConflictError):
    """``expected_sequence`` did not match the session's latest sequence.

    Another writer appended first. Re-read (``actual`` holds the latest sequence), decide again,
    and retry with the new expectation.
    """

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        super().__init__(f"expected_sequence={expected} but session {session_id!r} is at sequence {actual}")
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


class CursorConflictError(ConflictError):
    """``save_cursor(..., expected=N)`` found the consumer's cursor at another value.

    Another process of the same consumer saved first (two consumers share a name, or a reset
    happened meanwhile). ``actual`` holds the stored value (0 for no cursor); re-read, decide,
    and retry with the new expectation, or stop this consumer.
    """

    def __init__(self, name: str, expected: int, actual: int) -> None:
        super().__init__(f"expected cursor {name!r} at {expected} but it is at {actual}; nothing was written")
        self.name = name
        self.expected = expected
        self.actual = actual


class EventIdConflictError(ConflictError):
    """The event id is already stored in another session; event ids are unique store-wide.

    Use a fresh id (the default ``Event`` id is unique).
    """

    def __init__(self, event_id: str, session_id: str, existing_session_id: str) -> None:
        super().__init__(
            f"event id {event_id!r} (session {session_id!r}) is already stored "
            f"in session {existing_session_id!r}"
        )
        self.event_id = event_id
        self.session_id = session_id
        self.existing_session_id = existing_session_id


class StreamNotFoundError(NotFoundError):
    """No byte stream has this name (never created, deleted, or expired). Create it first."""

    def __init__(self, name: str) -> None:
        super().__init__(f"stream not found: {name!r}")
        self.name = name


class StreamDeletedError(SqliteStreamError):
    """The byte stream was deleted while forks of it still exist: its name stays taken (it
    cannot be created again) until the last fork is deleted. Read the forks instead."""

    def __init__(self, name: str) -> None:
        super().__init__(f"stream {name!r} was deleted (its forks keep the name taken)")
        self.name = name


class StreamConflictError(ConflictError):
    """The request conflicts with the byte stream as it is: another configuration at that
    name, another content type, a ``Stream-Seq`` that does not increase, a fork source that
    was deleted. Nothing was written; re-read the stream (``head``) and decide again."""


class StreamClosedError(ConflictError):
    """The byte stream is closed: it takes no more appends. ``next_offset`` is its final
    offset; read up to it, and treat the stream as complete."""

    def __init__(self, name: str, next_offset: str) -> None:
        super().__init__(f"stream {name!r} is closed")
        self.name = name
        self.next_offset = next_offset


class ProducerEpochError(ConflictError):
    """An idempotent producer wrote with an epoch older than the stream's for that producer
    id (a fenced "zombie"). ``current_epoch`` is the stream's; a restarted producer claims the
    id with ``current_epoch + 1`` and sequence 0."""

    def __init__(self, producer_id: str, epoch: int, current_epoch: int) -> None:
        super().__init__(f"producer {producer_id!r}: epoch {epoch} is older than the current {current_epoch}")
        self.producer_id = producer_id
        self.epoch = epoch
        self.current_epoch = current_epoch


class ProducerSequenceGapError(ConflictError):
    """An idempotent producer skipped sequence numbers: ``expected`` was due, ``received``
    came. Nothing was written; send the missing batches first (in order)."""

    def __init__(self, producer_id: str, expected: int, received: int) -> None:
        super().__init__(f"producer {producer_id!r}: expected sequence {expected}, received {received}")
        self.producer_id = producer_id
        self.expected = expected
        self.received = received


class StorageError(SqliteStreamError):
    """The storage engine failed (disk full, I/O error, corrupt or foreign file, read-only file).

    ``sqlite_code`` holds SQLite's (extended) result code when SQLite reported the failure, and
    ``sqlstate`` PostgreSQL's five-character SQLSTATE when the server did; each is ``None``
    otherwise. The transaction was rolled back: nothing partial was written. Fix the cause
    (free space, permissions) and retry; the store stays usable.
    """

    def __init__(self, message: str, *, sqlite_code: int | None = None, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlite_code = sqlite_code
        self.sqlstate = sqlstate


class StoreBusyError(StorageError):
    """Another connection held the write lock for longer than ``busy_timeout_ms``.

    Nothing was written. Retry later, or raise ``busy_timeout_ms``.
    """


class SchemaVersionError(StorageError):
    """The file's schema version is not one this code can use.

    Either it is newer than this version of sqlitestream (upgrade the package), or it is older
    and the store was opened read-only (open it writable, or run ``sqlitestream migrate``).
    The file was not modified.
    """


class StoreClosedError(SqliteStreamError):
    """The store was closed; open a new one. Also raised in a long-poll blocked when it closed."""


class MissingDependencyError(SqliteStreamError, ImportError):
    """An optional dependency is not installed. The message names the extra to install."""


class ProviderError(SqliteStreamError):
    """The adapter (the provider running the agent) failed, or the run was cancelled.

    ``code`` says why in a stable, machine-readable word (``provider_error`` by default;
    ``cancelled``, ``command_failed``, ``command_not_found``, ``missing_capabilities``,
    ``adapter_error`` are used by sqlitestream itself); ``details`` carries JSON facts (for a
    command: ``exit_code`` and ``stderr_tail``). The failure is recorded on the run before this
    is raised; retry with a new run.
    """

    def __init__(
        self, message: str, code: str = "provider_error", *, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details: dict[str, Any] = dict(details or {})
