"""Retention: trimming the oldest events of a session, :class:`RetentionStore`. Its docstrings
are the specification; every built-in store implements it and runs the shared contract tests in
:mod:`sqlitestream.testing`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlitestream._core.validate import check_aware_datetime, check_id, check_int, describe
from sqlitestream.admin import ProgressCallback, StreamInfo
from sqlitestream.errors import ValidationError
from sqlitestream.models import to_micros, utc_now
from sqlitestream.store import SessionStore

__all__ = ["RetentionStore", "TrimRule"]


@dataclass(frozen=True, slots=True)
class TrimRule:
    """A validated trim: which of a session's oldest events go. Build it with :meth:`build`.

    Each given criterion names a prefix of the log to remove, and the trim removes the longest
    of them (as Kafka's time and size limits do: whichever removes more):

    - ``before_sequence=N``: every event with a sequence number below N;
    - ``keep_last=K``: all but the newest K events (0 removes every event);
    - ``older_than``: the events before the first one whose timestamp is not older than the
      cut-off. Timestamps are set by writers and need not grow with the sequence, so this stops
      at the first recent event rather than skipping over it: a trim only ever removes a prefix.
    """

    before_sequence: int | None = None
    keep_last: int | None = None
    older_than_micros: int | None = None
    """The cut-off, microseconds since the epoch: events with an older timestamp may go."""

    @classmethod
    def build(
        cls,
        *,
        before_sequence: object = None,
        keep_last: object = None,
        older_than: object = None,
        now: datetime | None = None,
    ) -> TrimRule:
        """Validate every argument; a bad one (or none given) raises ``ValidationError``.

        ``older_than`` is a ``timedelta`` (an age, counted back from ``now``, default the
        current time) or an aware ``datetime`` (the cut-off itself).
        """
        rule = cls(
            before_sequence=check_int(before_sequence, "before_sequence", minimum=1),
            keep_last=check_int(keep_last, "keep_last", minimum=0),
            older_than_micros=None if older_than is None else _cutoff(older_than, now),
        )
        if rule.before_sequence is None and rule.keep_last is None and rule.older_than_micros is None:
            raise ValidationError("a trim needs before_sequence, keep_last or older_than")
        return rule

    def before(self, latest: int, first_recent: int | None) -> int:
        """The exclusive bound: events with ``sequence_number`` below it are removed.

        ``latest`` is the session's latest sequence; ``first_recent`` the sequence of its oldest
        retained event whose timestamp is not older than the cut-off (None if there is none, or
        no ``older_than`` was given: a backend asks only when :attr:`older_than_micros` is set).
        """
        bounds = [1]
        if self.before_sequence is not None:
            bounds.append(self.before_sequence)
        if self.keep_last is not None:
            bounds.append(latest - self.keep_last + 1)
        if self.older_than_micros is not None:
            bounds.append(latest + 1 if first_recent is None else first_recent)
        return min(max(bounds), latest + 1)


def _cutoff(value: object, now: datetime | None) -> int:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValidationError(f"older_than must be a positive age, got {value}")
        return to_micros((now or utc_now()) - value)
    if isinstance(value, datetime):
        return to_micros(check_aware_datetime(value, "older_than"))
    raise ValidationError(f"older_than must be a timedelta or an aware datetime, got {describe(value)}")


class RetentionStore(SessionStore):
    """A :class:`~sqlitestream.store.SessionStore` whose sessions can drop their oldest events.

    **Gap-free from ``first_sequence``.** A trimmed log keeps its newest events: its sequence
    numbers run without a gap from ``first_sequence`` (1 until a trim) to ``latest_sequence``
    (:meth:`get_stream_info`). Sequence numbers are never reused: appends continue from the
    latest, even after every event was trimmed. Feed positions are never reused either.

    **Readers can tell.** ``get_events(after=N)`` with N below the first retained event returns
    from the first retained event, so the first sequence number returned is above N + 1; compare
    with :meth:`get_stream_info` to know how many were trimmed. A trim never wakes a waiter.

    **Trimmed ids are forgotten.** Idempotency covers the retained events: an event whose id
    was trimmed away is, if appended again, a new event with the next sequence number (as with
    Kafka's and Redis's retention: the duplicate window is the retained log).
    """

    def trim_session(
        self,
        session_id: str,
        *,
        before_sequence: int | None = None,
        keep_last: int | None = None,
        older_than: timedelta | datetime | None = None,
        dry_run: bool = False,
    ) -> int:
        """Remove the oldest events of one session, as :class:`TrimRule` describes; returns how
        many were removed (with ``dry_run=True``: how many would be, writing nothing).

        At least one criterion is required; bad values raise ``ValidationError`` before anything
        is removed. Trimming an unknown session, or one with nothing to trim, returns 0. Each
        removed event is gone for every reader at once (a long trim may take several
        transactions, oldest events first, so a reader sees the first sequence only rise).
        """
        checked = check_id(session_id, "session_id")
        rule = TrimRule.build(before_sequence=before_sequence, keep_last=keep_last, older_than=older_than)
        dry = _check_flag(dry_run, "dry_run")
        removed = self.apply_trim(checked, rule, dry_run=dry)
        if removed and not dry:
            self.reclaim_space()
        return removed

    def trim_store(
        self,
        *,
        keep_last: int | None = None,
        older_than: timedelta | datetime | None = None,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Apply one policy to every session with events: :meth:`trim_session` with the same
        ``keep_last`` and ``older_than`` (one cut-off time for all), session by session.
        Returns the number of events removed (or, with ``dry_run``, that would be);
        ``on_progress(done, total)`` is called after each session.

        Not one transaction: a policy applied to a large store must not hold the write lock for
        the whole run, and each session's trim is complete on its own.
        """
        rule = TrimRule.build(keep_last=keep_last, older_than=older_than)
        dry = _check_flag(dry_run, "dry_run")
        if on_progress is not None and not callable(on_progress):
            raise ValidationError(f"on_progress must be callable, got {describe(on_progress)}")
        removed = self.apply_trims(
            list(self.trimmable_sessions()), rule, dry_run=dry, on_progress=on_progress
        )
        if removed and not dry:
            self.reclaim_space()
        return removed

    def apply_trims(
        self, session_ids: list[str], rule: TrimRule, *, dry_run: bool, on_progress: ProgressCallback | None
    ) -> int:
        """:meth:`trim_store`'s work: :meth:`apply_trim` for each session, reporting progress
        after each. A store may override it to share transactions between sessions."""
        removed = 0
        for done, session_id in enumerate(session_ids, 1):
            removed += self.apply_trim(session_id, rule, dry_run=dry_run)
            if on_progress is not None:
                on_progress(done, len(session_ids))
        return removed

    @abc.abstractmethod
    def apply_trim(self, session_id: str, rule: TrimRule, *, dry_run: bool) -> int:
        """:meth:`trim_session` for checked arguments: what a store implements."""

    def reclaim_space(self) -> None:
        """Called once after a trim removed events: give the space back where the storage
        needs to be told (the SQLite store's incremental vacuum). By default nothing."""

    @abc.abstractmethod
    def trimmable_sessions(self) -> Iterable[str]:
        """The ids of every session holding at least one event, in any order."""

    @abc.abstractmethod
    def get_stream_info(self, session_id: str) -> StreamInfo:
        """One session's log: ``first_sequence`` (the oldest retained event's sequence, or
        ``latest_sequence + 1`` when none is retained), ``latest_sequence``, ``event_count``
        (``latest_sequence - first_sequence + 1``), ``bytes`` (encoded data and metadata of
        the retained events) and ``last_event_at``. An unknown id gives an empty log:
        ``first_sequence`` 1, everything else 0 or None."""


def _check_flag(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise ValidationError(f"{name} must be True or False, got {describe(value)}")
    return value
