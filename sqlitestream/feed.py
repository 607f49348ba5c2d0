"""The store-wide feed and durable consumer cursors: :class:`FeedStore`. Its docstrings are
the specification; every built-in store implements it and runs the shared contract tests in
:mod:`sqlitestream.testing`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlitestream._core.validate import check_choice, check_id, check_int, describe
from sqlitestream.errors import ValidationError
from sqlitestream.models import EventType, StoredEvent
from sqlitestream.store import SessionStore

__all__ = ["ConsumerCursor", "FeedFilter", "FeedStore"]


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """A validated ``read_feed`` query. Build it with :meth:`build`; stores share it."""

    after: int = 0
    limit: int | None = None
    types: frozenset[EventType] | None = None
    wait_timeout_ms: int | None = None

    @classmethod
    def build(
        cls, *, after: object = 0, limit: object = None, types: object = None, wait_timeout_ms: object = None
    ) -> FeedFilter:
        """Validate every argument; a bad one raises ``ValidationError`` naming it."""
        checked_after = check_int(after, "after", minimum=0, allow_none=False)
        assert checked_after is not None
        return cls(
            after=checked_after,
            limit=check_int(limit, "limit", minimum=1),
            types=None if types is None else _check_types(types),
            wait_timeout_ms=check_int(wait_timeout_ms, "wait_timeout_ms", minimum=0),
        )

    @property
    def wait_seconds(self) -> float:
        return (self.wait_timeout_ms or 0) / 1000.0

    @property
    def type_values(self) -> list[str] | None:
        """The wanted types' string values, sorted (for an SQL ``IN``), or None for all."""
        return None if self.types is None else sorted(member.value for member in self.types)

    def matches(self, event: StoredEvent) -> bool:
        """Whether a stored event passes ``after`` and ``types``."""
        return event.position > self.after and (self.types is None or event.type in self.types)


def _check_types(value: object) -> frozenset[EventType]:
    if isinstance(value, (str, EventType)) or not isinstance(value, Iterable):
        raise ValidationError(f"types must be a list of event types, got {describe(value)}")
    checked = frozenset(check_choice(item, "types[]", EventType) for item in value)
    if not checked:
        raise ValidationError("types must name at least one event type (None reads every type)")
    return checked


@dataclass(frozen=True, slots=True)
class ConsumerCursor:
    """A named consumer's saved cursor: ``position`` is the last feed position (or sequence
    number, for a consumer of one session) it finished with; ``updated_at`` when it was saved."""

    name: str
    position: int
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "position": self.position, "updated_at": self.updated_at.isoformat()}


def check_cursor_name(value: object) -> str:
    return check_id(value, "name")


def check_cursor_value(value: object, name: str) -> int:
    checked = check_int(value, name, minimum=0, allow_none=False)
    assert checked is not None
    return checked


class FeedStore(SessionStore):
    """A :class:`~sqlitestream.store.SessionStore` whose events also form one store-wide feed,
    with named consumer cursors kept beside it.

    **Positions.** Every newly stored event gets a ``position``: an integer >= 1, strictly
    increasing in commit order across all sessions, never reused (not after a session is
    deleted, nor after events are trimmed). Positions need not be contiguous: a rolled-back
    append may leave a hole, and deleted events leave theirs.

    **No skips, no repeats.** A reader that pages through :meth:`read_feed` with ``after`` set to
    the last position it received, while any number of threads and processes append, receives
    every committed event exactly once, in position order: a position is only ever visible once
    every lower position that will ever be visible already is.

    **Cursors.** :meth:`save_cursor` and friends keep one integer per consumer name in the
    same storage as the events (so they survive restarts and travel with backups). The store
    does not interpret it: a consumer of the feed saves positions, a consumer of one session
    saves sequence numbers (name them apart, e.g. ``"billing"`` and ``"ui:session-42"``).
    """

    # The feed -----------------------------------------------------------------------------

    def read_feed(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        types: Iterable[EventType | str] | None = None,
        wait_timeout_ms: int | None = None,
    ) -> list[StoredEvent]:
        """The events of every session with ``position > after``, in position order.

        ``limit`` (>= 1) keeps the first N; ``types`` (a non-empty list of event types) keeps
        only those. ``wait_timeout_ms`` > 0 long-polls as :meth:`get_events` does: if the result
        would be empty, block until a matching event is committed by any thread or process, or
        the timeout elapses. Bad values raise ``ValidationError``.

        Implemented here once: the arguments are checked and handed to :meth:`query_feed`.
        """
        return self.query_feed(
            FeedFilter.build(after=after, limit=limit, types=types, wait_timeout_ms=wait_timeout_ms)
        )

    @abc.abstractmethod
    def query_feed(self, query: FeedFilter) -> list[StoredEvent]:
        """:meth:`read_feed` for a checked query: what a store implements."""

    @abc.abstractmethod
    def get_last_position(self) -> int:
        """The highest position ever assigned in this store (0 for a store that never held an
        event). It never goes down, not even when the events holding it are deleted."""

    # Consumer cursors ---------------------------------------------------------------------

    def save_cursor(self, name: str, position: int, *, expected: int | None = None) -> None:
        """Store ``position`` (an int >= 0) as consumer ``name``'s cursor.

        ``expected=N`` (compare-and-set): store only if the cursor is N now (0 when the
        consumer has none), else raise ``CursorConflictError`` carrying the actual value and
        write nothing. Without ``expected`` the cursor is set whatever it was (a reset).
        """
        self.write_cursor(
            check_cursor_name(name),
            check_cursor_value(position, "position"),
            None if expected is None else check_cursor_value(expected, "expected"),
        )

    @abc.abstractmethod
    def write_cursor(self, name: str, position: int, expected: int | None) -> None:
        """:meth:`save_cursor` for checked arguments: what a store implements, atomically."""

    @abc.abstractmethod
    def get_cursor(self, name: str) -> int:
        """Consumer ``name``'s saved cursor; 0 when it has none (start from the beginning)."""

    @abc.abstractmethod
    def list_cursors(self) -> list[ConsumerCursor]:
        """Every saved cursor, ordered by name."""

    @abc.abstractmethod
    def delete_cursor(self, name: str) -> None:
        """Forget consumer ``name``'s cursor; idempotent."""
